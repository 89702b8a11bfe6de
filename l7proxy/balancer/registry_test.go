package balancer

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

func TestRegistry(t *testing.T) {
	clk := &fakeClock{}
	r := NewRegistry(clk.Now)
	addrs := testAddrs(3)

	shop, err := r.Get("shop/product:80", Config{}, addrs[:2])
	require.NoError(t, err)
	feed(t, shop, addrs[0], unavail503, unavail503)

	// A table swap: same key, same config, new endpoints.
	again, err := r.Get("shop/product:80", Config{}, addrs)
	require.NoError(t, err)
	require.Same(t, shop, again, "state survives table swaps")
	require.Equal(t, addrs, addrsOf(again.Endpoints()))
	require.Equal(t, 2, statusOf(t, again, addrs[0]).Consecutive5xx)

	// A config change applies in place, keeping endpoint state.
	rr, err := r.Get("shop/product:80", Config{Policy: RoundRobin}, addrs)
	require.NoError(t, err)
	require.Same(t, shop, rr)
	require.Equal(t, RoundRobin, rr.Config().Policy)
	require.Equal(t, 2, statusOf(t, rr, addrs[0]).Consecutive5xx)

	// An invalid config keeps the last good one serving.
	bad, err := r.Get("shop/product:80", Config{Decay: -1}, addrs[1:])
	require.ErrorContains(t, err, `configure balancer "shop/product:80"`)
	require.ErrorContains(t, err, "Decay")
	require.Same(t, shop, bad)
	require.Equal(t, RoundRobin, bad.Config().Policy)
	require.Equal(t, addrs[1:], addrsOf(bad.Endpoints()))

	_, err = r.Get("shop/cart:80", Config{Policy: 42}, addrs)
	require.ErrorContains(t, err, `configure balancer "shop/cart:80"`)

	cart, err := r.Get("shop/cart:80", Config{}, addrs[2:])
	require.NoError(t, err)
	require.NotSame(t, shop, cart)

	snap := r.Snapshot()
	require.Len(t, snap, 2)
	require.Equal(t, addrs[2:], addrsOf(snap["shop/cart:80"]))

	r.Retain(map[string]bool{"shop/cart:80": true})
	snap = r.Snapshot()
	require.Len(t, snap, 1)
	require.Contains(t, snap, "shop/cart:80")

	fresh, err := r.Get("shop/product:80", Config{}, addrs)
	require.NoError(t, err)
	require.NotSame(t, shop, fresh, "a retired service port starts afresh")
	require.Zero(t, statusOf(t, fresh, addrs[0]).Consecutive5xx)

	r.Retain(nil)
	require.Empty(t, r.Snapshot())
}

// TestRegistryGetSteadyState: the proxy may call Get on every request, so
// the unchanged case must not allocate.
func TestRegistryGetSteadyState(t *testing.T) {
	r := NewRegistry(nil)
	addrs := testAddrs(50)
	cfg := Config{Outlier: OutlierConfig{BaseEjection: time.Minute}}
	_, err := r.Get("ns/svc:8080", cfg, addrs)
	require.NoError(t, err)
	allocs := testing.AllocsPerRun(1000, func() {
		if _, err := r.Get("ns/svc:8080", cfg, addrs); err != nil {
			t.Fatal(err)
		}
	})
	require.Zero(t, allocs)
}
