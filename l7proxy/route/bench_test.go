package route

import (
	"fmt"
	"net/http"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	gatewayv1 "sigs.k8s.io/gateway-api/apis/v1"
)

// Builders for benchmark routes: YAML would make compiling 1,000 routes a
// benchmark of the YAML decoder.

func benchRoute(ns, name string, created int, parent gatewayv1.ParentReference, rules ...gatewayv1.HTTPRouteRule) *gatewayv1.HTTPRoute {
	return &gatewayv1.HTTPRoute{
		ObjectMeta: metav1.ObjectMeta{
			Namespace:         ns,
			Name:              name,
			CreationTimestamp: metav1.NewTime(time.Date(2024, 1, 1, 0, 0, created, 0, time.UTC)),
		},
		Spec: gatewayv1.HTTPRouteSpec{
			CommonRouteSpec: gatewayv1.CommonRouteSpec{ParentRefs: []gatewayv1.ParentReference{parent}},
			Rules:           rules,
		},
	}
}

func serviceParent(ns, name string) gatewayv1.ParentReference {
	return gatewayv1.ParentReference{
		Group:     ptr[gatewayv1.Group](""),
		Kind:      ptr[gatewayv1.Kind]("Service"),
		Namespace: ptr(gatewayv1.Namespace(ns)),
		Name:      gatewayv1.ObjectName(name),
	}
}

func pathMatch(t gatewayv1.PathMatchType, v string) gatewayv1.HTTPRouteMatch {
	return gatewayv1.HTTPRouteMatch{Path: &gatewayv1.HTTPPathMatch{Type: &t, Value: &v}}
}

func backendTo(ns, name string, weight int32) gatewayv1.HTTPBackendRef {
	return gatewayv1.HTTPBackendRef{BackendRef: gatewayv1.BackendRef{
		BackendObjectReference: gatewayv1.BackendObjectReference{
			Name:      gatewayv1.ObjectName(name),
			Namespace: ptr(gatewayv1.Namespace(ns)),
			Port:      ptr[gatewayv1.PortNumber](80),
		},
		Weight: &weight,
	}}
}

// benchCluster is 1,000 HTTPRoutes: 25 routes with 4 rules each (100
// rules: prefixes, exact paths, method and header matches, regular
// expressions) on the Service big/api, and 975 routes with 1 to 3 rules on
// 325 other Services in 20 namespaces, 1 in 10 of them consumer routes.
func benchCluster() ([]*gatewayv1.HTTPRoute, services) {
	svcs := services{"big/api": {80}, "big/api-v2": {80}}
	var routes []*gatewayv1.HTTPRoute
	for i := range 25 {
		base := fmt.Sprintf("/api/v1/svc%02d", i)
		get := gatewayv1.HTTPMethodGet
		items := pathMatch(gatewayv1.PathMatchPathPrefix, base+"/items")
		items.Method = &get
		items.Headers = []gatewayv1.HTTPHeaderMatch{{Name: "x-version", Value: "v2"}}
		routes = append(routes, benchRoute("big", fmt.Sprintf("r%02d", i), i, serviceParent("big", "api"),
			gatewayv1.HTTPRouteRule{
				Matches:     []gatewayv1.HTTPRouteMatch{pathMatch(gatewayv1.PathMatchPathPrefix, base)},
				BackendRefs: []gatewayv1.HTTPBackendRef{backendTo("big", "api", 90), backendTo("big", "api-v2", 10)},
			},
			gatewayv1.HTTPRouteRule{
				Matches:     []gatewayv1.HTTPRouteMatch{pathMatch(gatewayv1.PathMatchExact, base+"/health")},
				BackendRefs: []gatewayv1.HTTPBackendRef{backendTo("big", "api", 1)},
			},
			gatewayv1.HTTPRouteRule{
				Matches:     []gatewayv1.HTTPRouteMatch{items},
				BackendRefs: []gatewayv1.HTTPBackendRef{backendTo("big", "api-v2", 1)},
			},
			gatewayv1.HTTPRouteRule{
				Matches:     []gatewayv1.HTTPRouteMatch{pathMatch(gatewayv1.PathMatchRegularExpression, fmt.Sprintf(`/regex/svc%02d/items/[0-9]+/detail`, i))},
				BackendRefs: []gatewayv1.HTTPBackendRef{backendTo("big", "api", 1)},
			},
		))
	}
	for i := range 975 {
		ns := fmt.Sprintf("ns-%02d", i%20)
		svc := fmt.Sprintf("svc-%03d", i%325)
		svcNS := fmt.Sprintf("ns-%02d", (i%325)%20)
		svcs[svcNS+"/"+svc] = []uint16{80}
		if i%10 != 9 {
			ns = svcNS // producer route
		}
		rules := []gatewayv1.HTTPRouteRule{{
			Matches:     []gatewayv1.HTTPRouteMatch{pathMatch(gatewayv1.PathMatchPathPrefix, fmt.Sprintf("/r%d", i))},
			BackendRefs: []gatewayv1.HTTPBackendRef{backendTo(svcNS, svc, 1)},
		}}
		for k := 1; k < 1+i%3; k++ {
			rules = append(rules, gatewayv1.HTTPRouteRule{
				Matches:     []gatewayv1.HTTPRouteMatch{pathMatch(gatewayv1.PathMatchExact, fmt.Sprintf("/r%d/e%d", i, k))},
				BackendRefs: []gatewayv1.HTTPBackendRef{backendTo(svcNS, svc, 1)},
			})
		}
		routes = append(routes, benchRoute(ns, fmt.Sprintf("route-%03d", i), i, serviceParent(svcNS, svc), rules...))
	}
	return routes, svcs
}

