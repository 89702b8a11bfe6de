package balancer

import (
	"errors"
	"net/netip"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

func TestCircuitBreakerOverflow(t *testing.T) {
	for _, p := range []Policy{P2CEWMA, RoundRobin, Random} {
		t.Run(p.String(), func(t *testing.T) {
			b, _, addrs := newTestBalancer(t, Config{Policy: p, Breaker: BreakerConfig{MaxPending: 2}}, 2)
			var held []*Handle
			for range 4 {
				h, err := b.Pick()
				require.NoError(t, err)
				held = append(held, h)
			}
			for _, a := range addrs {
				require.Equal(t, 2, statusOf(t, b, a).InFlight, "the limit fills every endpoint")
			}
			_, err := b.Pick()
			require.ErrorIs(t, err, ErrOverflow)

			freed := held[0].Addr()
			held[0].Done(ok200)
			h, err := b.Pick()
			require.NoError(t, err)
			require.Equal(t, freed, h.Addr(), "the only endpoint with room")
			_, err = b.Pick()
			require.ErrorIs(t, err, ErrOverflow)

			h.Done(ok200)
			for _, h := range held[1:] {
				h.Done(ok200)
			}
			for _, a := range addrs {
				require.Zero(t, statusOf(t, b, a).InFlight)
			}
		})
	}
}

// alwaysFirst is a selector that ignores selectability, as a racing
// Pick effectively does.
type alwaysFirst struct{}

func (alwaysFirst) Select(Candidates) int { return 0 }

// TestPickNeverExceedsLimit: the limit holds even when the selector's view
// is stale, as under concurrent picks.
func TestPickNeverExceedsLimit(t *testing.T) {
	b, _, addrs := newTestBalancer(t, Config{Breaker: BreakerConfig{MaxPending: 1}}, 2)
	b.st.Load().selector = alwaysFirst{}
	h, err := b.Pick()
	require.NoError(t, err)
	_, err = b.Pick()
	require.ErrorIs(t, err, ErrOverflow)
	require.Equal(t, 1, statusOf(t, b, addrs[0]).InFlight, "the failed attempt gave its slot back")
	h.Done(ok200)
}

// TestOverflowSkipsEjected: a full healthy endpoint is not replaced by an
// ejected one.
func TestOverflowSkipsEjected(t *testing.T) {
	b, _, addrs := newTestBalancer(t, Config{Breaker: BreakerConfig{MaxPending: 1}}, 2)
	feed(t, b, addrs[0], repeat(refused, 5)...)
	h, err := b.Pick()
	require.NoError(t, err)
	require.Equal(t, addrs[1], h.Addr())
	_, err = b.Pick()
	require.ErrorIs(t, err, ErrOverflow)
	h.Done(ok200)
}

func TestReserveConn(t *testing.T) {
	b, _, addrs := newTestBalancer(t, Config{Breaker: BreakerConfig{MaxConnections: 2}}, 1)
	h := leaseOn(t, b, addrs[0])
	s1, err := h.ReserveConn()
	require.NoError(t, err)
	s2, err := h.ReserveConn()
	require.NoError(t, err)
	_, err = h.ReserveConn()
	require.ErrorIs(t, err, ErrOverflow)
	require.Equal(t, 2, statusOf(t, b, addrs[0]).Connections)
	h.Done(ok200) // slots outlive the request

	s1.Release()
	s1.Release() // idempotent
	require.Equal(t, 1, statusOf(t, b, addrs[0]).Connections)
	h = leaseOn(t, b, addrs[0])
	s3, err := h.ReserveConn()
	require.NoError(t, err)
	h.Done(ok200)
	s2.Release()
	s3.Release()
	require.Zero(t, statusOf(t, b, addrs[0]).Connections)
}

func TestUpdateKeepsState(t *testing.T) {
	b, clk, addrs := newTestBalancer(t, Config{}, 3)
	a, gone, c := addrs[0], addrs[1], addrs[2]
	feed(t, b, a, Result{Status: 503, Latency: 80 * time.Millisecond}, unavail503, unavail503)
	before := statusOf(t, b, a)
	require.Equal(t, 3, before.Consecutive5xx)
	require.Equal(t, 80*time.Millisecond, before.EWMA)

	h := leaseOn(t, b, gone)
	removed := h.ep
	added := testAddrs(4)[3]
	b.Update([]Addr{c, a, added})

	require.Equal(t, []Addr{c, a, added}, addrsOf(b.Endpoints()))
	require.Equal(t, before, statusOf(t, b, a), "a survivor keeps its state")
	require.Equal(t, 30*time.Millisecond, statusOf(t, b, added).EWMA, "a new endpoint starts at DefaultRTT")
	require.Zero(t, countPicks(t, b, 1000, ok200)[gone], "a removed endpoint is never picked")

	clk.Advance(5 * time.Millisecond)
	h.Done(unavail503) // the removed endpoint's request finishes normally
	require.Zero(t, removed.inflight.Load())
	require.Equal(t, uint64(1), removed.requests.Load())

	feed(t, b, a, unavail503, unavail503)
	require.True(t, statusOf(t, b, a).Ejected, "the failure count carried over: 3 + 2")

	b.Update([]Addr{a, c, added, gone})
	require.Equal(t, uint64(0), statusOf(t, b, gone).Requests, "an address that comes back starts afresh")
}

func addrsOf(st []EndpointStatus) []Addr {
	out := make([]Addr, len(st))
	for i, s := range st {
		out[i] = s.Addr
	}
	return out
}

func TestUpdateFiltersAddresses(t *testing.T) {
	b, _, _ := newTestBalancer(t, Config{}, 0)
	a := testAddrs(3)
	tests := []struct {
		name string
		in   []Addr
		want []Addr
	}{
		{"duplicates dropped", []Addr{a[0], a[1], a[0], a[1]}, []Addr{a[0], a[1]}},
		{"invalid dropped", []Addr{{}, a[2], {}}, []Addr{a[2]}},
		{"order kept", []Addr{a[2], a[0], a[1]}, []Addr{a[2], a[0], a[1]}},
		{"empty", nil, []Addr{}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b.Update(tt.in)
			require.Equal(t, tt.want, addrsOf(b.Endpoints()))
			set := b.set.Load()
			b.Update(tt.in)
			require.Same(t, set, b.set.Load(), "an unchanged set is not rebuilt")
		})
	}
}

