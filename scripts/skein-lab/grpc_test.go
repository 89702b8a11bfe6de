package main

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	testpb "google.golang.org/grpc/interop/grpc_testing"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
)

// startGRPCServer serves the gRPC test backend as pod on a loopback port
// until the test ends, and returns its address.
func startGRPCServer(t testing.TB, pod string) string {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	addrc := make(chan net.Addr, 1)
	errc := make(chan error, 1)
	go func() { errc <- serveGRPC(ctx, "127.0.0.1:0", pod, func(a net.Addr) { addrc <- a }) }()
	var addr net.Addr
	select {
	case addr = <-addrc:
	case err := <-errc:
		t.Fatalf("grpc-server: %v", err)
	case <-time.After(5 * time.Second):
		t.Fatal("grpc-server did not start")
	}
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-errc:
			require.NoError(t, err)
		case <-time.After(10 * time.Second):
			t.Error("grpc-server did not stop")
		}
	})
	return addr.String()
}

// startBalancingProxy serves, on a loopback port until the test ends, a
// miniature of the mesh's proxy: HTTP/1.1 and h2c in, h2c out, each request
// to the next backend in turn. It returns its address.
//
// The outgoing request body is the incoming one, not ReverseProxy's
// no-op-Close wrapper, so that when a backend ends a stream before the client
// half-closes it (a status on the first message of a FullDuplexCall), the
// HTTP/2 transport can abort the body copy; otherwise closing the response
// body waits for a request body that never ends (golang/go#48908, #80085),
// and the call hangs until its deadline.
func startBalancingProxy(t testing.TB, backends ...string) string {
	t.Helper()
	var next atomic.Uint64
	var out http.Protocols
	out.SetUnencryptedHTTP2(true)
	transport := &http.Transport{Protocols: &out}
	t.Cleanup(transport.CloseIdleConnections)
	proxy := &httputil.ReverseProxy{
		Rewrite: func(pr *httputil.ProxyRequest) {
			b := backends[(next.Add(1)-1)%uint64(len(backends))]
			pr.SetURL(&url.URL{Scheme: "http", Host: b})
			if pr.In.Body != nil && pr.In.Body != http.NoBody {
				pr.Out.Body = pr.In.Body
			}
		},
		Transport:     transport,
		FlushInterval: -1,
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	srv := newEchoServer(proxy)
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	return ln.Addr().String()
}

func TestGRPCClient(t *testing.T) {
	a, b := startGRPCServer(t, "product-v1"), startGRPCServer(t, "product-v2")
	proxy := startBalancingProxy(t, a, b)

	tests := []struct {
		name       string
		cfg        grpcClientConfig
		wantOK     int
		wantErrors map[string]int
		wantByHost map[string]int
		wantTrail  map[string]string
	}{
		{
			name:       "unary, balanced per call over one connection",
			cfg:        grpcClientConfig{Target: proxy, Calls: 100, Concurrency: 4, Metadata: metadata.Pairs("traceparent", "00-abc-def-01")},
			wantOK:     100,
			wantByHost: map[string]int{"product-v1": 50, "product-v2": 50},
			wantTrail:  map[string]string{"x-echo-traceparent": "00-abc-def-01"},
		},
		{
			name:       "unary, direct",
			cfg:        grpcClientConfig{Target: a, Calls: 20, Concurrency: 3},
			wantOK:     20,
			wantByHost: map[string]int{"product-v1": 20},
			wantTrail:  map[string]string{"x-echo-authority": a, "x-echo-content-type": "application/grpc"},
		},
		{
			name:       "unary, status code propagated",
			cfg:        grpcClientConfig{Target: proxy, Calls: 10, Concurrency: 2, StatusCode: codes.Unavailable, Metadata: metadata.Pairs("x-test", "1")},
			wantErrors: map[string]int{"Unavailable": 10},
			wantTrail:  map[string]string{"x-echo-x-test": "1"},
		},
		{
			name:       "full duplex, direct",
			cfg:        grpcClientConfig{Target: a, Calls: 5, Concurrency: 2, StreamMessages: 20},
			wantOK:     5,
			wantByHost: map[string]int{"product-v1": 5},
		},
		{
			name:       "full duplex, balanced per stream over one connection",
			cfg:        grpcClientConfig{Target: proxy, Calls: 10, Concurrency: 1, StreamMessages: 7, Metadata: metadata.Pairs("traceparent", "00-abc-def-01")},
			wantOK:     10,
			wantByHost: map[string]int{"product-v1": 5, "product-v2": 5},
			wantTrail:  map[string]string{"x-echo-traceparent": "00-abc-def-01"},
		},
		{
			name:       "full duplex, status code, direct",
			cfg:        grpcClientConfig{Target: a, Calls: 4, Concurrency: 2, StreamMessages: 3, StatusCode: codes.PermissionDenied},
			wantErrors: map[string]int{"PermissionDenied": 4},
		},
		{
			name:       "full duplex, status code propagated",
			cfg:        grpcClientConfig{Target: proxy, Calls: 4, Concurrency: 2, StreamMessages: 3, StatusCode: codes.PermissionDenied},
			wantErrors: map[string]int{"PermissionDenied": 4},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tt.cfg.Deadline, tt.cfg.Timeout = 5*time.Second, 30*time.Second
			sum, err := runGRPCClient(context.Background(), tt.cfg)
			require.NoError(t, err)
			require.Equal(t, tt.cfg.Calls, sum.Calls)
			require.Equal(t, tt.wantOK, sum.OK, "first error: %s", sum.FirstError)
			require.Equal(t, orEmpty(tt.wantErrors), sum.Errors)
			require.Equal(t, orEmpty(tt.wantByHost), sum.ByHost)
			require.EqualValues(t, 1, sum.Connections, "all calls share one connection")
			for k, v := range tt.wantTrail {
				require.Equal(t, v, sum.Trailers[k], "trailer %s in %v", k, sum.Trailers)
			}
			require.Positive(t, sum.LatencyMs.Max)
			require.LessOrEqual(t, sum.LatencyMs.P50, sum.LatencyMs.P99)
		})
	}
}

