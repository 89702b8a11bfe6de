package route

import (
	"crypto/tls"
	"net/http"
	"testing"

	"github.com/stretchr/testify/require"
	gatewayv1 "sigs.k8s.io/gateway-api/apis/v1"
)

// TestReplacePrefix checks every row of the table in the spec
// (HTTPPathModifier.ReplacePrefixMatch) and the root prefix.
func TestReplacePrefix(t *testing.T) {
	tests := []struct{ path, prefix, repl, want string }{
		{"/foo/bar", "/foo", "/xyz", "/xyz/bar"},
		{"/foo/bar", "/foo", "/xyz/", "/xyz/bar"},
		{"/foo/bar", "/foo/", "/xyz", "/xyz/bar"},
		{"/foo/bar", "/foo/", "/xyz/", "/xyz/bar"},
		{"/foo", "/foo", "/xyz", "/xyz"},
		{"/foo/", "/foo", "/xyz", "/xyz/"},
		{"/foo/bar", "/foo", "", "/bar"},
		{"/foo/", "/foo", "", "/"},
		{"/foo", "/foo", "", "/"},
		{"/foo/", "/foo", "/", "/"},
		{"/foo", "/foo", "/", "/"},
		// Beyond the spec's table.
		{"/foo/bar", "/foo", "/", "/bar"},
		{"/foo/bar/baz", "/foo/bar", "/x", "/x/baz"},
		{"/", "/", "/xyz", "/xyz"},
		{"/bar", "/", "/xyz", "/xyz/bar"},
		{"/bar/", "/", "/xyz", "/xyz/bar/"},
		{"/", "/", "", "/"},
		{"/foo/a%2Fb", "/foo", "/xyz", "/xyz/a%2Fb"},
		{"/other", "/foo", "/xyz", "/other"}, // not matched by this prefix: unchanged
	}
	for _, tt := range tests {
		t.Run(tt.path+" "+tt.prefix+" "+tt.repl, func(t *testing.T) {
			require.Equal(t, tt.want, replacePrefix(tt.path, tt.prefix, tt.repl))
		})
	}
}

