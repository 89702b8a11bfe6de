package route

import (
	"testing"

	"github.com/stretchr/testify/require"
	gatewayv1 "sigs.k8s.io/gateway-api/apis/v1"
)

// TestProducerAndConsumerRoutes covers GEP-1294 "Namespace boundaries" and
// "Multiple routes for a Service": producer routes apply to every client,
// consumer routes only to clients in their namespace, for whom they replace
// the producer routes.
func TestProducerAndConsumerRoutes(t *testing.T) {
	producer := httpRoute(t, `
		apiVersion: gateway.networking.k8s.io/v1
		kind: HTTPRoute
		metadata: {name: producer, namespace: shop}
		spec:
		  parentRefs: [{group: "", kind: Service, name: web}]
		  rules:
		  - matches: [{path: {value: /}}]
		    backendRefs: [{name: web, port: 80}]
		  - matches: [{path: {value: /only-producer}}]
		    backendRefs: [{name: web, port: 80}]
	`)
	consumer := httpRoute(t, `
		apiVersion: gateway.networking.k8s.io/v1
		kind: HTTPRoute
		metadata: {name: consumer, namespace: client}
		spec:
		  parentRefs: [{group: "", kind: Service, name: web, namespace: shop}]
		  rules:
		  - matches: [{path: {value: /api}}]
		    backendRefs: [{name: web-v2, namespace: shop, port: 80}]
	`)
	tbl := mustCompile(t, defaultServices(), []*gatewayv1.HTTPRoute{producer, consumer}, nil)

	tests := []struct {
		name, client, path, want string
	}{
		{"producer route applies to its own namespace", "shop", "/api", "shop/producer#0"},
		{"producer route applies to other namespaces", "elsewhere", "/api", "shop/producer#0"},
		{"consumer route applies to its namespace", "client", "/api", "client/consumer#0"},
		{"consumer routes replace producer routes, not merge", "client", "/only-producer", "404"},
		{"consumer namespace is exact", "client2", "/api", "shop/producer#0"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			require.Equal(t, tt.want, outcome(tbl.Match(shopWeb, tt.client, req("GET", tt.path))))
		})
	}

	t.Run("consumer route alone: no route for other clients", func(t *testing.T) {
		tbl := mustCompile(t, defaultServices(), []*gatewayv1.HTTPRoute{consumer}, nil)
		require.Equal(t, "client/consumer#0", outcome(tbl.Match(shopWeb, "client", req("GET", "/api"))))
		require.Equal(t, "none", outcome(tbl.Match(shopWeb, "shop", req("GET", "/api"))))
		require.Equal(t, "404", outcome(tbl.Match(shopWeb, "client", req("GET", "/other"))))
	})
}

