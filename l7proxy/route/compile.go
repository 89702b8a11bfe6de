package route

import (
	"cmp"
	"fmt"
	"net/textproto"
	"slices"
	"strconv"
	"strings"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	gatewayv1 "sigs.k8s.io/gateway-api/apis/v1"
)

// Compile builds the table from all HTTPRoutes and GRPCRoutes of the
// cluster. It never fails as a whole: every route gets a [Status], in input
// order (HTTPRoutes first), and invalid rules or routes are left out with
// the reason in their status. Routes without a Service parentRef are not
// Skein's: they get a Status without Parents and are otherwise ignored. A
// nil svcs knows no Service. See the package documentation for what is
// compiled and how.
func Compile(httpRoutes []*gatewayv1.HTTPRoute, grpcRoutes []*gatewayv1.GRPCRoute, svcs ServiceLookup) (*Table, []Status) {
	if svcs == nil {
		svcs = noServices{}
	}
	c := &compiler{svcs: svcs, groups: map[groupKey]*group{}}
	c.names, _ = svcs.(PortNameLookup)
	c.grants, _ = svcs.(ReferenceGrantLookup)

	routes := make([]*compiledRoute, 0, len(httpRoutes)+len(grpcRoutes))
	for _, r := range httpRoutes {
		if r != nil {
			routes = append(routes, c.compileHTTPRoute(r))
		}
	}
	for _, r := range grpcRoutes {
		if r != nil {
			routes = append(routes, c.compileGRPCRoute(r))
		}
	}
	for _, cr := range routes {
		c.attach(cr)
	}
	assignHeaderSlots(routes)
	t := c.build()
	statuses := make([]Status, len(routes))
	for i, cr := range routes {
		statuses[i] = cr.status()
	}
	return t, statuses
}

type noServices struct{}

func (noServices) ServicePorts(string, string) ([]uint16, bool) { return nil, false }

type compiler struct {
	svcs   ServiceLookup
	names  PortNameLookup       // nil when svcs does not implement it
	grants ReferenceGrantLookup // nil when svcs does not implement it
	groups map[groupKey]*group
}

// groupKey names a group of routes attached to one Service port: the
// producer routes (consumer == "") or the consumer routes of one namespace.
type groupKey struct {
	svc      ServiceRef
	consumer string
}

type group struct {
	members []*compiledRoute
	parents map[*compiledRoute][]*parentState
}

// compiledRoute is one route on its way through the compiler.
type compiledRoute struct {
	src          *routeSource
	generation   int64
	hasHostnames bool
	entries      []*entry
	parents      []*parentState

	// invalid is set when the route is not accepted at all: a route-level
	// validation error, or no valid rule.
	invalid       bool
	invalidReason gatewayv1.RouteConditionReason
	invalidMsg    string
	dropped       []string // messages for dropped rules ("Dropped Rule ...")
	refProblems   []refProblem
}

// parentState is what happens to one Service parentRef.
type parentState struct {
	ref        gatewayv1.ParentReference
	svcNS      string
	svcName    string
	failReason gatewayv1.RouteConditionReason
	failMsg    string
	ports      []uint16
	lost       map[uint16]bool // ports where a GRPCRoute wins
}

// refProblem is a backendRef that does not resolve.
type refProblem struct {
	reason gatewayv1.RouteConditionReason
	msg    string
}

func newCompiledRoute(kind string, meta *metav1.ObjectMeta, refs []gatewayv1.ParentReference, hostnames bool) *compiledRoute {
	cr := &compiledRoute{
		src: &routeSource{
			id:      RouteID{Kind: kind, Namespace: meta.Namespace, Name: meta.Name},
			created: meta.CreationTimestamp.Time,
			key:     meta.Namespace + "/" + meta.Name,
		},
		generation:   meta.Generation,
		hasHostnames: hostnames,
	}
	for i := range refs {
		if isServiceParent(&refs[i]) {
			cr.parents = append(cr.parents, &parentState{ref: *refs[i].DeepCopy()})
		}
	}
	return cr
}

