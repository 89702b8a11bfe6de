package l7proxy

import (
	"encoding/json"
	"io"
	"net/http"
	"net/netip"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/skeinmesh/skein/l7proxy/balancer"
)

// TestRetryAfterTunnelAttempt checks that a request whose first attempt
// went through the tunnel (and failed: the peer could not connect to its
// pod) is retried on a local endpoint as a plain request: http, to the
// endpoint, without the tunnel's headers. The first attempt sends the
// reverse proxy's request itself, changed in place; the retry must undo
// that.
func TestRetryAfterTunnelAttempt(t *testing.T) {
	local := startBackend(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		_ = json.NewEncoder(w).Encode(map[string]any{"host": r.Host, "header": r.Header})
	}))
	remoteDown := refusedAddr(t)
	np := startNodePair(t, remoteDown, ProtocolHTTP)
	log := &requestLog{}
	// Node a again, with a recorder and both endpoints.
	np.a = startProxy(t, Config{Tunnel: np.a.proxy.cfg.Tunnel, TunnelPort: np.a.proxy.cfg.TunnelPort, RequestRecorder: log})
	np.a.proxy.Update(&Table{
		LocalNode: "a",
		Nodes:     map[string]netip.Addr{"b": np.nodeB},
		Services: map[netip.AddrPort]*Service{np.vip: {
			Namespace: "bench", Name: "server", Host: "server.bench.svc.cluster.local", Port: 80, Protocol: ProtocolHTTP,
			Endpoints: []*Endpoint{
				{Addr: remoteDown, Node: "b", Workload: np.dst},
				{Addr: local, Node: "a", Workload: &Workload{Name: "server", Namespace: "bench", Node: "a", Meshed: true}},
			},
			Balancer: balancer.Config{Policy: balancer.RoundRobin},
		}},
	})
	c := np.a.client(t, np.vip, np.src)
	for i := 0; i < 6; i++ {
		resp, err := c.Post("http://"+np.vip.String()+"/x", "text/plain", strings.NewReader(""))
		require.NoError(t, err)
		var got struct {
			Host   string
			Header http.Header
		}
		err = json.NewDecoder(resp.Body).Decode(&got)
		resp.Body.Close()
		require.NoError(t, err)
		require.Equal(t, http.StatusOK, resp.StatusCode)
		require.Equal(t, np.vip.String(), got.Host)
		for k := range got.Header {
			require.False(t, strings.HasPrefix(k, "Skein-"), "request %d reached the pod with %s: %v", i, k, got.Header)
		}
	}
	retried := 0
	for _, r := range log.all() {
		if r.Attempts > 1 {
			retried++
			require.Equal(t, local, r.Upstream)
		}
	}
	require.Positive(t, retried, "no request met the endpoint behind the tunnel")
}

// TestTunnelLeavesAcceptEncoding checks that the pod behind the tunnel
// sees the client's Accept-Encoding as sent, and none when the client sent
// none: the tunnel's HTTP/2 client must not ask for gzip on its own.
func TestTunnelLeavesAcceptEncoding(t *testing.T) {
	backend := startBackend(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.WriteString(w, r.Header.Get("Accept-Encoding"))
	}))
	np := startNodePair(t, backend, ProtocolHTTP)
	c := np.a.client(t, np.vip, np.src)
	for _, want := range []string{"", "br"} {
		req, err := http.NewRequest(http.MethodGet, "http://"+np.vip.String()+"/", nil)
		require.NoError(t, err)
		if want != "" {
			req.Header.Set("Accept-Encoding", want)
		}
		resp, err := c.Do(req)
		require.NoError(t, err)
		got, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		require.NoError(t, err)
		require.Equal(t, want, string(got))
	}
}
