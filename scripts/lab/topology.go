package lab

import (
	"bytes"
	"errors"
	"fmt"
	"maps"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"k8s.io/apimachinery/pkg/api/validate/content"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/apimachinery/pkg/util/validation"
	"sigs.k8s.io/yaml"
)

// Topology is a lab cluster as written in a topology file: nodes,
// namespaces, pods, services, and extra Kubernetes objects.
type Topology struct {
	// Nodes are the cluster's nodes. Node i (1-based, in this order) gets
	// underlay address 192.168.77.i and pod CIDR 10.244.i.0/24.
	Nodes []NodeSpec `json:"nodes"`
	// Namespaces are the Kubernetes namespaces. The namespace "default"
	// exists even when not listed.
	Namespaces []NamespaceSpec `json:"namespaces,omitempty"`
	// Pods get 10.244.i.10, .11, ... on their node, in this order.
	Pods []PodSpec `json:"pods,omitempty"`
	// Services without a clusterIP get one from 10.96.0.0/16, from .10 on.
	Services []ServiceSpec `json:"services,omitempty"`
	// Objects are multi-document Kubernetes YAML files, relative to the
	// topology file, appended verbatim to the cluster YAML.
	Objects []string `json:"objects,omitempty"`

	// BaseDir is the directory Objects are relative to; Load sets it to the
	// topology file's directory. Empty: the working directory.
	BaseDir string `json:"-"`

	// objectDocs holds the contents of Objects once read.
	objectDocs [][]byte
}

// NodeSpec is one lab node.
type NodeSpec struct {
	// Name is a DNS label. "underlay" is reserved.
	Name string `json:"name"`
	// Labels are added to the Node object (kubernetes.io/hostname is always set).
	Labels map[string]string `json:"labels,omitempty"`
}

// NamespaceSpec is one Kubernetes namespace.
type NamespaceSpec struct {
	Name string `json:"name"`
	// Labels enroll the namespace, e.g. skein.io/mesh: enabled.
	Labels map[string]string `json:"labels,omitempty"`
}

// PodSpec is one pod: a network namespace, a veth to its node, a cgroup and
// an optional main process.
type PodSpec struct {
	Name string `json:"name"`
	// Namespace defaults to "default".
	Namespace string `json:"namespace,omitempty"`
	// Node is the name of the node the pod runs on. Required.
	Node   string            `json:"node"`
	Labels map[string]string `json:"labels,omitempty"`
	// Annotations, e.g. skein.io/mesh: disabled.
	Annotations map[string]string `json:"annotations,omitempty"`
	// ServiceAccount defaults to "default".
	ServiceAccount string `json:"serviceAccount,omitempty"`
	// Ports are the container ports, for named targetPorts.
	Ports []ContainerPort `json:"ports,omitempty"`
	// Command is the pod's main process, started in the pod by Up (or
	// AddPod); empty: none.
	Command []string `json:"command,omitempty"`
	// Ready is the pod's readiness; nil means ready.
	Ready *bool `json:"ready,omitempty"`
}

// ContainerPort is a named port of a pod's container.
type ContainerPort struct {
	Name          string `json:"name,omitempty"`
	ContainerPort int32  `json:"containerPort"`
}

// ServiceSpec is one ClusterIP Service.
type ServiceSpec struct {
	Name string `json:"name"`
	// Namespace defaults to "default".
	Namespace   string            `json:"namespace,omitempty"`
	Labels      map[string]string `json:"labels,omitempty"`
	Annotations map[string]string `json:"annotations,omitempty"`
	// ClusterIP is in 10.96.0.0/16; empty: allocated.
	ClusterIP string `json:"clusterIP,omitempty"`
	// Selector selects the pods of the same namespace that back the
	// Service; empty: no EndpointSlice is generated (supply one in Objects).
	Selector map[string]string `json:"selector,omitempty"`
	Ports    []ServicePort     `json:"ports"`
}

// ServicePort is one port of a Service.
type ServicePort struct {
	Name string `json:"name,omitempty"`
	Port int32  `json:"port"`
	// TargetPort is a number or the name of a container port; zero: Port.
	TargetPort intstr.IntOrString `json:"targetPort,omitempty"`
	// AppProtocol, e.g. http, kubernetes.io/h2c; empty: not set.
	AppProtocol string `json:"appProtocol,omitempty"`
}

// Key returns the pod's "namespace/name".
func (p PodSpec) Key() string { return p.namespace() + "/" + p.Name }

func (p PodSpec) namespace() string {
	if p.Namespace == "" {
		return defaultNamespace
	}
	return p.Namespace
}

func (p PodSpec) serviceAccount() string {
	if p.ServiceAccount == "" {
		return "default"
	}
	return p.ServiceAccount
}

