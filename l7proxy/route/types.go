package route

import (
	"strconv"
	"time"
)

// Route kinds, as they appear in [RouteID.Kind] and [Rule.Kind].
const (
	KindHTTPRoute = "HTTPRoute"
	KindGRPCRoute = "GRPCRoute"
)

// ServiceRef names a Service port.
type ServiceRef struct {
	Namespace string
	Name      string
	Port      uint16
}

// String returns "namespace/name:port".
func (s ServiceRef) String() string {
	return s.Namespace + "/" + s.Name + ":" + strconv.Itoa(int(s.Port))
}

// ServiceLookup answers what the compiler needs to know about Services.
type ServiceLookup interface {
	// ServicePorts returns the ports of a Service and whether it exists.
	ServicePorts(namespace, name string) ([]uint16, bool)
}

// PortNameLookup is optionally implemented by the [ServiceLookup] given to
// [Compile]. It resolves a parentRef's sectionName, which for a Service
// parent is a port name (ParentReference.SectionName: "Service: Port name").
// Without it, a parentRef that sets sectionName is not accepted
// (UnsupportedValue), because the compiler cannot tell which port it means.
type PortNameLookup interface {
	// ServicePortByName returns the number of the Service port called
	// portName and whether there is one.
	ServicePortByName(namespace, name, portName string) (uint16, bool)
}

// ReferenceGrantLookup is optionally implemented by the [ServiceLookup]
// given to [Compile]. When it is, a backendRef or a mirror backendRef to a
// Service in another namespace than the route's is only resolved if
// BackendRefAllowed says so, and gets RefNotPermitted otherwise. Without it,
// cross-namespace backendRefs are allowed, as GEP-1294 specifies for routes
// attached to Services: "Routes of either type can send traffic to
// backendRefs in any namespace. Unlike Gateway bound routes, this is allowed
// without a ReferenceGrant."
type ReferenceGrantLookup interface {
	// BackendRefAllowed reports whether a route of kind fromKind in
	// fromNamespace may send traffic to the Service toNamespace/toName.
	BackendRefAllowed(fromKind, fromNamespace, toNamespace, toName string) bool
}

// RouteID names a route object.
type RouteID struct {
	// Kind is KindHTTPRoute or KindGRPCRoute.
	Kind      string
	Namespace string
	Name      string
}

// String returns "Kind namespace/name".
func (r RouteID) String() string { return r.Kind + " " + r.Namespace + "/" + r.Name }

// RouteRef names one rule of a route.
type RouteRef struct {
	RouteID
	// RuleIndex is the rule's index in spec.rules.
	RuleIndex int
	// RuleName is the rule's name, empty when the rule has none.
	RuleName string
}

// String returns "Kind namespace/name rule N" or, for a named rule,
// "Kind namespace/name rule N (name)".
func (r RouteRef) String() string {
	s := r.RouteID.String() + " rule " + strconv.Itoa(r.RuleIndex)
	if r.RuleName != "" {
		s += " (" + r.RuleName + ")"
	}
	return s
}

// Result is the outcome of [Table.Match].
type Result struct {
	// Rule is the matched rule; nil when no rule matched.
	Rule *Rule
	// Attached says whether any route applies to the service port for this
	// client. When false, no route is attached and the caller balances
	// across the service's own endpoints (GEP-1294, "Route presence": when
	// no route exists "all traffic should implicitly work"). When true and
	// Rule is nil, routes are attached but none matched: the caller answers
	// 404 (HTTPRouteRule.Matches: "When no rules matching a request have
	// been successfully attached to the parent a request is coming from, a
	// HTTP 404 status code MUST be returned").
	Attached bool
	// MatchedPrefix is the normalized path prefix of the PathPrefix match
	// that selected Rule (without trailing slash, "/" for the root), or ""
	// when the match was not a PathPrefix. Pass it to [Redirect.Location] and
	// [Rewrite.Apply] for ReplacePrefixMatch.
	MatchedPrefix string
}

// NotFound reports whether routes are attached but none matched (404).
func (r Result) NotFound() bool { return r.Attached && r.Rule == nil }

// Rule is one compiled route rule: what to do with a request it matched.
// Rules are immutable and shared by every service port the route is
// attached to.
type Rule struct {
	// Route is the route and rule the entry comes from.
	Route RouteRef
	// Kind is KindHTTPRoute or KindGRPCRoute. For a GRPCRoute the caller
	// maps the spec's HTTP answers to gRPC statuses (a 500 for an invalid
	// backend is UNAVAILABLE per GRPCRouteRule.BackendRefs).
	Kind string
	// Backends are the weighted backends. Empty means no backend is
	// configured and, unless Redirect is set, requests get a 500.
	Backends []Backend
	// RequestHeaders modifies the request before it is forwarded; nil for
	// none.
	RequestHeaders *HeaderModifier
	// ResponseHeaders modifies the response before it is returned; nil for
	// none.
	ResponseHeaders *HeaderModifier
	// Redirect, when set, answers the request with a redirect instead of
	// forwarding it. Rules with a redirect have no backends (the spec
	// forbids RequestRedirect together with backendRefs).
	Redirect *Redirect
	// Rewrite, when set, rewrites the request's host and/or path before it
	// is forwarded. Never set together with Redirect.
	Rewrite *Rewrite
	// Mirrors are the backends requests are mirrored to; responses from
	// them are ignored. Unresolved mirror backends are dropped (and
	// reported in the route status), as HTTPRequestMirrorFilter.BackendRef
	// requires.
	Mirrors []Mirror
	// Timeouts are the rule's timeouts (zero values: none).
	Timeouts Timeouts
	// Retry is the retry policy; nil when the rule has no retry stanza.
	Retry *Retry

	totalWeight int
}

