package main

import (
	"bufio"
	"context"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// startEchoPod serves the echo backend as pod on a loopback port until the
// test ends, and returns its address.
func startEchoPod(t testing.TB, pod string) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	srv := newEchoServer(withLabRoutes(echoHandler{pod: pod, namespace: "shop", node: "node-a"}))
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	return ln.Addr().String()
}

func TestHTTPLoad(t *testing.T) {
	a, b := startEchoPod(t, "product-v1"), startEchoPod(t, "product-v2")
	proxy := startBalancingProxy(t, a, b)
	plain := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		io.WriteString(w, "not JSON")
	}))
	t.Cleanup(plain.Close)
	hangsUp := serveRaw(t, func(net.Conn, *bufio.Reader) {})

	tests := []struct {
		name            string
		cfg             httpLoadConfig
		wantByStatus    map[string]int
		wantByPod       map[string]int
		wantByProto     map[string]int
		wantErrors      int
		wantConnections int64 // 0: at least 1, at most the concurrency
	}{
		{
			name:         "http/1.1 over keep-alive connections",
			cfg:          httpLoadConfig{URL: "http://" + a + "/", Requests: 60, Concurrency: 4},
			wantByStatus: map[string]int{"200": 60}, wantByPod: map[string]int{"product-v1": 60}, wantByProto: map[string]int{"HTTP/1.1": 60},
		},
		{
			name:         "h2c with prior knowledge, one connection",
			cfg:          httpLoadConfig{URL: "http://" + a + "/", Requests: 60, Concurrency: 8, HTTP2: true},
			wantByStatus: map[string]int{"200": 60}, wantByPod: map[string]int{"product-v1": 60}, wantByProto: map[string]int{"HTTP/2.0": 60},
			wantConnections: 1,
		},
		{
			name:         "status counted with its pod",
			cfg:          httpLoadConfig{URL: "http://" + a + "/x?status=503", Requests: 10, Concurrency: 2},
			wantByStatus: map[string]int{"503": 10}, wantByPod: map[string]int{"product-v1": 10}, wantByProto: map[string]int{"HTTP/1.1": 10},
		},
		{
			name:         "balanced per request over two pods",
			cfg:          httpLoadConfig{URL: "http://" + proxy + "/", Requests: 100, Concurrency: 5},
			wantByStatus: map[string]int{"200": 100}, wantByPod: map[string]int{"product-v1": 50, "product-v2": 50}, wantByProto: map[string]int{"HTTP/1.1": 100},
		},
		{
			name:         "balanced per request over one h2c connection",
			cfg:          httpLoadConfig{URL: "http://" + proxy + "/", Requests: 100, Concurrency: 5, HTTP2: true},
			wantByStatus: map[string]int{"200": 100}, wantByPod: map[string]int{"product-v1": 50, "product-v2": 50}, wantByProto: map[string]int{"HTTP/2.0": 100},
			wantConnections: 1,
		},
		{
			name:         "a body that names no pod",
			cfg:          httpLoadConfig{URL: plain.URL, Requests: 5, Concurrency: 1},
			wantByStatus: map[string]int{"200": 5}, wantByPod: map[string]int{}, wantByProto: map[string]int{"HTTP/1.1": 5},
			wantConnections: 1,
		},
		{
			name:         "a server that hangs up",
			cfg:          httpLoadConfig{URL: "http://" + hangsUp + "/", Requests: 5, Concurrency: 1},
			wantByStatus: map[string]int{}, wantByPod: map[string]int{}, wantByProto: map[string]int{}, wantErrors: 5,
			wantConnections: 5,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tt.cfg.Method, tt.cfg.RequestTimeout, tt.cfg.Timeout = http.MethodGet, 5*time.Second, 30*time.Second
			sum, err := runHTTPLoad(context.Background(), tt.cfg)
			require.NoError(t, err)
			require.Equal(t, tt.cfg.Requests, sum.Requests)
			require.Equal(t, tt.wantErrors, sum.Errors, "first error: %s", sum.FirstError)
			require.Equal(t, tt.wantByStatus, sum.ByStatus)
			require.Equal(t, tt.wantByPod, sum.ByPod)
			require.Equal(t, tt.wantByProto, sum.ByProto)
			if tt.wantConnections != 0 {
				require.Equal(t, tt.wantConnections, sum.Connections)
			} else {
				require.Positive(t, sum.Connections)
				require.LessOrEqual(t, sum.Connections, int64(tt.cfg.Concurrency), "connections are kept alive")
			}
			if tt.wantErrors < tt.cfg.Requests {
				require.Positive(t, sum.LatencyMs.Max)
			}
		})
	}
}

