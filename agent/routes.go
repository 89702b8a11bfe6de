package agent

import (
	"net/netip"
	"sort"
	"strconv"

	"github.com/skeinmesh/skein/agent/admin"
	"github.com/skeinmesh/skein/l7proxy"
	"github.com/skeinmesh/skein/l7proxy/balancer"
	"github.com/skeinmesh/skein/l7proxy/route"
)

// routesView renders the effective route tables and route statuses.
func routesView(d *derived) admin.Routes {
	var out admin.Routes
	for _, svc := range d.table.Routes.Services() {
		sr := admin.ServiceRoutes{Service: svc.String()}
		for _, e := range d.table.Routes.Describe(svc) {
			sr.Entries = append(sr.Entries, admin.RouteEntry{
				Clients:  e.Clients,
				Match:    e.Match,
				Route:    e.Rule.Route.String(),
				Backends: e.Rule.BackendString(),
				Filters:  e.Rule.Filters(),
			})
		}
		out.Tables = append(out.Tables, sr)
	}
	for _, st := range d.routes {
		rs := admin.RouteStatus{Kind: st.Route.Kind, Namespace: st.Route.Namespace, Name: st.Route.Name}
		for _, p := range st.Parents {
			ps := admin.ParentStatus{Parent: parentString(p, st.Route.Namespace)}
			for _, c := range p.Conditions {
				ps.Conditions = append(ps.Conditions, admin.Condition{
					Type: c.Type, Status: string(c.Status), Reason: c.Reason, Message: c.Message,
				})
			}
			rs.Parents = append(rs.Parents, ps)
		}
		out.Statuses = append(out.Statuses, rs)
	}
	return out
}

func parentString(p route.ParentStatus, routeNS string) string {
	ref := p.ParentRef
	kind := "Gateway"
	if ref.Kind != nil {
		kind = string(*ref.Kind)
	}
	ns := routeNS
	if ref.Namespace != nil {
		ns = string(*ref.Namespace)
	}
	s := kind + " " + ns + "/" + string(ref.Name)
	if ref.Port != nil {
		s += ":" + strconv.Itoa(int(*ref.Port))
	}
	return s
}

// servicesView lists the service ports of the proxy table.
func servicesView(d *derived) []admin.Service {
	byRef := map[route.ServiceRef]*admin.Service{}
	for vip, s := range d.table.Services {
		ref := route.ServiceRef{Namespace: s.Namespace, Name: s.Name, Port: s.Port}
		as := byRef[ref]
		if as == nil {
			as = newServiceView(s, d.table.Routes, ref)
			byRef[ref] = as
		}
		as.VIPs = append(as.VIPs, vip.Addr().String())
	}
	for ref, s := range d.table.ServicesByRef {
		if byRef[ref] == nil {
			byRef[ref] = newServiceView(s, d.table.Routes, ref) // headless
		}
	}
	out := make([]admin.Service, 0, len(byRef))
	for _, s := range byRef {
		sort.Strings(s.VIPs)
		out = append(out, *s)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Service < out[j].Service })
	return out
}

func newServiceView(s *l7proxy.Service, routes *route.Table, ref route.ServiceRef) *admin.Service {
	proto := string(s.Protocol)
	if proto == "" {
		proto = "auto"
	}
	return &admin.Service{
		Service:   ref.String(),
		Protocol:  proto,
		Policy:    s.Balancer.Policy.String(),
		Endpoints: len(s.Endpoints),
		Routes:    routes.Describe(ref) != nil,
	}
}

// endpointsView joins the balancers' state with the table's endpoints.
func endpointsView(d *derived, snap map[string][]balancer.EndpointStatus) []admin.ServiceEndpoints {
	var out []admin.ServiceEndpoints
	seen := map[route.ServiceRef]bool{}
	for ref, s := range d.table.ServicesByRef {
		if seen[ref] {
			continue
		}
		seen[ref] = true
		se := admin.ServiceEndpoints{Service: ref.String(), Policy: s.Balancer.Policy.String()}
		byAddr := map[netip.AddrPort]*l7proxy.Endpoint{}
		for _, ep := range s.Endpoints {
			byAddr[ep.Addr] = ep
		}
		for _, st := range snap[ref.String()] {
			e := admin.Endpoint{
				Address: st.Addr.String(), Ejected: st.Ejected, EjectedUntil: st.EjectedUntil, UnreachableUntil: st.UnreachableUntil,
				EjectionsTotal: st.EjectionsTotal, Consecutive5xx: st.Consecutive5xx,
				ConnectFails: st.ConsecutiveConnectFailures, InFlight: st.InFlight,
				EWMA: st.EWMA.String(), Requests: st.Requests, Failures: st.Failures,
			}
			if ep := byAddr[st.Addr]; ep != nil {
				e.Node = ep.Node
				if ep.Workload != nil {
					e.Pod = ep.Workload.Namespace + "/" + ep.Workload.Pod
				}
			}
			se.Endpoints = append(se.Endpoints, e)
		}
		out = append(out, se)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Service < out[j].Service })
	return out
}
