package route

import (
	"fmt"
	"net/http"
	"testing"

	"github.com/stretchr/testify/require"
	gatewayv1 "sigs.k8s.io/gateway-api/apis/v1"
)

// rt is a producer HTTPRoute for shop/web:80: name, creation time (an
// RFC 3339 time, or "" for none) and rules in YAML flow style.
type rt struct{ name, created, rules string }

func (r rt) route(t testing.TB) *gatewayv1.HTTPRoute {
	created := ""
	if r.created != "" {
		created = ", creationTimestamp: " + r.created
	}
	return httpRoute(t, fmt.Sprintf(`
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: %s, namespace: shop%s}
spec:
  parentRefs: [{group: "", kind: Service, name: web}]
  rules: %s
`, r.name, created, r.rules))
}

const (
	day1 = "2024-01-01T00:00:00Z"
	day2 = "2024-01-02T00:00:00Z"
	day3 = "2024-01-03T00:00:00Z"
)

// TestHTTPPrecedence has a case for each criterion of HTTPRouteRule.Matches
// where that criterion decides: the loser is set up to win every later
// criterion (older, alphabetically first), so the test fails if the
// criterion is skipped or applied in the wrong order.
func TestHTTPPrecedence(t *testing.T) {
	tests := []struct {
		name   string
		routes []rt
		req    *http.Request
		want   string
	}{
		{
			name: "exact beats prefix of the same length",
			routes: []rt{
				{"a-prefix", day1, `[{matches: [{path: {type: PathPrefix, value: /a/b}, method: GET, headers: [{name: x, value: "1"}]}]}]`},
				{"z-exact", day3, `[{matches: [{path: {type: Exact, value: /a/b}}]}]`},
			},
			req:  req("GET", "/a/b", "x: 1"),
			want: "shop/z-exact#0",
		},
		{
			name: "longest prefix beats method, headers and age",
			routes: []rt{
				{"a-short", day1, `[{matches: [{path: {value: /foo}, method: GET, headers: [{name: x, value: "1"}], queryParams: [{name: q, value: "1"}]}]}]`},
				{"z-long", day3, `[{matches: [{path: {value: /foo/bar}}]}]`},
			},
			req:  req("GET", "/foo/bar/baz?q=1", "x: 1"),
			want: "shop/z-long#0",
		},
		{
			name: "method beats more headers",
			routes: []rt{
				{"a-headers", day1, `[{matches: [{path: {value: /p}, headers: [{name: x, value: "1"}, {name: h2, value: "2"}], queryParams: [{name: q, value: "1"}]}]}]`},
				{"z-method", day3, `[{matches: [{path: {value: /p}, method: GET}]}]`},
			},
			req:  req("GET", "/p?q=1", "x: 1", "h2: 2"),
			want: "shop/z-method#0",
		},
		{
			name: "more headers beat more query params",
			routes: []rt{
				{"a-query", day1, `[{matches: [{headers: [{name: x, value: "1"}], queryParams: [{name: a, value: "1"}, {name: b, value: "1"}, {name: c, value: "1"}]}]}]`},
				{"z-headers", day3, `[{matches: [{headers: [{name: x, value: "1"}, {name: h2, value: "1"}]}]}]`},
			},
			req:  req("GET", "/?a=1&b=1&c=1", "x: 1", "h2: 1"),
			want: "shop/z-headers#0",
		},
		{
			name: "more query params beat age",
			routes: []rt{
				{"a-one", day1, `[{matches: [{queryParams: [{name: a, value: "1"}]}]}]`},
				{"z-two", day3, `[{matches: [{queryParams: [{name: a, value: "1"}, {name: b, value: "1"}]}]}]`},
			},
			req:  req("GET", "/?a=1&b=1"),
			want: "shop/z-two#0",
		},
		{
			name: "oldest route beats alphabetical order",
			routes: []rt{
				{"a-newer", day2, `[{matches: [{path: {value: /x}}]}]`},
				{"z-older", day1, `[{matches: [{path: {value: /x}}]}]`},
			},
			req:  req("GET", "/x"),
			want: "shop/z-older#0",
		},
		{
			name: "alphabetical {namespace}/{name} on equal age",
			routes: []rt{
				{"beta", day1, `[{matches: [{path: {value: /x}}]}]`},
				{"alpha", day1, `[{matches: [{path: {value: /x}}]}]`},
			},
			req:  req("GET", "/x"),
			want: "shop/alpha#0",
		},
		{
			name: "first rule of the route on a full tie",
			routes: []rt{
				{"r", day1, `[{matches: [{path: {value: /x}}]}, {matches: [{path: {value: /x}}]}]`},
			},
			req:  req("GET", "/x"),
			want: "shop/r#0",
		},
		{
			name: "rule order comes last: a later, more specific rule wins",
			routes: []rt{
				{"r", day1, `[{matches: [{path: {value: /x}}]}, {matches: [{path: {value: /x}, headers: [{name: h, value: "1"}]}]}]`},
			},
			req:  req("GET", "/x", "h: 1"),
			want: "shop/r#1",
		},
		{
			name: "precedence is per match: the longest match of a rule counts",
			routes: []rt{
				{"a-mid", day1, `[{matches: [{path: {value: /a/b}}]}]`},
				{"z-multi", day3, `[{matches: [{path: {value: /a}}, {path: {value: /a/b/c}}]}]`},
			},
			req:  req("GET", "/a/b/c/d"),
			want: "shop/z-multi#0",
		},
		{
			name: "a longer prefix whose other conditions fail falls back to a shorter one",
			routes: []rt{
				{"a-long", day1, `[{matches: [{path: {value: /foo/bar}, headers: [{name: x, value: "1"}]}]}]`},
				{"z-short", day3, `[{matches: [{path: {value: /foo}}]}]`},
			},
			req:  req("GET", "/foo/bar"),
			want: "shop/z-short#0",
		},
		{
			name: "trailing slash of a prefix does not count as a character",
			routes: []rt{
				{"a-slash", day2, `[{matches: [{path: {value: /foo/}}]}]`},
				{"z-plain", day1, `[{matches: [{path: {value: /foo}}]}]`},
			},
			req:  req("GET", "/foo/bar"),
			want: "shop/z-plain#0", // equal length, so the older route wins
		},
		{
			name: "creationTimestamp absent sorts as oldest",
			routes: []rt{
				{"a-dated", day1, `[{matches: [{path: {value: /x}}]}]`},
				{"z-undated", "", `[{matches: [{path: {value: /x}}]}]`},
			},
			req:  req("GET", "/x"),
			want: "shop/z-undated#0",
		},

		// RegularExpression paths: after every Exact and PathPrefix match,
		// longer expressions first (Skein's choice, Istio's order).
		{
			name: "regex loses to the root prefix",
			routes: []rt{
				{"a-regex", day1, `[{matches: [{path: {type: RegularExpression, value: "/users/[0-9]+"}, method: GET}]}]`},
				{"z-default", day3, `[{}]`},
			},
			req:  req("GET", "/users/42"),
			want: "shop/z-default#0",
		},
		{
			name: "regex loses to exact",
			routes: []rt{
				{"a-regex", day1, `[{matches: [{path: {type: RegularExpression, value: "/users/.*"}}]}]`},
				{"z-exact", day3, `[{matches: [{path: {type: Exact, value: /users/42}}]}]`},
			},
			req:  req("GET", "/users/42"),
			want: "shop/z-exact#0",
		},
		{
			name: "regex wins when no prefix matches",
			routes: []rt{
				{"a-prefix", day1, `[{matches: [{path: {value: /orders}}]}]`},
				{"z-regex", day3, `[{matches: [{path: {type: RegularExpression, value: "/users/[0-9]+"}}]}]`},
			},
			req:  req("GET", "/users/42"),
			want: "shop/z-regex#0",
		},
		{
			name: "longer regex first",
			routes: []rt{
				{"a-short", day1, `[{matches: [{path: {type: RegularExpression, value: "/u.*"}}]}]`},
				{"z-long", day3, `[{matches: [{path: {type: RegularExpression, value: "/users/[0-9]+"}}]}]`},
			},
			req:  req("GET", "/users/42"),
			want: "shop/z-long#0",
		},
		{
			name: "regex ties fall to method, then age",
			routes: []rt{
				{"a-plain", day1, `[{matches: [{path: {type: RegularExpression, value: "/u.*"}}]}]`},
				{"z-method", day3, `[{matches: [{path: {type: RegularExpression, value: "/.*/1"}, method: GET}]}]`},
			},
			req:  req("GET", "/u/1"),
			want: "shop/z-method#0",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var routes []*gatewayv1.HTTPRoute
			for _, r := range tt.routes {
				routes = append(routes, r.route(t))
			}
			tbl := mustCompile(t, defaultServices(), routes, nil)
			require.Equal(t, tt.want, outcome(tbl.Match(shopWeb, "client", tt.req)))

			// The outcome must not depend on the order routes are given in.
			for i, j := 0, len(routes)-1; i < j; i, j = i+1, j-1 {
				routes[i], routes[j] = routes[j], routes[i]
			}
			tbl = mustCompile(t, defaultServices(), routes, nil)
			require.Equal(t, tt.want, outcome(tbl.Match(shopWeb, "client", tt.req)), "routes in reverse order")
		})
	}
}