func TestHTTPLoadSendsHeadersAndHost(t *testing.T) {
	var (
		mu    sync.Mutex
		hosts = map[string]int{}
		envs  = map[string]int{}
	)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		hosts[r.Host]++
		envs[r.Header.Get("X-Env")]++
		mu.Unlock()
	}))
	t.Cleanup(srv.Close)
	h, err := parseHeaderFlags([]string{"X-Env: canary", "Host:reviews.shop"})
	require.NoError(t, err)
	sum, err := runHTTPLoad(context.Background(), httpLoadConfig{URL: srv.URL, Method: http.MethodGet, Requests: 4, Concurrency: 2, Header: h, Timeout: 10 * time.Second})
	require.NoError(t, err)
	require.Equal(t, map[string]int{"200": 4}, sum.ByStatus)
	require.Equal(t, map[string]int{"reviews.shop": 4}, hosts)
	require.Equal(t, map[string]int{"canary": 4}, envs)
}

func TestHTTPLoadNoServer(t *testing.T) {
	sum, err := runHTTPLoad(context.Background(), httpLoadConfig{URL: "http://" + closedPort(t) + "/", Requests: 3, Concurrency: 1, Timeout: 10 * time.Second})
	require.ErrorContains(t, err, "no connection")
	require.Equal(t, 3, sum.Requests)
	require.Equal(t, 3, sum.Errors)
}

func TestHTTPLoadConfigValidate(t *testing.T) {
	ok := httpLoadConfig{URL: "http://10.96.0.10/", Requests: 1, Concurrency: 1, Timeout: time.Second}
	tests := []struct {
		name    string
		mutate  func(*httpLoadConfig)
		wantErr string
	}{
		{name: "valid", mutate: func(*httpLoadConfig) {}},
		{name: "https", mutate: func(c *httpLoadConfig) { c.URL = "https://10.96.0.10/" }, wantErr: "--url"},
		{name: "no host", mutate: func(c *httpLoadConfig) { c.URL = "http:///x" }, wantErr: "--url"},
		{name: "too many requests", mutate: func(c *httpLoadConfig) { c.Requests = maxLoadCalls + 1 }, wantErr: "--requests"},
		{name: "too much concurrency", mutate: func(c *httpLoadConfig) { c.Concurrency = maxLoadConcurrency + 1 }, wantErr: "--concurrency"},
		{name: "negative request timeout", mutate: func(c *httpLoadConfig) { c.RequestTimeout = -1 }, wantErr: "--request-timeout"},
		{name: "no timeout", mutate: func(c *httpLoadConfig) { c.Timeout = 0 }, wantErr: "--timeout"},
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

func TestParseHeaderFlags(t *testing.T) {
	tests := []struct {
		name    string
		in      []string
		want    http.Header
		wantErr string
	}{
		{name: "headers", in: []string{"x-env: canary", "X-Env:blue", "Host: a.b"},
			want: http.Header{"X-Env": {"canary", "blue"}, "Host": {"a.b"}}},
		{name: "no colon", in: []string{"x-env"}, wantErr: "want Name:value"},
		{name: "bad name", in: []string{"x env: a"}, wantErr: "want Name:value"},
		{name: "bad value", in: []string{"x-env: a\r\nb: c"}, wantErr: "want Name:value"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := parseHeaderFlags(tt.in)
			if tt.wantErr != "" {
				require.ErrorContains(t, err, tt.wantErr)
				return
			}
			require.NoError(t, err)
			require.Equal(t, tt.want, got)
		})
	}
}

func TestSummarizeLatency(t *testing.T) {
	ms := func(ns ...int) []time.Duration {
		ds := make([]time.Duration, len(ns))
		for i, n := range ns {
			ds[i] = time.Duration(n) * time.Millisecond
		}
		return ds
	}
	hundred := make([]int, 100)
	for i := range hundred {
		hundred[i] = 100 - i
	}
	tests := []struct {
		name string
		in   []time.Duration
		want latencySummary
	}{
		{name: "none", in: nil, want: latencySummary{}},
		{name: "one", in: ms(7), want: latencySummary{P50: 7, P90: 7, P99: 7, Max: 7}},
		{name: "nearest rank of 1..100, unsorted", in: ms(hundred...), want: latencySummary{P50: 50, P90: 90, P99: 99, Max: 100}},
		{name: "microseconds kept", in: []time.Duration{1500 * time.Microsecond}, want: latencySummary{P50: 1.5, P90: 1.5, P99: 1.5, Max: 1.5}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			require.Equal(t, tt.want, summarizeLatency(tt.in))
		})
	}
}
