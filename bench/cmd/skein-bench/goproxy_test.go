package main

import (
	"context"
	"fmt"
	"net"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

func freePort(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer ln.Close()
	return ln.Addr().String()
}

// The cross-node pair of Go proxies (plaintext in, TLS 1.3 with client
// certificates between them) carries HTTP/1.1 and h2c on loopback.
func TestGoProxyTLSPair(t *testing.T) {
	dir := t.TempDir()
	require.NoError(t, writeCerts(dir, "127.0.0.1"))
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	backend, peer, front := freePort(t), freePort(t), freePort(t)
	go serve(ctx, backend, 1024)
	go runGoProxy(ctx, goProxyConfig{Listen: peer, ListenTLS: true, TLSDir: dir, Upstream: "http://" + backend})
	go runGoProxy(ctx, goProxyConfig{Listen: front, TLSDir: dir, Upstream: "https://" + peer})
	for _, proto := range []string{"h1", "h2c"} {
		t.Run(proto, func(t *testing.T) {
			var r *loadResult
			require.Eventually(t, func() bool {
				var err error
				r, err = runLoad(ctx, loadConfig{Target: "http://" + front + "/", Proto: proto, Rate: 1000, Conns: 16,
					Duration: 200 * time.Millisecond, MaxRequests: 1000, Timeout: time.Second})
				return err == nil && r.Errors == 0
			}, 5*time.Second, 100*time.Millisecond, "last: %s", fmt.Sprint(r))
			require.Equal(t, 200, r.Requests, "1000 rps for 200ms")
		})
	}
}
