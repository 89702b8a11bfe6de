package accesslog

import (
	"context"
	"encoding/json"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.uber.org/zap"
)

// blockingSink blocks every Write until release is closed.
type blockingSink struct {
	release chan struct{}
	mu      sync.Mutex
	got     int
}

func (s *blockingSink) Write(batch []*Entry) error {
	<-s.release
	s.mu.Lock()
	s.got += len(batch)
	s.mu.Unlock()
	return nil
}
func (s *blockingSink) Flush() error { return nil }
func (s *blockingSink) Close() error { return nil }

// funcSink calls write for every batch.
type funcSink struct{ write func([]*Entry) error }

func (s funcSink) Write(b []*Entry) error { return s.write(b) }
func (s funcSink) Flush() error           { return nil }
func (s funcSink) Close() error           { return nil }

func newTestLogger(t *testing.T, cfg Config, sinks ...namedSink) *Logger {
	t.Helper()
	l, err := newLogger(cfg, zap.NewNop(), sinks...)
	require.NoError(t, err)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = l.Close(ctx)
	})
	return l
}

func TestRecordNeverBlocks(t *testing.T) {
	blocked := &blockingSink{release: make(chan struct{})}
	var fastMu sync.Mutex
	fast := 0
	l := newTestLogger(t, Config{QueueSize: 16, BatchSize: 4},
		namedSink{"blocked", blocked},
		namedSink{"fast", funcSink{func(b []*Entry) error { fastMu.Lock(); fast += len(b); fastMu.Unlock(); return nil }}})

	const n = 10000
	done := make(chan time.Duration)
	go func() {
		start := time.Now()
		for i := 0; i < n; i++ {
			l.Record(entry(i))
		}
		done <- time.Since(start)
	}()
	select {
	case d := <-done:
		t.Logf("%d records in %s while a sink is blocked", n, d)
	case <-time.After(10 * time.Second):
		t.Fatal("Record blocked on a blocked sink")
	}
	dropped := l.Dropped()["blocked"]
	require.GreaterOrEqual(t, dropped, uint64(n-16-4), "at most a queue and a batch are held")
	require.Less(t, dropped, uint64(n))

	// While the other sink is still blocked, this one goes on taking
	// entries one by one.
	require.Eventually(t, func() bool { return l.Written()["fast"]+l.Dropped()["fast"] == n }, 5*time.Second, time.Millisecond)
	fastDropped, fastWritten := l.Dropped()["fast"], l.Written()["fast"]
	for i := 1; i <= 5; i++ {
		l.Record(entry(n + i))
		require.Eventually(t, func() bool { return l.Written()["fast"] == fastWritten+uint64(i) }, 5*time.Second, time.Millisecond)
	}
	require.Equal(t, fastDropped, l.Dropped()["fast"])

	close(blocked.release)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	require.NoError(t, l.Close(ctx))
	require.Equal(t, uint64(n+5), l.Written()["blocked"]+l.Dropped()["blocked"], "every record is either written or counted as dropped")
	require.Equal(t, int(l.Written()["blocked"]), blocked.got)
	fastMu.Lock()
	defer fastMu.Unlock()
	require.Equal(t, uint64(fast), l.Written()["fast"])
	require.Equal(t, uint64(n+5), l.Written()["fast"]+fastDropped, "the fast sink lost nothing it was given after the burst")
}

func TestFailingSinksCountDrops(t *testing.T) {
	l := newTestLogger(t, Config{},
		namedSink{"failing", funcSink{func([]*Entry) error { return errors.New("disk full") }}},
		namedSink{"panicking", funcSink{func([]*Entry) error { panic("bug") }}})
	for i := 0; i < 5; i++ {
		l.Record(entry(i))
	}
	require.Eventually(t, func() bool {
		d := l.Dropped()
		return d["failing"] == 5 && d["panicking"] == 5
	}, 5*time.Second, 10*time.Millisecond)
}

