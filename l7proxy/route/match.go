package route

import (
	"net/http"
	"net/url"
	"regexp"
	"strings"
)

// pathKind orders path matches for precedence: a larger kind wins.
type pathKind uint8

const (
	pathRegex  pathKind = 1 // RegularExpression: after every Exact and PathPrefix match
	pathPrefix pathKind = 2 // PathPrefix
	pathExact  pathKind = 3 // Exact
)

// stringMatch is an Exact or a RegularExpression condition on a string.
type stringMatch struct {
	exact string
	re    *regexp.Regexp // full match; nil for Exact
	// lit is the literal prefix every match of re starts with: checking it
	// first skips most non-matching expressions without running them.
	lit string
}

func newStringMatch(regex bool, v string) stringMatch {
	if !regex {
		return stringMatch{exact: v}
	}
	re, _ := compileFull(v) // validated
	lit, _ := re.LiteralPrefix()
	return stringMatch{re: re, lit: lit}
}

func (m *stringMatch) match(s string) bool {
	if m.re != nil {
		return strings.HasPrefix(s, m.lit) && m.re.MatchString(s)
	}
	return s == m.exact
}

// headerCond is one header condition of a match.
type headerCond struct {
	// key is the canonical header name.
	key string
	// host is set for the Host header, which net/http keeps in
	// Request.Host rather than in the header map.
	host bool
	// slot is where a Match caches the header's values (see headerCache),
	// or -1 when the name has no slot.
	slot int
	stringMatch
}

// headerSlots is the number of header names whose values one Match
// caches. Compile gives the slots to the names most used in matches, so
// that scanning many entries conditioned on the same header (say, one rule
// per tenant) looks the header up once.
const headerSlots = 16

// headerCache is the header values looked up so far by one Match. It lives
// on the stack of Match.
type headerCache struct {
	req    *http.Request
	loaded uint32
	vals   [headerSlots][]string
}

func (hc *headerCache) get(c *headerCond) []string {
	if c.slot < 0 {
		return hc.req.Header[c.key]
	}
	bit := uint32(1) << c.slot
	if hc.loaded&bit == 0 {
		hc.vals[c.slot] = hc.req.Header[c.key]
		hc.loaded |= bit
	}
	return hc.vals[c.slot]
}

// match reports whether the request satisfies the condition. A repeated
// header matches when one of its field lines does, or when its combined
// value does (the lines joined with commas, which RFC 9110 section 5.3
// makes equivalent; HTTPHeaderMatch leaves repeated headers to the
// implementation and points at that rule).
func (c *headerCond) match(hc *headerCache) bool {
	if c.host {
		return c.stringMatch.match(hc.req.Host)
	}
	vals := hc.get(c)
	for _, v := range vals {
		if c.stringMatch.match(v) {
			return true
		}
	}
	if len(vals) > 1 {
		return c.stringMatch.match(strings.Join(vals, ","))
	}
	return false
}

// queryCond is one query parameter condition of a match.
type queryCond struct {
	name string
	stringMatch
}

// match reports whether the first value of the parameter satisfies the
// condition (HTTPQueryParamMatch.Name: "it is *recommended* that
// implementations should match against the first value of the param").
func (c *queryCond) match(rawQuery string) bool {
	v, ok := queryValue(rawQuery, c.name)
	return ok && c.stringMatch.match(v)
}

// queryValue returns the first value of the query parameter name in
// rawQuery, without building a url.Values map: it only allocates to
// unescape a key or value that is escaped.
func queryValue(rawQuery, name string) (string, bool) {
	for rawQuery != "" {
		var pair string
		pair, rawQuery, _ = strings.Cut(rawQuery, "&")
		if pair == "" {
			continue
		}
		k, v, _ := strings.Cut(pair, "=")
		if !unescapeEqual(k, name) {
			continue
		}
		if strings.ContainsAny(v, "%+") {
			u, err := url.QueryUnescape(v)
			if err != nil {
				continue
			}
			v = u
		}
		return v, true
	}
	return "", false
}

func unescapeEqual(escaped, plain string) bool {
	if !strings.ContainsAny(escaped, "%+") {
		return escaped == plain
	}
	u, err := url.QueryUnescape(escaped)
	return err == nil && u == plain
}

// entry is one match of one rule, the unit of precedence: the spec orders
// matches, not rules ("Across all rules specified on applicable Routes,
// precedence must be given to the match having ...").
type entry struct {
	rule *Rule
	src  *routeSource

	// HTTPRoute conditions.
	kind   pathKind
	path   string       // Exact value, PathPrefix value normalized (no trailing slash except "/"), or the expression
	pathRE *stringMatch // RegularExpression path
	method string       // "" for any

	// GRPCRoute conditions.
	grpcService *stringMatch
	grpcMethod  *stringMatch
	svcRank     int // 0 none, 1 regex, 2 exact
	svcLen      int
	methodRank  int
	methodLen   int

	headers  []headerCond
	query    []queryCond
	ruleIdx  int
	matchIdx int
}

// matchRest checks the conditions other than the path.
func (e *entry) matchRest(hc *headerCache) bool {
	req := hc.req
	if e.method != "" && req.Method != e.method {
		return false
	}
	for i := range e.headers {
		if !e.headers[i].match(hc) {
			return false
		}
	}
	for i := range e.query {
		if !e.query[i].match(req.URL.RawQuery) {
			return false
		}
	}
	return true
}

// matchGRPC checks a GRPCRoute match against the request's gRPC service
// and method (path "/<service>/<method>").
func (e *entry) matchGRPC(hc *headerCache, service, method string, ok bool) bool {
	if e.grpcService != nil && (!ok || !e.grpcService.match(service)) {
		return false
	}
	if e.grpcMethod != nil && (!ok || !e.grpcMethod.match(method)) {
		return false
	}
	for i := range e.headers {
		if !e.headers[i].match(hc) {
			return false
		}
	}
	return true
}

// splitGRPCPath splits "/<service>/<method>".
func splitGRPCPath(p string) (service, method string, ok bool) {
	if len(p) < 4 || p[0] != '/' {
		return "", "", false
	}
	service, method, ok = strings.Cut(p[1:], "/")
	if !ok || service == "" || method == "" || strings.IndexByte(method, '/') >= 0 {
		return "", "", false
	}
	return service, method, true
}
