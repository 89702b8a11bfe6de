package route

import (
	"math/rand/v2"
	"testing"

	"github.com/stretchr/testify/require"
	gatewayv1 "sigs.k8s.io/gateway-api/apis/v1"
)

func backendsRoute(t testing.TB, backendRefs string) *Rule {
	t.Helper()
	route := httpRoute(t, `
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: w, namespace: shop}
spec:
  parentRefs: [{group: "", kind: Service, name: web}]
  rules:
  - backendRefs: `+backendRefs+`
`)
	tbl, _ := Compile([]*gatewayv1.HTTPRoute{route}, nil, defaultServices())
	res := tbl.Match(shopWeb, "client", req("GET", "/"))
	require.NotNil(t, res.Rule)
	return res.Rule
}

// pickCounts picks n times and counts picks per backend name; nil picks
// count as "<nil>" and invalid backends as "<500:name>".
func pickCounts(r *Rule, n int, rnd func(int) int) map[string]int {
	counts := map[string]int{}
	for range n {
		b := r.PickBackend(rnd)
		switch {
		case b == nil:
			counts["<nil>"]++
		case !b.Valid:
			counts["<500:"+b.Service.Name+">"]++
		default:
			counts[b.Service.Name]++
		}
	}
	return counts
}

// cycle returns every number below n in turn, so that picks follow the
// weights exactly.
func cycle() func(int) int {
	i := 0
	return func(n int) int { i++; return (i - 1) % n }
}

func TestPickBackend(t *testing.T) {
	tests := []struct {
		name        string
		backendRefs string
		picks       int
		want        map[string]int
	}{
		{"weights default to 1", `[{name: web, port: 80}, {name: web-v2, port: 80}]`, 100,
			map[string]int{"web": 50, "web-v2": 50}},
		{"weights are proportions", `[{name: web, port: 80, weight: 90}, {name: web-v2, port: 80, weight: 10}]`, 1000,
			map[string]int{"web": 900, "web-v2": 100}},
		{"weight 0 is never picked", `[{name: web, port: 80, weight: 0}, {name: web-v2, port: 80, weight: 3}]`, 300,
			map[string]int{"web-v2": 300}},
		{"all weights 0: nil, the caller answers 500", `[{name: web, port: 80, weight: 0}, {name: web-v2, port: 80, weight: 0}]`, 10,
			map[string]int{"<nil>": 10}},
		{"a single backend with weight 0 is never picked", `[{name: web, port: 80, weight: 0}]`, 10,
			map[string]int{"<nil>": 10}},
		{"invalid backends keep their share, which gets 500", `[{name: web, port: 80}, {name: missing, port: 80}]`, 100,
			map[string]int{"web": 50, "<500:missing>": 50}},
		{"all backends invalid", `[{name: missing, port: 80}, {name: web, port: 9999}]`, 10,
			map[string]int{"<500:missing>": 5, "<500:web>": 5}},
		{"no backends: nil", `[]`, 10, map[string]int{"<nil>": 10}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rule := backendsRoute(t, tt.backendRefs)
			require.Equal(t, tt.want, pickCounts(rule, tt.picks, cycle()))
		})
	}

	t.Run("statistical, seeded", func(t *testing.T) {
		rule := backendsRoute(t, `[{name: web, port: 80, weight: 1}, {name: web-v2, port: 80, weight: 3}, {name: api, port: 80, weight: 0}, {name: api-v2, port: 80, weight: 6}]`)
		const n = 100000
		rng := rand.New(rand.NewPCG(1, 2))
		counts := pickCounts(rule, n, rng.IntN)
		require.Zero(t, counts["api"])
		for name, share := range map[string]float64{"web": 0.1, "web-v2": 0.3, "api-v2": 0.6} {
			require.InDelta(t, share, float64(counts[name])/n, 0.01, name)
		}
	})
	t.Run("rnd out of range gives nil, not a panic", func(t *testing.T) {
		rule := backendsRoute(t, `[{name: web, port: 80}, {name: web-v2, port: 80}]`)
		require.Nil(t, rule.PickBackend(func(int) int { return 7 }))
	})
}

func TestBackendResolution(t *testing.T) {
	rule := backendsRoute(t, `[
		{name: web, port: 80},
		{name: web, port: 80, weight: 5, namespace: other},
		{name: missing, port: 80},
		{name: web, port: 81},
		{name: web, port: 80, kind: ServiceImport, group: multicluster.x-k8s.io},
		{name: web, port: 80, kind: Service, group: ""}]`)
	require.Equal(t, []Backend{
		{Service: ServiceRef{"shop", "web", 80}, Weight: 1, Valid: true},
		{Service: ServiceRef{"other", "web", 80}, Weight: 5, Valid: true},
		{Service: ServiceRef{"shop", "missing", 80}, Weight: 1, Reason: "BackendNotFound",
			Message: "spec.rules[0].backendRefs[2]: Service shop/missing not found"},
		{Service: ServiceRef{"shop", "web", 81}, Weight: 1, Reason: "BackendNotFound",
			Message: "spec.rules[0].backendRefs[3]: Service shop/web has no port 81"},
		{Service: ServiceRef{"shop", "web", 80}, Weight: 1, Reason: "InvalidKind",
			Message: "spec.rules[0].backendRefs[4]: kind ServiceImport.multicluster.x-k8s.io is not supported: Skein forwards only to Services (group \"\", kind Service)"},
		{Service: ServiceRef{"shop", "web", 80}, Weight: 1, Valid: true},
	}, rule.Backends)
}
