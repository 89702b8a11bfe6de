//go:build linux

package agent

import (
	"context"
	"errors"
	"net/netip"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.uber.org/zap"

	"github.com/skeinmesh/skein/agent/admin"
	"github.com/skeinmesh/skein/l7proxy"
	"github.com/skeinmesh/skein/l7proxy/route"
	"github.com/skeinmesh/skein/telemetry"
	"github.com/skeinmesh/skein/telemetry/accesslog"
)

// TestAccessLogRecords checks what the proxy's records become in the
// access log and how the admin API answers for them.
func TestAccessLogRecords(t *testing.T) {
	cfg := Config{AccessLogDir: t.TempDir(), NodeName: "node-a", AccessLogSampleRate: 1, AccessLogPathRedaction: "route"}
	a := &Agent{cfg: cfg, log: zap.NewNop(), requests: telemetry.NewRequestMetrics()}
	require.NoError(t, a.openAccessLog(context.Background()))
	client := &l7proxy.Workload{Name: "client", Namespace: "shop", Pod: "client-1", Identity: "spiffe://cluster.local/ns/shop/sa/client"}
	product := &l7proxy.Workload{Name: "product", Namespace: "shop", Pod: "product-v1", Identity: "spiffe://cluster.local/ns/shop/sa/product"}
	start := time.Now().Add(-time.Second).UTC()
	ref := route.RouteRef{RouteID: route.RouteID{Kind: "HTTPRoute", Namespace: "shop", Name: "api"}, RuleIndex: 1}
	a.RecordRequest(&l7proxy.RequestRecord{
		Start: start, Duration: 1500 * time.Microsecond, Source: client, Dest: product,
		OrigDst: netip.MustParseAddrPort("10.96.0.10:80"), Upstream: netip.MustParseAddrPort("10.244.1.11:8080"),
		Service: &l7proxy.Service{Namespace: "shop", Name: "product", Host: "product.shop.svc.cluster.local"}, Route: &ref,
		Method: "GET", Authority: "product.shop", Path: "/users/4711", Protocol: "http", Code: 503, Flags: []string{"UF"},
		ReqBytes: 3, RespBytes: 40, Reporter: "source", Security: "mutual_tls", Err: errors.New("connect: connection refused"),
		TraceID: "4bf92f3577b34da6a3ce929d0e0e4736", SpanID: "00f067aa0ba902b7", Sampled: true, RequestID: "req-1",
	})
	a.RecordConnection(l7proxy.ConnRecord{
		Start: start.Add(time.Millisecond), Duration: time.Second, Source: client, OrigDst: netip.MustParseAddrPort("10.96.0.30:5432"),
		Upstream: netip.MustParseAddrPort("10.244.2.20:5432"), Flag: l7proxy.FlagNone, SentBytes: 10, RecvBytes: 20,
		Reporter: "source", Security: "mutual_tls",
	})
	var logs admin.Logs
	require.Eventually(t, func() bool {
		var err error
		logs, err = a.Logs(admin.LogQuery{Workload: "shop/client"})
		return err == nil && len(logs.Entries) == 2
	}, 5*time.Second, 10*time.Millisecond)
	require.True(t, logs.Enabled)
	require.Equal(t, admin.LogEntry{
		Start: start, DurationMS: 1.5, Protocol: "http", Reporter: "source",
		TraceID: "4bf92f3577b34da6a3ce929d0e0e4736", SpanID: "00f067aa0ba902b7", RequestID: "req-1",
		SourceWorkload: "client", SourceNamespace: "shop", SourcePrincipal: "spiffe://cluster.local/ns/shop/sa/client", SourcePod: "client-1",
		DestinationWorkload: "product", DestinationNamespace: "shop", DestinationPrincipal: "spiffe://cluster.local/ns/shop/sa/product",
		DestinationPod: "product-v1", DestinationService: "product.shop.svc.cluster.local",
		Route: "HTTPRoute shop/api rule 1", Method: "GET", Authority: "product.shop", Path: "HTTPRoute shop/api rule 1",
		ResponseCode: 503, ResponseFlags: "UF", BytesReceived: 3, BytesSent: 40,
		UpstreamHost: "10.244.1.11:8080", OriginalDst: "10.96.0.10:80", ConnectionSecurityPolicy: "mutual_tls",
		Error: "connect: connection refused",
	}, logs.Entries[0], "path redacted to the route")
	tcp := logs.Entries[1]
	require.Equal(t, "tcp", tcp.Protocol)
	require.Equal(t, "-", tcp.ResponseFlags)
	require.Equal(t, int64(10), tcp.BytesReceived, "from the client")
	require.Equal(t, int64(20), tcp.BytesSent, "to the client")
	require.Equal(t, "10.96.0.30:5432", tcp.OriginalDst)

	_, err := a.Logs(admin.LogQuery{Status: "6xx"})
	var he *admin.HTTPError
	require.ErrorAs(t, err, &he)
	require.Equal(t, 400, he.Code)
	require.Equal(t, map[string]uint64{accesslog.SinkStore: 0}, a.AccessLogDropped())
	a.closeAccessLog()

	// Without a store: answered, not an error.
	b := &Agent{cfg: Config{NodeName: "node-a"}, log: zap.NewNop()}
	require.NoError(t, b.openAccessLog(context.Background()))
	logs, err = b.Logs(admin.LogQuery{})
	require.NoError(t, err)
	require.False(t, logs.Enabled)
	require.Nil(t, b.AccessLogDropped())
	b.logRequest(&l7proxy.RequestRecord{Code: 503})
	b.closeAccessLog()
}

// TestAccessLogQueryRedaction checks that the query string the proxy saw
// reaches the log only when redaction is "none".
func TestAccessLogQueryRedaction(t *testing.T) {
	for redaction, want := range map[string]string{"none": "/items?token=secret&page=2", "query": "/items", "": "/items"} {
		t.Run("redaction "+redaction, func(t *testing.T) {
			cfg := Config{AccessLogDir: t.TempDir(), NodeName: "node-a", AccessLogSampleRate: 1, AccessLogPathRedaction: redaction}
			a := &Agent{cfg: cfg, log: zap.NewNop(), requests: telemetry.NewRequestMetrics()}
			require.NoError(t, a.openAccessLog(context.Background()))
			defer a.closeAccessLog()
			a.RecordRequest(&l7proxy.RequestRecord{Start: time.Now(), Method: "GET", Path: "/items", Query: "token=secret&page=2",
				Protocol: "http", Code: 200, Reporter: "source", RequestID: "r", Sampled: true})
			var logs admin.Logs
			require.Eventually(t, func() bool {
				var err error
				logs, err = a.Logs(admin.LogQuery{})
				return err == nil && len(logs.Entries) == 1
			}, 5*time.Second, 10*time.Millisecond)
			require.Equal(t, want, logs.Entries[0].Path)
		})
	}
}
