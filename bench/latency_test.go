package bench

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

func TestScheduleDue(t *testing.T) {
	tests := []struct {
		name string
		rate int
		i    int
		want time.Duration
	}{
		{"first request at the start", 1000, 0, 0},
		{"1000 rps: one per millisecond", 1000, 1, time.Millisecond},
		{"no drift after many intervals", 1000, 1_000_000, 1000 * time.Second},
		{"3 rps: thirds of a second, truncated", 3, 1, 333333333},
		{"3 rps: exactly one second at i=3", 3, 3, time.Second},
		{"7 rps: i=7 is exactly 1s (no accumulated rounding)", 7, 7, time.Second},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			require.Equal(t, tt.want, Schedule{Rate: tt.rate}.Due(tt.i))
		})
	}
}

func TestScheduleCount(t *testing.T) {
	tests := []struct {
		name string
		rate int
		d    time.Duration
		want int
	}{
		{"5s at 1000 rps", 1000, 5 * time.Second, 5000},
		{"1s at 3 rps: 0, 1/3, 2/3", 3, time.Second, 3},
		{"just past a due time counts it", 1000, time.Millisecond + 1, 2},
		{"exactly at a due time does not", 1000, time.Millisecond, 1},
		{"zero duration", 1000, 0, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := Schedule{Rate: tt.rate}
			n := s.Count(tt.d)
			require.Equal(t, tt.want, n)
			if n > 0 {
				require.Less(t, s.Due(n-1), tt.d, "the last counted request is due inside the window")
			}
			require.GreaterOrEqual(t, s.Due(n), tt.d, "the next one is not")
		})
	}
}

func ms(v ...int) []time.Duration {
	out := make([]time.Duration, len(v))
	for i, x := range v {
		out[i] = time.Duration(x) * time.Millisecond
	}
	return out
}

func TestPercentile(t *testing.T) {
	thousand := make([]time.Duration, 1000)
	for i := range thousand {
		thousand[i] = time.Duration(i+1) * time.Microsecond // 1..1000 us
	}
	many := make([]time.Duration, 41000)
	for i := range many {
		many[i] = time.Duration(i+1) * time.Microsecond
	}
	tests := []struct {
		name   string
		sorted []time.Duration
		p      float64
		want   time.Duration
	}{
		{"empty", nil, 50, 0},
		{"single sample is every percentile", ms(7), 99.9, 7 * time.Millisecond},
		{"median of 1..4 is the 2nd (nearest rank)", ms(1, 2, 3, 4), 50, 2 * time.Millisecond},
		{"p99 of 1..1000us is 990us", thousand, 99, 990 * time.Microsecond},
		{"p99.9 of 1..1000us is 999us", thousand, 99.9, 999 * time.Microsecond},
		{"p99.9 of 41000 is rank 40959, not 40960 (float rounding)", many, 99.9, 40959 * time.Microsecond},
		{"p100 is the max", thousand, 100, 1000 * time.Microsecond},
		{"a tiny p is the min", thousand, 0.0001, time.Microsecond},
		{"p90 of 10 samples is the 9th", ms(1, 2, 3, 4, 5, 6, 7, 8, 9, 100), 90, 9 * time.Millisecond},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			require.Equal(t, tt.want, Percentile(tt.sorted, tt.p))
		})
	}
}

func TestSummarizeSortsAndUsesMicroseconds(t *testing.T) {
	s := Summarize(ms(4, 1, 3, 2))
	require.Equal(t, 4, s.Count)
	require.InDelta(t, 1000, s.Min, 1e-9)
	require.InDelta(t, 2500, s.Mean, 1e-9)
	require.InDelta(t, 2000, s.P50, 1e-9)
	require.InDelta(t, 4000, s.P99, 1e-9)
	require.InDelta(t, 4000, s.Max, 1e-9)
}

// A stall must show in the latencies measured from the due time, even
// though only one request was in flight during it: that is the point of the
// open-loop schedule.
func TestRecorderCountsStallFromDueTime(t *testing.T) {
	sched := Schedule{Rate: 1000}
	start := time.Unix(0, 0)
	r := NewRecorder(1, 10)
	lane := r.Lane(0)
	// Request 0 stalls 10ms; requests 1..9 were due during the stall and go
	// out right after it, each taking 0.1ms.
	now := start
	for i := range 10 {
		due := start.Add(sched.Due(i))
		sent := max64(now, due)
		took := 100 * time.Microsecond
		if i == 0 {
			took = 10 * time.Millisecond
		}
		now = sent.Add(took)
		lane.Record(due, sent, now)
	}
	lat, svc, errs, _ := r.Merge()
	require.Zero(t, errs)
	ls, ss := Summarize(lat), Summarize(svc)
	require.InDelta(t, 100, ss.P50, 1e-9, "service time hides the stall")
	require.Greater(t, ls.P50, 5000.0, "latency from the due time shows it: half the requests waited over 5ms")
}

func max64(a, b time.Time) time.Time {
	if a.After(b) {
		return a
	}
	return b
}