func (p PodSpec) ready() bool { return p.Ready == nil || *p.Ready }

// Key returns the service's "namespace/name".
func (s ServiceSpec) Key() string { return s.namespace() + "/" + s.Name }

func (s ServiceSpec) namespace() string {
	if s.Namespace == "" {
		return defaultNamespace
	}
	return s.Namespace
}

func (sp ServicePort) targetPort() intstr.IntOrString {
	if sp.TargetPort.Type == intstr.String && sp.TargetPort.StrVal != "" {
		return sp.TargetPort
	}
	if sp.TargetPort.Type == intstr.Int && sp.TargetPort.IntVal != 0 {
		return sp.TargetPort
	}
	return intstr.FromInt32(sp.Port)
}

const (
	defaultNamespace = "default"
	reservedNode     = "underlay"
	maxNodes         = 250
	// Pods get host numbers firstPodHost..lastPodHost in their node's /24.
	firstPodHost = 10
	lastPodHost  = 254
)

var (
	serviceCIDR  = netip.MustParsePrefix("10.96.0.0/16")
	firstService = netip.MustParseAddr("10.96.0.10")
)

// Load reads and validates a topology file, and reads the object files it
// names (relative to the topology file).
func Load(path string) (*Topology, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read topology: %w", err)
	}
	t, err := Parse(data)
	if err != nil {
		return nil, fmt.Errorf("topology %s: %w", path, err)
	}
	t.BaseDir = filepath.Dir(path)
	if err := t.readObjects(); err != nil {
		return nil, fmt.Errorf("topology %s: %w", path, err)
	}
	return t, nil
}

// Parse parses and validates a topology. Unknown fields are errors, so a
// typo does not silently change the lab.
func Parse(data []byte) (*Topology, error) {
	var t Topology
	if err := yaml.UnmarshalStrict(data, &t); err != nil {
		return nil, fmt.Errorf("parse topology: %w", err)
	}
	if err := t.Validate(); err != nil {
		return nil, err
	}
	return &t, nil
}

// readObjects reads the Objects files (once) and checks that every
// document in them has an apiVersion and a kind.
func (t *Topology) readObjects() error {
	if t.objectDocs != nil || len(t.Objects) == 0 {
		return nil
	}
	var errs []error
	docs := make([][]byte, 0, len(t.Objects))
	for i, name := range t.Objects {
		p := name
		if !filepath.IsAbs(p) {
			p = filepath.Join(t.BaseDir, p)
		}
		data, err := os.ReadFile(p)
		if err != nil {
			errs = append(errs, fmt.Errorf("objects[%d]: read %s: %w", i, p, err))
			continue
		}
		if err := checkObjects(data); err != nil {
			errs = append(errs, fmt.Errorf("objects[%d] (%s): %w", i, name, err))
			continue
		}
		docs = append(docs, data)
	}
	if err := errors.Join(errs...); err != nil {
		return err
	}
	t.objectDocs = docs
	return nil
}

// checkObjects checks that each document of a multi-document YAML stream
// is an object with apiVersion and kind. It does not validate the objects:
// the agent does, and tests rely on feeding it invalid ones.
func checkObjects(data []byte) error {
	var errs []error
	for i, doc := range splitDocuments(data) {
		if len(bytes.TrimSpace(stripComments(doc))) == 0 {
			continue
		}
		var tm struct {
			APIVersion string `json:"apiVersion"`
			Kind       string `json:"kind"`
		}
		if err := yaml.Unmarshal(doc, &tm); err != nil {
			errs = append(errs, fmt.Errorf("document %d: not YAML: %w", i+1, err))
			continue
		}
		if tm.APIVersion == "" || tm.Kind == "" {
			errs = append(errs, fmt.Errorf("document %d: apiVersion and kind are required", i+1))
		}
	}
	return errors.Join(errs...)
}

// splitDocuments splits a YAML stream at "---" separator lines.
func splitDocuments(data []byte) [][]byte {
	var docs [][]byte
	var cur bytes.Buffer
	for line := range bytes.Lines(data) {
		t := bytes.TrimRight(line, " \t\r\n")
		if bytes.Equal(t, []byte("---")) || bytes.HasPrefix(t, []byte("--- ")) {
			docs = append(docs, slices.Clone(cur.Bytes()))
			cur.Reset()
			continue
		}
		cur.Write(line)
	}
	return append(docs, cur.Bytes())
}

func stripComments(doc []byte) []byte {
	var b bytes.Buffer
	for line := range bytes.Lines(doc) {
		if t := bytes.TrimSpace(line); len(t) == 0 || t[0] == '#' {
			continue
		}
		b.Write(line)
	}
	return b.Bytes()
}