func TestEWMA(t *testing.T) {
	const ms = time.Millisecond
	type obs struct {
		after   time.Duration // clock advance before the observation
		latency time.Duration
		failed  bool
	}
	tests := []struct {
		name     string
		obs      []obs
		thenWait time.Duration
		min, max time.Duration
	}{
		{"starts at DefaultRTT", nil, 0, 30 * ms, 30 * ms},
		{"a higher latency is taken at once", []obs{{0, 200 * ms, false}}, 0, 200 * ms, 200 * ms},
		{"a lower latency right away barely moves it", []obs{{0, 200 * ms, false}, {ms, 10 * ms, false}}, 0, 199 * ms, 200 * ms},
		{"a lower latency after one decay period moves it 63%",
			[]obs{{0, 200 * ms, false}, {10 * time.Second, 10 * ms, false}}, 0, 79 * ms, 81 * ms},
		{"it converges to a steady latency",
			repeatObs(obs{time.Second, 10 * ms, false}, 100), 0, 10 * ms, 11 * ms},
		{"a latency above the decayed estimate is a new peak",
			[]obs{{0, 200 * ms, false}, {10 * time.Second, 100 * ms, false}}, 0, 100 * ms, 100 * ms},
		{"idle, it decays toward zero", []obs{{0, 100 * ms, false}}, 10 * time.Second, 36 * ms, 37 * ms},
		{"a fast failure does not lower it",
			[]obs{{0, 100 * ms, false}, {10 * time.Second, ms, true}}, 0, 36 * ms, 37 * ms},
		{"a slow failure raises it", []obs{{0, 500 * ms, true}}, 0, 500 * ms, 500 * ms},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b, clk, addrs := newTestBalancer(t, Config{}, 1)
			for _, o := range tt.obs {
				clk.Advance(o.after)
				r := Result{Status: 200, Latency: o.latency}
				if o.failed {
					r = Result{ConnectFailed: true, Latency: o.latency}
				}
				feed(t, b, addrs[0], r)
			}
			clk.Advance(tt.thenWait)
			got := statusOf(t, b, addrs[0]).EWMA
			require.GreaterOrEqual(t, got, tt.min)
			require.LessOrEqual(t, got, tt.max)
		})
	}
}

func repeatObs[T any](o T, n int) []T {
	out := make([]T, n)
	for i := range out {
		out[i] = o
	}
	return out
}