func TestRedirectLocation(t *testing.T) {
	tlsReq := req("GET", "https://web.shop/a")
	tlsReq.TLS = &tls.ConnectionState{}
	tlsReq.URL.Scheme = ""
	tests := []struct {
		name     string
		redirect Redirect
		req      *http.Request
		prefix   string
		want     string
		code     int
	}{
		{"defaults keep everything", Redirect{}, req("GET", "http://web.shop/a?b=1"), "", "http://web.shop/a?b=1", 302},
		{"status code", Redirect{StatusCode: 301}, req("GET", "http://web.shop/a"), "", "http://web.shop/a", 301},
		{"scheme https drops the port", Redirect{Scheme: "https"}, req("GET", "http://web.shop:8080/a"), "", "https://web.shop/a", 302},
		{"scheme http from tls", Redirect{Scheme: "http"}, tlsReq, "", "http://web.shop/a", 302},
		{"request over tls keeps https", Redirect{Hostname: "example.org"}, tlsReq, "", "https://example.org/a", 302},
		{"hostname", Redirect{Hostname: "example.org"}, req("GET", "http://web.shop/a"), "", "http://example.org/a", 302},
		{"hostname keeps the listener port", Redirect{Hostname: "example.org"}, req("GET", "http://web.shop:8080/a"), "", "http://example.org:8080/a", 302},
		{"port", Redirect{Port: 8083}, req("GET", "http://web.shop/a"), "", "http://web.shop:8083/a", 302},
		{"port and hostname", Redirect{Port: 8083, Hostname: "example.org"}, req("GET", "http://web.shop:8080/a"), "", "http://example.org:8083/a", 302},
		{"port 443 with https is left out", Redirect{Scheme: "https", Port: 443}, req("GET", "http://web.shop/a"), "", "https://web.shop/a", 302},
		{"port 80 with https is kept", Redirect{Scheme: "https", Port: 80}, req("GET", "http://web.shop/a"), "", "https://web.shop:80/a", 302},
		{"port 80 with http is left out", Redirect{Port: 80}, req("GET", "http://web.shop:8080/a"), "", "http://web.shop/a", 302},
		{"full path", Redirect{Path: &PathModifier{Type: ReplaceFullPath, Value: "/new"}}, req("GET", "http://web.shop/a/b?q=1"), "", "http://web.shop/new?q=1", 302},
		{"prefix", Redirect{Path: &PathModifier{Type: ReplacePrefixMatch, Value: "/v2"}}, req("GET", "http://web.shop/v1/items"), "/v1", "http://web.shop/v2/items", 302},
		{"prefix /foo to /", Redirect{Path: &PathModifier{Type: ReplacePrefixMatch, Value: "/"}}, req("GET", "http://web.shop/foo"), "/foo", "http://web.shop/", 302},
		{"prefix /foo/ to / keeps the rest", Redirect{Path: &PathModifier{Type: ReplacePrefixMatch, Value: "/"}}, req("GET", "http://web.shop/foo/bar"), "/foo", "http://web.shop/bar", 302},
		{"everything", Redirect{Scheme: "https", Hostname: "example.org", Port: 8443, StatusCode: 308, Path: &PathModifier{Type: ReplacePrefixMatch, Value: "/new"}},
			req("GET", "http://web.shop/old/x?y=1"), "/old", "https://example.org:8443/new/x?y=1", 308},
		{"IPv6 host", Redirect{}, req("GET", "http://[fd00::1]:8080/a"), "", "http://[fd00::1]:8080/a", 302},
		{"escaped path kept", Redirect{Hostname: "example.org"}, req("GET", "http://web.shop/a%20b"), "", "http://example.org/a%20b", 302},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			loc, code := tt.redirect.Location(tt.req, tt.prefix)
			require.Equal(t, tt.want, loc)
			require.Equal(t, tt.code, code)
		})
	}
}

// TestRedirectFromRoute runs the cases of the mesh conformance tests
// MeshHTTPRouteRedirectPath, -Port and -SchemeRedirect through Compile and
// Match.
func TestRedirectFromRoute(t *testing.T) {
	route := httpRoute(t, `
		apiVersion: gateway.networking.k8s.io/v1
		kind: HTTPRoute
		metadata: {name: redirect, namespace: shop}
		spec:
		  parentRefs: [{group: "", kind: Service, name: web, port: 80}]
		  rules:
		  - matches: [{path: {type: PathPrefix, value: /original-prefix}}]
		    filters: [{type: RequestRedirect, requestRedirect: {path: {type: ReplacePrefixMatch, replacePrefixMatch: /replacement-prefix}}}]
		  - matches: [{path: {type: PathPrefix, value: /full}}]
		    filters: [{type: RequestRedirect, requestRedirect: {path: {type: ReplaceFullPath, replaceFullPath: /full-path-replacement}}}]
		  - matches: [{path: {type: PathPrefix, value: /path-and-host}}]
		    filters: [{type: RequestRedirect, requestRedirect: {hostname: example.org, path: {type: ReplacePrefixMatch, replacePrefixMatch: /replacement-prefix}}}]
		  - matches: [{path: {type: PathPrefix, value: /path-and-status}}]
		    filters: [{type: RequestRedirect, requestRedirect: {statusCode: 301, path: {type: ReplacePrefixMatch, replacePrefixMatch: /replacement-prefix}}}]
		  - matches: [{path: {type: PathPrefix, value: /port-and-host}}]
		    filters: [{type: RequestRedirect, requestRedirect: {hostname: example.org, port: 8083}}]
		  - matches: [{path: {type: PathPrefix, value: /scheme-and-host-and-status}}]
		    filters: [{type: RequestRedirect, requestRedirect: {scheme: https, hostname: example.org, statusCode: 302}}]
		  - matches: [{path: {type: PathPrefix, value: /strip}}]
		    filters: [{type: RequestRedirect, requestRedirect: {path: {type: ReplacePrefixMatch, replacePrefixMatch: /}}}]
	`)
	tbl := mustCompile(t, defaultServices(), []*gatewayv1.HTTPRoute{route}, nil)
	tests := []struct {
		path, want string
		code       int
	}{
		{"/original-prefix/lemon", "http://echo/replacement-prefix/lemon", 302},
		{"/full/path/original", "http://echo/full-path-replacement", 302},
		{"/path-and-host", "http://example.org/replacement-prefix", 302},
		{"/path-and-status", "http://echo/replacement-prefix", 301},
		{"/port-and-host", "http://example.org:8083/port-and-host", 302},
		{"/scheme-and-host-and-status", "https://example.org/scheme-and-host-and-status", 302},
		{"/strip", "http://echo/", 302},
		{"/strip/", "http://echo/", 302},
		{"/strip/x", "http://echo/x", 302},
	}
	for _, tt := range tests {
		t.Run(tt.path, func(t *testing.T) {
			r := req("GET", "http://echo"+tt.path)
			res := tbl.Match(shopWeb, "client", r)
			require.NotNil(t, res.Rule)
			require.NotNil(t, res.Rule.Redirect)
			require.Empty(t, res.Rule.Backends)
			loc, code := res.Rule.Redirect.Location(r, res.MatchedPrefix)
			require.Equal(t, tt.want, loc)
			require.Equal(t, tt.code, code)
		})
	}
}