// classify splits validation issues into route-level ones, which reject
// the route, and rule-level ones, which drop their rule. It returns the
// set of dropped rules.
func (cr *compiledRoute) classify(issues []issue) map[int]bool {
	dropped := map[int]bool{}
	byRule := map[int][]string{}
	var order []int
	for _, is := range issues {
		if is.rule < 0 {
			if !cr.invalid {
				cr.invalid, cr.invalidReason = true, is.reason
			}
			continue
		}
		if !dropped[is.rule] {
			dropped[is.rule] = true
			order = append(order, is.rule)
			if cr.invalidReason == "" {
				cr.invalidReason = is.reason // used if every rule is dropped
			}
		}
		byRule[is.rule] = append(byRule[is.rule], is.err.Error())
	}
	if cr.invalid {
		// Report every problem, the rules' too: the route is rejected.
		all := make([]string, len(issues))
		for i := range issues {
			all[i] = issues[i].err.Error()
		}
		cr.invalidMsg = strings.Join(all, "; ")
		return dropped
	}
	slices.Sort(order)
	for _, i := range order {
		cr.dropped = append(cr.dropped, fmt.Sprintf("Dropped Rule %d: %s", i, strings.Join(byRule[i], "; ")))
	}
	return dropped
}

// finish marks a route without any valid rule as not accepted ("A Route
// MUST be considered Accepted if at least one of the Route's rules is
// implemented").
func (cr *compiledRoute) finish(valid int) {
	if cr.invalid || valid > 0 {
		return
	}
	cr.invalid = true
	if len(cr.dropped) == 0 {
		cr.invalidReason = gatewayv1.RouteReasonUnsupportedValue
		cr.invalidMsg = "the route has no rules"
		return
	}
	cr.invalidMsg = "no valid rule: " + strings.Join(cr.dropped, "; ")
	cr.dropped = nil
}

// defaultHTTPRules is the CRD default of HTTPRouteSpec.Rules, applied when
// the list is absent (standalone mode has no API server to default it).
var defaultHTTPRules = []gatewayv1.HTTPRouteRule{{}}

func (c *compiler) compileHTTPRoute(r *gatewayv1.HTTPRoute) *compiledRoute {
	cr := newCompiledRoute(KindHTTPRoute, &r.ObjectMeta, r.Spec.ParentRefs, len(r.Spec.Hostnames) > 0)
	if len(cr.parents) == 0 {
		return cr
	}
	dropped := cr.classify(validateHTTPRoute(r))
	rules := r.Spec.Rules
	if rules == nil {
		rules = defaultHTTPRules
	}
	valid := 0
	for i := range rules {
		rule := &rules[i]
		rp := "spec.rules[" + strconv.Itoa(i) + "]"
		backends := make([]Backend, 0, len(rule.BackendRefs))
		for k := range rule.BackendRefs {
			b := &rule.BackendRefs[k]
			be := c.backend(cr, rp+".backendRefs["+strconv.Itoa(k)+"]", &b.BackendRef)
			for _, f := range b.Filters {
				switch f.Type {
				case gatewayv1.HTTPRouteFilterRequestHeaderModifier:
					be.RequestHeaders = compileHeaderFilter(f.RequestHeaderModifier)
				case gatewayv1.HTTPRouteFilterResponseHeaderModifier:
					be.ResponseHeaders = compileHeaderFilter(f.ResponseHeaderModifier)
				}
			}
			backends = append(backends, be)
		}
		var mirrors []Mirror
		for j := range rule.Filters {
			if f := &rule.Filters[j]; f.Type == gatewayv1.HTTPRouteFilterRequestMirror && f.RequestMirror != nil {
				if m, ok := c.mirror(cr, rp+".filters["+strconv.Itoa(j)+"].requestMirror", f.RequestMirror); ok {
					mirrors = append(mirrors, m)
				}
			}
		}
		if cr.invalid || dropped[i] {
			continue // resolved above only for the ResolvedRefs condition
		}
		valid++
		rl := newRule(cr, KindHTTPRoute, i, rule.Name, backends, mirrors)
		for j := range rule.Filters {
			f := &rule.Filters[j]
			switch f.Type {
			case gatewayv1.HTTPRouteFilterRequestHeaderModifier:
				rl.RequestHeaders = compileHeaderFilter(f.RequestHeaderModifier)
			case gatewayv1.HTTPRouteFilterResponseHeaderModifier:
				rl.ResponseHeaders = compileHeaderFilter(f.ResponseHeaderModifier)
			case gatewayv1.HTTPRouteFilterRequestRedirect:
				rl.Redirect = compileRedirect(f.RequestRedirect)
			case gatewayv1.HTTPRouteFilterURLRewrite:
				rl.Rewrite = &Rewrite{Hostname: string(derefOr(f.URLRewrite.Hostname, "")), Path: compilePathModifier(f.URLRewrite.Path)}
			}
		}
		if t := rule.Timeouts; t != nil {
			rl.Timeouts.Request = mustDuration(t.Request)
			rl.Timeouts.BackendRequest = mustDuration(t.BackendRequest)
		}
		if rt := rule.Retry; rt != nil {
			rl.Retry = compileRetry(rt)
		}
		matches := rule.Matches
		if len(matches) == 0 {
			matches = []gatewayv1.HTTPRouteMatch{{}} // "the default is a prefix path match on "/""
		}
		for j := range matches {
			cr.entries = append(cr.entries, httpEntry(rl, cr.src, i, j, &matches[j]))
		}
	}
	cr.finish(valid)
	return cr
}

