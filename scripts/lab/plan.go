package lab

import (
	"crypto/sha1"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"net/netip"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
)

// DefaultPrefix names the objects of the default lab.
const DefaultPrefix = "skl"

// stateVersion is the version of the saved state format.
const stateVersion = 1

// Fixed lab addressing.
var (
	underlayCIDR = netip.MustParsePrefix("192.168.77.0/24")
	podSuperNet  = netip.MustParsePrefix("10.244.0.0/16")
)

// Interface names inside the lab.
const (
	bridgeName   = "br0"
	underlayLink = "ul0"
	podLink      = "eth0"
)

var prefixRE = regexp.MustCompile(`^[a-z][a-z0-9]{0,11}$`)

// checkPrefix validates a lab prefix. It has no dash, so that "<prefix>-"
// never matches another lab's names, and it is short enough for the names
// derived from it. "skein" is refused: its state and pin paths are the
// production agent's.
func checkPrefix(p string) error {
	if !prefixRE.MatchString(p) {
		return fmt.Errorf("prefix %q: use 1 to 12 lowercase letters and digits, starting with a letter", p)
	}
	if p == "skein" {
		return errors.New(`prefix "skein": reserved for a real agent's /run/skein and /sys/fs/bpf/skein; pick another`)
	}
	return nil
}

// state is the lab as built: the topology with every address, name and UID
// allocated. It is saved as <state dir>/topology.yaml so that a later
// process (skein-lab exec, status, down) finds the lab.
type state struct {
	Version     int             `json:"version"`
	Prefix      string          `json:"prefix"`
	StateDir    string          `json:"stateDir"`
	Cgroup2     string          `json:"cgroup2"`
	PinDir      string          `json:"bpfPinRoot"`
	AgentBinary string          `json:"agentBinary,omitempty"`
	AgentArgs   []string        `json:"agentArgs,omitempty"`
	CABinary    string          `json:"caBinary,omitempty"`
	CAArgs      []string        `json:"caArgs,omitempty"`
	Underlay    string          `json:"underlayNetns"`
	Nodes       []*nodeState    `json:"nodes"`
	Namespaces  []NamespaceSpec `json:"namespaces,omitempty"`
	Pods        []*podState     `json:"pods,omitempty"`
	Services    []ServiceSpec   `json:"services,omitempty"`
	// Objects are the extra YAML streams, appended verbatim to cluster.yaml.
	Objects []string `json:"objects,omitempty"`
}

type nodeState struct {
	NodeSpec
	Index        int          `json:"index"`
	IP           netip.Addr   `json:"ip"`
	PodCIDR      netip.Prefix `json:"podCIDR"`
	Gateway      netip.Addr   `json:"gateway"`
	Netns        string       `json:"netns"`
	UnderlayVeth string       `json:"underlayVeth"`
}

type podState struct {
	PodSpec
	IP    netip.Addr `json:"ip"`
	UID   string     `json:"uid"`
	Netns string     `json:"netns"`
	Veth  string     `json:"veth"`
}

// plan allocates addresses, names and UIDs for a validated topology.
func plan(t *Topology, prefix string) (*state, error) {
	if err := checkPrefix(prefix); err != nil {
		return nil, err
	}
	s := &state{
		Version:    stateVersion,
		Prefix:     prefix,
		Underlay:   prefix + "-underlay",
		Namespaces: slices.Clone(t.Namespaces),
	}
	for i, n := range t.Nodes {
		idx := i + 1
		s.Nodes = append(s.Nodes, &nodeState{
			NodeSpec:     n,
			Index:        idx,
			IP:           netip.AddrFrom4([4]byte{192, 168, 77, byte(idx)}),
			PodCIDR:      netip.PrefixFrom(netip.AddrFrom4([4]byte{10, 244, byte(idx), 0}), 24),
			Gateway:      netip.AddrFrom4([4]byte{10, 244, byte(idx), 1}),
			Netns:        prefix + "-" + n.Name,
			UnderlayVeth: shortName("sku", prefix, n.Name),
		})
	}
	for _, p := range t.Pods {
		if _, err := s.addPod(p); err != nil {
			return nil, err
		}
	}
	used := map[netip.Addr]bool{}
	for _, svc := range t.Services {
		if svc.ClusterIP != "" {
			used[netip.MustParseAddr(svc.ClusterIP)] = true
		}
	}
	next := firstService
	for _, svc := range t.Services {
		if svc.ClusterIP == "" {
			for used[next] {
				next = next.Next()
			}
			if !serviceCIDR.Contains(next) || next == lastAddr(serviceCIDR) {
				return nil, fmt.Errorf("service %s: the service range %s is full", svc.Key(), serviceCIDR)
			}
			svc.ClusterIP = next.String()
			used[next] = true
		}
		s.Services = append(s.Services, svc)
	}
	return s, nil
}

// node returns the node with the given name, or nil.
func (s *state) node(name string) *nodeState {
	for _, n := range s.Nodes {
		if n.Name == name {
			return n
		}
	}
	return nil
}

// netnsNames returns every network namespace name the lab uses.
func (s *state) netnsNames() map[string]bool {
	names := map[string]bool{s.Underlay: true}
	for _, n := range s.Nodes {
		names[n.Netns] = true
	}
	for _, p := range s.Pods {
		names[p.Netns] = true
	}
	return names
}