func TestAttachment(t *testing.T) {
	route := func(parentRefs string) *gatewayv1.HTTPRoute {
		return httpRoute(t, `
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: r, namespace: shop}
spec:
  parentRefs: `+parentRefs+`
  rules:
  - backendRefs: [{name: web, port: 80}]
`)
	}
	web80 := ServiceRef{Namespace: "shop", Name: "web", Port: 80}
	web8080 := ServiceRef{Namespace: "shop", Name: "web", Port: 8080}
	tests := []struct {
		name       string
		parentRefs string
		svcs       ServiceLookup
		attached   []ServiceRef
		parents    int // Service parentRefs in the status
	}{
		{"all ports without port", `[{group: "", kind: Service, name: web}]`, defaultServices(), []ServiceRef{web80, web8080}, 1},
		{"one port with port", `[{group: "", kind: Service, name: web, port: 8080}]`, defaultServices(), []ServiceRef{web8080}, 1},
		{"two ports, two refs", `[{group: "", kind: Service, name: web, port: 80}, {group: "", kind: Service, name: web, port: 8080}]`, defaultServices(), []ServiceRef{web80, web8080}, 2},
		{"sectionName is the port name", `[{group: "", kind: Service, name: web, sectionName: admin}]`,
			namedServices{defaultServices(), map[string]uint16{"shop/web/admin": 8080}}, []ServiceRef{web8080}, 1},
		{"explicit namespace equal to the route's", `[{group: "", kind: Service, name: web, namespace: shop, port: 80}]`, defaultServices(), []ServiceRef{web80}, 1},
		{"Gateway parents are not ours", `[{name: gw}]`, defaultServices(), nil, 0},
		{"group defaults to gateway.networking.k8s.io", `[{kind: Service, name: web}]`, defaultServices(), nil, 0},
		{"core group needs kind Service", `[{group: "", kind: Pod, name: web}]`, defaultServices(), nil, 0},
		{"Gateway and Service parents", `[{name: gw}, {group: "", kind: Service, name: web, port: 80}]`, defaultServices(), []ServiceRef{web80}, 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tbl, sts := Compile([]*gatewayv1.HTTPRoute{route(tt.parentRefs)}, nil, tt.svcs)
			require.Len(t, sts, 1)
			require.Len(t, sts[0].Parents, tt.parents)
			require.Equal(t, tt.attached, tbl.Services())
			for _, svc := range []ServiceRef{web80, web8080} {
				res := tbl.Match(svc, "client", req("GET", "/"))
				if contains2(tt.attached, svc) {
					require.Equal(t, "shop/r#0", outcome(res), svc.String())
				} else {
					require.Equal(t, "none", outcome(res), svc.String())
				}
			}
		})
	}
}

func contains2(list []ServiceRef, s ServiceRef) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// TestHostnamesIgnored: "GAMMA implementations SHOULD NOT infer any
// functionality from the hostnames field on xRoutes" (GEP-1294).
func TestHostnamesIgnored(t *testing.T) {
	route := httpRoute(t, `
		apiVersion: gateway.networking.k8s.io/v1
		kind: HTTPRoute
		metadata: {name: r, namespace: shop}
		spec:
		  parentRefs: [{group: "", kind: Service, name: web, port: 80}]
		  hostnames: [web.example.com, "*.example.org"]
		  rules:
		  - backendRefs: [{name: web, port: 80}]
	`)
	tbl, sts := Compile([]*gatewayv1.HTTPRoute{route}, nil, defaultServices())
	for _, host := range []string{"web.example.com", "other.example.net", "web.shop.svc.cluster.local:80", "10.96.0.10"} {
		require.Equal(t, "shop/r#0", outcome(tbl.Match(shopWeb, "client", req("GET", "http://"+host+"/"))), host)
	}
	acc := sts[0].Parents[0].Condition(gatewayv1.RouteConditionAccepted)
	require.Equal(t, "True", string(acc.Status))
	require.Contains(t, acc.Message, "spec.hostnames is ignored for Service parents")
}