func orEmpty(m map[string]int) map[string]int {
	if m == nil {
		return map[string]int{}
	}
	return m
}

func TestGRPCClientNoServer(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	addr := ln.Addr().String()
	require.NoError(t, ln.Close())

	sum, err := runGRPCClient(context.Background(), grpcClientConfig{Target: addr, Calls: 3, Concurrency: 1, Deadline: time.Second, Timeout: 10 * time.Second})
	require.ErrorContains(t, err, "no connection")
	require.Equal(t, 3, sum.Calls)
	require.Equal(t, map[string]int{"Unavailable": 3}, sum.Errors)
}

func TestGRPCClientConfigValidate(t *testing.T) {
	ok := grpcClientConfig{Target: "127.0.0.1:9000", Calls: 1, Concurrency: 1, Deadline: time.Second, Timeout: time.Second}
	tests := []struct {
		name    string
		mutate  func(*grpcClientConfig)
		wantErr string
	}{
		{name: "valid", mutate: func(*grpcClientConfig) {}},
		{name: "no target", mutate: func(c *grpcClientConfig) { c.Target = "" }, wantErr: "--target"},
		{name: "too many calls", mutate: func(c *grpcClientConfig) { c.Calls = maxLoadCalls + 1 }, wantErr: "--calls"},
		{name: "no calls", mutate: func(c *grpcClientConfig) { c.Calls = 0 }, wantErr: "--calls"},
		{name: "no concurrency", mutate: func(c *grpcClientConfig) { c.Concurrency = 0 }, wantErr: "--concurrency"},
		{name: "too many messages", mutate: func(c *grpcClientConfig) { c.StreamMessages = maxStreamMessages + 1 }, wantErr: "--stream-messages"},
		{name: "no timeout", mutate: func(c *grpcClientConfig) { c.Timeout = 0 }, wantErr: "--timeout"},
		{name: "bad status code", mutate: func(c *grpcClientConfig) { c.StatusCode = 17 }, wantErr: "--status-code"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := ok
			tt.mutate(&cfg)
			err := cfg.validate()
			if tt.wantErr == "" {
				require.NoError(t, err)
				return
			}
			require.ErrorContains(t, err, tt.wantErr)
		})
	}
}

func TestParseMetadataFlags(t *testing.T) {
	tests := []struct {
		name    string
		in      []string
		want    metadata.MD
		wantErr string
	}{
		{name: "pairs", in: []string{"traceparent=00-a-b-01", "X-Env=canary", "x-env=blue", "k=a=b"},
			want: metadata.MD{"traceparent": {"00-a-b-01"}, "x-env": {"canary", "blue"}, "k": {"a=b"}}},
		{name: "binary value", in: []string{"x-bin=\x01"}, want: metadata.MD{"x-bin": {"\x01"}}},
		{name: "no equals", in: []string{"traceparent"}, wantErr: "want key=value"},
		{name: "reserved", in: []string{"grpc-timeout=1S"}, wantErr: "reserved"},
		{name: "bad key", in: []string{"a b=c"}, wantErr: "a key has only"},
		{name: "bad value", in: []string{"k=\x01"}, wantErr: "printable ASCII"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := parseMetadataFlags(tt.in)
			if tt.wantErr != "" {
				require.ErrorContains(t, err, tt.wantErr)
				return
			}
			require.NoError(t, err)
			require.Equal(t, tt.want, got)
		})
	}
}

