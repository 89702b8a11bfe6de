package l7proxy

import (
	"context"
	"io"
	"net"
	"net/http"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/skeinmesh/skein/l7proxy/balancer"
)

type requestLog struct {
	mu   sync.Mutex
	recs []RequestRecord
}

func (l *requestLog) RecordRequest(r *RequestRecord) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.recs = append(l.recs, *r)
}

func (l *requestLog) all() []RequestRecord {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]RequestRecord(nil), l.recs...)
}

// httpClient sends HTTP/1.1 requests through the harness, as a captured
// app would.
func (h *harness) httpClient(t *testing.T, dst netip.AddrPort) *http.Client {
	t.Helper()
	tr := &http.Transport{DialContext: func(context.Context, string, string) (net.Conn, error) {
		return h.dialCaptured(t, dst.String(), nil)
	}}
	t.Cleanup(tr.CloseIdleConnections)
	return &http.Client{Transport: tr, Timeout: 5 * time.Second}
}

func refusedAddr(t *testing.T) netip.AddrPort {
	t.Helper()
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	require.NoError(t, err)
	a := netip.MustParseAddrPort(ln.Addr().String())
	ln.Close()
	return a
}

func httpBackend(t *testing.T, name string) netip.AddrPort {
	t.Helper()
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	require.NoError(t, err)
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		_, _ = io.WriteString(w, name)
	})}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	return netip.MustParseAddrPort(ln.Addr().String())
}

// Without a retry policy, a request whose connect fails is tried on
// another endpoint: it never reached the first one, so this is safe for
// any method. A request whose body the proxy did not keep is not.
func TestConnectFailureRetriedWithoutRoutePolicy(t *testing.T) {
	live, down := httpBackend(t, "live"), refusedAddr(t)
	log := &requestLog{}
	h := newHarness(t, Config{RequestRecorder: log})
	vip := netip.MustParseAddrPort("10.96.0.40:80")
	h.proxy.Update(&Table{Services: map[netip.AddrPort]*Service{vip: {
		Namespace: "shop", Name: "web", Port: 80, Protocol: ProtocolHTTP,
		Endpoints: []*Endpoint{{Addr: down}, {Addr: live}},
		// Round robin: every other first try goes to the dead endpoint.
		Balancer: balancer.Config{Policy: balancer.RoundRobin},
	}}})
	c := h.httpClient(t, vip)

	for i := 0; i < 20; i++ {
		resp, err := c.Get("http://" + vip.String() + "/")
		require.NoError(t, err)
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		require.Equal(t, http.StatusOK, resp.StatusCode, "request %d: %s", i, b)
		require.Equal(t, "live", string(b))
	}
	retried := 0
	for _, r := range log.all() {
		if r.Attempts == 2 {
			retried++
			require.Equal(t, live, r.Upstream, "the retry went elsewhere")
		}
	}
	// The first request to meet the dead endpoint was retried; after that
	// the endpoint backs off (balancer connect backoff) and is skipped.
	require.GreaterOrEqual(t, retried, 1)
	require.Less(t, retried, 10)

	t.Run("all endpoints down: 503 UF after the retries", func(t *testing.T) {
		h.proxy.Update(&Table{Services: map[netip.AddrPort]*Service{vip: {
			Namespace: "shop", Name: "web", Port: 80, Protocol: ProtocolHTTP,
			Endpoints: []*Endpoint{{Addr: down}},
		}}})
		n := len(log.all())
		resp, err := c.Get("http://" + vip.String() + "/")
		require.NoError(t, err)
		resp.Body.Close()
		require.Equal(t, http.StatusServiceUnavailable, resp.StatusCode)
		recs := log.all()[n:]
		require.Len(t, recs, 1)
		require.Equal(t, 1+DefaultConnectRetries, recs[0].Attempts)
		require.Equal(t, FlagUpstreamConnect, recs[0].FlagString())

		// A body the proxy did not keep (no route retry policy asked it
		// to) cannot be sent twice: one attempt.
		n = len(log.all())
		resp, err = c.Post("http://"+vip.String()+"/", "text/plain", strings.NewReader("payload"))
		require.NoError(t, err)
		resp.Body.Close()
		require.Equal(t, http.StatusServiceUnavailable, resp.StatusCode)
		recs = log.all()[n:]
		require.Len(t, recs, 1)
		require.Equal(t, 1, recs[0].Attempts)
	})
}