// TestRouteKindConflict: GEP-1294 "Route types": with an HTTPRoute and a
// GRPCRoute on the same Service port, the GRPCRoute applies and the
// HTTPRoute is Conflicted on that port.
func TestRouteKindConflict(t *testing.T) {
	svcs := services{"shop/app": {80, 9090}}
	h := httpRoute(t, `
		apiVersion: gateway.networking.k8s.io/v1
		kind: HTTPRoute
		metadata: {name: h, namespace: shop}
		spec:
		  parentRefs: [{group: "", kind: Service, name: app}]
		  rules:
		  - backendRefs: [{name: app, port: 80}]
	`)
	g := grpcRoute(t, `
		apiVersion: gateway.networking.k8s.io/v1
		kind: GRPCRoute
		metadata: {name: g, namespace: shop}
		spec:
		  parentRefs: [{group: "", kind: Service, name: app, port: 9090}]
		  rules:
		  - backendRefs: [{name: app, port: 9090}]
	`)
	hOnly := h.DeepCopy()
	hOnly.Spec.ParentRefs[0].Port = ptr[gatewayv1.PortNumber](9090)

	t.Run("partial: the HTTPRoute keeps its other port", func(t *testing.T) {
		tbl, sts := Compile([]*gatewayv1.HTTPRoute{h}, []*gatewayv1.GRPCRoute{g}, svcs)
		require.Equal(t, "shop/h#0", outcome(tbl.Match(ServiceRef{"shop", "app", 80}, "c", req("GET", "/"))))
		res := tbl.Match(ServiceRef{"shop", "app", 9090}, "c", req("POST", "/a.B/C"))
		require.Equal(t, "shop/g#0", outcome(res))
		require.Equal(t, KindGRPCRoute, res.Rule.Kind)
		acc := sts[0].Parents[0].Condition(gatewayv1.RouteConditionAccepted)
		require.Equal(t, "True", string(acc.Status))
		require.Contains(t, acc.Message, "not on port 9090")
	})
	t.Run("full: the HTTPRoute is Conflicted", func(t *testing.T) {
		tbl, sts := Compile([]*gatewayv1.HTTPRoute{hOnly}, []*gatewayv1.GRPCRoute{g}, svcs)
		require.Equal(t, "shop/g#0", outcome(tbl.Match(ServiceRef{"shop", "app", 9090}, "c", req("POST", "/a.B/C"))))
		acc := sts[0].Parents[0].Condition(gatewayv1.RouteConditionAccepted)
		require.Equal(t, "False", string(acc.Status))
		require.Equal(t, string(ReasonConflicted), acc.Reason)
		require.Equal(t, "True", string(sts[1].Parents[0].Condition(gatewayv1.RouteConditionAccepted).Status))
	})
	t.Run("only within a group: a consumer GRPCRoute does not displace producer HTTPRoutes", func(t *testing.T) {
		gc := g.DeepCopy()
		gc.Namespace = "client"
		gc.Spec.ParentRefs[0].Namespace = ptr[gatewayv1.Namespace]("shop")
		gc.Spec.Rules[0].BackendRefs[0].Namespace = ptr[gatewayv1.Namespace]("shop")
		tbl, sts := Compile([]*gatewayv1.HTTPRoute{hOnly}, []*gatewayv1.GRPCRoute{gc}, svcs)
		svc := ServiceRef{"shop", "app", 9090}
		require.Equal(t, "shop/h#0", outcome(tbl.Match(svc, "elsewhere", req("GET", "/"))))
		require.Equal(t, "client/g#0", outcome(tbl.Match(svc, "client", req("POST", "/a.B/C"))))
		require.Equal(t, "True", string(sts[0].Parents[0].Condition(gatewayv1.RouteConditionAccepted).Status))
	})
}

func TestNoRoutesVersusNotFound(t *testing.T) {
	route := oneRuleRoute(t, `[{path: {type: Exact, value: /only}}]`)
	tbl := mustCompile(t, defaultServices(), []*gatewayv1.HTTPRoute{route}, nil)

	res := tbl.Match(shopWeb, "client", req("GET", "/other"))
	require.True(t, res.Attached)
	require.Nil(t, res.Rule)
	require.True(t, res.NotFound())

	res = tbl.Match(ServiceRef{Namespace: "shop", Name: "api", Port: 80}, "client", req("GET", "/other"))
	require.False(t, res.Attached)
	require.False(t, res.NotFound())

	var empty *Table
	require.False(t, empty.Match(shopWeb, "client", req("GET", "/")).Attached, "a nil table has no routes")
}

func ptr[T any](v T) *T { return &v }

