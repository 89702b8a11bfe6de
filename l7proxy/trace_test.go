package l7proxy

import (
	"context"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"
	"go.uber.org/zap"

	"github.com/skeinmesh/skein/telemetry/tracing"
)

// headerEcho answers with the request headers it received, as JSON.
func headerEcho(t *testing.T) netip.AddrPort {
	t.Helper()
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	require.NoError(t, err)
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_ = json.NewEncoder(w).Encode(r.Header)
	})}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	return netip.MustParseAddrPort(ln.Addr().String())
}

func TestTracing(t *testing.T) {
	backend := headerEcho(t)
	exp := tracetest.NewInMemoryExporter()
	tp := sdktrace.NewTracerProvider(
		sdktrace.WithSampler(sdktrace.ParentBased(sdktrace.AlwaysSample())),
		sdktrace.WithSyncer(exp))
	h := newHarness(t, Config{Tracing: Tracing{Tracer: tp.Tracer("test"), Propagator: tracing.Propagator()}})
	vip := netip.MustParseAddrPort("10.96.0.10:80")
	h.proxy.Update(&Table{Services: map[netip.AddrPort]*Service{
		vip: {Namespace: "shop", Name: "product", Host: "product.shop.svc.cluster.local", Port: 80, Protocol: ProtocolHTTP,
			Endpoints: []*Endpoint{{Addr: backend}}},
	}})
	client := &http.Client{Transport: &http.Transport{DialContext: func(context.Context, string, string) (net.Conn, error) {
		return h.dialCaptured(t, vip.String(), &Workload{Name: "client", Namespace: "shop"})
	}, DisableKeepAlives: true}}
	get := func(t *testing.T, hdr map[string]string) http.Header {
		req, _ := http.NewRequest(http.MethodGet, "http://"+vip.String()+"/items", nil)
		for k, v := range hdr {
			req.Header.Set(k, v)
		}
		resp, err := client.Do(req)
		require.NoError(t, err)
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		var got http.Header
		require.NoError(t, json.Unmarshal(b, &got), string(b))
		return got
	}
	const traceID = "4bf92f3577b34da6a3ce929d0e0e4736"
	// The span ends after the response went out: wait for it.
	spansAfter := func(t *testing.T, n int) tracetest.SpanStubs {
		t.Helper()
		require.Eventually(t, func() bool { return len(exp.GetSpans()) >= n }, 5*time.Second, 5*time.Millisecond)
		time.Sleep(20 * time.Millisecond)
		return exp.GetSpans()
	}

	t.Run("a W3C parent is continued and the upstream sees the proxy's span as parent", func(t *testing.T) {
		exp.Reset()
		got := get(t, map[string]string{"traceparent": "00-" + traceID + "-00f067aa0ba902b7-01", "tracestate": "vendor=x"})
		tp := got.Get("Traceparent")
		require.True(t, strings.HasPrefix(tp, "00-"+traceID+"-"), tp)
		require.NotContains(t, tp, "00f067aa0ba902b7", "the parent is now the proxy's span")
		require.True(t, strings.HasSuffix(tp, "-01"))
		require.Equal(t, "vendor=x", got.Get("Tracestate"))
		require.Equal(t, traceID, got.Get("X-B3-Traceid"), "B3 headers are written too")
		spans := spansAfter(t, 1)
		require.Len(t, spans, 1)
		require.Equal(t, traceID, spans[0].SpanContext.TraceID().String())
		require.Equal(t, "00f067aa0ba902b7", spans[0].Parent.SpanID().String())
		require.Equal(t, trace.SpanKindClient, spans[0].SpanKind)
		attrs := map[string]string{}
		for _, a := range spans[0].Attributes {
			attrs[string(a.Key)] = a.Value.Emit()
		}
		require.Equal(t, "GET", attrs["http.request.method"])
		require.Equal(t, "200", attrs["http.response.status_code"])
		require.Equal(t, "client", attrs["skein.source.workload"])
		require.Equal(t, "product.shop.svc.cluster.local", attrs["skein.destination.service"])
	})

	t.Run("a B3 single header is continued", func(t *testing.T) {
		exp.Reset()
		got := get(t, map[string]string{"b3": "80f198ee56343ba864fe8b2a57d3eff7-e457b5a2e4d86bd1-1"})
		require.Equal(t, "80f198ee56343ba864fe8b2a57d3eff7", got.Get("X-B3-Traceid"))
		require.Contains(t, got.Get("Traceparent"), "80f198ee56343ba864fe8b2a57d3eff7")
		require.Len(t, spansAfter(t, 1), 1)
		require.Equal(t, "e457b5a2e4d86bd1", exp.GetSpans()[0].Parent.SpanID().String())
	})

	t.Run("B3 multi headers are continued", func(t *testing.T) {
		exp.Reset()
		got := get(t, map[string]string{"X-B3-TraceId": "463ac35c9f6413ad48485a3953bb6124", "X-B3-SpanId": "a2fb4a1d1a96d312", "X-B3-Sampled": "1"})
		require.Equal(t, "463ac35c9f6413ad48485a3953bb6124", got.Get("X-B3-Traceid"))
		require.Len(t, spansAfter(t, 1), 1)
	})

	t.Run("an unsampled parent stays unsampled", func(t *testing.T) {
		exp.Reset()
		got := get(t, map[string]string{"traceparent": "00-" + traceID + "-00f067aa0ba902b7-00"})
		require.True(t, strings.HasSuffix(got.Get("Traceparent"), "-00"), got.Get("Traceparent"))
		require.Equal(t, "0", got.Get("X-B3-Sampled"))
		time.Sleep(100 * time.Millisecond)
		require.Empty(t, exp.GetSpans(), "nothing recorded")
	})

	t.Run("a request without a trace starts one and gets a request id", func(t *testing.T) {
		exp.Reset()
		got := get(t, nil)
		require.NotEmpty(t, got.Get("Traceparent"))
		require.Len(t, spansAfter(t, 1), 1)
		require.False(t, exp.GetSpans()[0].Parent.IsValid(), "a root span")
		require.Regexp(t, `^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$`, got.Get("X-Request-Id"))
		require.Equal(t, "kept", get(t, map[string]string{"X-Request-Id": "kept"}).Get("X-Request-Id"))
	})
}

func TestTracingQueueDropsInsteadOfBlocking(t *testing.T) {
	blocked := make(chan struct{})
	defer close(blocked)
	tr, err := tracing.New(context.Background(), tracing.Config{
		Exporter: blockingExporter{blocked}, SampleRate: 1, QueueSize: 10, BatchSize: 5,
	}, zap.NewNop())
	require.NoError(t, err)
	for i := 0; i < 100; i++ {
		_, s := tr.Tracer.Start(context.Background(), "x")
		s.End() // must never block
	}
	require.GreaterOrEqual(t, tr.Dropped(), uint64(80), "the queue holds 10 and one batch is stuck in export")
}

type blockingExporter struct{ ch chan struct{} }

func (b blockingExporter) ExportSpans(ctx context.Context, _ []sdktrace.ReadOnlySpan) error {
	select {
	case <-b.ch:
	case <-ctx.Done():
	}
	return nil
}
func (blockingExporter) Shutdown(context.Context) error { return nil }
