package telemetry

import (
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
)

// BenchmarkRequestMetricsObserve is the per-request cost of the four
// request metrics for a label set already seen, the common case: label
// values repeat, series are few.
func BenchmarkRequestMetricsObserve(b *testing.B) {
	m := NewRequestMetrics()
	l := RequestLabels{Reporter: "source", SourceWorkload: "client", SourceNamespace: "bench",
		SourcePrincipal: "spiffe://cluster.local/ns/bench/sa/client", DestinationService: "server.bench.svc.cluster.local",
		DestinationWorkload: "server", DestinationNamespace: "bench", RequestProtocol: "http", ResponseCode: "200",
		ResponseFlags: "-", SecurityPolicy: "mutual_tls"}
	m.Observe(&l, time.Millisecond, 0, 1024)
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		// A fresh struct per request, as the agent builds it.
		l2 := l
		m.Observe(&l2, time.Millisecond, 0, 1024)
	}
}

// TestRequestMetricsObserveAllocatesNothing checks the hot path: a label
// set seen before costs no allocation, and a new one gets its own series.
func TestRequestMetricsObserveAllocatesNothing(t *testing.T) {
	m := NewRequestMetrics()
	l := RequestLabels{Reporter: "source", RequestProtocol: "http", ResponseCode: "200", ResponseFlags: "-", SecurityPolicy: "none"}
	m.Observe(&l, time.Millisecond, 1, 2)
	if n := testing.AllocsPerRun(100, func() { m.Observe(&l, time.Millisecond, 1, 2) }); n != 0 {
		t.Fatalf("Observe allocates %v times per request for a known label set", n)
	}
	other := l
	other.ResponseFlags = "UF"
	m.Observe(&other, time.Millisecond, 1, 2)
	if got := testutil.CollectAndCount(m.Total, "skein_requests_total"); got != 2 {
		t.Fatalf("%d series of skein_requests_total, want 2", got)
	}
	if got := testutil.CollectAndCount(m.Duration, "skein_request_duration_seconds"); got != 1 {
		t.Fatalf("%d series of skein_request_duration_seconds, want 1 (no response_flags label)", got)
	}
}
