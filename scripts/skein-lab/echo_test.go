package main

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// startEcho serves the echo backend on a loopback port until the test ends.
func startEcho(t *testing.T) string {
	t.Helper()
	t.Setenv("SKEIN_LAB_POD", "product-v1")
	t.Setenv("SKEIN_LAB_NAMESPACE", "shop")
	t.Setenv("SKEIN_LAB_NODE", "node-a")
	ctx, cancel := context.WithCancel(context.Background())
	addrc := make(chan net.Addr, 1)
	errc := make(chan error, 1)
	go func() { errc <- serveEcho(ctx, "127.0.0.1:0", false, func(a net.Addr) { addrc <- a }) }()
	var addr net.Addr
	select {
	case addr = <-addrc:
	case err := <-errc:
		t.Fatalf("echo: %v", err)
	case <-time.After(5 * time.Second):
		t.Fatal("echo did not start")
	}
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-errc:
			require.NoError(t, err)
		case <-time.After(10 * time.Second):
			t.Error("echo did not stop")
		}
	})
	return "http://" + addr.String()
}

func get(t *testing.T, c *http.Client, url string, hdr ...string) (*http.Response, []byte) {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, url, nil)
	require.NoError(t, err)
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	resp, err := c.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	return resp, body
}

func TestEcho(t *testing.T) {
	base := startEcho(t)
	h1 := &http.Client{Timeout: 5 * time.Second}
	var h2cProtocols http.Protocols
	h2cProtocols.SetUnencryptedHTTP2(true)
	h2c := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{Protocols: &h2cProtocols}}

	tests := []struct {
		name       string
		client     *http.Client
		path       string
		wantStatus int
		wantProto  string
		check      func(t *testing.T, r echoReply, body []byte, elapsed time.Duration)
	}{
		{
			name: "http/1.1", client: h1, path: "/a/b?x=1&y=2", wantStatus: 200, wantProto: "HTTP/1.1",
			check: func(t *testing.T, r echoReply, _ []byte, _ time.Duration) {
				require.Equal(t, "/a/b", r.Path)
				require.Equal(t, "x=1&y=2", r.Query)
				require.Equal(t, "GET", r.Method)
				require.Equal(t, "yes", r.Headers["X-Test"])
				require.True(t, strings.HasPrefix(r.Remote, "127.0.0.1:"))
			},
		},
		{name: "h2c prior knowledge", client: h2c, path: "/", wantStatus: 200, wantProto: "HTTP/2.0"},
		{name: "status", client: h1, path: "/?status=503", wantStatus: 503, wantProto: "HTTP/1.1"},
		{name: "status over h2c", client: h2c, path: "/?status=429", wantStatus: 429, wantProto: "HTTP/2.0"},
		{
			name: "delay", client: h1, path: "/?delay=200ms", wantStatus: 200, wantProto: "HTTP/1.1",
			check: func(t *testing.T, _ echoReply, _ []byte, elapsed time.Duration) {
				require.GreaterOrEqual(t, elapsed, 200*time.Millisecond)
			},
		},
		{
			name: "size pads the body exactly", client: h1, path: "/?size=1024", wantStatus: 200, wantProto: "HTTP/1.1",
			check: func(t *testing.T, r echoReply, body []byte, _ time.Duration) {
				require.Len(t, body, 1024)
				require.NotEmpty(t, r.Padding)
			},
		},
		{
			name: "a size below the natural one is a no-op", client: h1, path: "/?size=10", wantStatus: 200, wantProto: "HTTP/1.1",
			check: func(t *testing.T, r echoReply, body []byte, _ time.Duration) {
				require.Greater(t, len(body), 10)
				require.Empty(t, r.Padding)
			},
		},
		{name: "bad delay", client: h1, path: "/?delay=soon", wantStatus: 400},
		{name: "bad status", client: h1, path: "/?status=42", wantStatus: 400},
		{name: "size too large", client: h1, path: "/?size=999999999", wantStatus: 400},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			start := time.Now()
			resp, body := get(t, tt.client, base+tt.path, "X-Test", "yes")
			elapsed := time.Since(start)
			require.Equal(t, tt.wantStatus, resp.StatusCode, "%s", body)
			if tt.wantStatus == 400 {
				return
			}
			require.Equal(t, "application/json", resp.Header.Get("Content-Type"))
			require.Equal(t, "product-v1", resp.Header.Get("X-Skein-Lab-Pod"))
			var r echoReply
			require.NoError(t, json.Unmarshal(body, &r), "%s", body)
			require.Equal(t, "product-v1", r.Pod)
			require.Equal(t, "shop", r.Namespace)
			require.Equal(t, "node-a", r.Node)
			require.Equal(t, tt.wantProto, r.Proto)
			require.Equal(t, tt.wantProto, resp.Proto)
			require.Equal(t, strings.TrimPrefix(base, "http://"), r.Host)
			if tt.check != nil {
				tt.check(t, r, body, elapsed)
			}
		})
	}
}

func TestEchoAbort(t *testing.T) {
	base := startEcho(t)
	c := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	_, err := c.Get(base + "/?abort=1")
	require.Error(t, err)
	require.True(t, errors.Is(err, syscall.ECONNRESET) || strings.Contains(err.Error(), "reset") || errors.Is(err, io.EOF),
		"the connection is reset, not answered: %v", err)
}

func TestMarshalPadded(t *testing.T) {
	r := echoReply{Pod: "p", Headers: map[string]string{}}
	natural, err := marshalPadded(r, 0)
	require.NoError(t, err)
	for _, size := range []int{len(natural) + 1, len(natural) + 13, len(natural) + 14, 4096} {
		body, err := marshalPadded(r, size)
		require.NoError(t, err)
		require.GreaterOrEqual(t, len(body), size)
		require.LessOrEqual(t, len(body), max(size, len(natural)+14), "size %d", size)
		if size >= len(natural)+14 {
			require.Len(t, body, size)
		}
	}
}
