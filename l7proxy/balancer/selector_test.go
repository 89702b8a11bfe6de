package balancer

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

func TestPickEmptyAndSingle(t *testing.T) {
	for _, p := range []Policy{P2CEWMA, RoundRobin, Random} {
		t.Run(p.String(), func(t *testing.T) {
			b, _, _ := newTestBalancer(t, Config{Policy: p}, 0)
			_, err := b.Pick()
			require.ErrorIs(t, err, ErrNoEndpoints)

			addrs := testAddrs(1)
			b.Update(addrs)
			got := countPicks(t, b, 100, Result{Status: 200})
			require.Equal(t, map[Addr]int{addrs[0]: 100}, got, "one endpoint takes every pick")

			b.Update(nil)
			_, err = b.Pick()
			require.ErrorIs(t, err, ErrNoEndpoints)
		})
	}
}

// TestP2CDistributionEqualEndpoints: endpoints that behave the same get
// the same share.
func TestP2CDistributionEqualEndpoints(t *testing.T) {
	tests := []struct {
		name    string
		n       int
		perStep int
		latency time.Duration
	}{
		{"2 endpoints, no queueing", 2, 1, 0},
		{"4 endpoints, light load", 4, 2, 3 * time.Millisecond},
		{"10 endpoints, heavy load", 10, 10, 20 * time.Millisecond},
	}
	const picks = 30000
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b, clk, addrs := newTestBalancer(t, Config{}, tt.n)
			got := simulate(t, b, clk, picks/tt.perStep, tt.perStep, func(Addr) time.Duration { return tt.latency })
			want := float64(picks) / float64(tt.n)
			for _, a := range addrs {
				require.InDelta(t, want, got[a], want*0.05, "endpoint %v: %v", a, got)
			}
		})
	}
}

// TestP2CAvoidsSlowEndpoint: an endpoint 100x slower than the others gets
// less than 10% of the picks, whatever the number of endpoints and load.
func TestP2CAvoidsSlowEndpoint(t *testing.T) {
	tests := []struct {
		name    string
		n       int
		perStep int
	}{
		{"2 endpoints", 2, 1},
		{"5 endpoints", 5, 4},
		{"10 endpoints, heavy load", 10, 20},
	}
	const picks = 30000
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b, clk, addrs := newTestBalancer(t, Config{}, tt.n)
			slow := addrs[0]
			got := simulate(t, b, clk, picks/tt.perStep, tt.perStep, func(a Addr) time.Duration {
				if a == slow {
					return 100 * time.Millisecond
				}
				return time.Millisecond
			})
			share := float64(got[slow]) / picks
			t.Logf("slow endpoint share %.4f (fair share %.2f)", share, 1/float64(tt.n))
			require.Less(t, share, 0.10)
			for _, a := range addrs[1:] {
				require.Greater(t, statusOf(t, b, slow).EWMA, statusOf(t, b, a).EWMA, "its estimate stays above %v's", a)
			}
			// Once its estimate has decayed (no traffic for a while), the
			// slow endpoint is probed again.
			clk.Advance(60 * time.Second)
			require.Positive(t, simulate(t, b, clk, 2000/tt.perStep, tt.perStep, func(Addr) time.Duration { return time.Millisecond })[slow],
				"the slow endpoint is probed again")
		})
	}
}

// TestP2CAvoidsInFlight: with equal latency, an endpoint with many requests
// in flight loses to any idle one.
func TestP2CAvoidsInFlight(t *testing.T) {
	tests := []struct {
		name     string
		n        int
		inflight int
	}{
		{"2 endpoints, 1 in flight", 2, 1},
		{"4 endpoints, 20 in flight", 4, 20},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b, _, addrs := newTestBalancer(t, Config{}, tt.n)
			busy := addrs[0]
			for range tt.inflight {
				leaseOn(t, b, busy) // held: never Done
			}
			got := countPicks(t, b, 3000, Result{Status: 200})
			require.Zero(t, got[busy], "picks: %v", got)
			require.Equal(t, tt.inflight, statusOf(t, b, busy).InFlight)
		})
	}
}

