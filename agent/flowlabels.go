package agent

import (
	"net/netip"
	"slices"

	"github.com/skeinmesh/skein/bpf/capture"
	"github.com/skeinmesh/skein/bpf/flow"
	"github.com/skeinmesh/skein/l7proxy"
	"github.com/skeinmesh/skein/telemetry"
)

// Values of connection_security_policy on the TCP families; see
// telemetry/doc.go for what each means there.
const (
	securityMutualTLS = l7proxy.SecurityMutualTLS
	securityNone      = l7proxy.SecurityNone
	securityUnknown   = "unknown"
)

// flowResolver turns the kernel's flow keys into the Istio label set, with
// one snapshot of the agent's model. The rules:
//
//   - Outbound (the pod connected; reporter=source): the source is the pod
//     of the key's cgroup. The destination comes from the address the app
//     dialed: a Service VIP:port names destination_service (the Service's
//     cluster DNS name) and, when every ready endpoint belongs to one
//     workload, destination_workload; a pod IP (of any node) names that
//     pod's workload. connection_security_policy is mutual_tls when the
//     connect was captured (a meshed pod, a mesh destination, no excluded
//     port) and the proxy reaches every backend through the tunnel (meshed,
//     on another known node, with the CA configured), none when it was not
//     captured or no backend is reached through the tunnel, and unknown when
//     a Service has backends both here and on other nodes: the proxy picks
//     one per connection and the kernel's key cannot say which.
//   - Inbound (the pod accepted; reporter=destination): the destination is
//     the pod, and destination_service the one Service whose ready endpoint
//     is the pod's listening port (unknown when none or several). The source
//     comes from the peer address: this node's proxy address means the
//     connection came through the mesh, from a pod of another node over the
//     mTLS tunnel or from a pod of this node through the node proxy; which
//     pod is not in the key, so the source is unknown, and the policy is
//     mutual_tls with the tunnel enabled (none without a CA). Another node's
//     address is a proxy there that dialed in plaintext (no CA): source
//     unknown, none. A pod IP is a direct, plaintext connection from that
//     pod: its workload, none. Anything else is unknown, none.
type flowResolver struct {
	d      *derived
	node   string
	tunnel bool
	// proxy are this node's proxy addresses (the sources the proxy dials
	// pods from).
	proxy []netip.Addr
	// gone remembers the pods of cgroups that left the model while the
	// kernel still holds figures of theirs.
	gone map[uint64]*l7proxy.Workload

	// backends names the Service of each pod port, built on first use.
	backends map[podPort]string
}

// pod returns the local pod of a cgroup, or nil.
func (r *flowResolver) pod(cgroupID uint64) *l7proxy.Workload {
	if w := r.d.byCgroup[cgroupID]; w != nil {
		return w
	}
	return r.gone[cgroupID]
}

// labels resolves one key.
func (r *flowResolver) labels(k flow.Key) telemetry.TCPLabels {
	w := r.pod(k.CgroupID)
	if k.Direction == flow.Inbound {
		return r.inbound(w, k.Peer)
	}
	return r.outbound(w, r.captured(w, k.CgroupID, k.Peer), k.Peer)
}

// captured says whether capture steered a connect of the pod of cgroupID to
// dst into the node proxy, as the capture programs decide it.
func (r *flowResolver) captured(src *l7proxy.Workload, cgroupID uint64, dst netip.AddrPort) bool {
	if src == nil || !src.Meshed {
		return false
	}
	if slices.Contains(r.d.capture.ExcludedPorts[cgroupID], dst.Port()) {
		return false
	}
	if r.d.capture.Destinations[dst]&capture.DstService != 0 {
		return true
	}
	return r.d.capture.Destinations[netip.AddrPortFrom(dst.Addr(), 0)]&capture.DstPod != 0
}

// outbound resolves a connect of src to dst; captured says whether the node
// proxy carried it (always, for the proxy's own records).
func (r *flowResolver) outbound(src *l7proxy.Workload, captured bool, dst netip.AddrPort) telemetry.TCPLabels {
	l := telemetry.TCPLabels{Reporter: l7proxy.ReporterSource, SecurityPolicy: securityNone}
	if src != nil {
		l.SourceWorkload, l.SourceNamespace = src.Name, src.Namespace
	}
	if svc := r.d.table.Services[dst]; svc != nil {
		l.DestinationService, l.DestinationNamespace = svc.Host, svc.Namespace
		var one *l7proxy.Workload
		several := false
		remote, local := 0, 0
		for _, ep := range svc.Endpoints {
			switch {
			case ep.Workload == nil:
				several = true
			case one == nil:
				one = ep.Workload
			case one.Name != ep.Workload.Name || one.Namespace != ep.Workload.Namespace:
				several = true
			}
			if r.viaTunnel(ep.Workload) {
				remote++
			} else {
				local++
			}
		}
		if one != nil && !several {
			l.DestinationWorkload = one.Name
		}
		if captured && remote > 0 {
			l.SecurityPolicy = securityMutualTLS
			if local > 0 {
				l.SecurityPolicy = securityUnknown
			}
		}
		return l
	}
	if w := r.d.table.Workloads[dst.Addr()]; w != nil {
		l.DestinationWorkload, l.DestinationNamespace = w.Name, w.Namespace
		if captured && r.viaTunnel(w) {
			l.SecurityPolicy = securityMutualTLS
		}
	}
	return l
}

// viaTunnel says whether the proxy reaches a pod through the mTLS tunnel,
// as its hop plan decides.
func (r *flowResolver) viaTunnel(w *l7proxy.Workload) bool {
	if !r.tunnel || w == nil || !w.Meshed || w.Identity == "" || w.Node == "" || w.Node == r.node {
		return false
	}
	_, known := r.d.table.Nodes[w.Node]
	return known
}

// inbound resolves a connection that dst accepted from peer (the client's
// address and dst's own port).
func (r *flowResolver) inbound(dst *l7proxy.Workload, peer netip.AddrPort) telemetry.TCPLabels {
	l := telemetry.TCPLabels{Reporter: l7proxy.ReporterDestination, SecurityPolicy: securityNone}
	if dst != nil {
		l.DestinationWorkload, l.DestinationNamespace = dst.Name, dst.Namespace
		l.DestinationService = r.serviceOf(dst, peer.Port())
	}
	ip := peer.Addr()
	switch {
	case slices.Contains(r.proxy, ip):
		if r.tunnel {
			l.SecurityPolicy = securityMutualTLS
		}
	case r.isNode(ip):
	default:
		if w := r.d.table.Workloads[ip]; w != nil {
			l.SourceWorkload, l.SourceNamespace = w.Name, w.Namespace
		}
	}
	return l
}

func (r *flowResolver) isNode(ip netip.Addr) bool {
	for _, a := range r.d.table.Nodes {
		if a == ip {
			return true
		}
	}
	return false
}

// serviceOf names the one Service whose ready endpoint is a pod's port, or
// "" when none or several are.
func (r *flowResolver) serviceOf(w *l7proxy.Workload, port uint16) string {
	if r.backends == nil {
		r.backends = map[podPort]string{}
		for _, svc := range r.d.table.Services {
			for _, ep := range svc.Endpoints {
				if ep.Workload == nil {
					continue
				}
				k := podPort{ep.Workload, ep.Addr.Port()}
				if host, ok := r.backends[k]; ok && host != svc.Host {
					r.backends[k] = "" // several Services
				} else {
					r.backends[k] = svc.Host
				}
			}
		}
	}
	return r.backends[podPort{w, port}]
}

// podPort is a pod's listening port.
type podPort struct {
	w    *l7proxy.Workload
	port uint16
}
