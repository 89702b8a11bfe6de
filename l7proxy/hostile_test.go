package l7proxy

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"os"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"
)

// The tests here play a hostile client against a real proxy on loopback:
// request smuggling probes, oversized and slow requests, HTTP/2 floods,
// and more connections than a source may hold. Each asserts what the
// client gets (a 4xx naming the problem, or a close), that the rejection
// is counted under its reason, that the upstream sees no request the
// proxy did not accept on its own, and that nothing leaks.

// hostileBackend counts the requests it gets and keeps their paths and
// X-A headers; it speaks HTTP/1.1 and h2c.
type hostileBackend struct {
	addr netip.AddrPort
	n    atomic.Int64
	mu   sync.Mutex
	seen []string
}

func startHostileBackend(t testing.TB) *hostileBackend {
	t.Helper()
	b := &hostileBackend{}
	b.addr = startHostileServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b.n.Add(1)
		b.mu.Lock()
		b.seen = append(b.seen, r.URL.Path+" x-a="+strings.Join(r.Header["X-A"], "|"))
		b.mu.Unlock()
		_, _ = io.Copy(io.Discard, r.Body)
		_, _ = io.WriteString(w, "ok")
	}))
	return b
}

func startHostileServer(t testing.TB, h http.Handler) netip.AddrPort {
	t.Helper()
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	require.NoError(t, err)
	var protos http.Protocols
	protos.SetHTTP1(true)
	protos.SetUnencryptedHTTP2(true)
	srv := &http.Server{Handler: h, Protocols: &protos}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	return netip.MustParseAddrPort(ln.Addr().String())
}

// settled returns the request count once it stopped changing for 150ms
// (at most 3s): a request whose body broke may reach the upstream just
// after its client got the answer.
func (b *hostileBackend) settled() int64 {
	n := b.n.Load()
	for deadline := time.Now().Add(3 * time.Second); time.Now().Before(deadline); {
		time.Sleep(150 * time.Millisecond)
		m := b.n.Load()
		if m == n {
			break
		}
		n = m
	}
	return n
}

func (b *hostileBackend) paths() []string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return append([]string(nil), b.seen...)
}

// hostileVIP is the Service the probes are sent to; its protocol is
// detected, as for a Service without appProtocol.
var hostileVIP = netip.MustParseAddrPort("10.96.0.50:80")

var (
	noisyPod = &Workload{Namespace: "shop", Name: "noisy", Pod: "noisy-1", Meshed: true}
	quietPod = &Workload{Namespace: "shop", Name: "quiet", Pod: "quiet-1", Meshed: true}
)

// hostileLimits are small limits so that the probes cross them fast.
func hostileLimits() Config {
	return Config{
		HTTP: HTTPConfig{
			MaxHeaderBytes: 8 << 10, MaxURIBytes: 1024, ReadHeaderTimeout: time.Second,
			BodyReadTimeout: 500 * time.Millisecond, IdleTimeout: 2 * time.Second, MaxConcurrentStreams: 100,
		},
		Limits: Limits{MaxConnsPerSource: 5},
	}
}

func newHostileHarness(t *testing.T, cfg Config) (*harness, *hostileBackend) {
	t.Helper()
	be := startHostileBackend(t)
	h := newHarness(t, cfg)
	h.proxy.Update(&Table{Services: map[netip.AddrPort]*Service{hostileVIP: {
		Namespace: "shop", Name: "web", Port: 80, Endpoints: []*Endpoint{{Addr: be.addr}},
	}}})
	return h, be
}

func rejectedCount(p *Proxy, l Listener, r RejectReason) uint64 {
	return p.guard.rejected[l][r].Load()
}

func totalRejected(p *Proxy) uint64 {
	var n uint64
	for _, r := range p.Rejections() {
		n += r.Count
	}
	return n
}

// leakBaseline is the goroutines and open files of the test process.
type leakBaseline struct{ goroutines, fds int }

