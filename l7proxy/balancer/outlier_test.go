package balancer

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

var (
	ok200       = Result{Status: 200}
	notFound    = Result{Status: 404}
	internal500 = Result{Status: 500}
	bad502      = Result{Status: 502}
	unavail503  = Result{Status: 503}
	gateway504  = Result{Status: 504}
	refused     = Result{ConnectFailed: true}
	timedOut    = Result{TimedOut: true}
	tcpOK       = Result{}
)

func TestEjection(t *testing.T) {
	cat := func(parts ...[]Result) []Result {
		var out []Result
		for _, p := range parts {
			out = append(out, p...)
		}
		return out
	}
	tests := []struct {
		name    string
		cfg     OutlierConfig
		results []Result
		eject   bool
	}{
		{"5 x 503", OutlierConfig{}, repeat(unavail503, 5), true},
		{"4 x 503", OutlierConfig{}, repeat(unavail503, 4), false},
		{"every 5xx counts", OutlierConfig{}, []Result{internal500, bad502, unavail503, gateway504, {Status: 501}}, true},
		{"4xx is a success", OutlierConfig{}, cat(repeat(unavail503, 4), []Result{notFound}, repeat(unavail503, 4)), false},
		{"success resets", OutlierConfig{}, cat(repeat(unavail503, 4), []Result{ok200}, repeat(unavail503, 4)), false},
		{"5 connect failures", OutlierConfig{}, repeat(refused, 5), true},
		{"timeouts count as connect failures", OutlierConfig{}, cat(repeat(timedOut, 3), repeat(refused, 2)), true},
		{"TCP success resets", OutlierConfig{}, cat(repeat(refused, 4), []Result{tcpOK}, repeat(refused, 4)), false},
		{"a 5xx proves connecting works", OutlierConfig{}, cat(repeat(refused, 4), []Result{unavail503}, repeat(refused, 4)), false},
		{"connect failures leave the 5xx count", OutlierConfig{}, cat(repeat(unavail503, 3), []Result{refused}, repeat(unavail503, 2)), true},
		{"custom threshold", OutlierConfig{Consecutive5xx: 2}, repeat(unavail503, 2), true},
		{"5xx detector disabled", OutlierConfig{Consecutive5xx: -1}, repeat(unavail503, 50), false},
		{"connect detector disabled", OutlierConfig{ConsecutiveConnectFailures: -1}, repeat(refused, 50), false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b, _, addrs := newTestBalancer(t, Config{Outlier: tt.cfg}, 3)
			feed(t, b, addrs[0], tt.results...)
			s := statusOf(t, b, addrs[0])
			require.Equal(t, tt.eject, s.Ejected, "status %+v", s)
			require.Equal(t, uint64(len(tt.results)), s.Requests)
			if tt.eject {
				require.Zero(t, s.Consecutive5xx, "counters reset on ejection")
				require.Zero(t, s.ConsecutiveConnectFailures)
				require.Equal(t, 1, s.Ejections)
			}
		})
	}
}

func TestEjectionExpires(t *testing.T) {
	b, clk, addrs := newTestBalancer(t, Config{}, 3)
	bad := addrs[1]
	feed(t, b, bad, repeat(unavail503, 5)...)
	s := statusOf(t, b, bad)
	require.True(t, s.Ejected)
	require.Equal(t, clk.Now().Add(30*time.Second), s.EjectedUntil)

	require.Zero(t, countPicks(t, b, 1000, ok200)[bad], "ejected endpoint skipped")

	// Results of requests sent before the ejection do not extend it.
	feed(t, b, bad, repeat(unavail503, 10)...)
	require.Equal(t, 1, statusOf(t, b, bad).Ejections)

	clk.Advance(30*time.Second - time.Millisecond)
	require.True(t, statusOf(t, b, bad).Ejected)
	clk.Advance(time.Millisecond)
	s = statusOf(t, b, bad)
	require.False(t, s.Ejected, "back in service when the time is up")
	require.Zero(t, s.Consecutive5xx, "a fresh start: failures while ejected did not count")
	require.Positive(t, countPicks(t, b, 1000, ok200)[bad], "picked again")
}

func TestEjectionBackoff(t *testing.T) {
	b, clk, addrs := newTestBalancer(t, Config{}, 4)
	bad := addrs[0]
	ejectFor := func() time.Duration {
		t.Helper()
		feed(t, b, bad, repeat(refused, 5)...)
		s := statusOf(t, b, bad)
		require.True(t, s.Ejected)
		return s.EjectedUntil.Sub(clk.Now())
	}
	// Each ejection right after the last one returned lasts one base longer.
	want := []time.Duration{30, 60, 90, 120, 150, 180, 210, 240, 270, 300, 300, 300}
	for i, w := range want {
		d := ejectFor()
		require.Equal(t, w*time.Second, d, "ejection %d", i+1)
		clk.Advance(d)
	}
	require.Equal(t, uint64(len(want)), statusOf(t, b, bad).EjectionsTotal)
	require.Equal(t, 10, statusOf(t, b, bad).Ejections, "the multiplier stops at MaxEjection/BaseEjection")

	// Time back in service forgives: 3 bases healthy take 3 off the multiplier.
	clk.Advance(90 * time.Second)
	require.Equal(t, 240*time.Second, ejectFor())
	clk.Advance(240*time.Second + time.Hour)
	require.Equal(t, 30*time.Second, ejectFor(), "a long healthy run forgets the past")
}

func TestMaxEjectionPercent(t *testing.T) {
	tests := []struct {
		name    string
		n       int
		percent int
		want    int
	}{
		{"default 50% of 4", 4, 0, 2},
		{"50% of 3 rounds down", 3, 50, 1},
		{"10% of 5 still ejects one", 5, 10, 1},
		{"100% of 3 keeps one", 3, 100, 2},
		{"the only endpoint stays", 1, 100, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b, _, addrs := newTestBalancer(t, Config{Outlier: OutlierConfig{MaxEjectionPercent: tt.percent}}, tt.n)
			for _, a := range addrs {
				feed(t, b, a, repeat(unavail503, 10)...)
			}
			ejected := 0
			for _, s := range b.Endpoints() {
				if s.Ejected {
					ejected++
				}
			}
			require.Equal(t, tt.want, ejected)
			got := countPicks(t, b, 200, ok200)
			require.Len(t, got, tt.n-tt.want, "only endpoints in service are picked")
		})
	}
}

// TestNeverEjectAll: when updates leave only ejected endpoints, Pick uses
// them rather than fail.
func TestNeverEjectAll(t *testing.T) {
	b, clk, addrs := newTestBalancer(t, Config{Outlier: OutlierConfig{MaxEjectionPercent: 100}}, 3)
	feed(t, b, addrs[0], repeat(unavail503, 5)...)
	feed(t, b, addrs[1], repeat(unavail503, 5)...)
	require.True(t, statusOf(t, b, addrs[0]).Ejected)
	require.True(t, statusOf(t, b, addrs[1]).Ejected)

	b.Update(addrs[:2])
	got := countPicks(t, b, 1000, ok200)
	require.Len(t, got, 2, "panic mode spreads over the ejected endpoints: %v", got)

	b.Update(addrs)
	require.Equal(t, map[Addr]int{addrs[2]: 1000}, countPicks(t, b, 1000, ok200), "a healthy endpoint ends panic mode")

	clk.Advance(30 * time.Second)
	require.Len(t, countPicks(t, b, 1000, ok200), 3)
}
