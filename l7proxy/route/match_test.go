package route

import (
	"fmt"
	"net/http"
	"testing"

	"github.com/stretchr/testify/require"
	gatewayv1 "sigs.k8s.io/gateway-api/apis/v1"
)

// oneRuleRoute is a producer route for shop/web:80 with one rule whose
// matches are given in YAML flow style.
func oneRuleRoute(t testing.TB, matches string) *gatewayv1.HTTPRoute {
	t.Helper()
	return httpRoute(t, fmt.Sprintf(`
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: r, namespace: shop}
spec:
  parentRefs: [{group: "", kind: Service, name: web, port: 80}]
  rules:
  - matches: %s
    backendRefs: [{name: web, port: 80}]
`, matches))
}

func TestMatchConditions(t *testing.T) {
	get := func(target string, headers ...string) *http.Request { return req("GET", target, headers...) }
	tests := []struct {
		name    string
		matches string
		req     *http.Request
		want    bool
	}{
		// Exact: "an exact path match on /abc will only match requests to
		// /abc, NOT /abc/, /Abc, or /abcd".
		{"exact equal", `[{path: {type: Exact, value: /abc}}]`, get("/abc"), true},
		{"exact trailing slash", `[{path: {type: Exact, value: /abc}}]`, get("/abc/"), false},
		{"exact case", `[{path: {type: Exact, value: /abc}}]`, get("/Abc"), false},
		{"exact longer", `[{path: {type: Exact, value: /abc}}]`, get("/abcd"), false},
		{"exact ignores query", `[{path: {type: Exact, value: /abc}}]`, get("/abc?x=1"), true},
		{"exact escaped value", `[{path: {type: Exact, value: /a%20b}}]`, get("/a%20b"), true},

		// PathPrefix: "/abc, /abc/, and /abc/def would all match the prefix
		// /abc, but the path /abcd would not".
		{"prefix equal", `[{path: {type: PathPrefix, value: /foo}}]`, get("/foo"), true},
		{"prefix trailing slash in path", `[{path: {type: PathPrefix, value: /foo}}]`, get("/foo/"), true},
		{"prefix deeper", `[{path: {type: PathPrefix, value: /foo}}]`, get("/foo/bar/baz"), true},
		{"prefix not element-wise", `[{path: {type: PathPrefix, value: /foo}}]`, get("/foobar"), false},
		{"prefix shorter path", `[{path: {type: PathPrefix, value: /foo}}]`, get("/fo"), false},
		{"prefix case", `[{path: {type: PathPrefix, value: /foo}}]`, get("/FOO"), false},
		{"prefix encoded slash is not a separator", `[{path: {type: PathPrefix, value: /foo}}]`, get("/foo%2Fbar"), false},
		{"prefix value trailing slash ignored", `[{path: {type: PathPrefix, value: /foo/}}]`, get("/foo"), true},
		{"prefix value trailing slash, deeper", `[{path: {type: PathPrefix, value: /foo/}}]`, get("/foo/bar"), true},
		{"prefix value trailing slash, not element-wise", `[{path: {type: PathPrefix, value: /foo/}}]`, get("/foobar"), false},
		{"prefix multi-element", `[{path: {type: PathPrefix, value: /a/b}}]`, get("/a/b/c"), true},
		{"prefix multi-element partial", `[{path: {type: PathPrefix, value: /a/b}}]`, get("/a/bc"), false},
		{"prefix root", `[{path: {type: PathPrefix, value: /}}]`, get("/anything/at/all"), true},
		{"default path is prefix root", `[{method: GET}]`, get("/x"), true},

		// RegularExpression: RE2, whole path.
		{"regex full", `[{path: {type: RegularExpression, value: "/users/[0-9]+"}}]`, get("/users/42"), true},
		{"regex no partial suffix", `[{path: {type: RegularExpression, value: "/users/[0-9]+"}}]`, get("/users/42/x"), false},
		{"regex no partial prefix", `[{path: {type: RegularExpression, value: "/users/[0-9]+"}}]`, get("/v1/users/42"), false},
		{"regex alternation is whole", `[{path: {type: RegularExpression, value: "/a|/b"}}]`, get("/ab"), false},
		{"regex alternation", `[{path: {type: RegularExpression, value: "/a|/b"}}]`, get("/b"), true},

		// Headers: names case-insensitive, values case-sensitive.
		{"header exact", `[{headers: [{name: version, value: v2}]}]`, get("/", "version: v2"), true},
		{"header name case-insensitive", `[{headers: [{name: x-version, value: v2}]}]`, get("/", "X-VERSION: v2"), true},
		{"header value case-sensitive", `[{headers: [{name: version, value: v2}]}]`, get("/", "version: V2"), false},
		{"header missing", `[{headers: [{name: version, value: v2}]}]`, get("/"), false},
		{"header regex", `[{headers: [{name: version, type: RegularExpression, value: "v[0-9]+"}]}]`, get("/", "version: v12"), true},
		{"header regex is full match (prefix)", `[{headers: [{name: version, type: RegularExpression, value: "v[0-9]+"}]}]`, get("/", "version: xv1"), false},
		{"header regex is full match (suffix)", `[{headers: [{name: version, type: RegularExpression, value: "v[0-9]+"}]}]`, get("/", "version: v1x"), false},
		{"header repeated, one line matches", `[{headers: [{name: version, value: v2}]}]`, get("/", "version: v1", "version: v2"), true},
		{"header repeated, combined value", `[{headers: [{name: tags, value: "a,b"}]}]`, get("/", "tags: a", "tags: b"), true},
		{"header repeated, none matches", `[{headers: [{name: version, value: v3}]}]`, get("/", "version: v1", "version: v2"), false},
		{"headers AND, both", `[{headers: [{name: a, value: "1"}, {name: b, value: "2"}]}]`, get("/", "a: 1", "b: 2"), true},
		{"headers AND, one missing", `[{headers: [{name: a, value: "1"}, {name: b, value: "2"}]}]`, get("/", "a: 1"), false},
		{"header equivalent names: first counts", `[{headers: [{name: X-A, value: "1"}, {name: x-a, value: "2"}]}]`, get("/", "X-A: 1"), true},
		{"header Host from Request.Host", `[{headers: [{name: host, value: web.shop}]}]`, get("http://web.shop/"), true},
		{"header Host mismatch", `[{headers: [{name: Host, value: web.shop}]}]`, get("http://api.shop/"), false},

		// Query params: exact names, first value.
		{"query exact", `[{queryParams: [{name: env, value: prod}]}]`, get("/?env=prod"), true},
		{"query other value", `[{queryParams: [{name: env, value: prod}]}]`, get("/?env=dev"), false},
		{"query missing", `[{queryParams: [{name: env, value: prod}]}]`, get("/?other=prod"), false},
		{"query name case-sensitive", `[{queryParams: [{name: env, value: prod}]}]`, get("/?ENV=prod"), false},
		{"query first value counts", `[{queryParams: [{name: env, value: prod}]}]`, get("/?env=prod&env=dev"), true},
		{"query later value ignored", `[{queryParams: [{name: env, value: prod}]}]`, get("/?env=dev&env=prod"), false},
		{"query escaped value", `[{queryParams: [{name: q, value: "a b"}]}]`, get("/?q=a%20b"), true},
		{"query plus is space", `[{queryParams: [{name: q, value: "a b"}]}]`, get("/?q=a+b"), true},
		{"query escaped name", `[{queryParams: [{name: "x!y", value: "1"}]}]`, get("/?x%21y=1"), true},
		{"query regex", `[{queryParams: [{name: id, type: RegularExpression, value: "[0-9]{3}"}]}]`, get("/?id=123"), true},
		{"query regex full", `[{queryParams: [{name: id, type: RegularExpression, value: "[0-9]{3}"}]}]`, get("/?id=1234"), false},
		{"query value empty", `[{queryParams: [{name: id, value: "1"}]}]`, get("/?id"), false},

		// Method.
		{"method", `[{method: POST}]`, req("POST", "/"), true},
		{"method other", `[{method: POST}]`, req("GET", "/"), false},

		// Conditions AND within a match, matches OR within a rule.
		{"AND all hold", `[{path: {value: /a}, method: POST, headers: [{name: x, value: "1"}], queryParams: [{name: q, value: "1"}]}]`, req("POST", "/a?q=1", "x: 1"), true},
		{"AND query fails", `[{path: {value: /a}, method: POST, headers: [{name: x, value: "1"}], queryParams: [{name: q, value: "1"}]}]`, req("POST", "/a?q=2", "x: 1"), false},
		{"AND path fails", `[{path: {value: /a}, method: POST}]`, req("POST", "/b"), false},
		{"OR first", `[{path: {value: /a}}, {path: {value: /b}}]`, get("/a"), true},
		{"OR second", `[{path: {value: /a}}, {path: {value: /b}}]`, get("/b/c"), true},
		{"OR none", `[{path: {value: /a}}, {path: {value: /b}}]`, get("/c"), false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tbl := mustCompile(t, defaultServices(), []*gatewayv1.HTTPRoute{oneRuleRoute(t, tt.matches)}, nil)
			res := tbl.Match(shopWeb, "client", tt.req)
			require.True(t, res.Attached, "the route must be attached")
			if tt.want {
				require.Equal(t, "shop/r#0", outcome(res))
			} else {
				require.Equal(t, "404", outcome(res))
			}
		})
	}
}