func openFDs(t *testing.T) int {
	t.Helper()
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Skipf("cannot count open files: %v", err)
	}
	return len(ents)
}

func takeBaseline(t *testing.T) leakBaseline {
	t.Helper()
	return leakBaseline{goroutines: runtime.NumGoroutine(), fds: openFDs(t)}
}

// requireNoLeak waits (boundedly) for the goroutines and files the probes
// used to be gone. Idle upstream connections are closed first: they are
// a pool, not a leak.
func requireNoLeak(t *testing.T, h *harness, base leakBaseline) {
	t.Helper()
	var g, fds int
	ok := false
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		h.proxy.h1.CloseIdleConnections()
		h.proxy.h2.CloseIdleConnections()
		g, fds = runtime.NumGoroutine(), openFDs(t)
		if g <= base.goroutines && fds <= base.fds {
			ok = true
			break
		}
	}
	if !ok {
		buf := make([]byte, 1<<20)
		buf = buf[:runtime.Stack(buf, true)]
		t.Fatalf("leak: %d goroutines (baseline %d), %d open files (baseline %d)\n%s", g, base.goroutines, fds, base.fds, buf)
	}
}

// exchange sends payload on a captured connection and reads until the
// proxy closes it or wait passes. closed says the proxy closed it.
func exchange(t *testing.T, h *harness, src *Workload, payload string, wait time.Duration) (resp string, closed bool) {
	t.Helper()
	c, err := h.dialCaptured(t, hostileVIP.String(), src)
	require.NoError(t, err)
	defer c.Close()
	_, err = io.WriteString(c, payload)
	require.NoError(t, err)
	require.NoError(t, c.SetReadDeadline(time.Now().Add(wait)))
	var buf bytes.Buffer
	_, err = io.Copy(&buf, c)
	var ne net.Error
	return buf.String(), !(errors.As(err, &ne) && ne.Timeout())
}

const smuggled = "GET /smuggled HTTP/1.1\r\nHost: web\r\n\r\n"