func TestDoneLatency(t *testing.T) {
	b, clk, addrs := newTestBalancer(t, Config{}, 1)
	h, err := b.Pick()
	require.NoError(t, err)
	clk.Advance(250 * time.Millisecond)
	h.Done(ok200)
	require.InDelta(t, 250*time.Millisecond, statusOf(t, b, addrs[0]).EWMA, float64(time.Millisecond), "time since Pick")

	h, err = b.Pick()
	require.NoError(t, err)
	clk.Advance(time.Hour) // a long stream
	h.Done(Result{Status: 200, Latency: 2 * time.Second})
	got := statusOf(t, b, addrs[0])
	require.Equal(t, 2*time.Second, got.EWMA, "Result.Latency wins")
	require.Equal(t, uint64(2), got.Requests)
	require.Zero(t, got.InFlight)

	h.Done(ok200) // a second Done before reuse is ignored
	require.Equal(t, uint64(2), statusOf(t, b, addrs[0]).Requests)
}

func TestReconfigureKeepsState(t *testing.T) {
	b, _, addrs := newTestBalancer(t, Config{}, 3)
	feed(t, b, addrs[0], unavail503, unavail503)
	held := leaseOn(t, b, addrs[1])

	require.NoError(t, b.Reconfigure(Config{Policy: RoundRobin, Outlier: OutlierConfig{Consecutive5xx: 3}}))
	require.Equal(t, RoundRobin, b.Config().Policy)
	require.Equal(t, 2, statusOf(t, b, addrs[0]).Consecutive5xx)
	require.Equal(t, 1, statusOf(t, b, addrs[1]).InFlight)
	feed(t, b, addrs[0], unavail503)
	require.True(t, statusOf(t, b, addrs[0]).Ejected, "the new threshold applies to the carried-over count")

	var got []Addr
	for range 4 {
		h, err := b.Pick()
		require.NoError(t, err)
		got = append(got, h.Addr())
		h.Done(ok200)
	}
	require.Equal(t, []Addr{addrs[1], addrs[2], addrs[1], addrs[2]}, got, "round robin now")

	err := b.Reconfigure(Config{Outlier: OutlierConfig{MaxEjectionPercent: 200}})
	require.ErrorContains(t, err, "MaxEjectionPercent")
	require.Equal(t, RoundRobin, b.Config().Policy, "an invalid config changes nothing")
	held.Done(ok200)
}

// TestConcurrentPickDoneUpdate races pickers against updates and status
// readers (run with -race), then checks that every lease was returned.
func TestConcurrentPickDoneUpdate(t *testing.T) {
	results := []Result{ok200, unavail503, refused, timedOut, notFound, tcpOK}
	for _, p := range []Policy{P2CEWMA, RoundRobin, Random} {
		t.Run(p.String(), func(t *testing.T) {
			b, clk, addrs := newTestBalancer(t, Config{Policy: p, Breaker: BreakerConfig{MaxPending: 4}}, 6)
			sets := [][]Addr{addrs, addrs[:3], addrs[2:], addrs[1:5], testAddrs(8)}

			var (
				wg         sync.WaitGroup
				mu         sync.Mutex
				seen       = map[*endpoint]bool{}
				unexpected atomic.Int64 // require must not FailNow off the test goroutine
			)
			for w := range 4 {
				wg.Go(func() {
					local := map[*endpoint]bool{}
					for i := range 3000 {
						h, err := b.Pick()
						if err != nil {
							if !errors.Is(err, ErrOverflow) {
								unexpected.Add(1)
							}
							continue
						}
						local[h.ep] = true
						if i%7 == 0 {
							if s, err := h.ReserveConn(); err == nil {
								s.Release()
							}
						}
						h.Done(results[(i+w)%len(results)])
					}
					mu.Lock()
					for e := range local {
						seen[e] = true
					}
					mu.Unlock()
				})
			}
			wg.Go(func() {
				for i := range 300 {
					b.Update(sets[i%len(sets)])
					clk.Advance(time.Second)
					_ = b.Endpoints()
				}
			})
			wg.Wait()

			require.Zero(t, unexpected.Load(), "Pick failed other than with ErrOverflow")
			require.NotEmpty(t, seen)
			for e := range seen {
				require.Zero(t, e.inflight.Load(), "endpoint %v leaked an in-flight slot", e.addr)
				require.Zero(t, e.conns.Load())
			}
		})
	}
}