func TestMatchedPrefix(t *testing.T) {
	tests := []struct {
		name, matches, path, want string
	}{
		{"prefix", `[{path: {type: PathPrefix, value: /foo}}]`, "/foo/bar", "/foo"},
		{"prefix value with trailing slash is normalized", `[{path: {type: PathPrefix, value: /foo/}}]`, "/foo/bar", "/foo"},
		{"root", `[{path: {type: PathPrefix, value: /}}]`, "/foo", "/"},
		{"default match", `[]`, "/foo", "/"},
		{"exact has none", `[{path: {type: Exact, value: /foo}}]`, "/foo", ""},
		{"regex has none", `[{path: {type: RegularExpression, value: "/f.*"}}]`, "/foo", ""},
		{"the match that matched", `[{path: {value: /a}}, {path: {value: /b/c}}]`, "/b/c/d", "/b/c"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tbl := mustCompile(t, defaultServices(), []*gatewayv1.HTTPRoute{oneRuleRoute(t, tt.matches)}, nil)
			res := tbl.Match(shopWeb, "client", req("GET", tt.path))
			require.NotNil(t, res.Rule)
			require.Equal(t, tt.want, res.MatchedPrefix)
		})
	}
}

func TestMatchGRPC(t *testing.T) {
	route := grpcRoute(t, `
		apiVersion: gateway.networking.k8s.io/v1
		kind: GRPCRoute
		metadata: {name: g, namespace: shop}
		spec:
		  parentRefs: [{group: "", kind: Service, name: grpc}]
		  rules:
		  - matches: [{method: {service: shop.v1.Cart, method: Get}}]
		    backendRefs: [{name: grpc, port: 9090}]
		  - matches: [{method: {service: shop.v1.Cart}}]
		    backendRefs: [{name: grpc, port: 9090}]
		  - matches: [{method: {method: Check}}]
		    backendRefs: [{name: grpc, port: 9090}]
		  - matches: [{method: {type: RegularExpression, service: "shop\\.v[0-9]+\\.Orders", method: "List.*"}}]
		    backendRefs: [{name: grpc, port: 9090}]
		  - matches: [{headers: [{name: x-canary, value: "true"}]}]
		    backendRefs: [{name: grpc, port: 9090}]
	`)
	tbl := mustCompile(t, defaultServices(), nil, []*gatewayv1.GRPCRoute{route})
	svc := ServiceRef{Namespace: "shop", Name: "grpc", Port: 9090}
	tests := []struct {
		name string
		req  *http.Request
		want string
	}{
		{"service and method", req("POST", "/shop.v1.Cart/Get"), "shop/g#0"},
		{"service only", req("POST", "/shop.v1.Cart/Put"), "shop/g#1"},
		{"service is exact and case-sensitive", req("POST", "/shop.v1.cart/Put"), "404"},
		{"method only, any service", req("POST", "/grpc.health.v1.Health/Check"), "shop/g#2"},
		{"regex service and method", req("POST", "/shop.v2.Orders/ListAll"), "shop/g#3"},
		{"regex is a full match", req("POST", "/shop.v2.OrdersX/ListAll"), "404"},
		{"regex method must match too", req("POST", "/shop.v2.Orders/Get"), "404"},
		{"header only", req("POST", "/x.Y/Z", "X-Canary: true"), "shop/g#4"},
		{"not a gRPC path", req("POST", "/not-grpc", "X-Canary: false"), "404"},
		{"not a gRPC path still matches header-only rules", req("GET", "/", "X-Canary: true"), "shop/g#4"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			res := tbl.Match(svc, "client", tt.req)
			require.Equal(t, tt.want, outcome(res))
			if res.Rule != nil {
				require.Equal(t, KindGRPCRoute, res.Rule.Kind)
			}
		})
	}
}

func TestQueryValue(t *testing.T) {
	tests := []struct {
		raw, name, want string
		ok              bool
	}{
		{"a=1&b=2", "b", "2", true},
		{"a=1&&b=2", "b", "2", true},
		{"b", "b", "", true},
		{"b=", "b", "", true},
		{"a=%zz&a=2", "a", "2", true}, // a malformed pair is skipped
		{"ab=1", "a", "", false},
		{"", "a", "", false},
	}
	for _, tt := range tests {
		t.Run(tt.raw+"/"+tt.name, func(t *testing.T) {
			got, ok := queryValue(tt.raw, tt.name)
			require.Equal(t, tt.ok, ok)
			require.Equal(t, tt.want, got)
		})
	}
}