func TestRoundRobinOrder(t *testing.T) {
	tests := []struct {
		name  string
		setup func(t *testing.T, b *Balancer, a []Addr)
		want  []int // indexes into the addresses, picks in order
	}{
		{
			name:  "all selectable",
			setup: func(*testing.T, *Balancer, []Addr) {},
			want:  []int{0, 1, 2, 3, 0, 1, 2, 3, 0},
		},
		{
			name: "ejected endpoint skipped, others keep equal shares",
			setup: func(t *testing.T, b *Balancer, a []Addr) {
				feed(t, b, a[1], repeat(Result{Status: 503}, 5)...)
				require.True(t, statusOf(t, b, a[1]).Ejected)
			},
			want: []int{0, 2, 3, 0, 2, 3, 0},
		},
		{
			name: "endpoint at its breaker limit skipped",
			setup: func(t *testing.T, b *Balancer, a []Addr) {
				leaseOn(t, b, a[2])
				leaseOn(t, b, a[2])
			},
			want: []int{0, 1, 3, 0, 1, 3},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b, _, addrs := newTestBalancer(t, Config{Policy: RoundRobin, Breaker: BreakerConfig{MaxPending: 2}}, 4)
			tt.setup(t, b, addrs)
			var got []int
			for range tt.want {
				h, err := b.Pick()
				require.NoError(t, err)
				got = append(got, slicesIndex(addrs, h.Addr()))
				h.Done(Result{Status: 200})
			}
			require.Equal(t, tt.want, got)
		})
	}
}

func slicesIndex(addrs []Addr, a Addr) int {
	for i, x := range addrs {
		if x == a {
			return i
		}
	}
	return -1
}

func TestRandomDistribution(t *testing.T) {
	b, _, addrs := newTestBalancer(t, Config{Policy: Random}, 5)
	feed(t, b, addrs[4], repeat(Result{ConnectFailed: true}, 5)...)
	require.True(t, statusOf(t, b, addrs[4]).Ejected)

	const picks = 30000
	got := countPicks(t, b, picks, Result{Status: 200})
	require.Zero(t, got[addrs[4]], "ejected endpoint never picked")
	for _, a := range addrs[:4] {
		require.InDelta(t, picks/4, got[a], picks/4*0.06, "endpoint %v: %v", a, got)
	}
}

// TestCandidatesRandomUniform checks the sampler itself on a set where
// rejection sampling fails often and the exact scan takes over.
func TestCandidatesRandomUniform(t *testing.T) {
	b, clk, addrs := newTestBalancer(t, Config{Outlier: OutlierConfig{MaxEjectionPercent: 100}}, 10)
	for _, a := range addrs[:9] {
		if a != addrs[3] {
			feed(t, b, a, repeat(Result{Status: 500}, 5)...)
		}
	}
	now := b.nowNs()
	c := Candidates{eps: b.set.Load().eps, now: now, tick: tickOf(now), invTau: b.st.Load().invTau, maxPending: 1024}
	require.Equal(t, 2, countSelectable(&c), "endpoints 3 and 9")
	got := map[int]int{}
	for range 20000 {
		i := c.Random()
		got[i]++
		require.Equal(t, 12-i, c.RandomOther(i), "the only other selectable endpoint")
	}
	require.Len(t, got, 2)
	require.InDelta(t, 10000, got[3], 500)

	clk.Advance(30 * time.Second)
	c.now = b.nowNs()
	require.Equal(t, 10, countSelectable(&c), "ejections over")
}

func countSelectable(c *Candidates) int {
	n := 0
	for i := range c.Len() {
		if c.Selectable(i) {
			n++
		}
	}
	return n
}

// TestP2CNewEndpointGetsTrafficAtOnce: an endpoint that joins warm, idle
// peers is costed like them until it answers, so under light sequential
// load it gets its share at once, not after its starting guess decays.
func TestP2CNewEndpointGetsTrafficAtOnce(t *testing.T) {
	b, clk, addrs := newTestBalancer(t, Config{}, 3)
	lat := func(Addr) time.Duration { return 2 * time.Millisecond }
	simulate(t, b, clk, 3000, 1, lat) // warm up the first three
	added := testAddrs(4)[3]
	b.Update(append(addrs, added))
	got := simulate(t, b, clk, 4000, 1, lat)
	require.InDelta(t, 1000, got[added], 250, "the new endpoint takes about a quarter: %v", got)
}
