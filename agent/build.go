package agent

import (
	"fmt"
	"net/netip"
	"sort"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"

	"github.com/skeinmesh/skein/agent/admin"
	"github.com/skeinmesh/skein/agent/cgroup"
	"github.com/skeinmesh/skein/agent/model"
	"github.com/skeinmesh/skein/bpf/capture"
	"github.com/skeinmesh/skein/internal/spiffe"
	"github.com/skeinmesh/skein/l7proxy"
	"github.com/skeinmesh/skein/l7proxy/route"
)

// derived is everything the agent computes from one snapshot.
type derived struct {
	snap *model.Snapshot
	// capture is the desired content of the BPF policy maps.
	capture capture.State
	// table is the proxy's routing table.
	table *l7proxy.Table
	// byCgroup maps a local pod's cgroup id to its workload, for the
	// resolver.
	byCgroup map[uint64]*l7proxy.Workload
	// local describes the node's pods for agentctl.
	local []admin.Workload
	// routes are the compiled routes' statuses.
	routes []route.Status
	// identities are the SPIFFE IDs of the node's meshed workloads: the
	// certificates the agent must hold.
	identities []spiffe.ID
	// bySNI maps the tunnel server name of each local identity back to it.
	bySNI map[string]spiffe.ID
}

// buildInput is what a build needs besides the snapshot.
type buildInput struct {
	node        string
	trustDomain string
	// mode is the cluster-wide mTLS mode (namespaces may override it).
	mode string
	// trusted are the addresses the proxy connects to pods from.
	trusted []netip.Addr
	cgroups map[string]cgroup.Pod // by pod UID
}