func (c *compiler) compileGRPCRoute(r *gatewayv1.GRPCRoute) *compiledRoute {
	cr := newCompiledRoute(KindGRPCRoute, &r.ObjectMeta, r.Spec.ParentRefs, len(r.Spec.Hostnames) > 0)
	if len(cr.parents) == 0 {
		return cr
	}
	dropped := cr.classify(validateGRPCRoute(r))
	valid := 0
	for i := range r.Spec.Rules {
		rule := &r.Spec.Rules[i]
		rp := "spec.rules[" + strconv.Itoa(i) + "]"
		backends := make([]Backend, 0, len(rule.BackendRefs))
		for k := range rule.BackendRefs {
			b := &rule.BackendRefs[k]
			be := c.backend(cr, rp+".backendRefs["+strconv.Itoa(k)+"]", &b.BackendRef)
			for _, f := range b.Filters {
				switch f.Type {
				case gatewayv1.GRPCRouteFilterRequestHeaderModifier:
					be.RequestHeaders = compileHeaderFilter(f.RequestHeaderModifier)
				case gatewayv1.GRPCRouteFilterResponseHeaderModifier:
					be.ResponseHeaders = compileHeaderFilter(f.ResponseHeaderModifier)
				}
			}
			backends = append(backends, be)
		}
		var mirrors []Mirror
		for j := range rule.Filters {
			if f := &rule.Filters[j]; f.Type == gatewayv1.GRPCRouteFilterRequestMirror && f.RequestMirror != nil {
				if m, ok := c.mirror(cr, rp+".filters["+strconv.Itoa(j)+"].requestMirror", f.RequestMirror); ok {
					mirrors = append(mirrors, m)
				}
			}
		}
		if cr.invalid || dropped[i] {
			continue
		}
		valid++
		rl := newRule(cr, KindGRPCRoute, i, rule.Name, backends, mirrors)
		for j := range rule.Filters {
			f := &rule.Filters[j]
			switch f.Type {
			case gatewayv1.GRPCRouteFilterRequestHeaderModifier:
				rl.RequestHeaders = compileHeaderFilter(f.RequestHeaderModifier)
			case gatewayv1.GRPCRouteFilterResponseHeaderModifier:
				rl.ResponseHeaders = compileHeaderFilter(f.ResponseHeaderModifier)
			}
		}
		matches := rule.Matches
		if len(matches) == 0 {
			matches = []gatewayv1.GRPCRouteMatch{{}} // "the implementation MUST match every gRPC request"
		}
		for j := range matches {
			cr.entries = append(cr.entries, grpcEntry(rl, cr.src, i, j, &matches[j]))
		}
	}
	cr.finish(valid)
	return cr
}

