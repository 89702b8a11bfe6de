// Package authz evaluates Istio-style AuthorizationPolicies
// (security.istio.io/v1, the subset model.AuthorizationPolicy accepts) for
// the node proxy: DENY policies first, then ALLOW policies; a workload with
// no ALLOW policy allows what no DENY policy denies, one with ALLOW policies
// allows only what one of them matches.
//
// Policies select workloads with matchLabels in their own namespace, or
// every workload of the mesh when they sit in the root namespace. For TCP
// traffic (no method, no path), as Istio does: an ALLOW rule that needs HTTP
// attributes never matches, a DENY rule matches ignoring them, so a policy
// never allows more on TCP than it meant to.
package authz