// Validate checks the topology: unique names, known nodes and namespaces,
// valid names, labels, ports and addresses. Every error names the object
// and the field.
func (t *Topology) Validate() error {
	var errs []error
	add := func(obj, field, format string, args ...any) {
		errs = append(errs, fmt.Errorf("%s: field %s: %s", obj, field, fmt.Sprintf(format, args...)))
	}
	if len(t.Nodes) == 0 {
		errs = append(errs, errors.New("nodes: declare at least one node"))
	}
	if len(t.Nodes) > maxNodes {
		errs = append(errs, fmt.Errorf("nodes: %d nodes, the lab supports at most %d", len(t.Nodes), maxNodes))
	}
	nodes := map[string]bool{}
	for i, n := range t.Nodes {
		obj := fmt.Sprintf("nodes[%d] %q", i, n.Name)
		validateDNSLabel(add, obj, "name", n.Name)
		if n.Name == reservedNode {
			add(obj, "name", "%q is reserved for the lab's underlay; rename the node", reservedNode)
		}
		if nodes[n.Name] {
			add(obj, "name", "duplicate node name")
		}
		nodes[n.Name] = true
		validateLabels(add, obj, "labels", n.Labels)
	}
	namespaces := map[string]bool{defaultNamespace: true}
	declared := map[string]bool{}
	for i, ns := range t.Namespaces {
		obj := fmt.Sprintf("namespaces[%d] %q", i, ns.Name)
		validateDNSLabel(add, obj, "name", ns.Name)
		if declared[ns.Name] {
			add(obj, "name", "duplicate namespace name")
		}
		declared[ns.Name] = true
		namespaces[ns.Name] = true
		validateLabels(add, obj, "labels", ns.Labels)
	}
	pods := map[string]bool{}
	perNode := map[string]int{}
	for i, p := range t.Pods {
		obj := fmt.Sprintf("pods[%d] %q", i, p.Key())
		for _, e := range validatePod(p, nodes, namespaces) {
			add(obj, e.field, "%s", e.msg)
		}
		if pods[p.Key()] {
			add(obj, "name", "duplicate pod %s", p.Key())
		}
		pods[p.Key()] = true
		perNode[p.Node]++
	}
	for _, n := range t.Nodes {
		if c := perNode[n.Name]; c > lastPodHost-firstPodHost+1 {
			errs = append(errs, fmt.Errorf("node %q: %d pods, a node holds at most %d", n.Name, c, lastPodHost-firstPodHost+1))
		}
	}
	services := map[string]bool{}
	ips := map[netip.Addr]string{}
	for i, s := range t.Services {
		obj := fmt.Sprintf("services[%d] %q", i, s.Key())
		if vs := validation.IsDNS1035Label(s.Name); len(vs) > 0 {
			add(obj, "name", "%q: %s", s.Name, strings.Join(vs, "; "))
		}
		if !namespaces[s.namespace()] {
			add(obj, "namespace", "unknown namespace %q; declare it under namespaces", s.namespace())
		}
		if services[s.Key()] {
			add(obj, "name", "duplicate service %s", s.Key())
		}
		services[s.Key()] = true
		validateLabels(add, obj, "labels", s.Labels)
		validateLabels(add, obj, "selector", s.Selector)
		validateAnnotations(add, obj, "annotations", s.Annotations)
		if s.ClusterIP != "" {
			ip, err := netip.ParseAddr(s.ClusterIP)
			switch {
			case err != nil || !ip.Is4():
				add(obj, "clusterIP", "%q is not an IPv4 address", s.ClusterIP)
			case !serviceCIDR.Contains(ip) || ip == serviceCIDR.Addr() || ip == lastAddr(serviceCIDR):
				add(obj, "clusterIP", "%s is outside the lab's service range %s (or is its network or broadcast address)", ip, serviceCIDR)
			case ips[ip] != "":
				add(obj, "clusterIP", "%s is already the clusterIP of %s", ip, ips[ip])
			default:
				ips[ip] = s.Key()
			}
		}
		if len(s.Ports) == 0 {
			add(obj, "ports", "a Service needs at least one port")
		}
		portNames := map[string]bool{}
		for j, sp := range s.Ports {
			f := fmt.Sprintf("ports[%d]", j)
			if vs := validation.IsValidPortNum(int(sp.Port)); len(vs) > 0 {
				add(obj, f+".port", "%d: %s", sp.Port, strings.Join(vs, "; "))
			}
			if len(s.Ports) > 1 && sp.Name == "" {
				add(obj, f+".name", "name every port of a Service with more than one port")
			}
			if sp.Name != "" {
				if vs := validation.IsDNS1123Label(sp.Name); len(vs) > 0 {
					add(obj, f+".name", "%q: %s", sp.Name, strings.Join(vs, "; "))
				}
			}
			if portNames[sp.Name] {
				add(obj, f+".name", "duplicate port name %q", sp.Name)
			}
			portNames[sp.Name] = true
			switch tp := sp.TargetPort; {
			case tp.Type == intstr.String && tp.StrVal != "":
				if vs := validation.IsValidPortName(tp.StrVal); len(vs) > 0 {
					add(obj, f+".targetPort", "%q: %s", tp.StrVal, strings.Join(vs, "; "))
				}
			case tp.Type == intstr.Int && tp.IntVal != 0:
				if vs := validation.IsValidPortNum(int(tp.IntVal)); len(vs) > 0 {
					add(obj, f+".targetPort", "%d: %s", tp.IntVal, strings.Join(vs, "; "))
				}
			}
		}
	}
	return errors.Join(errs...)
}