// TestHostileHTTP1 sends request smuggling probes and oversized requests.
// Where two parsers could disagree on where a request ends, the proxy
// either refuses the request or forwards it framed its own way; the
// smuggled request hidden in each probe never reaches the upstream.
func TestHostileHTTP1(t *testing.T) {
	h, be := newHostileHarness(t, hostileLimits())
	base := takeBaseline(t)
	const none = RejectReason(-1)
	tests := []struct {
		name    string
		payload string
		// status line prefix and a part of the body the client must get
		status, body string
		closed       bool
		reason       RejectReason
		upstream     int64 // requests the upstream may see at most
	}{
		{
			name:    "CL.TE conflict",
			payload: "POST / HTTP/1.1\r\nHost: web\r\nContent-Length: 6\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n" + smuggled,
			status:  "HTTP/1.1 400 ", body: "both Content-Length and Transfer-Encoding", closed: true, reason: RejectBadRequest,
		},
		{
			name:    "TE.CL conflict, lower case",
			payload: "POST / HTTP/1.1\r\nhost: web\r\ntransfer-encoding: chunked\r\ncontent-length: 4\r\n\r\n5c\r\n" + smuggled + "\r\n0\r\n\r\n",
			status:  "HTTP/1.1 400 ", body: "both Content-Length and Transfer-Encoding", closed: true, reason: RejectBadRequest,
		},
		{
			name:    "duplicate Content-Length, different values",
			payload: "POST / HTTP/1.1\r\nHost: web\r\nContent-Length: 5\r\nContent-Length: 41\r\n\r\nhello" + smuggled,
			status:  "HTTP/1.1 400 ", body: "Bad Request", closed: true, reason: RejectBadRequest,
		},
		{
			name:    "invalid Content-Length",
			payload: "POST / HTTP/1.1\r\nHost: web\r\nContent-Length: +5\r\n\r\nhello",
			status:  "HTTP/1.1 400 ", body: "Bad Request", closed: true, reason: RejectBadRequest,
		},
		{
			name:    "bad chunk size",
			payload: "POST / HTTP/1.1\r\nHost: web\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nhello\r\n0\r\n\r\n" + smuggled,
			status:  "HTTP/1.1 400 ", body: "malformed request body: invalid byte in chunk length", closed: true, reason: RejectBadRequest,
			upstream: 1, // the request started streaming before its body broke
		},
		{
			name:    "chunk size overflow",
			payload: "POST / HTTP/1.1\r\nHost: web\r\nTransfer-Encoding: chunked\r\n\r\n10000000000000005\r\nhello\r\n0\r\n\r\n" + smuggled,
			status:  "HTTP/1.1 400 ", body: "malformed request body", closed: true, reason: RejectBadRequest, upstream: 1,
		},
		{
			name:    "bare LF in chunked body",
			payload: "POST / HTTP/1.1\r\nHost: web\r\nTransfer-Encoding: chunked\r\n\r\n5\nhello\n0\n\n" + smuggled,
			status:  "HTTP/1.1 400 ", body: "malformed request body: chunked line ends with bare LF", closed: true, reason: RejectBadRequest, upstream: 1,
		},
		{
			// RFC 9112 2.2 lets a recipient take a bare LF for a line end;
			// the proxy does, so the Content-Length line counts and the
			// smuggled request is the body of one request, re-framed
			// upstream.
			name:    "bare LF in the head",
			payload: "POST / HTTP/1.1\nHost: web\nX-A: b\nContent-Length: 36\n\n" + smuggled,
			status:  "HTTP/1.1 200 ", body: "ok", reason: none, upstream: 1,
		},
		{
			name:    "bare CR in a header value",
			payload: "GET / HTTP/1.1\r\nHost: web\r\nX-A: b\rTransfer-Encoding: chunked\r\n\r\n",
			status:  "HTTP/1.1 400 ", body: "Bad Request", closed: true, reason: RejectBadRequest,
		},
		{
			// RFC 9112 5.2: obs-fold may be replaced by spaces; the
			// upstream gets one normalized header, never the fold.
			name:    "obs-fold",
			payload: "GET / HTTP/1.1\r\nHost: web\r\nX-A: a\r\n b\r\n\r\n",
			status:  "HTTP/1.1 200 ", body: "ok", reason: none, upstream: 1,
		},
		{
			name:    "chunked with another coding",
			payload: "POST / HTTP/1.1\r\nHost: web\r\nTransfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n" + smuggled,
			status:  "HTTP/1.1 501 ", body: "Unsupported transfer encoding", closed: true, reason: RejectBadRequest,
		},
		{
			name:    "Transfer-Encoding twice",
			payload: "POST / HTTP/1.1\r\nHost: web\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: identity\r\n\r\n0\r\n\r\n" + smuggled,
			status:  "HTTP/1.1 501 ", body: "Unsupported transfer encoding", closed: true, reason: RejectBadRequest,
		},
		{
			name:    "space before colon",
			payload: "POST / HTTP/1.1\r\nHost: web\r\nTransfer-Encoding : chunked\r\nContent-Length: 0\r\n\r\n" + smuggled,
			status:  "HTTP/1.1 400 ", body: "invalid header name", closed: true, reason: RejectBadRequest,
		},
		{
			name:    "header too large",
			payload: "GET / HTTP/1.1\r\nHost: web\r\nX-A: " + strings.Repeat("a", 16<<10) + "\r\n\r\n",
			status:  "HTTP/1.1 431 ", body: "Request Header Fields Too Large", closed: true, reason: RejectHeaderTooLarge,
		},
		{
			name:    "many headers, too large together",
			payload: "GET / HTTP/1.1\r\nHost: web\r\n" + strings.Repeat("X-A: "+strings.Repeat("a", 100)+"\r\n", 150) + "\r\n",
			status:  "HTTP/1.1 431 ", body: "Request Header Fields Too Large", closed: true, reason: RejectHeaderTooLarge,
		},
		{
			name:    "URI too long",
			payload: "GET /" + strings.Repeat("a", 2000) + " HTTP/1.1\r\nHost: web\r\nConnection: close\r\n\r\n",
			status:  "HTTP/1.1 414 ", body: "request URI is 2001 bytes, more than the limit of 1024", closed: true, reason: RejectURITooLong,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before, total, upBefore := uint64(0), totalRejected(h.proxy), be.settled()
			if tt.reason != none {
				before = rejectedCount(h.proxy, ListenerOutbound, tt.reason)
			}
			resp, closed := exchange(t, h, quietPod, tt.payload, 3*time.Second)
			require.True(t, strings.HasPrefix(resp, tt.status), "answer %q", resp)
			require.Contains(t, resp, tt.body)
			if tt.closed {
				require.True(t, closed, "the proxy must close the connection; it answered %q", resp)
			}
			require.Equal(t, 1, strings.Count(resp, "HTTP/1."), "exactly one answer: %q", resp)
			if tt.reason != none {
				require.Eventually(t, func() bool { return rejectedCount(h.proxy, ListenerOutbound, tt.reason) == before+1 },
					2*time.Second, 10*time.Millisecond, "%s counted once", tt.reason)
				require.Equal(t, total+1, totalRejected(h.proxy), "counted under one reason only")
			} else {
				require.Equal(t, total, totalRejected(h.proxy), "an accepted request is not a rejection")
			}
			require.LessOrEqual(t, be.settled()-upBefore, tt.upstream, "requests the upstream saw: %q", be.paths())
		})
	}
	for _, p := range be.paths() {
		require.NotContains(t, p, "/smuggled", "a smuggled request reached the upstream")
	}
	require.Contains(t, be.paths(), "/ x-a=a b", "obs-fold reached the upstream as one normalized header")
	requireNoLeak(t, h, base)
}

