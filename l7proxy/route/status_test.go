package route

import (
	"testing"

	"github.com/stretchr/testify/require"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	gatewayv1 "sigs.k8s.io/gateway-api/apis/v1"
)

// cond is a condition without its transition time, for comparison.
type cond struct{ typ, status, reason, message string }

func conds(p ParentStatus) []cond {
	var out []cond
	for _, c := range p.Conditions {
		out = append(out, cond{c.Type, string(c.Status), c.Reason, c.Message})
	}
	return out
}

const resolvedOK = "all references resolved"

func TestStatus(t *testing.T) {
	tests := []struct {
		name     string
		svcs     ServiceLookup
		manifest string
		want     [][]cond // per Service parentRef
		matches  bool     // whether shop/web:80 has the route for client "shop"
	}{
		{
			name: "accepted producer route",
			manifest: `
  parentRefs: [{name: some-gateway}, {group: "", kind: Service, name: web, port: 80}]
  rules: [{backendRefs: [{name: web, port: 80}]}]`,
			want: [][]cond{{
				{"Accepted", "True", "Accepted", "attached to Service shop/web port 80 as a producer route: applies to clients in every namespace without a consumer route"},
				{"ResolvedRefs", "True", "ResolvedRefs", resolvedOK},
			}},
			matches: true,
		},
		{
			name: "missing Service parent",
			manifest: `
  parentRefs: [{group: "", kind: Service, name: nope}, {group: "", kind: Service, name: web}]
  rules: [{backendRefs: [{name: web, port: 80}]}]`,
			want: [][]cond{
				{{"Accepted", "False", "NoMatchingParent", "Service shop/nope not found"}, {"ResolvedRefs", "True", "ResolvedRefs", resolvedOK}},
				{{"Accepted", "True", "Accepted", "attached to Service shop/web port 80, 8080 as a producer route: applies to clients in every namespace without a consumer route"}, {"ResolvedRefs", "True", "ResolvedRefs", resolvedOK}},
			},
			matches: true,
		},
		{
			name: "missing Service port",
			manifest: `
  parentRefs: [{group: "", kind: Service, name: web, port: 81}]
  rules: [{backendRefs: [{name: web, port: 80}]}]`,
			want: [][]cond{{{"Accepted", "False", "NoMatchingParent", "Service shop/web has no port 81"}, {"ResolvedRefs", "True", "ResolvedRefs", resolvedOK}}},
		},
		{
			name: "sectionName needs port names",
			manifest: `
  parentRefs: [{group: "", kind: Service, name: web, sectionName: http}]
  rules: [{backendRefs: [{name: web, port: 80}]}]`,
			want: [][]cond{{{"Accepted", "False", "UnsupportedValue", "sectionName (a Service port name) cannot be resolved here: set port instead"}, {"ResolvedRefs", "True", "ResolvedRefs", resolvedOK}}},
		},
		{
			name: "sectionName unknown",
			svcs: namedServices{defaultServices(), map[string]uint16{"shop/web/http": 80}},
			manifest: `
  parentRefs: [{group: "", kind: Service, name: web, sectionName: grpc}]
  rules: [{backendRefs: [{name: web, port: 80}]}]`,
			want: [][]cond{{{"Accepted", "False", "NoMatchingParent", `Service shop/web has no port named "grpc"`}, {"ResolvedRefs", "True", "ResolvedRefs", resolvedOK}}},
		},
		{
			name: "sectionName and port must agree",
			svcs: namedServices{defaultServices(), map[string]uint16{"shop/web/http": 80}},
			manifest: `
  parentRefs: [{group: "", kind: Service, name: web, sectionName: http, port: 8080}]
  rules: [{backendRefs: [{name: web, port: 80}]}]`,
			want: [][]cond{{{"Accepted", "False", "NoMatchingParent", `port "http" of Service shop/web is 80, not 8080`}, {"ResolvedRefs", "True", "ResolvedRefs", resolvedOK}}},
		},
		{
			name: "missing backend",
			manifest: `
  parentRefs: [{group: "", kind: Service, name: web, port: 80}]
  rules: [{backendRefs: [{name: web, port: 80}, {name: gone, port: 80}]}]`,
			want: [][]cond{{
				{"Accepted", "True", "Accepted", "attached to Service shop/web port 80 as a producer route: applies to clients in every namespace without a consumer route"},
				{"ResolvedRefs", "False", "BackendNotFound", "spec.rules[0].backendRefs[1]: Service shop/gone not found"},
			}},
			matches: true,
		},
		{
			name: "invalid kind",
			manifest: `
  parentRefs: [{group: "", kind: Service, name: web, port: 80}]
  rules: [{backendRefs: [{group: example.com, kind: Bucket, name: b}]}]`,
			want: [][]cond{{
				{"Accepted", "True", "Accepted", "attached to Service shop/web port 80 as a producer route: applies to clients in every namespace without a consumer route"},
				{"ResolvedRefs", "False", "InvalidKind", `spec.rules[0].backendRefs[0]: kind Bucket.example.com is not supported: Skein forwards only to Services (group "", kind Service)`},
			}},
			matches: true,
		},
		{
			name: "cross-namespace backend is allowed without a ReferenceGrant (GEP-1294)",
			manifest: `
  parentRefs: [{group: "", kind: Service, name: web, port: 80}]
  rules: [{backendRefs: [{name: web, namespace: other, port: 80}]}]`,
			want: [][]cond{{
				{"Accepted", "True", "Accepted", "attached to Service shop/web port 80 as a producer route: applies to clients in every namespace without a consumer route"},
				{"ResolvedRefs", "True", "ResolvedRefs", resolvedOK},
			}},
			matches: true,
		},
		{
			name: "cross-namespace backend refused by the ReferenceGrant lookup",
			svcs: grantServices{defaultServices(), nil},
			manifest: `
  parentRefs: [{group: "", kind: Service, name: web, port: 80}]
  rules: [{backendRefs: [{name: web, namespace: other, port: 80}]}]`,
			want: [][]cond{{
				{"Accepted", "True", "Accepted", "attached to Service shop/web port 80 as a producer route: applies to clients in every namespace without a consumer route"},
				{"ResolvedRefs", "False", "RefNotPermitted", "spec.rules[0].backendRefs[0]: Service other/web is in another namespace and no ReferenceGrant there allows references from HTTPRoute in namespace shop"},
			}},
			matches: true,
		},
		{
			name: "cross-namespace backend granted",
			svcs: grantServices{defaultServices(), map[string]bool{"shop->other/web": true}},
			manifest: `
  parentRefs: [{group: "", kind: Service, name: web, port: 80}]
  rules: [{backendRefs: [{name: web, namespace: other, port: 80}]}]`,
			want: [][]cond{{
				{"Accepted", "True", "Accepted", "attached to Service shop/web port 80 as a producer route: applies to clients in every namespace without a consumer route"},
				{"ResolvedRefs", "True", "ResolvedRefs", resolvedOK},
			}},
			matches: true,
		},
		{
			name: "some rules dropped: PartiallyInvalid",
			manifest: `
  parentRefs: [{group: "", kind: Service, name: web, port: 80}]
  rules:
  - matches: [{path: {value: /ok}}]
    backendRefs: [{name: web, port: 80}]
  - matches: [{path: {value: bad}}]
    backendRefs: [{name: web, port: 80}]`,
			want: [][]cond{{
				{"Accepted", "True", "Accepted", "attached to Service shop/web port 80 as a producer route: applies to clients in every namespace without a consumer route"},
				{"ResolvedRefs", "True", "ResolvedRefs", resolvedOK},
				{"PartiallyInvalid", "True", "UnsupportedValue", `Dropped Rule 1: spec.rules[1].matches[0].path.value: Invalid value: "bad": must start with "/"`},
			}},
			matches: true, // rule 0 still serves
		},
		{
			name: "every rule dropped: not accepted",
			manifest: `
  parentRefs: [{group: "", kind: Service, name: web, port: 80}]
  rules: [{filters: [{type: CORS, cors: {allowOrigins: ["*"]}}], backendRefs: [{name: web, port: 80}]}]`,
			want: [][]cond{{
				{"Accepted", "False", "UnsupportedValue", `no valid rule: Dropped Rule 0: spec.rules[0].filters[0].type: Invalid value: "CORS": filter type CORS is not supported by Skein`},
				{"ResolvedRefs", "True", "ResolvedRefs", resolvedOK},
			}},
		},
		{
			name: "incompatible filters",
			manifest: `
  parentRefs: [{group: "", kind: Service, name: web, port: 80}]
  rules: [{filters: [{type: RequestRedirect, requestRedirect: {hostname: a.example}}], backendRefs: [{name: web, port: 80}]}]`,
			want: [][]cond{{
				{"Accepted", "False", "IncompatibleFilters", `no valid rule: Dropped Rule 0: spec.rules[0].filters[0].type: Invalid value: "RequestRedirect": RequestRedirect filter must not be used together with backendRefs`},
				{"ResolvedRefs", "True", "ResolvedRefs", resolvedOK},
			}},
		},
		{
			name: "route-level error rejects the whole route",
			manifest: `
  parentRefs: [{group: "", kind: Service, name: web, port: 80}]
  hostnames: ["bad_host"]
  rules: [{backendRefs: [{name: gone, port: 80}]}]`,
			want: [][]cond{{
				{"Accepted", "False", "UnsupportedValue", `spec.hostnames[0]: Invalid value: "bad_host": must be a lowercase RFC 1123 hostname, optionally prefixed with a wildcard label "*."`},
				{"ResolvedRefs", "False", "BackendNotFound", "spec.rules[0].backendRefs[0]: Service shop/gone not found"},
			}},
		},
		{
			name: "consumer route",
			manifest: `
  parentRefs: [{group: "", kind: Service, name: web, namespace: other}]
  rules: [{backendRefs: [{name: web, namespace: other, port: 80}]}]`,
			want: [][]cond{{
				{"Accepted", "True", "Accepted", "attached to Service other/web port 80 as a consumer route: applies to clients in namespace shop"},
				{"ResolvedRefs", "True", "ResolvedRefs", resolvedOK},
			}},
		},
		{
			name: "not Skein's: no parents",
			manifest: `
  parentRefs: [{name: gw}]
  rules: [{filters: [{type: CORS, cors: {allowOrigins: ["*"]}}]}]`,
			want: nil,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			svcs := tt.svcs
			if svcs == nil {
				svcs = defaultServices()
			}
			route := httpRoute(t, `
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: s, namespace: shop, generation: 7}
spec:`+tt.manifest+"\n")
			tbl, sts := Compile([]*gatewayv1.HTTPRoute{route}, nil, svcs)
			require.Len(t, sts, 1)
			require.Equal(t, RouteID{Kind: KindHTTPRoute, Namespace: "shop", Name: "s"}, sts[0].Route)
			require.Equal(t, int64(7), sts[0].Generation)
			var got [][]cond
			for _, p := range sts[0].Parents {
				got = append(got, conds(p))
				for _, c := range p.Conditions {
					require.Equal(t, int64(7), c.ObservedGeneration)
				}
			}
			require.Equal(t, tt.want, got)
			require.Equal(t, tt.matches, tbl.Match(shopWeb, "shop", req("GET", "/ok")).Rule != nil)
		})
	}
}