type fieldError struct{ field, msg string }

// validatePod checks one pod against the known nodes and namespaces.
func validatePod(p PodSpec, nodes, namespaces map[string]bool) []fieldError {
	var errs []fieldError
	add := func(obj, field, format string, args ...any) {
		errs = append(errs, fieldError{field, fmt.Sprintf(format, args...)})
	}
	validateDNSLabel(add, "", "name", p.Name)
	if p.Node == "" {
		add("", "node", "required: name the node the pod runs on")
	} else if !nodes[p.Node] {
		add("", "node", "unknown node %q; declare it under nodes (known: %s)", p.Node, strings.Join(slices.Sorted(maps.Keys(nodes)), ", "))
	}
	if !namespaces[p.namespace()] {
		add("", "namespace", "unknown namespace %q; declare it under namespaces", p.namespace())
	}
	if p.ServiceAccount != "" {
		if vs := validation.IsDNS1123Subdomain(p.ServiceAccount); len(vs) > 0 {
			add("", "serviceAccount", "%q: %s", p.ServiceAccount, strings.Join(vs, "; "))
		}
	}
	validateLabels(add, "", "labels", p.Labels)
	validateAnnotations(add, "", "annotations", p.Annotations)
	names := map[string]bool{}
	nums := map[int32]bool{}
	for j, cp := range p.Ports {
		f := fmt.Sprintf("ports[%d]", j)
		if vs := validation.IsValidPortNum(int(cp.ContainerPort)); len(vs) > 0 {
			add("", f+".containerPort", "%d: %s", cp.ContainerPort, strings.Join(vs, "; "))
		}
		if nums[cp.ContainerPort] {
			add("", f+".containerPort", "duplicate port %d", cp.ContainerPort)
		}
		nums[cp.ContainerPort] = true
		if cp.Name != "" {
			if vs := validation.IsValidPortName(cp.Name); len(vs) > 0 {
				add("", f+".name", "%q: %s", cp.Name, strings.Join(vs, "; "))
			}
			if names[cp.Name] {
				add("", f+".name", "duplicate port name %q", cp.Name)
			}
			names[cp.Name] = true
		}
	}
	if len(p.Command) > 0 && p.Command[0] == "" {
		add("", "command[0]", "the program is empty")
	}
	return errs
}

type addFunc func(obj, field, format string, args ...any)

func validateDNSLabel(add addFunc, obj, field, v string) {
	if v == "" {
		add(obj, field, "required")
		return
	}
	if vs := validation.IsDNS1123Label(v); len(vs) > 0 {
		add(obj, field, "%q: %s", v, strings.Join(vs, "; "))
	}
}

func validateLabels(add addFunc, obj, field string, m map[string]string) {
	for _, k := range slices.Sorted(maps.Keys(m)) {
		if vs := content.IsLabelKey(k); len(vs) > 0 {
			add(obj, field, "key %q: %s", k, strings.Join(vs, "; "))
		}
		if vs := content.IsLabelValue(m[k]); len(vs) > 0 {
			add(obj, field+"["+k+"]", "value %q: %s", m[k], strings.Join(vs, "; "))
		}
	}
}

func validateAnnotations(add addFunc, obj, field string, m map[string]string) {
	for _, k := range slices.Sorted(maps.Keys(m)) {
		if vs := content.IsLabelKey(k); len(vs) > 0 {
			add(obj, field, "key %q: %s", k, strings.Join(vs, "; "))
		}
	}
}

// lastAddr returns the last address of an IPv4 prefix.
func lastAddr(p netip.Prefix) netip.Addr {
	a := p.Masked().Addr().As4()
	host := 32 - p.Bits()
	v := uint32(a[0])<<24 | uint32(a[1])<<16 | uint32(a[2])<<8 | uint32(a[3])
	v |= (1 << host) - 1
	return netip.AddrFrom4([4]byte{byte(v >> 24), byte(v >> 16), byte(v >> 8), byte(v)})
}