func newRule(cr *compiledRoute, kind string, idx int, name *gatewayv1.SectionName, backends []Backend, mirrors []Mirror) *Rule {
	rl := &Rule{
		Route:    RouteRef{RouteID: cr.src.id, RuleIndex: idx, RuleName: string(derefOr(name, ""))},
		Kind:     kind,
		Backends: backends,
		Mirrors:  mirrors,
	}
	for _, b := range backends {
		rl.totalWeight += int(b.Weight)
	}
	return rl
}

// backend resolves a backendRef. An unresolved backend keeps its weight
// and is marked invalid, and the problem goes to the ResolvedRefs
// condition (HTTPBackendRef.BackendRef lists the reasons).
func (c *compiler) backend(cr *compiledRoute, path string, ref *gatewayv1.BackendRef) Backend {
	svc, reason, msg := c.resolve(cr, path, &ref.BackendObjectReference)
	b := Backend{Service: svc, Weight: derefOr(ref.Weight, 1), Valid: reason == ""}
	if reason != "" && reason != reasonSkip {
		b.Reason, b.Message = string(reason), msg
		cr.refProblems = append(cr.refProblems, refProblem{reason: reason, msg: msg})
	}
	return b
}

// mirror resolves a RequestMirror filter. Unresolved mirrors are dropped:
// "If the referent cannot be found, this BackendRef is invalid and must be
// dropped from the Gateway".
func (c *compiler) mirror(cr *compiledRoute, path string, f *gatewayv1.HTTPRequestMirrorFilter) (Mirror, bool) {
	svc, reason, msg := c.resolve(cr, path+".backendRef", &f.BackendRef)
	if reason != "" {
		if reason != reasonSkip {
			cr.refProblems = append(cr.refProblems, refProblem{reason: reason, msg: msg})
		}
		return Mirror{}, false
	}
	m := Mirror{Backend: svc, Percent: 100}
	switch {
	case f.Percent != nil:
		m.Percent = float64(*f.Percent)
	case f.Fraction != nil:
		m.Percent = 100 * float64(f.Fraction.Numerator) / float64(max(1, derefOr(f.Fraction.Denominator, 100)))
	}
	return m, true
}

// reasonSkip marks a reference that validation already reports (no port).
const reasonSkip gatewayv1.RouteConditionReason = "-"

func (c *compiler) resolve(cr *compiledRoute, path string, ref *gatewayv1.BackendObjectReference) (ServiceRef, gatewayv1.RouteConditionReason, string) {
	ns := string(derefOr(ref.Namespace, gatewayv1.Namespace(cr.src.id.Namespace)))
	svc := ServiceRef{Namespace: ns, Name: string(ref.Name), Port: uint16(derefOr(ref.Port, 0))}
	group, kind := string(derefOr(ref.Group, "")), string(derefOr(ref.Kind, kindService))
	if group != "" || kind != kindService {
		gk := kind
		if group != "" {
			gk = kind + "." + group
		}
		return svc, gatewayv1.RouteReasonInvalidKind, fmt.Sprintf("%s: kind %s is not supported: Skein forwards only to Services (group \"\", kind Service)", path, gk)
	}
	if ref.Port == nil || *ref.Port < 1 || *ref.Port > 65535 {
		return svc, reasonSkip, path + ": no valid port"
	}
	if ns != cr.src.id.Namespace && c.grants != nil && !c.grants.BackendRefAllowed(cr.src.id.Kind, cr.src.id.Namespace, ns, svc.Name) {
		return svc, gatewayv1.RouteReasonRefNotPermitted, fmt.Sprintf("%s: Service %s/%s is in another namespace and no ReferenceGrant there allows references from %s in namespace %s", path, ns, svc.Name, cr.src.id.Kind, cr.src.id.Namespace)
	}
	ports, ok := c.svcs.ServicePorts(ns, svc.Name)
	if !ok {
		return svc, gatewayv1.RouteReasonBackendNotFound, fmt.Sprintf("%s: Service %s/%s not found", path, ns, svc.Name)
	}
	if !slices.Contains(ports, svc.Port) {
		return svc, gatewayv1.RouteReasonBackendNotFound, fmt.Sprintf("%s: Service %s/%s has no port %d", path, ns, svc.Name, svc.Port)
	}
	return svc, "", ""
}