// TestHostileSlowClients: slowloris (headers trickled) and slow bodies are
// cut by the header and body timeouts; a slow but steady body is not.
func TestHostileSlowClients(t *testing.T) {
	h, be := newHostileHarness(t, hostileLimits())
	base := takeBaseline(t)

	t.Run("slowloris", func(t *testing.T) {
		before := rejectedCount(h.proxy, ListenerOutbound, RejectReadTimeout)
		c, err := h.dialCaptured(t, hostileVIP.String(), quietPod)
		require.NoError(t, err)
		defer c.Close()
		start := time.Now()
		_, err = io.WriteString(c, "GET / HTTP/1.1\r\nHost: web\r\n")
		require.NoError(t, err)
		// One header line every 200ms, for at most 10s: the proxy must cut
		// it at ReadHeaderTimeout (1s) although bytes keep coming.
		for i := 0; i < 50; i++ {
			time.Sleep(200 * time.Millisecond)
			if _, err = fmt.Fprintf(c, "X-A-%d: a\r\n", i); err != nil {
				break
			}
		}
		require.Error(t, err, "the proxy kept a trickling request open for 10s")
		require.Less(t, time.Since(start), 5*time.Second)
		require.Eventually(t, func() bool { return rejectedCount(h.proxy, ListenerOutbound, RejectReadTimeout) == before+1 },
			2*time.Second, 10*time.Millisecond)
	})
	t.Run("slow body", func(t *testing.T) {
		before, upBefore := rejectedCount(h.proxy, ListenerOutbound, RejectReadTimeout), be.n.Load()
		start := time.Now()
		resp, closed := exchange(t, h, quietPod, "POST / HTTP/1.1\r\nHost: web\r\nContent-Length: 100\r\n\r\n0123456789", 5*time.Second)
		require.True(t, strings.HasPrefix(resp, "HTTP/1.1 408 "), "answer %q", resp)
		require.Contains(t, resp, "no data within the body read timeout")
		require.True(t, closed)
		require.Less(t, time.Since(start), 3*time.Second)
		require.Equal(t, before+1, rejectedCount(h.proxy, ListenerOutbound, RejectReadTimeout))
		require.LessOrEqual(t, be.n.Load()-upBefore, int64(1))
	})
	t.Run("slow but steady body is served", func(t *testing.T) {
		before := totalRejected(h.proxy)
		c, err := h.dialCaptured(t, hostileVIP.String(), quietPod)
		require.NoError(t, err)
		defer c.Close()
		_, err = io.WriteString(c, "POST / HTTP/1.1\r\nHost: web\r\nContent-Length: 6\r\n\r\n")
		require.NoError(t, err)
		// 6 bytes over 1.2s: longer than the 500ms body timeout in all,
		// never that long between two bytes.
		for i := 0; i < 6; i++ {
			time.Sleep(200 * time.Millisecond)
			_, err = io.WriteString(c, "x")
			require.NoError(t, err)
		}
		require.NoError(t, c.SetReadDeadline(time.Now().Add(3*time.Second)))
		resp, err := http.ReadResponse(bufio.NewReader(c), nil)
		require.NoError(t, err)
		resp.Body.Close()
		require.Equal(t, http.StatusOK, resp.StatusCode)
		require.Equal(t, before, totalRejected(h.proxy))
	})
	t.Run("HTTP/2 slow body", func(t *testing.T) {
		before := rejectedCount(h.proxy, ListenerOutbound, RejectReadTimeout)
		c, fr := h2Conn(t, h, quietPod)
		defer c.Close()
		require.NoError(t, fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: h2Headers("POST", "/", "content-length", "100"), EndHeaders: true}))
		require.NoError(t, fr.WriteData(1, false, []byte("0123456789")))
		code := h2Status(t, fr, 1, 3*time.Second)
		require.Equal(t, "408", code)
		require.Equal(t, before+1, rejectedCount(h.proxy, ListenerOutbound, RejectReadTimeout))
	})
	t.Run("HTTP/2 header block never ended", func(t *testing.T) {
		// net/http's HTTP/2 server has no header timeout: the idle
		// timeout (2s here) ends such a connection.
		c, fr := h2Conn(t, h, quietPod)
		defer c.Close()
		start := time.Now()
		require.NoError(t, fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: h2Headers("GET", "/"), EndStream: true}))
		require.NoError(t, c.SetReadDeadline(time.Now().Add(6*time.Second)))
		for {
			if _, err := fr.ReadFrame(); err != nil {
				var ne net.Error
				require.False(t, errors.As(err, &ne) && ne.Timeout(), "still open after 6s")
				break
			}
		}
		require.Less(t, time.Since(start), 5*time.Second)
	})
	requireNoLeak(t, h, base)
}