func TestRewrite(t *testing.T) {
	tests := []struct {
		name      string
		rewrite   Rewrite
		target    string
		prefix    string
		wantHost  string
		wantPath  string
		wantURI   string
		wantQuery string
	}{
		{"hostname", Rewrite{Hostname: "api.internal"}, "http://web.shop/a?x=1", "", "api.internal", "/a", "/a?x=1", "x=1"},
		{"full path", Rewrite{Path: &PathModifier{Type: ReplaceFullPath, Value: "/v2/all"}}, "http://web.shop/v1/items?x=1", "", "web.shop", "/v2/all", "/v2/all?x=1", "x=1"},
		{"prefix", Rewrite{Path: &PathModifier{Type: ReplacePrefixMatch, Value: "/v2"}}, "http://web.shop/v1/items", "/v1", "web.shop", "/v2/items", "/v2/items", ""},
		{"prefix to root", Rewrite{Path: &PathModifier{Type: ReplacePrefixMatch, Value: "/"}}, "http://web.shop/foo", "/foo", "web.shop", "/", "/", ""},
		{"prefix to empty", Rewrite{Path: &PathModifier{Type: ReplacePrefixMatch, Value: ""}}, "http://web.shop/foo/bar", "/foo", "web.shop", "/bar", "/bar", ""},
		{"encoded slash survives", Rewrite{Path: &PathModifier{Type: ReplacePrefixMatch, Value: "/xyz"}}, "http://web.shop/foo/a%2Fb", "/foo", "web.shop", "/xyz/a/b", "/xyz/a%2Fb", ""},
		{"both", Rewrite{Hostname: "b.internal", Path: &PathModifier{Type: ReplaceFullPath, Value: "/x"}}, "http://web.shop/y", "", "b.internal", "/x", "/x", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := req("GET", tt.target)
			tt.rewrite.Apply(r, tt.prefix)
			require.Equal(t, tt.wantHost, r.Host)
			require.Equal(t, tt.wantPath, r.URL.Path)
			require.Equal(t, tt.wantURI, r.URL.RequestURI())
			require.Equal(t, tt.wantQuery, r.URL.RawQuery)
		})
	}
}