func TestStatusMisc(t *testing.T) {
	t.Run("GRPCRoute without rules is not accepted", func(t *testing.T) {
		g := grpcRoute(t, `
			apiVersion: gateway.networking.k8s.io/v1
			kind: GRPCRoute
			metadata: {name: g, namespace: shop}
			spec:
			  parentRefs: [{group: "", kind: Service, name: grpc}]
		`)
		tbl, sts := Compile(nil, []*gatewayv1.GRPCRoute{g}, defaultServices())
		acc := sts[0].Parents[0].Condition(gatewayv1.RouteConditionAccepted)
		require.Equal(t, metav1.ConditionFalse, acc.Status)
		require.Equal(t, "the route has no rules", acc.Message)
		require.Nil(t, tbl.Services())
	})
	t.Run("HTTPRoute without rules gets the default rule", func(t *testing.T) {
		h := httpRoute(t, `
			apiVersion: gateway.networking.k8s.io/v1
			kind: HTTPRoute
			metadata: {name: h, namespace: shop}
			spec:
			  parentRefs: [{group: "", kind: Service, name: web}]
		`)
		tbl := mustCompile(t, defaultServices(), []*gatewayv1.HTTPRoute{h}, nil)
		res := tbl.Match(shopWeb, "c", req("GET", "/anything"))
		require.Equal(t, "shop/h#0", outcome(res))
		require.Nil(t, res.Rule.PickBackend(cycle()), "no backends: 500")
	})
	t.Run("RouteParentStatus", func(t *testing.T) {
		_, sts := Compile([]*gatewayv1.HTTPRoute{oneRuleRoute(t, `[]`)}, nil, defaultServices())
		rps := sts[0].Parents[0].RouteParentStatus("skein.io/mesh")
		require.Equal(t, gatewayv1.GatewayController("skein.io/mesh"), rps.ControllerName)
		require.Equal(t, gatewayv1.ObjectName("web"), rps.ParentRef.Name)
		require.Len(t, rps.Conditions, 2)
		require.Nil(t, sts[0].Parents[0].Condition(gatewayv1.RouteConditionPartiallyInvalid))
	})
	t.Run("nil routes, nil lookup", func(t *testing.T) {
		tbl, sts := Compile([]*gatewayv1.HTTPRoute{nil, oneRuleRoute(t, `[]`)}, []*gatewayv1.GRPCRoute{nil}, nil)
		require.Len(t, sts, 1)
		require.Equal(t, "NoMatchingParent", sts[0].Parents[0].Conditions[0].Reason)
		require.Nil(t, tbl.Services())
	})
	t.Run("rule names are reported", func(t *testing.T) {
		h := httpRoute(t, `
			apiVersion: gateway.networking.k8s.io/v1
			kind: HTTPRoute
			metadata: {name: h, namespace: shop}
			spec:
			  parentRefs: [{group: "", kind: Service, name: web}]
			  rules: [{name: first, backendRefs: [{name: web, port: 80}]}]
		`)
		tbl := mustCompile(t, defaultServices(), []*gatewayv1.HTTPRoute{h}, nil)
		ref := tbl.Match(shopWeb, "c", req("GET", "/")).Rule.Route
		require.Equal(t, RouteRef{RouteID: RouteID{KindHTTPRoute, "shop", "h"}, RuleIndex: 0, RuleName: "first"}, ref)
		require.Equal(t, "HTTPRoute shop/h rule 0 (first)", ref.String())
	})
}
