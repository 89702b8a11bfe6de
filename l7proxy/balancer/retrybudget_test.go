package balancer

import (
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

func newTestBudget(tb testing.TB, ratio float64, minPerSec int, ttl time.Duration) (*RetryBudget, *fakeClock) {
	tb.Helper()
	clk := &fakeClock{}
	b, err := NewRetryBudget(ratio, minPerSec, ttl, clk.Now)
	require.NoError(tb, err)
	return b, clk
}

// withdrawAll withdraws until refused, at most limit times, and returns how
// many were granted.
func withdrawAll(b *RetryBudget, limit int) int {
	n := 0
	for n < limit && b.Withdraw() {
		n++
	}
	return n
}

func TestRetryBudget(t *testing.T) {
	tests := []struct {
		name      string
		ratio     float64
		minPerSec int
		ttl       time.Duration
		deposits  int
		want      int
	}{
		{"linkerd defaults, no traffic: 10/s over 10s", DefaultRetryRatio, DefaultMinRetriesPerSecond, DefaultRetryTTL, 0, 100},
		{"linkerd defaults: plus 20% of requests", DefaultRetryRatio, DefaultMinRetriesPerSecond, DefaultRetryTTL, 1000, 300},
		{"ttl 0 means the default", DefaultRetryRatio, DefaultMinRetriesPerSecond, 0, 1000, 300},
		{"minimum only, 1s window", 0.2, 5, time.Second, 0, 5},
		{"ratio only", 0.5, 0, time.Second, 10, 5},
		{"a quarter", 0.25, 0, time.Second, 40, 10},
		{"a third, to 0.1%", 1.0 / 3, 0, time.Second, 3000, 999},
		{"ratio above one", 2, 0, time.Second, 10, 20},
		{"nothing allowed", 0, 0, time.Second, 1000, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b, _ := newTestBudget(t, tt.ratio, tt.minPerSec, tt.ttl)
			for range tt.deposits {
				b.Deposit()
			}
			require.Equal(t, tt.want, b.Available())
			require.Equal(t, tt.want, withdrawAll(b, 10*tt.want+10))
			require.False(t, b.Withdraw(), "refused beyond the budget")
			require.Zero(t, b.Available())
		})
	}
}

func TestRetryBudgetWindowSlides(t *testing.T) {
	b, clk := newTestBudget(t, 0.5, 1, time.Second) // buckets of 100ms
	require.Equal(t, 1, withdrawAll(b, 100), "the reserve: 1/s over 1s")

	clk.Advance(500 * time.Millisecond)
	for range 10 {
		b.Deposit()
	}
	require.Equal(t, 5, b.Available(), "half the deposits, the reserve spent")
	for range 3 {
		require.True(t, b.Withdraw())
	}
	require.Equal(t, 2, b.Available())

	clk.Advance(450 * time.Millisecond)
	require.Equal(t, 2, b.Available(), "everything still counts inside the window")

	clk.Advance(100 * time.Millisecond)
	require.Equal(t, 3, b.Available(), "the first withdrawal expired")

	clk.Advance(500 * time.Millisecond)
	require.Equal(t, 1, b.Available(), "the deposits expired with their withdrawals: only the reserve")
	require.Equal(t, 1, withdrawAll(b, 100))

	clk.Advance(time.Hour)
	for range 4 {
		b.Deposit()
	}
	require.Equal(t, 3, b.Available(), "after a long pause: reserve 1 + 4*0.5")
}

func TestNewRetryBudgetValidates(t *testing.T) {
	tests := []struct {
		name      string
		ratio     float64
		minPerSec int
		ttl       time.Duration
		want      []string
	}{
		{"negative ratio", -0.1, 10, time.Second, []string{"ratio -0.1"}},
		{"huge ratio", 1001, 10, time.Second, []string{"ratio 1001"}},
		{"negative minimum", 0.2, -1, time.Second, []string{"min retries per second -1"}},
		{"short ttl", 0.2, 10, time.Millisecond, []string{"ttl 1ms"}},
		{"long ttl", 0.2, 10, time.Hour, []string{"ttl 1h0m0s"}},
		{"all joined", -1, -1, -time.Second, []string{"ratio -1", "min retries per second -1", "ttl -1s"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b, err := NewRetryBudget(tt.ratio, tt.minPerSec, tt.ttl, nil)
			require.Nil(t, b)
			for _, w := range tt.want {
				require.ErrorContains(t, err, w)
			}
		})
	}
}

// TestRetryBudgetConcurrent: concurrent withdrawals never exceed the budget
// (run with -race).
func TestRetryBudgetConcurrent(t *testing.T) {
	b, _ := newTestBudget(t, DefaultRetryRatio, DefaultMinRetriesPerSecond, DefaultRetryTTL)
	var (
		wg      sync.WaitGroup
		granted atomic.Int64
	)
	for range 4 {
		wg.Go(func() {
			for range 500 {
				b.Deposit()
				if b.Withdraw() {
					granted.Add(1)
				}
				if b.Withdraw() {
					granted.Add(1)
				}
			}
		})
	}
	wg.Wait()
	// 2000 deposits allow 100 + 400 retries.
	require.LessOrEqual(t, granted.Load(), int64(500))
	require.GreaterOrEqual(t, granted.Load(), int64(400), "not starved either")
}
