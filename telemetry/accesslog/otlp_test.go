package accesslog

import (
	"context"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/otel/attribute"
	otellog "go.opentelemetry.io/otel/log"
	sdklog "go.opentelemetry.io/otel/sdk/log"
	collogspb "go.opentelemetry.io/proto/otlp/collector/logs/v1"
	"go.uber.org/zap"
	"google.golang.org/grpc"
)

// memExporter keeps what it is given; with block set it hangs until ctx
// ends, as an unreachable collector would.
type memExporter struct {
	mu      sync.Mutex
	records []sdklog.Record
	block   chan struct{}
}

func (m *memExporter) Export(ctx context.Context, rs []sdklog.Record) error {
	if m.block != nil {
		select {
		case <-m.block:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, r := range rs {
		m.records = append(m.records, r.Clone())
	}
	return nil
}
func (m *memExporter) Shutdown(context.Context) error   { return nil }
func (m *memExporter) ForceFlush(context.Context) error { return nil }

func (m *memExporter) len() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return len(m.records)
}

func TestOTLPRecords(t *testing.T) {
	exp := &memExporter{}
	l, err := New(context.Background(), Config{OTLP: OTLPConfig{Exporter: exp, Node: "node-a"}}, zap.NewNop())
	require.NoError(t, err)
	ok := entry(1)
	failed := entry(2)
	failed.ResponseCode, failed.ResponseFlags, failed.Error = 503, "UF", "connect: connection refused"
	tcp := &Entry{Start: t0, Protocol: "tcp", Reporter: "source", OriginalDst: "10.96.0.30:5432", ResponseFlags: "-",
		SourceWorkload: "client", SourceNamespace: "shop", DestinationWorkload: "db", DestinationNamespace: "shop", BytesReceived: 10, BytesSent: 20}
	l.Record(ok)
	l.Record(failed)
	l.Record(tcp)
	require.NoError(t, l.Close(context.Background()))
	require.Equal(t, 3, exp.len())

	r := exp.records[0]
	require.Equal(t, ok.TraceID, r.TraceID().String())
	require.Equal(t, ok.SpanID, r.SpanID().String())
	require.Equal(t, ok.Start, r.Timestamp())
	require.Equal(t, otellog.SeverityInfo, r.Severity())
	require.Equal(t, "skein.access", r.EventName())
	require.Equal(t, "GET product.shop/items/1 200 - shop/client -> shop/product", r.Body().AsString())
	attrs := map[string]attribute.Value{}
	r.WalkAttributes(func(kv attribute.KeyValue) bool { attrs[string(kv.Key)] = kv.Value; return true })
	require.Equal(t, "client", attrs["source_workload"].AsString())
	require.Equal(t, int64(200), attrs["response_code"].AsInt64())
	require.Equal(t, "product.shop.svc.cluster.local", attrs["destination_service"].AsString())
	node, _ := r.Resource().Set().Value("k8s.node.name")
	require.Equal(t, "node-a", node.AsString())

	require.Equal(t, otellog.SeverityError, exp.records[1].Severity())
	require.Equal(t, "TCP 10.96.0.30:5432 - - shop/client -> shop/db", exp.records[2].Body().AsString())
	require.False(t, exp.records[2].TraceID().IsValid(), "no trace id, none made up")
}

func TestOTLPHungCollectorDrops(t *testing.T) {
	exp := &memExporter{block: make(chan struct{})}
	l, err := New(context.Background(), Config{QueueSize: 8, BatchSize: 2, OTLP: OTLPConfig{Exporter: exp, Timeout: time.Minute}}, zap.NewNop())
	require.NoError(t, err)
	start := time.Now()
	for i := 0; i < 1000; i++ {
		l.Record(entry(i))
	}
	require.Less(t, time.Since(start), 5*time.Second)
	require.GreaterOrEqual(t, l.Dropped()[SinkOTLP], uint64(1000-8-2))
	close(exp.block)
	require.NoError(t, l.Close(context.Background()))
	require.Equal(t, uint64(1000), l.Dropped()[SinkOTLP]+uint64(exp.len()))
}

// logsServer is an OTLP/gRPC logs collector.
type logsServer struct {
	collogspb.UnimplementedLogsServiceServer
	mu   sync.Mutex
	reqs []*collogspb.ExportLogsServiceRequest
}

func (s *logsServer) Export(_ context.Context, req *collogspb.ExportLogsServiceRequest) (*collogspb.ExportLogsServiceResponse, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.reqs = append(s.reqs, req)
	return &collogspb.ExportLogsServiceResponse{}, nil
}

func TestOTLPOverGRPC(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	srv := grpc.NewServer()
	ls := &logsServer{}
	collogspb.RegisterLogsServiceServer(srv, ls)
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(srv.Stop)

	l, err := New(context.Background(), Config{OTLP: OTLPConfig{Endpoint: ln.Addr().String(), Node: "node-b"}}, zap.NewNop())
	require.NoError(t, err)
	e := entry(42)
	l.Record(e)
	require.NoError(t, l.Close(context.Background()))

	ls.mu.Lock()
	defer ls.mu.Unlock()
	require.Len(t, ls.reqs, 1)
	rl := ls.reqs[0].ResourceLogs
	require.Len(t, rl, 1)
	lr := rl[0].ScopeLogs[0].LogRecords
	require.Len(t, lr, 1)
	require.Equal(t, e.TraceID, bytesHex(lr[0].TraceId))
	require.Equal(t, e.SpanID, bytesHex(lr[0].SpanId))
	require.Contains(t, lr[0].Body.GetStringValue(), "GET product.shop/items/42 200")
}

func bytesHex(b []byte) string {
	const digits = "0123456789abcdef"
	out := make([]byte, 0, 2*len(b))
	for _, c := range b {
		out = append(out, digits[c>>4], digits[c&15])
	}
	return string(out)
}
