package lab

import (
	"bytes"
	"encoding/json"
	"fmt"
	"maps"
	"slices"
	"strings"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/intstr"
	"sigs.k8s.io/yaml"
)

// Labels and values the lab writes, as a kubelet, the API server and the
// EndpointSlice controller would.
const (
	labelHostname      = "kubernetes.io/hostname"
	labelOS            = "kubernetes.io/os"
	labelNamespaceName = "kubernetes.io/metadata.name"
	labelManagedBy     = "endpointslice.kubernetes.io/managed-by"
	managedBy          = "skein-lab"
	containerName      = "main"
	containerImage     = "skein-lab"
)

// objects returns the cluster's Kubernetes objects, in the order an
// informer-fed agent would typically see them: nodes, namespaces, service
// accounts, pods, services, endpoint slices.
func (s *state) objects() []runtime.Object {
	var out []runtime.Object
	for _, n := range s.Nodes {
		out = append(out, s.nodeObject(n))
	}
	namespaces := s.allNamespaces()
	for _, ns := range namespaces {
		labels := maps.Clone(ns.Labels)
		if labels == nil {
			labels = map[string]string{}
		}
		labels[labelNamespaceName] = ns.Name
		out = append(out, &corev1.Namespace{
			TypeMeta:   metav1.TypeMeta{APIVersion: "v1", Kind: "Namespace"},
			ObjectMeta: metav1.ObjectMeta{Name: ns.Name, Labels: labels},
			Status:     corev1.NamespaceStatus{Phase: corev1.NamespaceActive},
		})
	}
	// Every namespace has a "default" service account, as in Kubernetes.
	type saKey struct{ ns, name string }
	var sas []saKey
	seen := map[saKey]bool{}
	addSA := func(k saKey) {
		if !seen[k] {
			seen[k] = true
			sas = append(sas, k)
		}
	}
	for _, ns := range namespaces {
		addSA(saKey{ns.Name, "default"})
	}
	for _, p := range s.Pods {
		addSA(saKey{p.namespace(), p.serviceAccount()})
	}
	for _, k := range sas {
		out = append(out, &corev1.ServiceAccount{
			TypeMeta:   metav1.TypeMeta{APIVersion: "v1", Kind: "ServiceAccount"},
			ObjectMeta: metav1.ObjectMeta{Name: k.name, Namespace: k.ns},
		})
	}
	for _, p := range s.Pods {
		out = append(out, s.podObject(p))
	}
	for _, svc := range s.Services {
		out = append(out, serviceObject(svc))
	}
	for _, svc := range s.Services {
		for _, es := range s.endpointSlices(svc) {
			out = append(out, es)
		}
	}
	return out
}

// allNamespaces returns the declared namespaces, plus "default" when it is
// used without being declared.
func (s *state) allNamespaces() []NamespaceSpec {
	out := slices.Clone(s.Namespaces)
	has := slices.ContainsFunc(out, func(n NamespaceSpec) bool { return n.Name == defaultNamespace })
	if !has {
		used := slices.ContainsFunc(s.Pods, func(p *podState) bool { return p.namespace() == defaultNamespace }) ||
			slices.ContainsFunc(s.Services, func(v ServiceSpec) bool { return v.namespace() == defaultNamespace })
		if used {
			out = append([]NamespaceSpec{{Name: defaultNamespace}}, out...)
		}
	}
	return out
}

func (s *state) nodeObject(n *nodeState) *corev1.Node {
	labels := maps.Clone(n.Labels)
	if labels == nil {
		labels = map[string]string{}
	}
	labels[labelHostname] = n.Name
	labels[labelOS] = "linux"
	cidr := n.PodCIDR.String()
	return &corev1.Node{
		TypeMeta:   metav1.TypeMeta{APIVersion: "v1", Kind: "Node"},
		ObjectMeta: metav1.ObjectMeta{Name: n.Name, Labels: labels},
		Spec:       corev1.NodeSpec{PodCIDR: cidr, PodCIDRs: []string{cidr}},
		Status: corev1.NodeStatus{
			Addresses: []corev1.NodeAddress{
				{Type: corev1.NodeInternalIP, Address: n.IP.String()},
				{Type: corev1.NodeHostName, Address: n.Name},
			},
			Conditions: []corev1.NodeCondition{{Type: corev1.NodeReady, Status: corev1.ConditionTrue, Reason: "KubeletReady"}},
		},
	}
}

