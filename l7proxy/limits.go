package l7proxy

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	stdlog "log"
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"go.uber.org/zap"
)

// Limits bound what one client can take of the node proxy, so that a noisy
// or hostile pod does not starve the other pods of its node. The zero value
// is usable: a zero field takes its default, a negative one turns that
// limit off.
type Limits struct {
	// MaxConnsPerSource bounds the client connections one source workload
	// (the namespace and workload of the pod the kernel says connected)
	// holds open on the outbound listener; connections over it are
	// closed at once. Zero: 1024.
	MaxConnsPerSource int
	// MaxConnsPerPeer bounds the tunnel connections one peer identity
	// (SPIFFE ID of the client certificate) holds open. Zero: 1024.
	MaxConnsPerPeer int
	// HandshakeTimeout bounds a tunnel connection's TLS handshake. Zero:
	// 10s.
	HandshakeTimeout time.Duration
	// MaxEarlyResets is how many HTTP/2 streams of one connection the
	// client may reset before the proxy answered them, once they are more
	// than half of its streams, before the proxy closes the connection
	// (rapid reset, CVE-2023-44487). Zero: 200.
	MaxEarlyResets int
}

func (l Limits) maxConnsPerSource() int { return orDefault(l.MaxConnsPerSource, 1024) }
func (l Limits) maxConnsPerPeer() int   { return orDefault(l.MaxConnsPerPeer, 1024) }
func (l Limits) maxEarlyResets() int    { return orDefault(l.MaxEarlyResets, 200) }
func (l Limits) handshakeTimeout() time.Duration {
	if l.HandshakeTimeout <= 0 {
		return 10 * time.Second
	}
	return l.HandshakeTimeout
}

func orDefault(v, def int) int {
	if v == 0 {
		return def
	}
	return v
}

// Listener names the proxy's client-facing listeners in rejection counts.
type Listener int

// The listeners.
const (
	ListenerOutbound Listener = iota // 15001, captured connections of local pods
	ListenerTunnel                   // 15008, mTLS connections of peer nodes
	numListeners
)

func (l Listener) String() string {
	if l == ListenerTunnel {
		return "tunnel"
	}
	return "outbound"
}

// RejectReason says why the proxy refused a client's connection, request
// or stream. The set is fixed, so metrics labelled with it stay bounded.
type RejectReason int

// The reasons.
const (
	// RejectHeaderTooLarge: request headers over MaxHeaderBytes (431).
	RejectHeaderTooLarge RejectReason = iota
	// RejectURITooLong: a request URI over MaxURIBytes (414).
	RejectURITooLong
	// RejectConnLimit: a connection over its source's or peer's limit.
	RejectConnLimit
	// RejectReadTimeout: request headers or body too slow (slowloris).
	RejectReadTimeout
	// RejectBadRequest: malformed HTTP/1 (400, 501), a malformed chunked
	// body, or something that is not HTTP on the tunnel.
	RejectBadRequest
	// RejectH2Protocol: an HTTP/2 protocol error of the client.
	RejectH2Protocol
	// RejectH2ResetFlood: a connection closed for resetting streams
	// faster than the proxy could answer them (rapid reset).
	RejectH2ResetFlood
	// RejectTLSHandshake: a tunnel TLS handshake that failed: no, an
	// untrusted or a foreign client certificate, or no TLS at all.
	RejectTLSHandshake
	numRejectReasons
)

var rejectReasonNames = [numRejectReasons]string{
	"header_too_large", "uri_too_long", "conn_limit", "read_timeout", "bad_request",
	"h2_protocol", "h2_reset_flood", "tls_handshake",
}

func (r RejectReason) String() string {
	if r < 0 || r >= numRejectReasons {
		return "unknown"
	}
	return rejectReasonNames[r]
}

// RejectReasons lists every reason, for exporters that want each series
// present from the start.
func RejectReasons() []RejectReason {
	out := make([]RejectReason, numRejectReasons)
	for i := range out {
		out[i] = RejectReason(i)
	}
	return out
}

// Rejection is one count of RejectionStats.
type Rejection struct {
	Listener Listener
	Reason   RejectReason
	Count    uint64
}

// guard is the proxy's limit state: rejection counters and the open
// connections per source workload and per peer identity.
type guard struct {
	rejected [numListeners][numRejectReasons]atomic.Uint64
	sources  connCounter
	peers    connCounter
}

