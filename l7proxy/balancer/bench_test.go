package balancer

import (
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// TestPickDoneNoAlloc guards the hot path's zero-allocation property.
func TestPickDoneNoAlloc(t *testing.T) {
	if raceEnabled {
		t.Skip("the race detector makes sync.Pool drop handles at random")
	}
	for _, p := range []Policy{P2CEWMA, RoundRobin, Random} {
		t.Run(p.String(), func(t *testing.T) {
			b, err := New(Config{Policy: p}, nil)
			require.NoError(t, err)
			b.Update(testAddrs(8))
			allocs := testing.AllocsPerRun(1000, func() {
				h, err := b.Pick()
				if err != nil {
					t.Fatal(err)
				}
				h.Done(Result{Status: 200})
			})
			require.Zero(t, allocs)
		})
	}
}

func benchmarkPick(b *testing.B, p Policy, n int) {
	bal, err := New(Config{Policy: p}, nil)
	require.NoError(b, err)
	bal.Update(testAddrs(n))
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			h, err := bal.Pick()
			if err != nil {
				b.Error(err)
				return
			}
			h.Done(Result{Status: 200, Latency: time.Millisecond}) // as the proxy reports
		}
	})
}

// BenchmarkPickP2C measures Pick+Done with the default policy, in parallel
// on every core, with the real clock.
func BenchmarkPickP2C(b *testing.B) {
	for _, n := range []int{8, 100} {
		b.Run(fmt.Sprintf("endpoints=%d", n), func(b *testing.B) { benchmarkPick(b, P2CEWMA, n) })
	}
}

// BenchmarkPickRoundRobin measures Pick+Done with round robin.
func BenchmarkPickRoundRobin(b *testing.B) {
	for _, n := range []int{8, 100} {
		b.Run(fmt.Sprintf("endpoints=%d", n), func(b *testing.B) { benchmarkPick(b, RoundRobin, n) })
	}
}

// BenchmarkPickRandom measures Pick+Done with the random policy.
func BenchmarkPickRandom(b *testing.B) {
	benchmarkPick(b, Random, 8)
}

// BenchmarkRetryBudget measures one Deposit and one Withdraw, in parallel.
func BenchmarkRetryBudget(b *testing.B) {
	rb, err := NewRetryBudget(DefaultRetryRatio, DefaultMinRetriesPerSecond, DefaultRetryTTL, nil)
	require.NoError(b, err)
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			rb.Deposit()
			rb.Withdraw()
		}
	})
}