func BenchmarkMatch1000Routes(b *testing.B) {
	routes, svcs := benchCluster()
	tbl, _ := Compile(routes, nil, svcs)
	big := ServiceRef{Namespace: "big", Name: "api", Port: 80}
	cases := []struct {
		name   string
		svc    ServiceRef
		client string
		req    *http.Request
		want   string
	}{
		{"big/prefix", big, "web", req("GET", "/api/v1/svc17/orders/42?expand=true"), "big/r17#0"},
		{"big/exact", big, "web", req("GET", "/api/v1/svc17/health"), "big/r17#1"},
		{"big/method+header", big, "web", req("GET", "/api/v1/svc17/items/42", "X-Version: v2", "Accept: application/json"), "big/r17#2"},
		{"big/regex", big, "web", req("GET", "/regex/svc17/items/42/detail"), "big/r17#3"},
		{"big/notfound", big, "web", req("GET", "/nothing/here/at/all"), "404"},
		{"small/prefix", ServiceRef{"ns-03", "svc-123", 80}, "web", req("GET", "/r123/x/y"), "ns-03/route-123#0"},
		{"small/consumer", ServiceRef{"ns-04", "svc-004", 80}, "ns-09", req("GET", "/r329"), "ns-09/route-329#0"},
		{"noroutes", ServiceRef{"elsewhere", "db", 5432}, "web", req("GET", "/"), "none"},
	}
	for _, c := range cases {
		if got := outcome(tbl.Match(c.svc, c.client, c.req)); got != c.want {
			b.Fatalf("%s: got %s, want %s", c.name, got, c.want)
		}
		b.Run(c.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				tbl.Match(c.svc, c.client, c.req)
			}
		})
	}
}

// BenchmarkMatchHeaders matches among 64 rules on the same path that
// differ by the value of one of their three header conditions (one a
// regular expression); the request matches the 51st in precedence order.
func BenchmarkMatchHeaders(b *testing.B) {
	regex := gatewayv1.HeaderMatchRegularExpression
	var routes []*gatewayv1.HTTPRoute
	for r := range 4 {
		var rules []gatewayv1.HTTPRouteRule
		for i := range 16 {
			m := pathMatch(gatewayv1.PathMatchPathPrefix, "/api")
			m.Headers = []gatewayv1.HTTPHeaderMatch{
				{Name: "X-Tenant", Value: fmt.Sprintf("tenant-%02d", r*16+i)},
				{Name: "x-version", Type: &regex, Value: "v[0-9]+"},
				{Name: "Accept", Value: "application/json"},
			}
			rules = append(rules, gatewayv1.HTTPRouteRule{Matches: []gatewayv1.HTTPRouteMatch{m}, BackendRefs: []gatewayv1.HTTPBackendRef{backendTo("shop", "web", 1)}})
		}
		routes = append(routes, benchRoute("shop", fmt.Sprintf("h%d", r), r, serviceParent("shop", "web"), rules...))
	}
	tbl, _ := Compile(routes, nil, defaultServices())
	r := req("GET", "/api/orders", "X-Tenant: tenant-50", "X-Version: v12", "Accept: application/json", "User-Agent: bench")
	if got := outcome(tbl.Match(shopWeb, "web", r)); got != "shop/h3#2" {
		b.Fatalf("got %s", got)
	}
	b.ReportAllocs()
	for b.Loop() {
		tbl.Match(shopWeb, "web", r)
	}
}

func BenchmarkCompile1000Routes(b *testing.B) {
	routes, svcs := benchCluster()
	b.ReportAllocs()
	for b.Loop() {
		Compile(routes, nil, svcs)
	}
}