// h2Conn opens a captured HTTP/2 (prior knowledge) connection and returns
// a framer on it, the client's preface and SETTINGS sent.
func h2Conn(t *testing.T, h *harness, src *Workload) (net.Conn, *http2.Framer) {
	t.Helper()
	c, err := h.dialCaptured(t, hostileVIP.String(), src)
	require.NoError(t, err)
	// Every read and write of a test ends, whatever the proxy does.
	require.NoError(t, c.SetDeadline(time.Now().Add(15*time.Second)))
	_, err = io.WriteString(c, http2.ClientPreface)
	require.NoError(t, err)
	fr := http2.NewFramer(c, c)
	fr.ReadMetaHeaders = hpack.NewDecoder(4096, nil)
	require.NoError(t, fr.WriteSettings())
	return c, fr
}

func h2Headers(method, path string, extra ...string) []byte {
	var b bytes.Buffer
	e := hpack.NewEncoder(&b)
	for _, f := range [][2]string{{":method", method}, {":scheme", "http"}, {":path", path}, {":authority", "web"}} {
		_ = e.WriteField(hpack.HeaderField{Name: f[0], Value: f[1]})
	}
	for i := 0; i+1 < len(extra); i += 2 {
		_ = e.WriteField(hpack.HeaderField{Name: extra[i], Value: extra[i+1]})
	}
	return b.Bytes()
}