func TestHeaderModifier(t *testing.T) {
	route := httpRoute(t, `
		apiVersion: gateway.networking.k8s.io/v1
		kind: HTTPRoute
		metadata: {name: h, namespace: shop}
		spec:
		  parentRefs: [{group: "", kind: Service, name: web}]
		  rules:
		  - filters:
		    - type: RequestHeaderModifier
		      requestHeaderModifier:
		        set: [{name: x-header-set, value: set-overwrites-values}]
		        add: [{name: X-HEADER-ADD, value: add-appends-values}]
		        remove: [x-header-remove]
		    - type: ResponseHeaderModifier
		      responseHeaderModifier:
		        add: [{name: set-cookie, value: "b=2"}]
		        remove: [Server]
		    backendRefs: [{name: web, port: 80}]
	`)
	tbl := mustCompile(t, defaultServices(), []*gatewayv1.HTTPRoute{route}, nil)
	rule := tbl.Match(shopWeb, "client", req("GET", "/")).Rule
	require.NotNil(t, rule)
	require.Equal(t, &HeaderModifier{
		Set:    []Header{{Name: "X-Header-Set", Value: "set-overwrites-values"}},
		Add:    []Header{{Name: "X-Header-Add", Value: "add-appends-values"}},
		Remove: []string{"X-Header-Remove"},
	}, rule.RequestHeaders, "names are canonical")

	tests := []struct {
		name string
		in   http.Header
		want http.Header
	}{
		{"set adds a missing header", http.Header{"Other": {"v"}},
			http.Header{"Other": {"v"}, "X-Header-Set": {"set-overwrites-values"}, "X-Header-Add": {"add-appends-values"}}},
		{"set overwrites every value, add appends with a comma, remove deletes", http.Header{
			"X-Header-Set":    {"a", "b"},
			"X-Header-Add":    {"some-other-value"},
			"X-Header-Remove": {"val"},
		}, http.Header{
			"X-Header-Set": {"set-overwrites-values"},
			"X-Header-Add": {"some-other-value,add-appends-values"},
		}},
		{"add joins repeated values", http.Header{"X-Header-Add": {"a", "b"}},
			http.Header{"X-Header-Add": {"a,b,add-appends-values"}, "X-Header-Set": {"set-overwrites-values"}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := tt.in.Clone()
			rule.RequestHeaders.Apply(h)
			require.Equal(t, tt.want, h)
		})
	}

	t.Run("request headers sent in lower case", func(t *testing.T) {
		r := req("GET", "/", "x-header-set: original-val-set", "x-header-add: original-val-add", "x-header-remove: original-val-remove")
		rule.RequestHeaders.ApplyToRequest(r)
		require.Equal(t, "set-overwrites-values", r.Header.Get("X-Header-Set"))
		require.Equal(t, "original-val-add,add-appends-values", r.Header.Get("X-Header-Add"))
		require.Empty(t, r.Header.Values("X-Header-Remove"))
	})
	t.Run("Set-Cookie values are not joined", func(t *testing.T) {
		h := http.Header{"Set-Cookie": {"a=1"}, "Server": {"x"}}
		rule.ResponseHeaders.Apply(h)
		require.Equal(t, http.Header{"Set-Cookie": {"a=1", "b=2"}}, h)
	})
	t.Run("Host goes to Request.Host", func(t *testing.T) {
		m := &HeaderModifier{Set: []Header{{Name: "Host", Value: "api.internal"}}}
		r := req("GET", "http://web.shop/")
		m.ApplyToRequest(r)
		require.Equal(t, "api.internal", r.Host)
		require.Empty(t, r.Header.Values("Host"))
	})
}

