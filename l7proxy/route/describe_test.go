package route

import (
	"testing"

	"github.com/stretchr/testify/require"
	gatewayv1 "sigs.k8s.io/gateway-api/apis/v1"
)

func TestDescribe(t *testing.T) {
	producer := httpRoute(t, `
		metadata: {name: split, namespace: shop}
		spec:
		  parentRefs: [{group: "", kind: Service, name: web, port: 80}]
		  rules:
		  - matches: [{path: {type: PathPrefix, value: /api}}]
		    backendRefs: [{name: api, port: 80, weight: 90}, {name: api-v2, port: 80, weight: 10}]
		  - matches: [{path: {type: Exact, value: /health}, method: GET}]
		    backendRefs: [{name: web, port: 80}]
		  - matches: [{path: {type: PathPrefix, value: /api/v2}, headers: [{name: X-Version, value: v2}]}]
		    backendRefs: [{name: api-v2, port: 80}]
		    timeouts: {request: 2s}
		  - matches: [{path: {type: RegularExpression, value: "/img/.*"}}]
		    backendRefs: [{name: web-v2, port: 80}]
	`)
	consumer := httpRoute(t, `
		metadata: {name: mine, namespace: client}
		spec:
		  parentRefs: [{group: "", kind: Service, name: web, namespace: shop, port: 80}]
		  rules:
		  - backendRefs: [{name: web-v2, namespace: shop, port: 80}]
	`)
	tbl := mustCompile(t, defaultServices(), []*gatewayv1.HTTPRoute{producer, consumer}, nil)
	got := tbl.Describe(ServiceRef{Namespace: "shop", Name: "web", Port: 80})
	var lines []string
	for _, e := range got {
		lines = append(lines, e.Clients+" | "+e.Match+" | "+e.Rule.Route.String()+" | "+e.Rule.BackendString()+" | "+e.Rule.Filters())
	}
	require.Equal(t, []string{
		"all | Exact /health method=GET | HTTPRoute shop/split rule 1 | shop/web:80 | ",
		"all | PathPrefix /api/v2 header[x-version]=v2 | HTTPRoute shop/split rule 2 | shop/api-v2:80 | timeout=2s",
		"all | PathPrefix /api | HTTPRoute shop/split rule 0 | shop/api:80 w=90, shop/api-v2:80 w=10 | ",
		`all | RegularExpression /img/.* | HTTPRoute shop/split rule 3 | shop/web-v2:80 | `,
		"namespace client | PathPrefix / | HTTPRoute client/mine rule 0 | shop/web-v2:80 | ",
	}, lines, "entries in the order Match searches them")
	require.Nil(t, tbl.Describe(ServiceRef{Namespace: "shop", Name: "api", Port: 80}))
}