// addPod allocates a pod's IP, netns, veth and UID and appends it. The
// spec must be valid; addPod checks only what depends on the state.
func (s *state) addPod(p PodSpec) (*podState, error) {
	n := s.node(p.Node)
	if n == nil {
		return nil, fmt.Errorf("pod %s: field node: unknown node %q", p.Key(), p.Node)
	}
	for _, o := range s.Pods {
		if o.Key() == p.Key() {
			return nil, fmt.Errorf("pod %s: field name: a pod with that name already exists", p.Key())
		}
	}
	usedIP := map[netip.Addr]bool{}
	usedVeth := map[string]bool{}
	sameName := false
	for _, o := range s.Pods {
		usedIP[o.IP] = true
		if o.Node == p.Node {
			usedVeth[o.Veth] = true
			sameName = sameName || o.Name == p.Name
		}
	}
	ip, err := nextPodIP(n, usedIP)
	if err != nil {
		return nil, fmt.Errorf("pod %s: %w", p.Key(), err)
	}
	ps := &podState{
		PodSpec: p,
		IP:      ip,
		UID:     PodUID(s.Prefix, p.namespace(), p.Name),
		Netns:   podNetnsName(s.Prefix, p, sameName, s.netnsNames()),
	}
	if ps.Namespace == "" {
		ps.Namespace = defaultNamespace
	}
	for i := 0; ; i++ {
		v := shortName("skv", s.Prefix, p.Node, p.Key(), strconv.Itoa(i))
		if !usedVeth[v] {
			ps.Veth = v
			break
		}
	}
	s.Pods = append(s.Pods, ps)
	return ps, nil
}

// nextPodIP returns the lowest free pod address of a node, from .10 on.
func nextPodIP(n *nodeState, used map[netip.Addr]bool) (netip.Addr, error) {
	base := n.PodCIDR.Addr().As4()
	for h := firstPodHost; h <= lastPodHost; h++ {
		a := netip.AddrFrom4([4]byte{base[0], base[1], base[2], byte(h)})
		if !used[a] {
			return a, nil
		}
	}
	return netip.Addr{}, fmt.Errorf("node %s: no free pod address in %s", n.Name, n.PodCIDR)
}

// podNetnsName names a pod's network namespace <prefix>-<node>-<pod>, or
// <prefix>-<node>-<namespace>-<pod> when another pod of the same name is on
// the node or the short name is taken (names of nodes and pods may contain
// dashes, so "a"+"b-c" and "a-b"+"c" meet); a hash settles what remains.
func podNetnsName(prefix string, p PodSpec, sameName bool, taken map[string]bool) string {
	short := prefix + "-" + p.Node + "-" + p.Name
	if !sameName && !taken[short] {
		return short
	}
	long := prefix + "-" + p.Node + "-" + p.namespace() + "-" + p.Name
	if !taken[long] {
		return long
	}
	for i := 0; ; i++ {
		h := shortName("", prefix, p.Node, p.Key(), strconv.Itoa(i))
		if n := long + "-" + h; !taken[n] {
			return n
		}
	}
}

// shortName returns kind followed by 8 hex digits of a hash of parts: an
// interface name that fits IFNAMSIZ and is stable across reruns.
func shortName(kind string, parts ...string) string {
	h := sha256.New()
	for _, p := range parts {
		h.Write([]byte(p))
		h.Write([]byte{0})
	}
	return kind + hex.EncodeToString(h.Sum(nil))[:8]
}

// podUIDSpace is the UUID namespace of lab pod UIDs (a random constant).
var podUIDSpace = [16]byte{0x5b, 0x1e, 0x3c, 0x0d, 0x8a, 0x41, 0x4f, 0x7e, 0x9c, 0x22, 0x6d, 0x5a, 0x13, 0xe4, 0x07, 0xb9}

// PodUID returns the UID the lab gives a pod: a name-based (version 5)
// UUID of prefix/namespace/name, so reruns give the same UIDs and the pod
// cgroup names stay stable.
func PodUID(prefix, namespace, name string) string {
	h := sha1.New()
	h.Write(podUIDSpace[:])
	h.Write([]byte(prefix + "/" + namespace + "/" + name))
	var u [16]byte
	copy(u[:], h.Sum(nil))
	u[6] = u[6]&0x0f | 0x50
	u[8] = u[8]&0x3f | 0x80
	x := hex.EncodeToString(u[:])
	return x[0:8] + "-" + x[8:12] + "-" + x[12:16] + "-" + x[16:20] + "-" + x[20:32]
}

// Cgroup layout under the cgroup2 mount: the kubelet's cgroupfs-driver
// layout below a per-node parent, and the node's agent and host commands
// beside kubepods so they are never captured.
func nodeCgroup(cg2, prefix, node string) string { return filepath.Join(cg2, prefix+"-"+node) }

func podRootCgroup(cg2, prefix, node string) string {
	return filepath.Join(nodeCgroup(cg2, prefix, node), "kubepods")
}

func podCgroup(cg2, prefix, node, uid string) string {
	return filepath.Join(podRootCgroup(cg2, prefix, node), "besteffort", "pod"+uid)
}

func agentCgroup(cg2, prefix, node string) string {
	return filepath.Join(nodeCgroup(cg2, prefix, node), "agent")
}

func hostCgroup(cg2, prefix, node string) string {
	return filepath.Join(nodeCgroup(cg2, prefix, node), "host")
}

// bpffsRoot is where bpffs is (or gets) mounted.
const bpffsRoot = "/sys/fs/bpf"

func pinDir(prefix string) string { return filepath.Join(bpffsRoot, prefix) }

func defaultStateDir(prefix string) string { return filepath.Join("/run", prefix) }