// TestConformanceMeshConsumerRoute replays the manifest of the GAMMA
// conformance test MeshConsumerRoute: a consumer route whose backendRef is
// in the Service's namespace, with no ReferenceGrant. It must resolve
// (GEP-1294: mesh routes may reference backends in any namespace) and
// apply only to clients in the consumer namespace.
func TestConformanceMeshConsumerRoute(t *testing.T) {
	route := httpRoute(t, `
		apiVersion: gateway.networking.k8s.io/v1
		kind: HTTPRoute
		metadata:
		  name: mesh-echo-add-header
		  namespace: gateway-conformance-mesh-consumer
		spec:
		  parentRefs:
		  - group: ""
		    kind: Service
		    name: echo-v1
		    namespace: gateway-conformance-mesh
		  rules:
		  - filters:
		    - type: ResponseHeaderModifier
		      responseHeaderModifier:
		        set:
		        - name: X-Header-Set
		          value: set
		    backendRefs:
		    - name: echo-v1
		      namespace: gateway-conformance-mesh
		      port: 80
	`)
	svcs := services{"gateway-conformance-mesh/echo-v1": {80, 8080}}
	tbl, sts := Compile([]*gatewayv1.HTTPRoute{route}, nil, svcs)
	p := sts[0].Parents[0]
	require.Equal(t, "True", string(p.Condition(gatewayv1.RouteConditionAccepted).Status))
	require.Equal(t, "True", string(p.Condition(gatewayv1.RouteConditionResolvedRefs).Status))

	echo := ServiceRef{Namespace: "gateway-conformance-mesh", Name: "echo-v1", Port: 80}
	res := tbl.Match(echo, "gateway-conformance-mesh-consumer", req("GET", "http://echo-v1.gateway-conformance-mesh/"))
	require.NotNil(t, res.Rule)
	require.Equal(t, []Header{{Name: "X-Header-Set", Value: "set"}}, res.Rule.ResponseHeaders.Set)
	require.Equal(t, Backend{Service: echo, Weight: 1, Valid: true}, *res.Rule.PickBackend(cycle()))
	require.False(t, tbl.Match(echo, "gateway-conformance-mesh", req("GET", "/")).Attached, "producer-side clients are not affected")
}

func TestGRPCRouteFilters(t *testing.T) {
	route := grpcRoute(t, `
		apiVersion: gateway.networking.k8s.io/v1
		kind: GRPCRoute
		metadata: {name: g, namespace: shop}
		spec:
		  parentRefs: [{group: "", kind: Service, name: grpc}]
		  rules:
		  - filters:
		    - {type: RequestHeaderModifier, requestHeaderModifier: {add: [{name: x-req, value: "1"}]}}
		    - {type: ResponseHeaderModifier, responseHeaderModifier: {remove: [x-internal]}}
		    - {type: RequestMirror, requestMirror: {backendRef: {name: grpc-v2, port: 9090}, percent: 50}}
		    backendRefs:
		    - {name: grpc, port: 9090, weight: 3}
		    - {name: grpc-v2, port: 9090, filters: [{type: RequestHeaderModifier, requestHeaderModifier: {set: [{name: x-v2, value: "yes"}]}}]}
	`)
	tbl := mustCompile(t, defaultServices(), nil, []*gatewayv1.GRPCRoute{route})
	rule := tbl.Match(ServiceRef{"shop", "grpc", 9090}, "c", req("POST", "/a.B/C")).Rule
	require.NotNil(t, rule)
	require.Equal(t, KindGRPCRoute, rule.Kind)
	require.Equal(t, &HeaderModifier{Add: []Header{{Name: "X-Req", Value: "1"}}}, rule.RequestHeaders)
	require.Equal(t, &HeaderModifier{Remove: []string{"X-Internal"}}, rule.ResponseHeaders)
	require.Equal(t, []Mirror{{Backend: ServiceRef{"shop", "grpc-v2", 9090}, Percent: 50}}, rule.Mirrors)
	require.Equal(t, int32(3), rule.Backends[0].Weight)
	require.Equal(t, &HeaderModifier{Set: []Header{{Name: "X-V2", Value: "yes"}}}, rule.Backends[1].RequestHeaders)
}