// gr is a producer GRPCRoute for shop/grpc:9090, like rt.
type gr struct{ name, created, rules string }

func (r gr) route(t testing.TB) *gatewayv1.GRPCRoute {
	return grpcRoute(t, fmt.Sprintf(`
apiVersion: gateway.networking.k8s.io/v1
kind: GRPCRoute
metadata: {name: %s, namespace: shop, creationTimestamp: %s}
spec:
  parentRefs: [{group: "", kind: Service, name: grpc}]
  rules: %s
`, r.name, r.created, r.rules))
}

// TestGRPCPrecedence covers GRPCRouteRule.Matches: "Characters in a
// matching service. Characters in a matching method. Header matches." then
// the same tie-breakers as HTTPRoute.
func TestGRPCPrecedence(t *testing.T) {
	svc := ServiceRef{Namespace: "shop", Name: "grpc", Port: 9090}
	tests := []struct {
		name   string
		routes []gr
		req    *http.Request
		want   string
	}{
		{
			name: "service beats method and headers",
			routes: []gr{
				{"a-method", day1, `[{matches: [{method: {method: Get}, headers: [{name: x, value: "1"}]}]}]`},
				{"z-service", day3, `[{matches: [{method: {service: shop.Cart}}]}]`},
			},
			req:  req("POST", "/shop.Cart/Get", "x: 1"),
			want: "shop/z-service#0",
		},
		{
			name: "service and method beat service alone",
			routes: []gr{
				{"a-service", day1, `[{matches: [{method: {service: shop.Cart}, headers: [{name: x, value: "1"}]}]}]`},
				{"z-both", day3, `[{matches: [{method: {service: shop.Cart, method: Get}}]}]`},
			},
			req:  req("POST", "/shop.Cart/Get", "x: 1"),
			want: "shop/z-both#0",
		},
		{
			name: "exact service beats regex service",
			routes: []gr{
				{"a-regex", day1, `[{matches: [{method: {type: RegularExpression, service: "shop\\.Cart.*", method: Get}}]}]`},
				{"z-exact", day3, `[{matches: [{method: {service: shop.Cart}}]}]`},
			},
			req:  req("POST", "/shop.Cart/Get"),
			want: "shop/z-exact#0",
		},
		{
			name: "regex service beats no service",
			routes: []gr{
				{"a-none", day1, `[{matches: [{method: {method: Get}}]}]`},
				{"z-regex", day3, `[{matches: [{method: {type: RegularExpression, service: "shop\\..*"}}]}]`},
			},
			req:  req("POST", "/shop.Cart/Get"),
			want: "shop/z-regex#0",
		},
		{
			name: "more headers on equal service and method",
			routes: []gr{
				{"a-one", day1, `[{matches: [{method: {service: shop.Cart}, headers: [{name: x, value: "1"}]}]}]`},
				{"z-two", day3, `[{matches: [{method: {service: shop.Cart}, headers: [{name: x, value: "1"}, {name: h2, value: "1"}]}]}]`},
			},
			req:  req("POST", "/shop.Cart/Get", "x: 1", "h2: 1"),
			want: "shop/z-two#0",
		},
		{
			name: "oldest route",
			routes: []gr{
				{"a-newer", day2, `[{matches: [{method: {service: shop.Cart}}]}]`},
				{"z-older", day1, `[{matches: [{method: {service: shop.Cart}}]}]`},
			},
			req:  req("POST", "/shop.Cart/Get"),
			want: "shop/z-older#0",
		},
		{
			name: "alphabetical name",
			routes: []gr{
				{"b", day1, `[{matches: [{method: {service: shop.Cart}}]}]`},
				{"a", day1, `[{matches: [{method: {service: shop.Cart}}]}]`},
			},
			req:  req("POST", "/shop.Cart/Get"),
			want: "shop/a#0",
		},
		{
			name: "first rule",
			routes: []gr{
				{"r", day1, `[{matches: [{method: {service: shop.Cart}}]}, {matches: [{method: {service: shop.Cart}}]}]`},
			},
			req:  req("POST", "/shop.Cart/Get"),
			want: "shop/r#0",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var routes []*gatewayv1.GRPCRoute
			for _, r := range tt.routes {
				routes = append(routes, r.route(t))
			}
			tbl := mustCompile(t, defaultServices(), nil, routes)
			require.Equal(t, tt.want, outcome(tbl.Match(svc, "client", tt.req)))
		})
	}
}
