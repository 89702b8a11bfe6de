package route

import (
	"cmp"
	"net/http"
	"slices"
	"strings"
	"time"
)

// Table is a compiled route table. It is immutable and safe for concurrent
// use; build a new one with [Compile] when routes change.
type Table struct {
	ports map[ServiceRef]*portRoutes
}

// portRoutes are the routes attached to one Service port, in the groups
// GEP-1294 defines ("Multiple routes for a Service"): the producer routes
// (in the Service's namespace) and, per client namespace, the consumer
// routes of that namespace.
type portRoutes struct {
	producer  *ruleSet
	consumers map[string]*ruleSet
}

// ruleSet is the sorted, indexed match entries of one group. A group holds
// only one route kind (see [ReasonConflicted]).
type ruleSet struct {
	kind string

	// HTTPRoute entries, by path kind. Every Exact entry wins over every
	// PathPrefix entry, which wins over every RegularExpression entry, so
	// they are searched in that order and the first entry whose conditions
	// hold wins. Each bucket and the regex list are in precedence order.
	exact  map[string][]*entry
	prefix map[string][]*entry
	// prefixLens has bit n set when some prefix has length n, so that path
	// elements of other lengths skip the map lookup.
	prefixLens [maxPathLen/64 + 1]uint64
	regex      []*entry

	// GRPCRoute entries in precedence order.
	grpc []*entry
}

// Match finds the rule for a request from a client in clientNamespace to
// the Service port svc.
//
// Consumer routes (routes in another namespace than the Service) apply only
// to clients in the route's namespace, and for those clients they replace
// the producer routes (GEP-1294: "Requests from a namespace with consumer
// routes will utilize the (possibly merged) set of routes in the consumer
// namespace; requests from other namespaces will utilize the (possibly
// merged) set of routes in the producer namespace").
//
// Result.Attached is false when no route applies: the caller balances across
// the Service's endpoints. When it is true and Result.Rule is nil, the caller
// answers 404. Match does not allocate for the common request shapes.
func (t *Table) Match(svc ServiceRef, clientNamespace string, req *http.Request) Result {
	if t == nil {
		return Result{}
	}
	pr := t.ports[svc]
	if pr == nil {
		return Result{}
	}
	rs := pr.producer
	if c := pr.consumers[clientNamespace]; c != nil {
		rs = c
	}
	if rs == nil {
		return Result{}
	}
	if rs.kind == KindGRPCRoute {
		return rs.matchGRPC(req)
	}
	return rs.matchHTTP(req)
}

// Services returns the Service ports that have routes attached, sorted, for
// debugging and the admin API.
func (t *Table) Services() []ServiceRef {
	if t == nil || len(t.ports) == 0 {
		return nil
	}
	out := make([]ServiceRef, 0, len(t.ports))
	for s := range t.ports {
		out = append(out, s)
	}
	slices.SortFunc(out, func(a, b ServiceRef) int {
		return cmp.Or(cmp.Compare(a.Namespace, b.Namespace), cmp.Compare(a.Name, b.Name), cmp.Compare(a.Port, b.Port))
	})
	return out
}

func (rs *ruleSet) matchHTTP(req *http.Request) Result {
	hc := headerCache{req: req}
	p := requestPath(req)
	for _, e := range rs.exact[p] {
		if e.matchRest(&hc) {
			return Result{Rule: e.rule, Attached: true}
		}
	}
	if len(rs.prefix) > 0 && p[0] == '/' {
		// PathPrefix: "/foo" matches "/foo", "/foo/" and "/foo/bar" but
		// not "/foobar". Try the path's element prefixes, longest first:
		// the longest matching prefix wins, and prefixes of different
		// lengths are distinct buckets.
		q := p
		if len(q) > 1 && q[len(q)-1] == '/' {
			q = q[:len(q)-1]
		}
		for {
			if rs.hasPrefixLen(len(q)) {
				for _, e := range rs.prefix[q] {
					if e.matchRest(&hc) {
						return Result{Rule: e.rule, Attached: true, MatchedPrefix: e.path}
					}
				}
			}
			if q == "/" {
				break
			}
			if i := strings.LastIndexByte(q, '/'); i > 0 {
				q = q[:i]
			} else {
				q = "/"
			}
		}
	}
	for _, e := range rs.regex {
		if e.pathRE.match(p) && e.matchRest(&hc) {
			return Result{Rule: e.rule, Attached: true}
		}
	}
	return Result{Attached: true}
}

