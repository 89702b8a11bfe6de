package main

import (
	"bytes"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/skeinmesh/skein/agent/admin"
)

func TestRenderLogsGolden(t *testing.T) {
	logs := admin.Logs{Enabled: true, Dir: "/var/lib/skein/accesslog/node-a", Scanned: 812, Corrupt: 1, Truncated: true, Entries: []admin.LogEntry{
		{Start: now, DurationMS: 3.412, Protocol: "http", Reporter: "source", TraceID: "4bf92f3577b34da6a3ce929d0e0e4736", SpanID: "00f067aa0ba902b7",
			RequestID: "6f1c2a0e-8f4b-4d0a-9c1e-1f2e3d4c5b6a", SourceWorkload: "client", SourceNamespace: "shop", DestinationWorkload: "frontend",
			DestinationNamespace: "shop", DestinationService: "frontend.shop.svc.cluster.local", Route: "HTTPRoute shop/frontend rule 0",
			Method: "GET", Authority: "frontend.shop", Path: "/hello", ResponseCode: 200, ResponseFlags: "-", BytesSent: 912,
			UpstreamHost: "10.244.2.10:8080", ConnectionSecurityPolicy: "mutual_tls"},
		{Start: now.Add(1500 * time.Microsecond), DurationMS: 1.2, Protocol: "http", Reporter: "destination", TraceID: "4bf92f3577b34da6a3ce929d0e0e4736",
			SourceWorkload: "frontend", SourceNamespace: "shop", DestinationWorkload: "product", DestinationNamespace: "shop",
			Method: "GET", Authority: "10.96.0.20", Path: "/", ResponseCode: 503, ResponseFlags: "UF", UpstreamHost: "10.244.1.11:8080",
			ConnectionSecurityPolicy: "mutual_tls", Error: "connect: connection refused"},
		{Start: now.Add(2 * time.Second), DurationMS: 0.85, Protocol: "grpc", Reporter: "source", SourceWorkload: "client", SourceNamespace: "shop",
			DestinationService: "grpc-echo.shop.svc.cluster.local", Method: "POST", Authority: "grpc-echo.shop:9090", Path: "/echo.Echo/Say",
			ResponseCode: 200, GRPCStatus: "14", ResponseFlags: "-", BytesReceived: 12, BytesSent: 0},
		{Start: now.Add(3 * time.Second), DurationMS: 5001, Protocol: "tcp", Reporter: "source", SourceWorkload: "client", SourceNamespace: "shop",
			DestinationWorkload: "db", DestinationNamespace: "shop", OriginalDst: "10.96.0.30:5432", ResponseFlags: "UT", BytesReceived: 0, BytesSent: 0},
	}}
	tests := []struct {
		name string
		logs admin.Logs
		wide bool
	}{
		{"logs", logs, false},
		{"logs_wide", logs, true},
		{"logs_none", admin.Logs{Enabled: true, Dir: "/var/lib/skein/accesslog/node-a", Scanned: 40}, false},
		{"logs_disabled", admin.Logs{}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var b bytes.Buffer
			require.NoError(t, renderLogs(&b, tt.logs, tt.wide, time.UTC))
			golden(t, tt.name, b.Bytes())
		})
	}
}

func TestLogsQueryString(t *testing.T) {
	v := logsOpts{workload: "shop/client", trace: "4bf92f3577b34da6a3ce929d0e0e4736", status: "5xx", since: "10m", limit: 20}.values()
	require.Equal(t, "limit=20&since=10m&status=5xx&trace=4bf92f3577b34da6a3ce929d0e0e4736&workload=shop%2Fclient", v.Encode())
	q, err := admin.ParseLogQuery(v, now)
	require.NoError(t, err)
	require.Equal(t, admin.LogQuery{Workload: "shop/client", TraceID: "4bf92f3577b34da6a3ce929d0e0e4736", Status: "5xx",
		Since: now.Add(-10 * time.Minute), Limit: 20}, q)

	v.Set("until", "2026-11-25T12:30:00Z")
	q, err = admin.ParseLogQuery(v, now)
	require.NoError(t, err)
	require.Equal(t, time.Date(2026, 11, 25, 12, 30, 0, 0, time.UTC), q.Until)
	for _, bad := range []string{"yesterday", "-5m"} {
		v.Set("since", bad)
		_, err = admin.ParseLogQuery(v, now)
		require.ErrorContains(t, err, "since: ")
	}
}