// build derives the BPF state and the proxy table from a snapshot. It is a
// pure function of its inputs, so it is tested without a kernel.
func build(snap *model.Snapshot, in buildInput) *derived {
	d := &derived{
		snap: snap,
		capture: capture.State{
			Members:       map[uint64]capture.MemberFlags{},
			ExcludedPorts: map[uint64][]uint16{},
			Destinations:  map[netip.AddrPort]capture.DstKind{},
		},
		table: &l7proxy.Table{
			Generation:    snap.Generation,
			Services:      map[netip.AddrPort]*l7proxy.Service{},
			ServicesByRef: map[route.ServiceRef]*l7proxy.Service{},
			Workloads:     map[netip.Addr]*l7proxy.Workload{},
			LocalNode:     in.node,
		},
		byCgroup: map[uint64]*l7proxy.Workload{},
		bySNI:    map[string]spiffe.ID{},
	}
	d.table.Nodes = nodeAddrs(snap)
	d.capture.TrustedSources = in.trusted

	byKey := map[model.Key]*l7proxy.Workload{}
	for _, key := range sortedKeys(snap.Pods) {
		p := snap.Pods[key]
		meshed, why := snap.PodCapture(p)
		sa := model.ServiceAccount(p)
		w := &l7proxy.Workload{
			Name:           model.WorkloadName(p),
			Namespace:      p.Namespace,
			Pod:            p.Name,
			ServiceAccount: sa,
			Identity:       model.SPIFFEID(in.trustDomain, p.Namespace, sa),
			Node:           p.Spec.NodeName,
			Labels:         p.Labels,
			Meshed:         meshed,
		}
		byKey[key] = w
		ips := model.PodIPs(p)
		for _, ip := range ips {
			if !p.Spec.HostNetwork {
				d.table.Workloads[ip] = w
			}
			if meshed {
				d.capture.Destinations[netip.AddrPortFrom(ip, 0)] = capture.DstPod
			}
		}
		if p.Spec.NodeName != in.node {
			continue
		}
		if meshed {
			if id, err := spiffe.Parse(w.Identity); err == nil {
				if _, dup := d.bySNI[id.SNI()]; !dup {
					d.bySNI[id.SNI()] = id
					d.identities = append(d.identities, id)
				}
			}
		}
		aw := admin.Workload{
			Namespace: p.Namespace, Pod: p.Name, Workload: w.Name, ServiceAccount: sa,
			Identity: w.Identity, UID: string(p.UID), Captured: meshed, Reason: string(why),
		}
		for _, ip := range ips {
			aw.IPs = append(aw.IPs, ip.String())
		}
		cg, ok := in.cgroups[string(p.UID)]
		if !ok && meshed {
			aw.Captured = false
			aw.Reason = fmt.Sprintf("no cgroup found for pod UID %q yet", p.UID)
		}
		if ok {
			aw.Cgroup, aw.CgroupID = cg.Path, cg.ID
			d.byCgroup[cg.ID] = w
			if meshed {
				flags := capture.MemberMeshed
				if model.NamespaceMode(snap.Namespaces[p.Namespace], in.mode) == model.ModeStrict {
					flags |= capture.MemberStrict
					aw.Mode = model.ModeStrict
				} else {
					aw.Mode = model.ModePermissive
				}
				d.capture.Members[cg.ID] = flags
				if ports, err := model.ParsePorts(p.Annotations[model.ExcludeOutboundPortsAnnotation]); err == nil && len(ports) > 0 {
					d.capture.ExcludedPorts[cg.ID] = ports
					aw.ExcludedPorts = ports
				}
			} else {
				// Known but not meshed: its connects bypass capture with
				// the verdict not_member, which agentctl trace shows.
				d.capture.Members[cg.ID] = 0
			}
		}
		d.local = append(d.local, aw)
	}

	slices := slicesByService(snap)
	for _, key := range sortedKeys(snap.Services) {
		s := snap.Services[key]
		vips := serviceIPs(s)
		// A bad annotation was rejected by validation; the zero policy
		// is the default.
		lb, _ := model.BalancerConfig(s.Annotations)
		for _, sp := range s.Spec.Ports {
			if sp.Protocol != "" && sp.Protocol != corev1.ProtocolTCP {
				continue
			}
			svc := &l7proxy.Service{
				Namespace: s.Namespace,
				Name:      s.Name,
				Host:      fmt.Sprintf("%s.%s.svc.cluster.local", s.Name, s.Namespace),
				Port:      uint16(sp.Port),
				PortName:  sp.Name,
				Protocol:  protocolOf(sp),
				Endpoints: endpointsOf(slices[key], sp.Name, byKey),
				Balancer:  lb,
			}
			// Headless services have no VIP but can still be route
			// backends.
			d.table.ServicesByRef[route.ServiceRef{Namespace: s.Namespace, Name: s.Name, Port: uint16(sp.Port)}] = svc
			for _, vip := range vips {
				ap := netip.AddrPortFrom(vip, uint16(sp.Port))
				d.table.Services[ap] = svc
				d.capture.Destinations[ap] = capture.DstService
			}
		}
	}
	d.table.Routes, d.routes = route.Compile(values(snap.HTTPRoutes), values(snap.GRPCRoutes), serviceLookup{snap})
	return d
}

// nodeAddrs returns each node's InternalIP, where its tunnel listens.
func nodeAddrs(snap *model.Snapshot) map[string]netip.Addr {
	out := make(map[string]netip.Addr, len(snap.Nodes))
	for name, n := range snap.Nodes {
		for _, a := range n.Status.Addresses {
			if a.Type != corev1.NodeInternalIP {
				continue
			}
			if ip, err := netip.ParseAddr(a.Address); err == nil {
				if _, ok := out[name]; !ok || ip.Is4() {
					out[name] = ip
				}
			}
		}
	}
	return out
}

// serviceLookup answers the route compiler's questions from the snapshot.
type serviceLookup struct{ snap *model.Snapshot }

var (
	_ route.ServiceLookup  = serviceLookup{}
	_ route.PortNameLookup = serviceLookup{}
)

func (l serviceLookup) ServicePorts(namespace, name string) ([]uint16, bool) {
	s, ok := l.snap.Services[model.Key{Namespace: namespace, Name: name}]
	if !ok {
		return nil, false
	}
	ports := make([]uint16, 0, len(s.Spec.Ports))
	for _, p := range s.Spec.Ports {
		ports = append(ports, uint16(p.Port))
	}
	return ports, true
}