// Rejections returns every (listener, reason) count, zeros included.
func (p *Proxy) Rejections() []Rejection {
	out := make([]Rejection, 0, int(numListeners)*int(numRejectReasons))
	for l := Listener(0); l < numListeners; l++ {
		for r := RejectReason(0); r < numRejectReasons; r++ {
			out = append(out, Rejection{Listener: l, Reason: r, Count: p.guard.rejected[l][r].Load()})
		}
	}
	return out
}

// reject counts a rejection and logs it at debug level.
func (p *Proxy) reject(l Listener, r RejectReason, client string, detail string) {
	p.guard.rejected[l][r].Add(1)
	if ce := p.log.Check(zap.DebugLevel, "rejected client input"); ce != nil {
		ce.Write(zap.Stringer("listener", l), zap.Stringer("reason", r), zap.String("client", client), zap.String("detail", detail))
	}
}

// connCounter counts open connections by key.
type connCounter struct {
	mu   sync.Mutex
	open map[string]int
}

// acquire takes a slot for key unless max are taken; max < 0: no limit.
func (c *connCounter) acquire(key string, max int) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.open == nil {
		c.open = map[string]int{}
	}
	if max >= 0 && c.open[key] >= max {
		return false
	}
	c.open[key]++
	return true
}

func (c *connCounter) release(key string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.open[key] <= 1 {
		delete(c.open, key)
		return
	}
	c.open[key]--
}

// count returns the open connections of key.
func (c *connCounter) count(key string) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.open[key]
}

// sourceKey names the workload a connection's limit is kept for; pods the
// proxy does not know share one.
func sourceKey(w *Workload) string {
	if w == nil {
		return "unknown"
	}
	name := w.Name
	if name == "" {
		name = w.Pod
	}
	return w.Namespace + "/" + name
}

// admit applies the per-source connection limit to a captured connection:
// over it, the connection is reset at once and false returned; under it,
// the returned connection gives its slot back when closed.
func (p *Proxy) admit(c net.Conn, origin Origin) (net.Conn, bool) {
	key := sourceKey(origin.Source)
	if !p.guard.sources.acquire(key, p.cfg.Limits.maxConnsPerSource()) {
		p.reject(ListenerOutbound, RejectConnLimit, key, "open connections of the source workload at the limit of "+strconv.Itoa(p.cfg.Limits.maxConnsPerSource()))
		resetConn(c)
		return nil, false
	}
	return &limitedConn{Conn: c, counter: &p.guard.sources, key: key}, true
}

// limitedConn gives its slot back when it is first closed.
type limitedConn struct {
	net.Conn
	counter *connCounter
	key     string
	once    sync.Once
}

func (c *limitedConn) Close() error {
	c.once.Do(func() { c.counter.release(c.key) })
	return c.Conn.Close()
}

// CloseWrite half-closes the connection (the TCP relay needs it).
func (c *limitedConn) CloseWrite() error {
	if cw, ok := c.Conn.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return c.Conn.Close()
}

// SetLinger lets resetConn reset rather than close.
func (c *limitedConn) SetLinger(sec int) error {
	if l, ok := c.Conn.(interface{ SetLinger(int) error }); ok {
		return l.SetLinger(sec)
	}
	return nil
}

// connGuard is the per-connection state of the request limits.
type connGuard struct {
	p        *Proxy
	listener Listener
	conn     net.Conn
	client   string
	// active counts handlers running; partial says bytes arrived while
	// none ran, i.e. a request is being read (HTTP/1).
	active  atomic.Int32
	partial atomic.Bool
	// streams and earlyResets count HTTP/2 streams and those the client
	// reset before the proxy answered.
	streams, earlyResets atomic.Int32
	closed               atomic.Bool
	// h2 stops the HTTP/1 head scan.
	h2 atomic.Bool
	// clLines counts Content-Length lines seen in HTTP/1 request heads
	// and not yet matched with a request; clMatch is the scan's state
	// across reads (reading goroutine only).
	clLines atomic.Int32
	clMatch int
}

// clPattern starts a Content-Length header line, lower-cased.
const clPattern = "\ncontent-length:"