// h2Status reads frames until stream's response headers and returns its
// :status; "" if the connection ended first (GOAWAY or close).
func h2Status(t *testing.T, fr *http2.Framer, stream uint32, wait time.Duration) string {
	t.Helper()
	deadline := time.Now().Add(wait)
	for time.Now().Before(deadline) {
		f, err := fr.ReadFrame()
		if err != nil {
			return ""
		}
		switch f := f.(type) {
		case *http2.MetaHeadersFrame:
			if f.StreamID == stream {
				return f.PseudoValue("status")
			}
		case *http2.GoAwayFrame:
			return ""
		case *http2.SettingsFrame:
			if !f.IsAck() {
				_ = fr.WriteSettingsAck()
			}
		}
	}
	t.Fatalf("no answer on stream %d within %s", stream, wait)
	return ""
}

// readUntilClosed reads frames until the proxy closes the connection and
// returns the GOAWAY error code it sent, if any; it fails the test if the
// connection is still open after wait.
func readUntilClosed(t *testing.T, c net.Conn, fr *http2.Framer, wait time.Duration) (goaway http2.ErrCode, sawGoaway bool) {
	t.Helper()
	require.NoError(t, c.SetReadDeadline(time.Now().Add(wait)))
	for {
		f, err := fr.ReadFrame()
		if err != nil {
			var ne net.Error
			require.False(t, errors.As(err, &ne) && ne.Timeout(), "the proxy kept the connection open for %s", wait)
			return goaway, sawGoaway
		}
		if g, ok := f.(*http2.GoAwayFrame); ok {
			goaway, sawGoaway = g.ErrCode, true
		}
	}
}