func (rs *ruleSet) hasPrefixLen(n int) bool {
	if n >= len(rs.prefixLens)*64 {
		return true
	}
	return rs.prefixLens[n/64]&(1<<(n%64)) != 0
}

func (rs *ruleSet) matchGRPC(req *http.Request) Result {
	hc := headerCache{req: req}
	service, method, ok := splitGRPCPath(req.URL.Path)
	for _, e := range rs.grpc {
		if e.matchGRPC(&hc, service, method, ok) {
			return Result{Rule: e.rule, Attached: true}
		}
	}
	return Result{Attached: true}
}

// newRuleSet sorts and indexes entries, all of one kind.
func newRuleSet(kind string, entries []*entry) *ruleSet {
	rs := &ruleSet{kind: kind}
	if kind == KindGRPCRoute {
		rs.grpc = slices.Clone(entries)
		slices.SortStableFunc(rs.grpc, compareGRPC)
		return rs
	}
	sorted := slices.Clone(entries)
	slices.SortStableFunc(sorted, compareHTTP)
	for _, e := range sorted {
		switch e.kind {
		case pathExact:
			if rs.exact == nil {
				rs.exact = map[string][]*entry{}
			}
			rs.exact[e.path] = append(rs.exact[e.path], e)
		case pathPrefix:
			if rs.prefix == nil {
				rs.prefix = map[string][]*entry{}
			}
			rs.prefix[e.path] = append(rs.prefix[e.path], e)
			if n := len(e.path); n < len(rs.prefixLens)*64 {
				rs.prefixLens[n/64] |= 1 << (n % 64)
			}
		case pathRegex:
			rs.regex = append(rs.regex, e)
		}
	}
	return rs
}

// compareHTTP orders HTTPRoute matches by precedence, first the criteria of
// HTTPRouteRule.Matches, in order:
//
//   - "Exact" path match.
//   - "Prefix" path match with largest number of characters.
//   - Method match.
//   - Largest number of header matches.
//   - Largest number of query param matches.
//
// RegularExpression paths ("The precedence of RegularExpression path matches
// are implementation-specific") rank after every Exact and PathPrefix match,
// longer expressions first, as Istio orders them. PathPrefix values are
// compared without their trailing slash, which the match ignores ("/foo/"
// and "/foo" are the same match). Then the tie-breakers, see compareSource.
func compareHTTP(a, b *entry) int {
	if a.kind != b.kind {
		return cmp.Compare(b.kind, a.kind)
	}
	if len(a.path) != len(b.path) {
		return cmp.Compare(len(b.path), len(a.path))
	}
	if (a.method != "") != (b.method != "") {
		if a.method != "" {
			return -1
		}
		return 1
	}
	return cmp.Or(
		cmp.Compare(len(b.headers), len(a.headers)),
		cmp.Compare(len(b.query), len(a.query)),
		compareSource(a, b),
	)
}

// compareGRPC orders GRPCRoute matches by the criteria of
// GRPCRouteRule.Matches: "Characters in a matching service. Characters in a
// matching method. Header matches." (The hostname criteria do not apply to
// Service parents, see doc.go.) An Exact service or method outranks a
// RegularExpression one, which outranks none; expressions rank by length.
// Then the tie-breakers, see compareSource.
func compareGRPC(a, b *entry) int {
	return cmp.Or(
		cmp.Compare(b.svcRank, a.svcRank),
		cmp.Compare(b.svcLen, a.svcLen),
		cmp.Compare(b.methodRank, a.methodRank),
		cmp.Compare(b.methodLen, a.methodLen),
		cmp.Compare(len(b.headers), len(a.headers)),
		compareSource(a, b),
	)
}

// compareSource breaks ties as both route kinds specify: "The oldest Route
// based on creation timestamp. The Route appearing first in alphabetical
// order by {namespace}/{name}." and then "the FIRST matching rule (in list
// order)". The match index only makes the order total.
func compareSource(a, b *entry) int {
	return cmp.Or(
		a.src.created.Compare(b.src.created),
		cmp.Compare(a.src.key, b.src.key),
		cmp.Compare(a.ruleIdx, b.ruleIdx),
		cmp.Compare(a.matchIdx, b.matchIdx),
	)
}

// routeSource is what precedence needs to know of a route.
type routeSource struct {
	id      RouteID
	created time.Time
	key     string // "{namespace}/{name}"
}