// PickBackend chooses a backend by weight. rnd(n) must return a number in
// [0, n), for example math/rand/v2.IntN. Backends with weight 0 are never
// picked (BackendRef.Weight: "If weight is set to 0, no traffic should be
// forwarded for this entry"). It returns nil when there is no backend or all
// weights are 0; the caller answers 500. A returned backend with Valid false
// also gets a 500: invalid backends keep their weight so that "the
// proportion of requests that would otherwise have been routed to an
// invalid backend MUST receive a 500 status code" (HTTPRouteRule.BackendRefs).
func (r *Rule) PickBackend(rnd func(n int) int) *Backend {
	if r.totalWeight <= 0 {
		return nil
	}
	if len(r.Backends) == 1 {
		return &r.Backends[0]
	}
	n := rnd(r.totalWeight)
	for i := range r.Backends {
		w := int(r.Backends[i].Weight)
		if n < w {
			return &r.Backends[i]
		}
		n -= w
	}
	return nil // rnd returned a number out of range
}

// Backend is one weighted backendRef of a rule.
type Backend struct {
	// Service is the backend Service port.
	Service ServiceRef
	// Weight is the backend's weight (default 1; 0 is never picked).
	Weight int32
	// Valid is false when the backendRef could not be resolved; requests
	// picked for it get a 500.
	Valid bool
	// Reason is the ResolvedRefs reason for an invalid backend:
	// BackendNotFound, InvalidKind or RefNotPermitted. Empty when Valid.
	Reason string
	// Message says what is wrong with an invalid backend, for logs.
	Message string
	// RequestHeaders and ResponseHeaders are the backendRef's own header
	// filters (HTTPBackendRef.Filters), applied only when this backend is
	// picked, after the rule's; nil for none.
	RequestHeaders  *HeaderModifier
	ResponseHeaders *HeaderModifier
}

// Mirror is a RequestMirror filter: a share of the requests is copied to
// Backend and the responses are ignored.
type Mirror struct {
	// Backend is the mirror backend.
	Backend ServiceRef
	// Percent is the share of requests to mirror, from 0 to 100. A
	// fraction is converted (1/3 is 33.33...); 100 when the filter sets
	// neither percent nor fraction ("If neither field is specified, 100% of
	// requests will be mirrored").
	Percent float64
}

// Sample reports whether this request is mirrored. rnd must return a
// number in [0, 1), for example math/rand/v2.Float64.
func (m *Mirror) Sample(rnd func() float64) bool {
	return m.Percent >= 100 || rnd()*100 < m.Percent
}

// Timeouts are a rule's HTTPRouteTimeouts. A zero value means no timeout:
// either the field was unset (its behaviour is implementation-specific and
// Skein sets none) or it was "0s", which "SHOULD disable the timeout
// completely".
type Timeouts struct {
	// Request bounds the whole request, retries included.
	Request time.Duration
	// BackendRequest bounds each attempt to a backend. Never larger than
	// Request when both are set.
	BackendRequest time.Duration
}

// Defaults for the fields of a retry stanza that leave them unset, where the
// spec makes the value implementation-specific. They follow Envoy's
// defaults (one retry, 25ms base interval), which Istio users already get.
const (
	DefaultRetryAttempts = 1
	DefaultRetryBackoff  = 25 * time.Millisecond
)

// Retry is a rule's HTTPRouteRetry. A rule with a retry stanza also retries
// connection errors ("Implementations SHOULD retry on connection errors
// (disconnect, reset, timeout, TCP failure) if a retry stanza is
// configured").
type Retry struct {
	// Codes are the response status codes to retry, sorted (400-599).
	Codes []int
	// Attempts is the maximum number of retries (not counting the first
	// attempt); DefaultRetryAttempts when unset.
	Attempts int
	// Backoff is the minimum wait between attempts; DefaultRetryBackoff
	// when unset. The caller may grow it exponentially and add jitter.
	Backoff time.Duration
}

// RetryOn reports whether a response with status code should be retried.
func (r *Retry) RetryOn(code int) bool {
	for _, c := range r.Codes {
		if c == code {
			return true
		}
	}
	return false
}