func compileHeaderFilter(f *gatewayv1.HTTPHeaderFilter) *HeaderModifier {
	if f == nil || len(f.Set)+len(f.Add)+len(f.Remove) == 0 {
		return nil
	}
	m := &HeaderModifier{}
	for _, h := range f.Set {
		m.Set = append(m.Set, Header{Name: textproto.CanonicalMIMEHeaderKey(string(h.Name)), Value: h.Value})
	}
	for _, h := range f.Add {
		m.Add = append(m.Add, Header{Name: textproto.CanonicalMIMEHeaderKey(string(h.Name)), Value: h.Value})
	}
	for _, name := range f.Remove {
		m.Remove = append(m.Remove, textproto.CanonicalMIMEHeaderKey(name))
	}
	return m
}

func compileRedirect(f *gatewayv1.HTTPRequestRedirectFilter) *Redirect {
	return &Redirect{
		Scheme:     derefOr(f.Scheme, ""),
		Hostname:   string(derefOr(f.Hostname, "")),
		Path:       compilePathModifier(f.Path),
		Port:       uint16(derefOr(f.Port, 0)),
		StatusCode: derefOr(f.StatusCode, 302), // +kubebuilder:default=302
	}
}

func compilePathModifier(m *gatewayv1.HTTPPathModifier) *PathModifier {
	switch {
	case m == nil:
		return nil
	case m.Type == gatewayv1.FullPathHTTPPathModifier:
		return &PathModifier{Type: ReplaceFullPath, Value: derefOr(m.ReplaceFullPath, "/")}
	}
	return &PathModifier{Type: ReplacePrefixMatch, Value: derefOr(m.ReplacePrefixMatch, "")}
}

func compileRetry(r *gatewayv1.HTTPRouteRetry) *Retry {
	rt := &Retry{Attempts: derefOr(r.Attempts, DefaultRetryAttempts), Backoff: DefaultRetryBackoff}
	if r.Backoff != nil {
		rt.Backoff = mustDuration(r.Backoff)
	}
	for _, c := range r.Codes {
		if !slices.Contains(rt.Codes, int(c)) {
			rt.Codes = append(rt.Codes, int(c))
		}
	}
	slices.Sort(rt.Codes)
	return rt
}

// mustDuration parses a duration that validation accepted.
func mustDuration(d *gatewayv1.Duration) time.Duration {
	if d == nil {
		return 0
	}
	v, _ := ParseDuration(string(*d))
	return v
}