// scanHead counts Content-Length header lines in bytes read while no
// handler runs, i.e. in request heads. net/http drops Content-Length
// when Transfer-Encoding is present (RFC 9112 6.3) without closing the
// connection, which is what request smuggling through a front proxy that
// believes Content-Length needs; the count lets the proxy refuse such
// requests and close instead.
func (g *connGuard) scanHead(b []byte) {
	m := g.clMatch
	for _, c := range b {
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		switch {
		case c == clPattern[m]:
			m++
			if m == len(clPattern) {
				g.clLines.Add(1)
				m = 0
			}
		case c == '\n':
			m = 1
		default:
			m = 0
		}
	}
	g.clMatch = m
}

type guardKey struct{}

// observeRead notes a read on the client connection, and counts a read
// deadline that cut a request in the middle of its headers.
func (g *connGuard) observeRead(b []byte, n int, err error) {
	if n > 0 && g.active.Load() == 0 {
		g.partial.Store(true)
		if !g.h2.Load() {
			g.scanHead(b[:n])
		}
	}
	if err != nil && g.partial.Load() && g.active.Load() == 0 && errors.Is(err, os.ErrDeadlineExceeded) {
		g.partial.Store(false)
		g.p.reject(g.listener, RejectReadTimeout, g.client, "request headers not complete within the read header timeout")
	}
}

// observeWrite counts the errors net/http answers by itself, before any
// handler runs: a malformed request (400), headers too large (431), an
// unsupported transfer coding (501). It writes those in one Write, with
// "Connection: close" and without the Date header every handler response
// has, which is how they are told apart.
func (g *connGuard) observeWrite(b []byte) {
	if len(b) < 13 || len(b) > 1024 || !bytes.HasPrefix(b, []byte("HTTP/1.")) || b[8] != ' ' {
		return
	}
	code, err := strconv.Atoi(string(b[9:12]))
	if err != nil || code < 400 || !bytes.Contains(b, []byte("\r\nConnection: close\r\n")) || bytes.Contains(b, []byte("\r\nDate: ")) {
		return
	}
	r := RejectBadRequest
	if code == http.StatusRequestHeaderFieldsTooLarge {
		r = RejectHeaderTooLarge
	}
	detail, _, _ := bytes.Cut(b, []byte("\r\n"))
	g.p.reject(g.listener, r, g.client, string(detail))
}

// Read and Write observe the client connection for connGuard.
func (c *connInfo) Read(b []byte) (int, error) {
	n, err := c.Conn.Read(b)
	c.guard.observeRead(b, n, err)
	return n, err
}

func (c *connInfo) Write(b []byte) (int, error) {
	if c.guard.active.Load() == 0 {
		c.guard.observeWrite(b)
	}
	return c.Conn.Write(b)
}

// countH2Error is net/http's HTTP/2 CountError hook. It counts only
// net/http's own rapid-reset guard: the other errors it reports are
// counted once per connection through the server's error log, since
// CountError also sees stream errors and cannot tell them apart.
func (p *Proxy) countH2Error(l Listener) func(string) {
	return func(errType string) {
		if errType == "too_many_early_resets" {
			p.reject(l, RejectH2ResetFlood, "", errType)
		}
	}
}

// guardHandler applies what net/http does not: the URI length limit, the
// request body's read timeout, and the closing of HTTP/2 connections that
// reset most of their streams before they were answered.
func (p *Proxy) guardHandler(l Listener, next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		g, _ := r.Context().Value(guardKey{}).(*connGuard)
		if g != nil {
			g.active.Add(1)
			g.partial.Store(false)
			defer g.active.Add(-1)
		}
		if max := p.cfg.HTTP.MaxURIBytes; max > 0 && len(r.RequestURI) > max {
			p.reject(l, RejectURITooLong, clientOf(g), strconv.Itoa(len(r.RequestURI))+" bytes")
			http.Error(w, fmt.Sprintf("skein: request URI is %d bytes, more than the limit of %d", len(r.RequestURI), max), http.StatusRequestURITooLong)
			return
		}
		if g != nil && r.ProtoMajor == 1 && !g.checkFraming(w, r) {
			return
		}
		if g != nil && r.ProtoMajor == 2 {
			g.h2.Store(true)
			g.streams.Add(1)
			if r.Context().Err() != nil {
				// Reset before its handler even ran: nothing goes upstream.
				g.earlyReset(r)
				return
			}
		}
		t := p.cfg.HTTP.BodyReadTimeout
		hasBody := r.Body != nil && r.Body != http.NoBody
		var db *deadlineBody
		if t > 0 && hasBody {
			db = &deadlineBody{ReadCloser: r.Body, rc: http.NewResponseController(w), timeout: t,
				p: p, l: l, client: clientOf(g), chunked: r.ProtoMajor == 1 && len(r.TransferEncoding) > 0}
			r.Body = db
			r = r.WithContext(context.WithValue(r.Context(), bodyKey{}, db))
		}
		start := time.Now()
		next.ServeHTTP(w, r)
		if t > 0 && hasBody && r.ProtoMajor == 1 && !db.eof.Load() {
			// net/http reads what is left of the body after the handler,
			// without a deadline: bound it.
			_ = http.NewResponseController(w).SetReadDeadline(time.Now().Add(t))
		}
		if g != nil && r.ProtoMajor == 2 && r.Context().Err() != nil && time.Since(start) < time.Second {
			g.earlyReset(r)
		}
	})
}