func (s *state) podObject(p *podState) *corev1.Pod {
	n := s.node(p.Node)
	ready := corev1.ConditionFalse
	if p.ready() {
		ready = corev1.ConditionTrue
	}
	var ports []corev1.ContainerPort
	for _, cp := range p.Ports {
		ports = append(ports, corev1.ContainerPort{Name: cp.Name, ContainerPort: cp.ContainerPort, Protocol: corev1.ProtocolTCP})
	}
	hostIP := n.IP.String()
	return &corev1.Pod{
		TypeMeta: metav1.TypeMeta{APIVersion: "v1", Kind: "Pod"},
		ObjectMeta: metav1.ObjectMeta{
			Name:        p.Name,
			Namespace:   p.namespace(),
			UID:         types.UID(p.UID),
			Labels:      maps.Clone(p.Labels),
			Annotations: maps.Clone(p.Annotations),
		},
		Spec: corev1.PodSpec{
			NodeName:           p.Node,
			ServiceAccountName: p.serviceAccount(),
			Containers: []corev1.Container{{
				Name:    containerName,
				Image:   containerImage,
				Command: slices.Clone(p.Command),
				Ports:   ports,
			}},
		},
		Status: corev1.PodStatus{
			Phase:   corev1.PodRunning,
			HostIP:  hostIP,
			HostIPs: []corev1.HostIP{{IP: hostIP}},
			PodIP:   p.IP.String(),
			PodIPs:  []corev1.PodIP{{IP: p.IP.String()}},
			Conditions: []corev1.PodCondition{
				{Type: corev1.PodScheduled, Status: corev1.ConditionTrue},
				{Type: corev1.PodInitialized, Status: corev1.ConditionTrue},
				{Type: corev1.ContainersReady, Status: ready},
				{Type: corev1.PodReady, Status: ready},
			},
			ContainerStatuses: []corev1.ContainerStatus{{
				Name:    containerName,
				Image:   containerImage,
				Ready:   p.ready(),
				Started: ptrTo(true),
				State:   corev1.ContainerState{Running: &corev1.ContainerStateRunning{}},
			}},
			// The lab puts every pod under kubepods/besteffort.
			QOSClass: corev1.PodQOSBestEffort,
		},
	}
}

func serviceObject(svc ServiceSpec) *corev1.Service {
	var ports []corev1.ServicePort
	for _, sp := range svc.Ports {
		port := corev1.ServicePort{
			Name:       sp.Name,
			Protocol:   corev1.ProtocolTCP,
			Port:       sp.Port,
			TargetPort: sp.targetPort(),
		}
		if sp.AppProtocol != "" {
			port.AppProtocol = ptrTo(sp.AppProtocol)
		}
		ports = append(ports, port)
	}
	return &corev1.Service{
		TypeMeta: metav1.TypeMeta{APIVersion: "v1", Kind: "Service"},
		ObjectMeta: metav1.ObjectMeta{
			Name:        svc.Name,
			Namespace:   svc.namespace(),
			Labels:      maps.Clone(svc.Labels),
			Annotations: maps.Clone(svc.Annotations),
		},
		Spec: corev1.ServiceSpec{
			Type:            corev1.ServiceTypeClusterIP,
			ClusterIP:       svc.ClusterIP,
			ClusterIPs:      []string{svc.ClusterIP},
			IPFamilies:      []corev1.IPFamily{corev1.IPv4Protocol},
			IPFamilyPolicy:  ptrTo(corev1.IPFamilyPolicySingleStack),
			SessionAffinity: corev1.ServiceAffinityNone,
			Selector:        maps.Clone(svc.Selector),
			Ports:           ports,
		},
	}
}

// endpointSlices returns the slices of a Service the way the EndpointSlice
// controller builds them: every selected pod is an endpoint (ready or not,
// with its conditions), ports are resolved per pod from the targetPort
// (number, or the pod's named container port; a name the pod lacks is
// left out), and pods whose resolved ports differ go to different slices.
// A Service without a selector gets no slice.
func (s *state) endpointSlices(svc ServiceSpec) []*discoveryv1.EndpointSlice {
	if len(svc.Selector) == 0 {
		return nil
	}
	type group struct {
		key       string
		ports     []discoveryv1.EndpointPort
		endpoints []discoveryv1.Endpoint
	}
	var groups []*group
	for _, p := range s.Pods {
		if p.namespace() != svc.namespace() || !selects(svc.Selector, p.Labels) {
			continue
		}
		ports := resolvePorts(svc, p)
		var key strings.Builder
		for _, ep := range ports {
			fmt.Fprintf(&key, "%s=%d,", *ep.Name, *ep.Port)
		}
		var g *group
		for _, o := range groups {
			if o.key == key.String() {
				g = o
			}
		}
		if g == nil {
			g = &group{key: key.String(), ports: ports}
			groups = append(groups, g)
		}
		ready := p.ready()
		g.endpoints = append(g.endpoints, discoveryv1.Endpoint{
			Addresses: []string{p.IP.String()},
			Conditions: discoveryv1.EndpointConditions{
				Ready:       ptrTo(ready),
				Serving:     ptrTo(ready),
				Terminating: ptrTo(false),
			},
			NodeName: ptrTo(p.Node),
			TargetRef: &corev1.ObjectReference{
				Kind:      "Pod",
				Namespace: p.namespace(),
				Name:      p.Name,
				UID:       types.UID(p.UID),
			},
		})
	}
	if len(groups) == 0 {
		// The controller keeps an empty placeholder slice.
		groups = append(groups, &group{})
	}
	out := make([]*discoveryv1.EndpointSlice, 0, len(groups))
	for i, g := range groups {
		name := svc.Name + "-lab"
		if i > 0 {
			name = fmt.Sprintf("%s-lab-%d", svc.Name, i+1)
		}
		out = append(out, &discoveryv1.EndpointSlice{
			TypeMeta: metav1.TypeMeta{APIVersion: "discovery.k8s.io/v1", Kind: "EndpointSlice"},
			ObjectMeta: metav1.ObjectMeta{
				Name:      name,
				Namespace: svc.namespace(),
				Labels: map[string]string{
					discoveryv1.LabelServiceName: svc.Name,
					labelManagedBy:               managedBy,
				},
			},
			AddressType: discoveryv1.AddressTypeIPv4,
			Endpoints:   g.endpoints,
			Ports:       g.ports,
		})
	}
	return out
}