func httpEntry(rl *Rule, src *routeSource, ruleIdx, matchIdx int, m *gatewayv1.HTTPRouteMatch) *entry {
	e := &entry{rule: rl, src: src, ruleIdx: ruleIdx, matchIdx: matchIdx, kind: pathPrefix, path: "/"}
	if m.Path != nil {
		val := derefOr(m.Path.Value, "/")
		switch derefOr(m.Path.Type, gatewayv1.PathMatchPathPrefix) {
		case gatewayv1.PathMatchExact:
			e.kind, e.path = pathExact, val
		case gatewayv1.PathMatchPathPrefix:
			// PathMatchPathPrefix: "When specified, a trailing `/` is
			// ignored."
			e.path = val
			if len(val) > 1 {
				e.path = strings.TrimSuffix(val, "/")
			}
		case gatewayv1.PathMatchRegularExpression:
			sm := newStringMatch(true, val)
			e.kind, e.path, e.pathRE = pathRegex, val, &sm
		}
	}
	if m.Method != nil {
		e.method = string(*m.Method)
	}
	seen := map[string]bool{}
	for _, h := range m.Headers {
		key := textproto.CanonicalMIMEHeaderKey(string(h.Name))
		// HTTPHeaderMatch.Name: "If multiple entries specify equivalent
		// header names, only the first entry with an equivalent name MUST
		// be considered for a match."
		if seen[key] {
			continue
		}
		seen[key] = true
		e.headers = append(e.headers, headerCond{
			key:         key,
			host:        key == "Host",
			slot:        -1,
			stringMatch: newStringMatch(h.Type != nil && *h.Type == gatewayv1.HeaderMatchRegularExpression, h.Value),
		})
	}
	seenQ := map[string]bool{}
	for _, q := range m.QueryParams {
		if seenQ[string(q.Name)] {
			continue // same rule as headers; query names are case-sensitive
		}
		seenQ[string(q.Name)] = true
		e.query = append(e.query, queryCond{
			name:        string(q.Name),
			stringMatch: newStringMatch(q.Type != nil && *q.Type == gatewayv1.QueryParamMatchRegularExpression, q.Value),
		})
	}
	return e
}

func grpcEntry(rl *Rule, src *routeSource, ruleIdx, matchIdx int, m *gatewayv1.GRPCRouteMatch) *entry {
	e := &entry{rule: rl, src: src, ruleIdx: ruleIdx, matchIdx: matchIdx}
	if mm := m.Method; mm != nil {
		re := mm.Type != nil && *mm.Type == gatewayv1.GRPCMethodMatchRegularExpression
		rank := 2
		if re {
			rank = 1
		}
		if s := derefOr(mm.Service, ""); s != "" {
			sm := newStringMatch(re, s)
			e.grpcService, e.svcRank, e.svcLen = &sm, rank, len(s)
		}
		if s := derefOr(mm.Method, ""); s != "" {
			sm := newStringMatch(re, s)
			e.grpcMethod, e.methodRank, e.methodLen = &sm, rank, len(s)
		}
	}
	seen := map[string]bool{}
	for _, h := range m.Headers {
		key := textproto.CanonicalMIMEHeaderKey(string(h.Name))
		if seen[key] {
			continue
		}
		seen[key] = true
		e.headers = append(e.headers, headerCond{
			key:         key,
			host:        key == "Host",
			slot:        -1,
			stringMatch: newStringMatch(h.Type != nil && *h.Type == gatewayv1.GRPCHeaderMatchRegularExpression, h.Value),
		})
	}
	return e
}

// assignHeaderSlots gives the headerSlots cache slots of Match to the
// header names most used in conditions of accepted routes.
func assignHeaderSlots(routes []*compiledRoute) {
	uses := map[string]int{}
	for _, cr := range routes {
		for _, e := range cr.entries {
			for _, h := range e.headers {
				if !h.host {
					uses[h.key]++
				}
			}
		}
	}
	names := make([]string, 0, len(uses))
	for k := range uses {
		names = append(names, k)
	}
	slices.SortFunc(names, func(a, b string) int { return cmp.Or(cmp.Compare(uses[b], uses[a]), cmp.Compare(a, b)) })
	slot := make(map[string]int, headerSlots)
	for i, k := range names[:min(len(names), headerSlots)] {
		slot[k] = i
	}
	for _, cr := range routes {
		for _, e := range cr.entries {
			for i := range e.headers {
				if s, ok := slot[e.headers[i].key]; ok {
					e.headers[i].slot = s
				}
			}
		}
	}
}