// checkFraming refuses an HTTP/1 request that came with both
// Content-Length and Transfer-Encoding, answering 400 and closing the
// connection so that nothing after it is read as a request. It matches
// the Content-Length lines the head scan saw with the requests that had
// one, in order.
func (g *connGuard) checkFraming(w http.ResponseWriter, r *http.Request) bool {
	seen := g.clLines.Load()
	if seen <= 0 {
		return true
	}
	if len(r.TransferEncoding) > 0 {
		g.clLines.Store(0)
		g.p.reject(g.listener, RejectBadRequest, g.client, "both Content-Length and Transfer-Encoding")
		lingeringReject(w, http.StatusBadRequest, "skein: bad request: both Content-Length and Transfer-Encoding (RFC 9112 6.3)")
		return false
	}
	if len(r.Header["Content-Length"]) > 0 {
		g.clLines.Add(-1)
	}
	return true
}

// lingeringReject answers an HTTP/1 request and closes its connection
// without reading another request from it: the answer, a FIN, then at
// most a second of discarding what the client still sends, so that the
// client reads the answer instead of a reset (a lingering close).
func lingeringReject(w http.ResponseWriter, code int, msg string) {
	c, brw, err := http.NewResponseController(w).Hijack()
	if err != nil {
		w.Header().Set("Connection", "close")
		http.Error(w, msg, code)
		return
	}
	defer c.Close()
	body := msg + "\n"
	fmt.Fprintf(brw, "HTTP/1.1 %d %s\r\nContent-Type: text/plain; charset=utf-8\r\nX-Content-Type-Options: nosniff\r\n"+
		"Content-Length: %d\r\nConnection: close\r\n\r\n%s", code, http.StatusText(code), len(body), body)
	if brw.Flush() != nil {
		return
	}
	if cw, ok := c.(interface{ CloseWrite() error }); ok {
		_ = cw.CloseWrite()
	}
	_ = c.SetReadDeadline(time.Now().Add(time.Second))
	_, _ = io.Copy(io.Discard, io.LimitReader(c, 256<<10))
}

// CloseWrite half-closes a client connection, which net/http uses to
// linger after answering a request it refused (400, 431) so that the
// client reads the answer rather than a reset.
func (c *connInfo) CloseWrite() error {
	if cw, ok := c.Conn.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return nil
}

func clientOf(g *connGuard) string {
	if g == nil {
		return ""
	}
	return g.client
}

// earlyReset counts a stream the client gave up on within a second, before
// the proxy was done with it (as Envoy counts premature resets), and closes the connection when such streams are both many
// and most of its streams: a client that means its requests lets most of
// them finish.
func (g *connGuard) earlyReset(*http.Request) {
	n := g.earlyResets.Add(1)
	max := g.p.cfg.Limits.maxEarlyResets()
	if max < 0 || int(n) < max || 2*n < g.streams.Load() {
		return
	}
	if g.closed.CompareAndSwap(false, true) {
		g.p.reject(g.listener, RejectH2ResetFlood, g.client, strconv.Itoa(int(n))+" of "+strconv.Itoa(int(g.streams.Load()))+" streams reset before their answer")
		g.conn.Close()
	}
}

// errBodyTimeout and errBadBody end a request whose client sends its body
// too slowly or malformed; the proxy answers 408 and 400.
var (
	errBodyTimeout = errors.New("request body: no data within the body read timeout")
	errBadBody     = errors.New("malformed request body")
)

