// Package route compiles Gateway API HTTPRoutes and GRPCRoutes attached to
// Services (GAMMA, GEP-1294) into a route table, and matches requests
// against it.
//
// The agent calls [Compile] with every route of the cluster whenever one
// changes, publishes the returned [Status] conditions, and hands the
// [Table] to the node proxy. The proxy's HTTP handler calls [Table.Match]
// once per request with the Service port the client dialed and the client's
// namespace, then uses the matched [Rule]: [Rule.PickBackend] for the
// weighted backend, [HeaderModifier.ApplyToRequest], [Redirect.Location],
// [Rewrite.Apply], [Mirror.Sample], [Timeouts] and [Retry]. The agent also
// rejects an invalid route with the errors of [Validate], which checks a
// route the way Compile does. The package knows nothing of BPF, the agent or
// listeners; Match does not allocate for ordinary requests.
//
// # Attachment
//
// Only parentRefs with group "" and kind Service are Skein's; others (such
// as Gateways) are ignored, not errors. The group must be written out:
// ParentReference.Group defaults to gateway.networking.k8s.io, as the API
// server would set it ("To set the core API group (such as for a "Service"
// kind referent), Group must be explicitly set to "" (empty string)"). The
// namespace defaults to the route's. A parentRef with port attaches to that
// Service port only; without, to every port of the Service. A sectionName
// (the port's name) needs a ServiceLookup that also implements
// [PortNameLookup]. A parentRef to a missing Service or port is not
// Accepted (NoMatchingParent).
//
// A route in the Service's namespace is a producer route and applies to
// clients in every namespace; a route in another namespace is a consumer
// route and applies only to clients in its own namespace, for whom the
// consumer routes of that namespace replace the producer routes (GEP-1294,
// "Namespace boundaries" and "Multiple routes for a Service").
//
// When HTTPRoutes and GRPCRoutes attach to the same Service port within one
// such group, the GRPCRoutes win and the HTTPRoutes lose that port with the
// reason Conflicted (GEP-1294, "Route types").
//
// spec.hostnames is ignored for Service parents: GEP-1294 says "GAMMA
// implementations SHOULD NOT infer any functionality from the hostnames
// field on xRoutes". Routes apply by the Service the client dialed, never by
// the Host header (the conformance test MeshFrontendHostname checks this).
// To match on the Host header, use a header match, as GEP-1294 recommends;
// such a match reads Request.Host, where net/http keeps the Host header.
//
// # Matching
//
// Paths are matched in their escaped form (URL.EscapedPath), because the
// spec's path values are escaped ("%2f" may not appear in them), so an
// encoded slash never splits a path element. Normalizing the path (dot
// segments, duplicate slashes) is the caller's job, before Match.
//
//   - Exact matches the path exactly, case-sensitively ("/abc" does not match
//     "/abc/").
//   - PathPrefix matches element-wise: "/foo" matches "/foo", "/foo/" and
//     "/foo/bar" but not "/foobar"; a trailing slash in the value is ignored,
//     so "/foo/" matches "/foo" too.
//   - RegularExpression (paths, headers, query params, gRPC service and
//     method) uses Go's RE2 syntax and must match the whole value.
//   - Header names are case-insensitive. A repeated header matches when one
//     of its lines does or its comma-joined value does. The first of several
//     conditions on equivalent names counts; the others are ignored, as the
//     spec says.
//   - Query parameter names are case-sensitive and the first value counts.
//   - A match without path is PathPrefix "/"; a rule without matches has
//     that one match (HTTPRoute) or matches every request (GRPCRoute).
//
// # Precedence
//
// Precedence is decided per match across all rules of all routes in the
// applicable group (producer or consumer) of a Service port, in the spec's
// order: Exact path; PathPrefix with the most characters; a method match;
// the most header matches; the most query param matches; then the oldest
// route by creationTimestamp; then the route first in alphabetical order of
// "{namespace}/{name}"; then the first rule in the route.
//
// Where the spec leaves room:
//
//   - RegularExpression paths ("implementation-specific") rank after every
//     Exact and PathPrefix match, the longer expression first, which is
//     Istio's order. So a PathPrefix "/" (including a rule without matches)
//     wins over any regular expression.
//   - PathPrefix values count characters without their trailing slash,
//     since "/foo/" and "/foo" are the same match.
//   - GRPCRoute ("Characters in a matching service. Characters in a
//     matching method. Header matches."): an Exact service outranks a
//     RegularExpression one, which outranks none (longer expressions first);
//     the same for the method; then the number of header matches; then the
//     tie-breakers above.
//
// # Backends
//
// backendRefs default to weight 1; weight 0 is never picked. A backendRef
// must name a Service (group "", kind Service: otherwise InvalidKind) with a
// port; a missing Service or port is BackendNotFound. Invalid backends keep
// their weight and [Rule.PickBackend] returns them with Valid false, so that
// their share of requests gets a 500 as the spec requires; a rule without
// backends, or whose weights are all 0, gets a 500 for every request.
//
// A backendRef to another namespace is allowed without a ReferenceGrant, as
// GEP-1294 specifies for mesh routes: "Routes of either type can send
// traffic to backendRefs in any namespace. Unlike Gateway bound routes, this
// is allowed without a ReferenceGrant." A mesh route changes where a
// client's requests go, not whom the client may reach: the destination
// still authorizes the client's own identity. Consumer routes depend on it
// (the conformance test MeshConsumerRoute sends to a Service in another
// namespace without any grant). A ServiceLookup that also
// implements [ReferenceGrantLookup] makes such references need a grant, and
// refused ones get RefNotPermitted.
//
// # Filters, timeouts, retries
//
// Supported: RequestHeaderModifier, ResponseHeaderModifier, RequestRedirect,
// URLRewrite and RequestMirror on HTTPRoute rules; RequestHeaderModifier,
// ResponseHeaderModifier and RequestMirror on GRPCRoute rules; and the two
// header modifiers on backendRefs (applied only to requests sent to that
// backend). Timeouts use the Gateway API duration format (GEP-2257); a
// missing timeout and "0s" both mean none. A retry stanza retries
// connection errors and the listed codes (400-599), DefaultRetryAttempts
// times after DefaultRetryBackoff unless set.
//
// # Not supported
//
// These are rejected by [Validate] with "not supported by Skein", and a
// route using them is not Accepted (UnsupportedValue), never silently
// ignored: the CORS, ExternalAuth and ExtensionRef filters,
// sessionPersistence, and RequestRedirect, URLRewrite and RequestMirror in
// backendRefs[].filters. Not implemented, and not rejected: Service
// appProtocol checks (UnsupportedProtocol), telling headless or
// ExternalName Services apart (the ServiceLookup does not say), and
// spec.useDefaultGateways, which concerns Gateways only.
package route