func TestCloseDrainsAndIsIdempotent(t *testing.T) {
	var mu sync.Mutex
	var got []string
	l := newTestLogger(t, Config{}, namedSink{"mem", funcSink{func(b []*Entry) error {
		mu.Lock()
		defer mu.Unlock()
		for _, e := range b {
			got = append(got, e.Path)
		}
		return nil
	}}})
	for i := 0; i < 100; i++ {
		l.Record(entry(i))
	}
	ctx := context.Background()
	require.NoError(t, l.Close(ctx))
	require.NoError(t, l.Close(ctx))
	mu.Lock()
	require.Len(t, got, 100, "what was queued is written on close")
	mu.Unlock()
	l.Record(entry(100))
	require.Equal(t, uint64(1), l.Dropped()["mem"], "a record after close is dropped and counted")
}

func TestLoggerWithStore(t *testing.T) {
	dir := t.TempDir()
	l, err := New(context.Background(), Config{Store: StoreConfig{Dir: dir}, Filter: FilterConfig{SampleRate: 1}}, zap.NewNop())
	require.NoError(t, err)
	require.True(t, l.Enabled())
	require.Equal(t, []string{SinkStore}, l.Sinks())
	require.True(t, l.Keep(200, false, false, ""))
	l.Record(entry(1))
	require.Eventually(t, func() bool {
		res, err := l.Query(Query{})
		return err == nil && len(res.Entries) == 1
	}, 5*time.Second, 10*time.Millisecond, "a query sees a record as soon as the queue has run empty")
	require.NoError(t, l.Close(context.Background()))

	none, err := New(context.Background(), Config{}, zap.NewNop())
	require.NoError(t, err)
	require.False(t, none.Enabled())
	require.False(t, none.Keep(503, true, true, "x"))
	_, err = none.Query(Query{})
	require.ErrorIs(t, err, ErrNoStore)
}

func TestEncodeLine(t *testing.T) {
	e := entry(7)
	e.Route = "HTTPRoute shop/api rule 0"
	e.Attempts = 2
	buf, err := encode(newEncoder(), e)
	require.NoError(t, err)
	defer buf.Free()
	line := buf.String()
	require.Equal(t, `{"start_time":"2026-11-25T12:00:00.007Z","duration_ms":1.5,"protocol":"http","reporter":"source",`+
		`"trace_id":"00000000000000000000000000000008","span_id":"0000000000000008","request_id":"req-7",`+
		`"source_workload":"client","source_namespace":"shop","source_principal":"spiffe://cluster.local/ns/shop/sa/client","source_pod":"client-7d9f",`+
		`"destination_workload":"product","destination_namespace":"shop","destination_pod":"product-v1","destination_service":"product.shop.svc.cluster.local",`+
		`"route":"HTTPRoute shop/api rule 0","method":"GET","authority":"product.shop","path":"/items/7","response_code":200,"response_flags":"-",`+
		`"bytes_received":0,"bytes_sent":120,"upstream_host":"10.244.1.11:8080","attempts":2,"connection_security_policy":"none"}`+"\n", line)
	var back Entry
	require.NoError(t, json.Unmarshal(buf.Bytes(), &back))
	require.Equal(t, *e, back, "a line decodes into the entry it came from")
}

func BenchmarkRecord(b *testing.B) {
	// Everything is kept: the cost of the decision and the enqueue (or,
	// when the sink falls behind, the counted drop).
	l, err := newLogger(Config{QueueSize: 1 << 16, Filter: FilterConfig{SampleRate: 1}}, zap.NewNop(),
		namedSink{"discard", funcSink{func([]*Entry) error { return nil }}})
	require.NoError(b, err)
	e := entry(1)
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if l.Keep(200, false, true, e.TraceID) {
			l.Record(e)
		}
	}
	b.StopTimer()
	require.NoError(b, l.Close(context.Background()))
	require.Equal(b, uint64(b.N), l.Dropped()["discard"]+l.Written()["discard"])
}