// deadlineBody bounds the time between two reads of a request body that
// return data: each read pushes the connection's (HTTP/1) or stream's
// (HTTP/2) read deadline forward, at most every half timeout; the end of
// the body clears it, so that a long response is not cut. A deadline that
// expired stays: the connection is not read from again.
type deadlineBody struct {
	io.ReadCloser
	rc      *http.ResponseController
	timeout time.Duration
	next    time.Time // when to push the deadline again
	p       *Proxy
	l       Listener
	client  string
	chunked bool
	eof     atomic.Bool
	// failed is errBodyTimeout or errBadBody once the client failed.
	failed atomic.Pointer[error]
}

type bodyKey struct{}

// clientBodyError says how to answer a request whose forwarding failed
// because the client's body did: 408 for a body too slow, 400 for a
// malformed one. net/http may cancel the request's context when its
// connection read fails, so the error handler's error alone cannot tell.
func clientBodyError(r *http.Request, err error) (code int, cause error, ok bool) {
	db, _ := r.Context().Value(bodyKey{}).(*deadlineBody)
	if db != nil {
		if f := db.failed.Load(); f != nil {
			err = *f
		}
	}
	switch {
	case errors.Is(err, errBodyTimeout):
		return http.StatusRequestTimeout, err, true
	case errors.Is(err, errBadBody):
		return http.StatusBadRequest, err, true
	}
	return 0, nil, false
}

func (b *deadlineBody) Read(buf []byte) (int, error) {
	if now := time.Now(); now.After(b.next) && !b.eof.Load() && b.failed.Load() == nil {
		if err := b.rc.SetReadDeadline(now.Add(b.timeout)); err == nil {
			b.next = now.Add(b.timeout / 2)
		}
	}
	n, err := b.ReadCloser.Read(buf)
	if err == nil {
		return n, nil
	}
	switch {
	case errors.Is(err, io.EOF):
		if b.eof.CompareAndSwap(false, true) && !b.next.IsZero() {
			_ = b.rc.SetReadDeadline(time.Time{})
		}
	case errors.Is(err, os.ErrDeadlineExceeded):
		err = fmt.Errorf("%w (%s): %w", errBodyTimeout, b.timeout, err)
		if b.failed.CompareAndSwap(nil, &err) {
			b.p.reject(b.l, RejectReadTimeout, b.client, "request body idle for "+b.timeout.String())
		}
	case b.chunked && !errors.Is(err, io.ErrUnexpectedEOF) && !isNetError(err):
		err = fmt.Errorf("%w: %w", errBadBody, err)
		if b.failed.CompareAndSwap(nil, &err) {
			b.p.reject(b.l, RejectBadRequest, b.client, err.Error())
		}
	}
	return n, err
}

func isNetError(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) || errors.Is(err, net.ErrClosed) || errors.Is(err, http.ErrBodyReadAfterClose)
}

// serverErrorLog is the ErrorLog of the proxy's HTTP servers. It counts
// what net/http reports only there: HTTP/2 connections closed for a
// protocol error (a GOAWAY with an error code, continuation floods and
// header blocks too large included) and clients that never sent their
// HTTP/2 SETTINGS. Counted lines go to the debug log with the rejection;
// the rest stay at info.
func (p *Proxy) serverErrorLog(l Listener, log *zap.Logger) *stdlog.Logger {
	return stdlog.New(serverErrorWriter{p: p, l: l, log: log}, "", 0)
}

type serverErrorWriter struct {
	p   *Proxy
	l   Listener
	log *zap.Logger
}

func (w serverErrorWriter) Write(b []byte) (int, error) {
	s := strings.TrimSpace(string(b))
	switch {
	case strings.HasPrefix(s, "http2: server connection error from "):
		// ENHANCE_YOUR_CALM is net/http's own rapid-reset guard, counted
		// by CountError as h2_reset_flood.
		if !strings.Contains(s, "ENHANCE_YOUR_CALM") {
			w.p.reject(w.l, RejectH2Protocol, "", s)
		}
	case strings.HasPrefix(s, "http2: server closing client connection: "):
		w.p.reject(w.l, RejectH2Protocol, "", s)
	case strings.HasPrefix(s, "timeout waiting for SETTINGS frames"):
		w.p.reject(w.l, RejectReadTimeout, "", s)
	default:
		w.log.Info(s)
	}
	return len(b), nil
}