// TestGRPCServer checks the server's side of the contract with a plain
// grpc-go client, independent of grpc-client.
func TestGRPCServer(t *testing.T) {
	addr := startGRPCServer(t, "product-v1")
	conn, err := grpc.NewClient("passthrough:///"+addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	require.NoError(t, err)
	t.Cleanup(func() { conn.Close() })
	client := testpb.NewTestServiceClient(conn)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	t.Cleanup(cancel)

	t.Run("unary sizes, hostname and echoed metadata", func(t *testing.T) {
		tests := []struct {
			name     string
			req      *testpb.SimpleRequest
			wantBody []byte
			wantCode codes.Code
		}{
			{name: "echo", req: &testpb.SimpleRequest{Payload: &testpb.Payload{Body: []byte("abc")}}, wantBody: []byte("abc")},
			{name: "padded", req: &testpb.SimpleRequest{ResponseSize: 5, Payload: &testpb.Payload{Body: []byte("abc")}}, wantBody: []byte("abc\x00\x00")},
			{name: "truncated", req: &testpb.SimpleRequest{ResponseSize: 2, Payload: &testpb.Payload{Body: []byte("abc")}}, wantBody: []byte("ab")},
			{name: "too large", req: &testpb.SimpleRequest{ResponseSize: maxGRPCPayload + 1}, wantCode: codes.InvalidArgument},
			{name: "status", req: &testpb.SimpleRequest{ResponseStatus: &testpb.EchoStatus{Code: int32(codes.ResourceExhausted), Message: "full"}}, wantCode: codes.ResourceExhausted},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				var header, trailer metadata.MD
				mctx := metadata.AppendToOutgoingContext(ctx, "traceparent", "00-x-y-01")
				resp, err := client.UnaryCall(mctx, tt.req, grpc.Header(&header), grpc.Trailer(&trailer))
				require.Equal(t, tt.wantCode, status.Code(err), "%v", err)
				require.Equal(t, []string{"00-x-y-01"}, trailer.Get("x-echo-traceparent"), "trailer %v", trailer)
				if tt.wantCode != codes.OK {
					return
				}
				require.Equal(t, "product-v1", resp.GetHostname())
				require.Equal(t, []string{"product-v1"}, header.Get(grpcHostnameHeader))
				require.Equal(t, tt.wantBody, resp.GetPayload().GetBody())
			})
		}
	})

	t.Run("streaming output", func(t *testing.T) {
		stream, err := client.StreamingOutputCall(ctx, &testpb.StreamingOutputCallRequest{
			ResponseParameters: []*testpb.ResponseParameters{{Size: 3}, {Size: 0}, {Size: 1000, IntervalUs: 1000}},
		})
		require.NoError(t, err)
		var sizes []int
		for {
			resp, err := stream.Recv()
			if errors.Is(err, io.EOF) {
				break
			}
			require.NoError(t, err)
			sizes = append(sizes, len(resp.GetPayload().GetBody()))
		}
		require.Equal(t, []int{3, 0, 1000}, sizes)
		header, err := stream.Header()
		require.NoError(t, err)
		require.Equal(t, []string{"product-v1"}, header.Get(grpcHostnameHeader))
	})

	t.Run("streaming input", func(t *testing.T) {
		stream, err := client.StreamingInputCall(ctx)
		require.NoError(t, err)
		for _, n := range []int{1, 10, 100} {
			require.NoError(t, stream.Send(&testpb.StreamingInputCallRequest{Payload: &testpb.Payload{Body: make([]byte, n)}}))
		}
		resp, err := stream.CloseAndRecv()
		require.NoError(t, err)
		require.EqualValues(t, 111, resp.GetAggregatedPayloadSize())
	})

	t.Run("full duplex echoes a payload without response parameters", func(t *testing.T) {
		stream, err := client.FullDuplexCall(ctx)
		require.NoError(t, err)
		require.NoError(t, stream.Send(&testpb.StreamingOutputCallRequest{Payload: &testpb.Payload{Body: []byte("ping")}}))
		resp, err := stream.Recv()
		require.NoError(t, err)
		require.Equal(t, []byte("ping"), resp.GetPayload().GetBody())
		require.NoError(t, stream.CloseSend())
		_, err = stream.Recv()
		require.ErrorIs(t, err, io.EOF)
	})

	t.Run("health", func(t *testing.T) {
		hc := healthpb.NewHealthClient(conn)
		for _, svc := range []string{"", "grpc.testing.TestService"} {
			resp, err := hc.Check(ctx, &healthpb.HealthCheckRequest{Service: svc})
			require.NoError(t, err)
			require.Equal(t, healthpb.HealthCheckResponse_SERVING, resp.GetStatus(), "service %q", svc)
		}
	})
}