// attach resolves the route's Service parentRefs (ParentReference: the
// namespace defaults to the route's; "If port is set, the implementation
// MUST associate the route only with that port. If port is not set, the
// implementation MUST associate the route with all ports defined in the
// Service", GEP-1294) and adds an accepted route to the groups of those
// ports.
func (c *compiler) attach(cr *compiledRoute) {
	for _, ps := range cr.parents {
		ps.svcNS = string(derefOr(ps.ref.Namespace, gatewayv1.Namespace(cr.src.id.Namespace)))
		ps.svcName = string(ps.ref.Name)
		svc := ps.svcNS + "/" + ps.svcName
		ports, ok := c.svcs.ServicePorts(ps.svcNS, ps.svcName)
		if !ok {
			ps.fail(gatewayv1.RouteReasonNoMatchingParent, "Service "+svc+" not found")
			continue
		}
		switch {
		case isSet(ps.ref.SectionName):
			sn := string(*ps.ref.SectionName)
			if c.names == nil {
				ps.fail(gatewayv1.RouteReasonUnsupportedValue, "sectionName (a Service port name) cannot be resolved here: set port instead")
				continue
			}
			p, ok := c.names.ServicePortByName(ps.svcNS, ps.svcName, sn)
			if !ok {
				ps.fail(gatewayv1.RouteReasonNoMatchingParent, fmt.Sprintf("Service %s has no port named %q", svc, sn))
				continue
			}
			// "When both Port and SectionName are specified, the name and
			// port of the selected port must match both specified values."
			if ps.ref.Port != nil && int32(p) != *ps.ref.Port {
				ps.fail(gatewayv1.RouteReasonNoMatchingParent, fmt.Sprintf("port %q of Service %s is %d, not %d", sn, svc, p, *ps.ref.Port))
				continue
			}
			ps.ports = []uint16{p}
		case ps.ref.Port != nil:
			if !slices.Contains(ports, uint16(*ps.ref.Port)) {
				ps.fail(gatewayv1.RouteReasonNoMatchingParent, fmt.Sprintf("Service %s has no port %d", svc, *ps.ref.Port))
				continue
			}
			ps.ports = []uint16{uint16(*ps.ref.Port)}
		default:
			if len(ports) == 0 {
				ps.fail(gatewayv1.RouteReasonNoMatchingParent, "Service "+svc+" has no ports")
				continue
			}
			ps.ports = slices.Clone(ports)
			slices.Sort(ps.ports)
			ps.ports = slices.Compact(ps.ports)
		}
		if cr.invalid {
			continue
		}
		consumer := ""
		if ps.svcNS != cr.src.id.Namespace {
			consumer = cr.src.id.Namespace
		}
		for _, port := range ps.ports {
			c.group(groupKey{svc: ServiceRef{Namespace: ps.svcNS, Name: ps.svcName, Port: port}, consumer: consumer}).add(cr, ps)
		}
	}
}

func (ps *parentState) fail(reason gatewayv1.RouteConditionReason, msg string) {
	ps.failReason, ps.failMsg = reason, msg
}

func (c *compiler) group(k groupKey) *group {
	g := c.groups[k]
	if g == nil {
		g = &group{parents: map[*compiledRoute][]*parentState{}}
		c.groups[k] = g
	}
	return g
}

func (g *group) add(cr *compiledRoute, ps *parentState) {
	if _, ok := g.parents[cr]; !ok {
		g.members = append(g.members, cr)
	}
	g.parents[cr] = append(g.parents[cr], ps)
}

// build turns the groups into the table. In a group with both kinds, the
// GRPCRoutes win and the HTTPRoutes lose that port (see
// [ReasonConflicted]); GRPCRoute.Spec.Rules also says "Merging MUST not be
// done between GRPCRoutes and HTTPRoutes".
func (c *compiler) build() *Table {
	t := &Table{ports: make(map[ServiceRef]*portRoutes)}
	for k, g := range c.groups {
		kind := KindHTTPRoute
		for _, cr := range g.members {
			if cr.src.id.Kind == KindGRPCRoute {
				kind = KindGRPCRoute
				break
			}
		}
		var entries []*entry
		for _, cr := range g.members {
			if cr.src.id.Kind != kind {
				for _, ps := range g.parents[cr] {
					if ps.lost == nil {
						ps.lost = map[uint16]bool{}
					}
					ps.lost[k.svc.Port] = true
				}
				continue
			}
			entries = append(entries, cr.entries...)
		}
		rs := newRuleSet(kind, entries)
		pr := t.ports[k.svc]
		if pr == nil {
			pr = &portRoutes{}
			t.ports[k.svc] = pr
		}
		if k.consumer == "" {
			pr.producer = rs
		} else {
			if pr.consumers == nil {
				pr.consumers = map[string]*ruleSet{}
			}
			pr.consumers[k.consumer] = rs
		}
	}
	return t
}