// TestHostileHTTP2 sends HTTP/2 floods and oversized requests.
func TestHostileHTTP2(t *testing.T) {
	h, be := newHostileHarness(t, hostileLimits())
	base := takeBaseline(t)

	t.Run("rapid reset", func(t *testing.T) {
		// CVE-2023-44487: open a stream and reset it at once, thousands of
		// times. net/http runs at most MaxConcurrentStreams handlers and
		// skips those of streams reset while they waited, closing the
		// connection if too many wait; the proxy's own guard (next test)
		// closes it once most streams are reset early. Either way the
		// upstream sees a few requests, not thousands.
		before, upBefore := rejectedCount(h.proxy, ListenerOutbound, RejectH2ResetFlood), be.n.Load()
		c, fr := h2Conn(t, h, quietPod)
		defer c.Close()
		go func() { // keep reading so that the proxy's writes never block
			for {
				if _, err := fr.ReadFrame(); err != nil {
					return
				}
			}
		}()
		var sent int
		for i := 0; i < 5000; i++ {
			id := uint32(2*i + 1)
			if fr.WriteHeaders(http2.HeadersFrameParam{StreamID: id, BlockFragment: h2Headers("GET", "/"), EndStream: true, EndHeaders: true}) != nil ||
				fr.WriteRSTStream(id, http2.ErrCodeCancel) != nil {
				break
			}
			sent++
		}
		time.Sleep(500 * time.Millisecond) // requests in flight land
		t.Logf("streams opened and reset: %d; requests the upstream saw: %d; connection closed for it: %v",
			sent, be.n.Load()-upBefore, rejectedCount(h.proxy, ListenerOutbound, RejectH2ResetFlood) > before)
		require.Less(t, be.n.Load()-upBefore, int64(300))
	})
	t.Run("resets after the handlers started close the connection", func(t *testing.T) {
		// Streams whose requests the proxy already works on (the headers
		// came without the end of the body, so each handler runs and
		// forwards), reset in batches: the guard closes the connection once
		// MaxEarlyResets (200) of them, and most of its streams, were reset
		// before their answer.
		before := rejectedCount(h.proxy, ListenerOutbound, RejectH2ResetFlood)
		c, fr := h2Conn(t, h, quietPod)
		defer c.Close()
		closed := make(chan struct{})
		go func() {
			defer close(closed)
			for {
				if _, err := fr.ReadFrame(); err != nil {
					return
				}
			}
		}()
		id := uint32(1)
		for batch := 0; batch < 20; batch++ {
			ids := make([]uint32, 0, 50)
			for range 50 {
				if fr.WriteHeaders(http2.HeadersFrameParam{StreamID: id, BlockFragment: h2Headers("POST", "/"), EndHeaders: true}) != nil {
					break
				}
				ids = append(ids, id)
				id += 2
			}
			time.Sleep(50 * time.Millisecond) // the handlers start
			for _, s := range ids {
				if fr.WriteRSTStream(s, http2.ErrCodeCancel) != nil {
					break
				}
			}
			if rejectedCount(h.proxy, ListenerOutbound, RejectH2ResetFlood) > before {
				break
			}
		}
		require.Eventually(t, func() bool { return rejectedCount(h.proxy, ListenerOutbound, RejectH2ResetFlood) > before },
			10*time.Second, 10*time.Millisecond)
		select {
		case <-closed:
		case <-time.After(10 * time.Second):
			t.Fatal("the proxy counted the flood but kept the connection open")
		}
		t.Logf("streams opened before the connection was closed: %d", id/2)
	})
	t.Run("CONTINUATION flood", func(t *testing.T) {
		// CVE-2024-27316: a header block that never ends.
		before, upBefore := rejectedCount(h.proxy, ListenerOutbound, RejectH2Protocol), be.n.Load()
		c, fr := h2Conn(t, h, quietPod)
		defer c.Close()
		done := make(chan struct{})
		var code http2.ErrCode
		var saw bool
		go func() {
			defer close(done)
			code, saw = readUntilClosed(t, c, fr, 5*time.Second)
		}()
		require.NoError(t, fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: h2Headers("GET", "/"), EndStream: true}))
		var b bytes.Buffer
		_ = hpack.NewEncoder(&b).WriteField(hpack.HeaderField{Name: "x-a", Value: strings.Repeat("a", 1000)})
		for i := 0; i < 100000; i++ {
			if fr.WriteContinuation(1, false, b.Bytes()) != nil {
				break
			}
		}
		<-done
		require.True(t, saw, "a GOAWAY before the close")
		require.Equal(t, http2.ErrCodeProtocol, code)
		require.Equal(t, before+1, rejectedCount(h.proxy, ListenerOutbound, RejectH2Protocol))
		require.Equal(t, upBefore, be.n.Load())
	})
	t.Run("header list a little too large", func(t *testing.T) {
		// net/http answers 431 itself, in a handler of its own: it is not
		// counted (see docs/reliability.md).
		upBefore := be.n.Load()
		c, fr := h2Conn(t, h, quietPod)
		defer c.Close()
		var extra []string
		for i := 0; i < 45; i++ {
			extra = append(extra, fmt.Sprintf("x-a-%d", i), strings.Repeat("a", 200))
		}
		require.NoError(t, fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: h2Headers("GET", "/", extra...), EndStream: true, EndHeaders: true}))
		require.Equal(t, "431", h2Status(t, fr, 1, 3*time.Second))
		require.Equal(t, upBefore, be.n.Load())
	})
	t.Run("header list far too large", func(t *testing.T) {
		before, upBefore := rejectedCount(h.proxy, ListenerOutbound, RejectH2Protocol), be.n.Load()
		c, fr := h2Conn(t, h, quietPod)
		defer c.Close()
		var extra []string
		for i := 0; i < 100; i++ {
			extra = append(extra, fmt.Sprintf("x-a-%d", i), strings.Repeat("a", 200))
		}
		block := h2Headers("GET", "/", extra...)
		require.NoError(t, fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: block[:len(block)/2], EndStream: true}))
		require.NoError(t, fr.WriteContinuation(1, true, block[len(block)/2:]))
		code, saw := readUntilClosed(t, c, fr, 3*time.Second)
		require.True(t, saw)
		require.Equal(t, http2.ErrCodeProtocol, code)
		require.Equal(t, before+1, rejectedCount(h.proxy, ListenerOutbound, RejectH2Protocol))
		require.Equal(t, upBefore, be.n.Load())
	})
	t.Run("URI too long", func(t *testing.T) {
		before := rejectedCount(h.proxy, ListenerOutbound, RejectURITooLong)
		c, fr := h2Conn(t, h, quietPod)
		defer c.Close()
		require.NoError(t, fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: h2Headers("GET", "/"+strings.Repeat("a", 2000)), EndStream: true, EndHeaders: true}))
		require.Equal(t, "414", h2Status(t, fr, 1, 3*time.Second))
		require.Equal(t, before+1, rejectedCount(h.proxy, ListenerOutbound, RejectURITooLong))
	})
	t.Run("normal request still served", func(t *testing.T) {
		c, fr := h2Conn(t, h, quietPod)
		defer c.Close()
		require.NoError(t, fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: h2Headers("GET", "/"), EndStream: true, EndHeaders: true}))
		require.Equal(t, "200", h2Status(t, fr, 1, 3*time.Second))
	})
	requireNoLeak(t, h, base)
}

