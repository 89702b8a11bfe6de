package balancer

import (
	"net/netip"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// fakeClock is an injectable clock that only moves when told to; safe for
// concurrent use.
type fakeClock struct{ ns atomic.Int64 }

var clockBase = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

func (c *fakeClock) Now() time.Time          { return clockBase.Add(time.Duration(c.ns.Load())) }
func (c *fakeClock) Advance(d time.Duration) { c.ns.Add(int64(d)) }

// testAddrs returns n endpoint addresses from the documentation range.
func testAddrs(n int) []Addr {
	out := make([]Addr, n)
	for i := range out {
		out[i] = netip.AddrPortFrom(netip.AddrFrom4([4]byte{192, 0, 2, byte(i + 1)}), 8080)
	}
	return out
}

// newTestBalancer returns a balancer on a fake clock holding n endpoints.
func newTestBalancer(tb testing.TB, cfg Config, n int) (*Balancer, *fakeClock, []Addr) {
	tb.Helper()
	clk := &fakeClock{}
	b, err := New(cfg, clk.Now)
	require.NoError(tb, err)
	addrs := testAddrs(n)
	b.Update(addrs)
	return b, clk, addrs
}

// leaseOn takes an in-flight slot on endpoint a as Pick would, so a test
// can feed results to one endpoint of its choice.
func leaseOn(tb testing.TB, b *Balancer, a Addr) *Handle {
	tb.Helper()
	set := b.set.Load()
	i, ok := set.index[a]
	require.True(tb, ok, "endpoint %v not in the set", a)
	e := set.eps[i]
	e.inflight.Add(1)
	return b.lease(e, b.nowNs())
}

// feed reports results on endpoint a, one request each.
func feed(tb testing.TB, b *Balancer, a Addr, results ...Result) {
	tb.Helper()
	for _, r := range results {
		leaseOn(tb, b, a).Done(r)
	}
}

// repeat returns n copies of r.
func repeat(r Result, n int) []Result {
	out := make([]Result, n)
	for i := range out {
		out[i] = r
	}
	return out
}

// statusOf returns the status of endpoint a.
func statusOf(tb testing.TB, b *Balancer, a Addr) EndpointStatus {
	tb.Helper()
	for _, s := range b.Endpoints() {
		if s.Addr == a {
			return s
		}
	}
	require.FailNow(tb, "no status", "endpoint %v not in the set", a)
	return EndpointStatus{}
}

// countPicks picks n times, finishing each request at once with r, and
// counts the picks per endpoint.
func countPicks(tb testing.TB, b *Balancer, n int, r Result) map[Addr]int {
	tb.Helper()
	got := map[Addr]int{}
	for range n {
		h, err := b.Pick()
		require.NoError(tb, err)
		got[h.Addr()]++
		h.Done(r)
	}
	return got
}

// simulate drives b with load on the fake clock: each 1ms step completes
// the requests that are due, then issues perStep new ones, each taking
// latency(addr) to answer. Latency is measured by the balancer (time from
// Pick to Done), so requests in flight pile up on slow endpoints as they
// would for real. It returns the picks per endpoint.
func simulate(tb testing.TB, b *Balancer, clk *fakeClock, steps, perStep int, latency func(Addr) time.Duration) map[Addr]int {
	tb.Helper()
	type req struct {
		h   *Handle
		due time.Time
	}
	var pending []req
	got := map[Addr]int{}
	complete := func(all bool) {
		keep := pending[:0]
		for _, p := range pending {
			if all || !clk.Now().Before(p.due) {
				p.h.Done(Result{Status: 200})
			} else {
				keep = append(keep, p)
			}
		}
		pending = keep
	}
	for range steps {
		clk.Advance(time.Millisecond)
		complete(false)
		for range perStep {
			h, err := b.Pick()
			require.NoError(tb, err)
			got[h.Addr()]++
			pending = append(pending, req{h, clk.Now().Add(latency(h.Addr()))})
		}
	}
	complete(true)
	return got
}