func TestMirrors(t *testing.T) {
	route := httpRoute(t, `
		apiVersion: gateway.networking.k8s.io/v1
		kind: HTTPRoute
		metadata: {name: m, namespace: shop}
		spec:
		  parentRefs: [{group: "", kind: Service, name: web}]
		  rules:
		  - filters:
		    - {type: RequestMirror, requestMirror: {backendRef: {name: web-v2, port: 80}}}
		    - {type: RequestMirror, requestMirror: {backendRef: {name: api, port: 80}, percent: 25}}
		    - {type: RequestMirror, requestMirror: {backendRef: {name: api-v2, port: 80}, fraction: {numerator: 1, denominator: 3}}}
		    - {type: RequestMirror, requestMirror: {backendRef: {name: api-v2, port: 80}, fraction: {numerator: 5}}}
		    - {type: RequestMirror, requestMirror: {backendRef: {name: missing, port: 80}}}
		    backendRefs: [{name: web, port: 80}]
	`)
	tbl, sts := Compile([]*gatewayv1.HTTPRoute{route}, nil, defaultServices())
	rule := tbl.Match(shopWeb, "client", req("GET", "/")).Rule
	require.NotNil(t, rule)
	require.Equal(t, []Mirror{
		{Backend: ServiceRef{"shop", "web-v2", 80}, Percent: 100},
		{Backend: ServiceRef{"shop", "api", 80}, Percent: 25},
		{Backend: ServiceRef{"shop", "api-v2", 80}, Percent: 100.0 / 3},
		{Backend: ServiceRef{"shop", "api-v2", 80}, Percent: 5},
	}, rule.Mirrors, "the unresolved mirror is dropped")
	rr := sts[0].Parents[0].Condition(gatewayv1.RouteConditionResolvedRefs)
	require.Equal(t, "False", string(rr.Status))
	require.Equal(t, "BackendNotFound", rr.Reason)
	require.Contains(t, rr.Message, "spec.rules[0].filters[4].requestMirror.backendRef: Service shop/missing not found")

	t.Run("Sample", func(t *testing.T) {
		// steps returns 0, 1/n, 2/n, ... so that n calls sample evenly.
		steps := func(n int) func() float64 {
			i := 0
			return func() float64 { i++; return float64(i-1) / float64(n) }
		}
		for _, tt := range []struct {
			percent float64
			want    int // of 300 requests
		}{
			{100, 300},
			{25, 75},
			{100.0 / 3, 100},
			{0, 0},
		} {
			rnd, n := steps(300), 0
			for range 300 {
				if (&Mirror{Percent: tt.percent}).Sample(rnd) {
					n++
				}
			}
			require.InDelta(t, tt.want, n, 1, "%v%%", tt.percent) // 1: float rounding at the boundary
		}
	})
}

func TestBackendFilters(t *testing.T) {
	route := httpRoute(t, `
		apiVersion: gateway.networking.k8s.io/v1
		kind: HTTPRoute
		metadata: {name: b, namespace: shop}
		spec:
		  parentRefs: [{group: "", kind: Service, name: web}]
		  rules:
		  - backendRefs:
		    - name: web
		      port: 80
		      filters: [{type: RequestHeaderModifier, requestHeaderModifier: {set: [{name: x-backend, value: v1}]}}]
		    - name: web-v2
		      port: 80
		      filters: [{type: ResponseHeaderModifier, responseHeaderModifier: {add: [{name: x-served-by, value: v2}]}}]
	`)
	tbl := mustCompile(t, defaultServices(), []*gatewayv1.HTTPRoute{route}, nil)
	rule := tbl.Match(shopWeb, "client", req("GET", "/")).Rule
	require.NotNil(t, rule)
	require.Equal(t, &HeaderModifier{Set: []Header{{Name: "X-Backend", Value: "v1"}}}, rule.Backends[0].RequestHeaders)
	require.Nil(t, rule.Backends[0].ResponseHeaders)
	require.Equal(t, &HeaderModifier{Add: []Header{{Name: "X-Served-By", Value: "v2"}}}, rule.Backends[1].ResponseHeaders)
	require.Nil(t, rule.RequestHeaders, "backend filters are not rule filters")
}