// TestSourceConnectionLimit: a source over its connection limit has its
// new connections reset at once and counted; another source on the node
// is not affected, and the noisy one gets its slots back as it closes.
func TestSourceConnectionLimit(t *testing.T) {
	h, _ := newHostileHarness(t, hostileLimits())
	base := takeBaseline(t)
	before := rejectedCount(h.proxy, ListenerOutbound, RejectConnLimit)

	var held []net.Conn
	for i := 0; i < 5; i++ {
		held = append(held, h.mustDial(t, hostileVIP.String(), noisyPod))
	}
	require.Eventually(t, func() bool { return h.proxy.guard.sources.count("shop/noisy") == 5 }, 2*time.Second, 5*time.Millisecond)
	for i := 0; i < 3; i++ {
		start := time.Now()
		c, err := h.dialCaptured(t, hostileVIP.String(), noisyPod)
		if err == nil {
			require.NoError(t, c.SetReadDeadline(time.Now().Add(2*time.Second)))
			_, err = c.Read(make([]byte, 1))
			c.Close()
		}
		require.Error(t, err, "connection %d over the limit was served", i+6)
		require.NotErrorIs(t, err, os.ErrDeadlineExceeded, "connection over the limit must be closed at once")
		require.Less(t, time.Since(start), time.Second)
	}
	require.Equal(t, before+3, rejectedCount(h.proxy, ListenerOutbound, RejectConnLimit))

	// The quiet pod gets every request through meanwhile.
	tr := &http.Transport{DialContext: func(context.Context, string, string) (net.Conn, error) {
		return h.dialCaptured(t, hostileVIP.String(), quietPod)
	}, DisableKeepAlives: true}
	defer tr.CloseIdleConnections()
	client := &http.Client{Transport: tr, Timeout: 3 * time.Second}
	for i := 0; i < 20; i++ {
		resp, err := client.Get("http://web/")
		require.NoError(t, err)
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		require.Equal(t, http.StatusOK, resp.StatusCode)
	}

	for _, c := range held {
		c.Close()
	}
	require.Eventually(t, func() bool { return h.proxy.guard.sources.count("shop/noisy") == 0 }, 3*time.Second, 10*time.Millisecond,
		"closed connections give their slots back")
	resp, closed := exchange(t, h, noisyPod, "GET / HTTP/1.1\r\nHost: web\r\nConnection: close\r\n\r\n", 3*time.Second)
	require.True(t, strings.HasPrefix(resp, "HTTP/1.1 200 "), "the noisy pod is served again under its limit: %q", resp)
	require.True(t, closed)
	requireNoLeak(t, h, base)
}