// A retry does not go back to an endpoint the request tried, even when
// P2C would prefer it (it failed fast, so it looks cheap), unless every
// other endpoint is unselectable.
func TestPickAvoidingPreviousEndpoints(t *testing.T) {
	for _, p := range []Policy{P2CEWMA, RoundRobin, Random} {
		t.Run(p.String(), func(t *testing.T) {
			b, _, addrs := newTestBalancer(t, Config{Policy: p}, 3)
			// addrs[0] answers fastest: P2C prefers it whenever drawn.
			feed(t, b, addrs[0], Result{Status: 200, Latency: time.Microsecond})
			feed(t, b, addrs[1], Result{Status: 200, Latency: 10 * time.Millisecond})
			feed(t, b, addrs[2], Result{Status: 200, Latency: 10 * time.Millisecond})
			for range 200 {
				h, err := b.PickAvoiding(addrs[:1])
				require.NoError(t, err)
				require.NotEqual(t, addrs[0], h.Addr())
				h.Done(Result{Status: 200, Latency: 10 * time.Millisecond})
			}
			seen := map[Addr]bool{}
			for range 50 {
				h, err := b.PickAvoiding(addrs[:2])
				require.NoError(t, err)
				seen[h.Addr()] = true
				h.Done(Result{Status: 200, Latency: 10 * time.Millisecond})
			}
			require.Equal(t, map[Addr]bool{addrs[2]: true}, seen)
			// Every endpoint tried: one of them again rather than none.
			h, err := b.PickAvoiding(addrs)
			require.NoError(t, err)
			h.Done(Result{Status: 200})
		})
	}
}

// An endpoint whose connect failed is left alone for a backoff that
// doubles with each failure in a row, then probed by one pick; a response
// ends the streak. No threshold and no ejection budget apply.
func TestConnectBackoff(t *testing.T) {
	b, clk, addrs := newTestBalancer(t, Config{Policy: RoundRobin, Outlier: OutlierConfig{ConsecutiveConnectFailures: -1}}, 2)
	dead := addrs[0]
	// picks makes n picks; the dead endpoint fails to connect.
	picks := func(n int) map[Addr]int {
		got := map[Addr]int{}
		for range n {
			h, err := b.Pick()
			require.NoError(t, err)
			got[h.Addr()]++
			if h.Addr() == dead {
				h.Done(Result{ConnectFailed: true})
			} else {
				h.Done(Result{Status: 200})
			}
		}
		return got
	}
	until := func() time.Time { return b.Endpoints()[0].UnreachableUntil }
	now := func() time.Time { return clockBase.Add(time.Duration(clk.ns.Load())) }

	require.Equal(t, 1, picks(2)[dead], "round robin: the first failure")
	for _, want := range []time.Duration{100 * time.Millisecond, 200 * time.Millisecond, 400 * time.Millisecond, 800 * time.Millisecond} {
		require.Equal(t, now().Add(want), until())
		require.Zero(t, picks(20)[dead], "backing off for %s", want)
		clk.Advance(want)
		require.Equal(t, 1, picks(2)[dead], "one probe after %s, which fails", want)
	}
	require.Equal(t, 5*time.Second, connectBackoff(100), "capped")

	// Every endpoint backing off: they are picked anyway.
	feed(t, b, addrs[1], Result{ConnectFailed: true})
	require.Len(t, picks(4), 2)

	// A response ends the streak: the next failure starts over.
	clk.Advance(10 * time.Second)
	feed(t, b, dead, Result{Status: 200})
	feed(t, b, dead, Result{ConnectFailed: true})
	require.Equal(t, now().Add(100*time.Millisecond), until())
}

// TestNewEndpointRefusingFirst: an endpoint that refuses its first
// connects (listed before it listens) is still costed like a new one once
// its backoff is over, so P2C sends it traffic as soon as it serves.
func TestNewEndpointRefusingFirst(t *testing.T) {
	b, clk, addrs := newTestBalancer(t, Config{Outlier: OutlierConfig{ConsecutiveConnectFailures: -1}}, 2)
	for range 50 { // the warm endpoints answer in 1ms
		for _, a := range addrs {
			feed(t, b, a, Result{Status: 200, Latency: time.Millisecond})
		}
	}
	fresh := netip.MustParseAddrPort("10.0.9.9:80")
	b.Update(append(slices.Clone(addrs), fresh))
	feed(t, b, fresh, Result{ConnectFailed: true, Latency: 100 * time.Microsecond})
	clk.Advance(time.Second) // past the backoff; the 30ms starting guess barely decays
	n := 0
	for range 300 {
		h, err := b.Pick()
		require.NoError(t, err)
		if h.Addr() == fresh {
			n++
		}
		h.Done(Result{Status: 200, Latency: time.Millisecond})
	}
	require.Greater(t, n, 30, "the endpoint got %d of 300 picks once it served", n)
}