// status builds the route's conditions for each Service parentRef.
func (cr *compiledRoute) status() Status {
	st := Status{Route: cr.src.id, Generation: cr.generation}
	for _, ps := range cr.parents {
		var conds []metav1.Condition
		accepted := false
		switch {
		case cr.invalid:
			conds = append(conds, condition(gatewayv1.RouteConditionAccepted, false, cr.invalidReason, cr.invalidMsg, cr.generation))
		case ps.failReason != "":
			conds = append(conds, condition(gatewayv1.RouteConditionAccepted, false, ps.failReason, ps.failMsg, cr.generation))
		case len(ps.lost) == len(ps.ports):
			conds = append(conds, condition(gatewayv1.RouteConditionAccepted, false, ReasonConflicted,
				fmt.Sprintf("a GRPCRoute is attached to Service %s/%s port %s too, and GRPCRoutes take precedence over HTTPRoutes (GEP-1294)", ps.svcNS, ps.svcName, joinPorts(ps.ports)), cr.generation))
		default:
			accepted = true
			conds = append(conds, condition(gatewayv1.RouteConditionAccepted, true, gatewayv1.RouteReasonAccepted, cr.acceptedMessage(ps), cr.generation))
		}
		if len(cr.refProblems) == 0 {
			conds = append(conds, condition(gatewayv1.RouteConditionResolvedRefs, true, gatewayv1.RouteReasonResolvedRefs, "all references resolved", cr.generation))
		} else {
			msgs := make([]string, len(cr.refProblems))
			for i, p := range cr.refProblems {
				msgs[i] = p.msg
			}
			conds = append(conds, condition(gatewayv1.RouteConditionResolvedRefs, false, cr.refProblems[0].reason, strings.Join(msgs, "; "), cr.generation))
		}
		// RouteConditionPartiallyInvalid: set (only True) when some rules
		// are dropped and the route is accepted; "The message for this
		// condition MUST start with the prefix "Dropped Rule"".
		if accepted && len(cr.dropped) > 0 {
			conds = append(conds, condition(gatewayv1.RouteConditionPartiallyInvalid, true, gatewayv1.RouteReasonUnsupportedValue, strings.Join(cr.dropped, "; "), cr.generation))
		}
		st.Parents = append(st.Parents, ParentStatus{ParentRef: ps.ref, Conditions: conds})
	}
	return st
}

func (cr *compiledRoute) acceptedMessage(ps *parentState) string {
	var b strings.Builder
	b.WriteString("attached to Service ")
	b.WriteString(ps.svcNS + "/" + ps.svcName)
	var kept, lost []uint16
	for _, p := range ps.ports {
		if ps.lost[p] {
			lost = append(lost, p)
		} else {
			kept = append(kept, p)
		}
	}
	b.WriteString(" port " + joinPorts(kept))
	if ps.svcNS != cr.src.id.Namespace {
		b.WriteString(" as a consumer route: applies to clients in namespace " + cr.src.id.Namespace)
	} else {
		b.WriteString(" as a producer route: applies to clients in every namespace without a consumer route")
	}
	if len(lost) > 0 {
		b.WriteString("; not on port " + joinPorts(lost) + ", where a GRPCRoute takes precedence (GEP-1294)")
	}
	if cr.hasHostnames {
		b.WriteString("; spec.hostnames is ignored for Service parents (GEP-1294)")
	}
	return b.String()
}

func joinPorts(ports []uint16) string {
	s := make([]string, len(ports))
	for i, p := range ports {
		s[i] = strconv.Itoa(int(p))
	}
	return strings.Join(s, ", ")
}