func (l serviceLookup) ServicePortByName(namespace, name, portName string) (uint16, bool) {
	s, ok := l.snap.Services[model.Key{Namespace: namespace, Name: name}]
	if !ok {
		return 0, false
	}
	for _, p := range s.Spec.Ports {
		if p.Name == portName {
			return uint16(p.Port), true
		}
	}
	return 0, false
}

// values returns a map's values in key order.
func values[V any](m map[model.Key]V) []V {
	out := make([]V, 0, len(m))
	for _, k := range sortedKeys(m) {
		out = append(out, m[k])
	}
	return out
}

func serviceIPs(s *corev1.Service) []netip.Addr {
	var out []netip.Addr
	seen := map[netip.Addr]bool{}
	for _, ip := range append([]string{s.Spec.ClusterIP}, s.Spec.ClusterIPs...) {
		if a, err := netip.ParseAddr(ip); err == nil && !seen[a] {
			seen[a] = true
			out = append(out, a)
		}
	}
	return out
}

func protocolOf(sp corev1.ServicePort) l7proxy.Protocol {
	if sp.AppProtocol == nil {
		return l7proxy.ProtocolAuto
	}
	p, _ := model.ParseAppProtocol(*sp.AppProtocol)
	switch p {
	case model.ProtocolHTTP:
		return l7proxy.ProtocolHTTP
	case model.ProtocolHTTP2:
		return l7proxy.ProtocolHTTP2
	case model.ProtocolGRPC:
		return l7proxy.ProtocolGRPC
	case model.ProtocolTCP:
		return l7proxy.ProtocolTCP
	}
	return l7proxy.ProtocolAuto
}

func slicesByService(snap *model.Snapshot) map[model.Key][]*discoveryv1.EndpointSlice {
	out := map[model.Key][]*discoveryv1.EndpointSlice{}
	for _, key := range sortedKeys(snap.EndpointSlices) {
		es := snap.EndpointSlices[key]
		svc := model.Key{Namespace: es.Namespace, Name: es.Labels[discoveryv1.LabelServiceName]}
		out[svc] = append(out[svc], es)
	}
	return out
}

// endpointsOf returns the ready endpoints of a service port. A nil ready
// condition means ready, as the EndpointSlice API defines it.
func endpointsOf(slices []*discoveryv1.EndpointSlice, portName string, pods map[model.Key]*l7proxy.Workload) []*l7proxy.Endpoint {
	var out []*l7proxy.Endpoint
	seen := map[netip.AddrPort]bool{}
	for _, es := range slices {
		if es.AddressType == discoveryv1.AddressTypeFQDN {
			continue
		}
		var port int32
		found := false
		for _, p := range es.Ports {
			name := ""
			if p.Name != nil {
				name = *p.Name
			}
			if name == portName && p.Port != nil {
				port, found = *p.Port, true
				break
			}
		}
		if !found {
			continue
		}
		for _, ep := range es.Endpoints {
			if ep.Conditions.Ready != nil && !*ep.Conditions.Ready {
				continue
			}
			var w *l7proxy.Workload
			node := ""
			if ep.NodeName != nil {
				node = *ep.NodeName
			}
			if ep.TargetRef != nil && ep.TargetRef.Kind == "Pod" {
				ns := ep.TargetRef.Namespace
				if ns == "" {
					ns = es.Namespace
				}
				w = pods[model.Key{Namespace: ns, Name: ep.TargetRef.Name}]
			}
			for _, a := range ep.Addresses {
				ip, err := netip.ParseAddr(a)
				if err != nil {
					continue
				}
				ap := netip.AddrPortFrom(ip, uint16(port))
				if seen[ap] {
					continue
				}
				seen[ap] = true
				out = append(out, &l7proxy.Endpoint{Addr: ap, Node: node, Workload: w})
			}
		}
	}
	return out
}

func sortedKeys[V any](m map[model.Key]V) []model.Key {
	keys := make([]model.Key, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Slice(keys, func(i, j int) bool {
		if keys[i].Namespace != keys[j].Namespace {
			return keys[i].Namespace < keys[j].Namespace
		}
		return keys[i].Name < keys[j].Name
	})
	return keys
}