// resolvePorts resolves a Service's ports against one pod.
func resolvePorts(svc ServiceSpec, p *podState) []discoveryv1.EndpointPort {
	var out []discoveryv1.EndpointPort
	for _, sp := range svc.Ports {
		tp := sp.targetPort()
		port := tp.IntVal
		if tp.Type == intstr.String {
			port = 0
			for _, cp := range p.Ports {
				if cp.Name == tp.StrVal {
					port = cp.ContainerPort
				}
			}
			if port == 0 {
				continue
			}
		}
		ep := discoveryv1.EndpointPort{
			Name:     ptrTo(sp.Name),
			Port:     ptrTo(port),
			Protocol: ptrTo(corev1.ProtocolTCP),
		}
		if sp.AppProtocol != "" {
			ep.AppProtocol = ptrTo(sp.AppProtocol)
		}
		out = append(out, ep)
	}
	return out
}

// selects reports whether a selector matches a pod's labels.
func selects(selector, labels map[string]string) bool {
	for k, v := range selector {
		if got, ok := labels[k]; !ok || got != v {
			return false
		}
	}
	return true
}

// clusterYAML renders the cluster as one multi-document YAML stream: the
// generated objects, then the extra objects verbatim.
func (s *state) clusterYAML() ([]byte, error) {
	var b bytes.Buffer
	fmt.Fprintf(&b, "# Written by skein-lab (prefix %s). Do not edit: the lab rewrites it.\n", s.Prefix)
	for _, obj := range s.objects() {
		data, err := marshalPruned(obj)
		if err != nil {
			return nil, fmt.Errorf("marshal %T: %w", obj, err)
		}
		b.WriteString("---\n")
		b.Write(data)
	}
	for _, doc := range s.Objects {
		b.WriteString("---\n")
		b.WriteString(doc)
		if !strings.HasSuffix(doc, "\n") {
			b.WriteByte('\n')
		}
	}
	return b.Bytes(), nil
}

// marshalPruned marshals an object to YAML without the zero values that
// the API types' non-pointer structs drag in (nodeInfo, daemonEndpoints,
// null timestamps): null, "", 0, {} and [] are dropped, booleans kept. The
// result decodes strictly to the same object.
func marshalPruned(obj any) ([]byte, error) {
	data, err := json.Marshal(obj)
	if err != nil {
		return nil, err
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		return nil, err
	}
	v, _ = prune(v)
	return yaml.Marshal(v)
}

// stringMaps are the fields whose values are kept even when empty.
var stringMaps = map[string]bool{"labels": true, "annotations": true, "selector": true, "matchLabels": true, "nodeSelector": true}

// prune drops zero values from decoded JSON; it reports whether v itself
// is zero.
func prune(v any) (any, bool) {
	switch x := v.(type) {
	case nil:
		return nil, true
	case string:
		return x, x == ""
	case json.Number:
		f, err := x.Float64()
		return x, err == nil && f == 0
	case map[string]any:
		for k, e := range x {
			if stringMaps[k] {
				// An empty label or annotation value is a value.
				if m, ok := e.(map[string]any); ok && len(m) > 0 {
					continue
				}
			}
			if pe, zero := prune(e); zero {
				delete(x, k)
			} else {
				x[k] = pe
			}
		}
		return x, len(x) == 0
	case []any:
		out := x[:0]
		for _, e := range x {
			// Keep list positions: an element is dropped only if
			// nothing of it is left at all.
			if pe, zero := prune(e); !zero {
				out = append(out, pe)
			}
		}
		return out, len(out) == 0
	default:
		return x, false
	}
}

func ptrTo[T any](v T) *T { return &v }
