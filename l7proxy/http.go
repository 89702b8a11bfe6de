package l7proxy

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"net/http/httputil"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"go.opentelemetry.io/otel/trace"
	"go.uber.org/zap"

	"github.com/skeinmesh/skein/l7proxy/balancer"
	"github.com/skeinmesh/skein/l7proxy/route"
)

// RequestRecord describes one finished HTTP request or gRPC call.
type RequestRecord struct {
	Start    time.Time
	Duration time.Duration
	Source   *Workload
	Dest     *Workload
	// OrigDst is the address the app dialed.
	OrigDst netip.AddrPort
	// Service is the destination service, nil for a pod IP.
	Service *Service
	// Route is the route rule that matched, nil for none.
	Route     *route.RouteRef
	Method    string
	Authority string
	Path      string
	// Query is the request's raw query string, without the '?'.
	Query string
	// Protocol is "http", "http2" or "grpc".
	Protocol   string
	Code       int
	GRPCStatus string
	Flags      []string
	ReqBytes   int64
	RespBytes  int64
	Upstream   netip.AddrPort
	Attempts   int
	Err        error
	// Reporter is "source" (the client's node proxy) or "destination"
	// (the proxy in front of the pod, after the tunnel).
	Reporter string
	// Security is SecurityMutualTLS when the request crossed the tunnel.
	Security string
	// PeerService is the destination Service's host name as the source
	// proxy announced it (destination reports only; telemetry only).
	PeerService string
	// TraceID and SpanID identify this hop's span; Sampled says whether
	// the trace is recorded. RequestID is the x-request-id.
	TraceID, SpanID string
	Sampled         bool
	RequestID       string
	// Header is the request's header, for trace context and request ids.
	Header http.Header
}

// FlagString joins the response flags as Envoy prints them ("-" for none).
func (r *RequestRecord) FlagString() string {
	if len(r.Flags) == 0 {
		return FlagNone
	}
	return strings.Join(r.Flags, ",")
}

func (r *RequestRecord) addFlag(f string) {
	for _, x := range r.Flags {
		if x == f {
			return
		}
	}
	r.Flags = append(r.Flags, f)
}

// RequestRecorder receives request records. Implementations must not block.
type RequestRecorder interface {
	RecordRequest(*RequestRecord)
}

type ctxKey int

const (
	connInfoKey ctxKey = iota
	reqStateKey
)

// connInfo is attached to every HTTP connection the proxy serves.
type connInfo struct {
	net.Conn
	origin Origin
	guard  connGuard
}

// reqState travels with a request through the reverse proxy and transport.
type reqState struct {
	rec   *RequestRecord
	table *Table
	// inBody is the client's request body, closed when the response ends
	// first (see doneBody).
	inBody io.ReadCloser
	svc    *Service // the backend service, nil for a pod IP
	bal    *balancer.Balancer
	podDst netip.AddrPort // set when the destination is a pod IP
	rule   *route.Rule
	h2     bool // speak HTTP/2 (h2c) to the upstream
	body   []byte
	bodyOK bool // body buffered and replayable
	// tried are the endpoints earlier attempts went to, which a retry
	// avoids; a fixed array so the common request allocates nothing.
	tried  [4]netip.AddrPort
	ntried int
	// backendResponseHeaders is the picked backendRef's own filter.
	backendResponseHeaders *route.HeaderModifier
}

// connListener feeds sniffed connections to the shared http.Server.
type connListener struct {
	ch     chan net.Conn
	closed chan struct{}
	once   sync.Once
	addr   net.Addr
}

func newConnListener() *connListener {
	return &connListener{ch: make(chan net.Conn), closed: make(chan struct{}), addr: &net.TCPAddr{}}
}

func (l *connListener) Accept() (net.Conn, error) {
	select {
	case c := <-l.ch:
		return c, nil
	case <-l.closed:
		return nil, net.ErrClosed
	}
}

func (l *connListener) Close() error {
	l.once.Do(func() { close(l.closed) })
	return nil
}

func (l *connListener) Addr() net.Addr { return l.addr }

// push hands a connection to the http.Server; false if shutting down.
func (l *connListener) push(c net.Conn) bool {
	select {
	case l.ch <- c:
		return true
	case <-l.closed:
		return false
	}
}

// HTTPConfig tunes HTTP handling. The zero value is usable.
type HTTPConfig struct {
	// SniffTimeout bounds how long the proxy waits for a client's first
	// bytes to detect its protocol. Zero: 200ms.
	SniffTimeout time.Duration
	// MaxHeaderBytes bounds request headers. Zero: 64 KiB.
	MaxHeaderBytes int
	// ReadHeaderTimeout bounds reading request headers (slowloris). Zero: 10s.
	ReadHeaderTimeout time.Duration
	// IdleTimeout closes idle client connections. Zero: 5m.
	IdleTimeout time.Duration
	// MaxConcurrentStreams per HTTP/2 client connection. Zero: 1000.
	MaxConcurrentStreams int
	// MaxURIBytes bounds a request's URI; longer ones get 414. Zero:
	// 16 KiB; negative: no limit beyond MaxHeaderBytes.
	MaxURIBytes int
	// BodyReadTimeout bounds the wait for the next bytes of a request
	// body (slow-body clients get 408). Zero: 60s; negative: none.
	BodyReadTimeout time.Duration
	// MaxRetryBody is the largest request body buffered so that a request
	// can be retried or mirrored. Zero: 64 KiB.
	MaxRetryBody int64
	// UpstreamIdleTimeout closes idle upstream connections. Zero: 90s.
	UpstreamIdleTimeout time.Duration
	// MaxIdleConnsPerEndpoint bounds pooled HTTP/1.1 upstream connections.
	// Zero: 64.
	MaxIdleConnsPerEndpoint int
	// RetryBudgetRatio is the share of requests that may be retries.
	// Zero: 0.2.
	RetryBudgetRatio float64
	// RetryBudgetMinPerSecond retries are always allowed. Zero: 10.
	RetryBudgetMinPerSecond int
}

func (c *HTTPConfig) setDefaults() {
	if c.SniffTimeout == 0 {
		c.SniffTimeout = 200 * time.Millisecond
	}
	if c.MaxHeaderBytes == 0 {
		c.MaxHeaderBytes = 64 << 10
	}
	if c.ReadHeaderTimeout == 0 {
		c.ReadHeaderTimeout = 10 * time.Second
	}
	if c.IdleTimeout == 0 {
		c.IdleTimeout = 5 * time.Minute
	}
	if c.MaxConcurrentStreams == 0 {
		c.MaxConcurrentStreams = 1000
	}
	if c.MaxURIBytes == 0 {
		c.MaxURIBytes = 16 << 10
	}
	if c.BodyReadTimeout == 0 {
		c.BodyReadTimeout = time.Minute
	}
	if c.MaxRetryBody == 0 {
		c.MaxRetryBody = 64 << 10
	}
	if c.UpstreamIdleTimeout == 0 {
		c.UpstreamIdleTimeout = 90 * time.Second
	}
	if c.MaxIdleConnsPerEndpoint == 0 {
		c.MaxIdleConnsPerEndpoint = 64
	}
	if c.RetryBudgetRatio == 0 {
		c.RetryBudgetRatio = 0.2
	}
	if c.RetryBudgetMinPerSecond == 0 {
		c.RetryBudgetMinPerSecond = 10
	}
}

// newHTTPServer builds the shared server for captured HTTP connections:
// HTTP/1.1 and HTTP/2 with prior knowledge on the same connections.
func (p *Proxy) newHTTPServer() *http.Server {
	var protos http.Protocols
	protos.SetHTTP1(true)
	protos.SetUnencryptedHTTP2(true)
	return &http.Server{
		Handler:           p.guardHandler(ListenerOutbound, p),
		Protocols:         &protos,
		ReadHeaderTimeout: p.cfg.HTTP.ReadHeaderTimeout,
		IdleTimeout:       p.cfg.HTTP.IdleTimeout,
		MaxHeaderBytes:    p.cfg.HTTP.MaxHeaderBytes,
		HTTP2: &http.HTTP2Config{
			MaxConcurrentStreams: p.cfg.HTTP.MaxConcurrentStreams,
			MaxReadFrameSize:     1 << 20,
			CountError:           p.countH2Error(ListenerOutbound),
		},
		ErrorLog: p.serverErrorLog(ListenerOutbound, p.log.Named("http")),
		ConnContext: func(ctx context.Context, c net.Conn) context.Context {
			if ci, ok := c.(*connInfo); ok {
				return context.WithValue(context.WithValue(ctx, connInfoKey, ci), guardKey{}, &ci.guard)
			}
			return ctx
		},
	}
}

// newUpstreamTransports returns the HTTP/1.1 and h2c transports used to
// reach endpoints. Their pools are keyed by endpoint address.
func (p *Proxy) newUpstreamTransports() (h1, h2 *http.Transport) {
	dial := func(ctx context.Context, network, addr string) (net.Conn, error) {
		return p.dialer.DialContext(ctx, network, addr)
	}
	h1 = &http.Transport{
		DialContext:           dial,
		MaxIdleConns:          0,
		MaxIdleConnsPerHost:   p.cfg.HTTP.MaxIdleConnsPerEndpoint,
		IdleConnTimeout:       p.cfg.HTTP.UpstreamIdleTimeout,
		DisableCompression:    true,
		ExpectContinueTimeout: time.Second,
		ForceAttemptHTTP2:     false,
	}
	var protos http.Protocols
	protos.SetUnencryptedHTTP2(true)
	h2 = &http.Transport{
		DialContext:        dial,
		Protocols:          &protos,
		IdleConnTimeout:    p.cfg.HTTP.UpstreamIdleTimeout,
		DisableCompression: true,
		HTTP2: &http.HTTP2Config{
			MaxReadFrameSize: 1 << 20,
			PingTimeout:      15 * time.Second,
			SendPingTimeout:  30 * time.Second,
		},
	}
	return h1, h2
}

// serveHTTP hands a captured connection to the shared HTTP server.
func (p *Proxy) serveHTTP(c net.Conn, origin Origin) {
	ci := &connInfo{Conn: c, origin: origin}
	ci.guard = connGuard{p: p, listener: ListenerOutbound, conn: c, client: sourceKey(origin.Source)}
	if !p.httpLn.push(ci) {
		c.Close()
	}
}

// ServeHTTP routes and forwards one request. Every request is routed and
// balanced on its own, also when many share one HTTP/2 connection.
func (p *Proxy) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	p.handlers.Add(1)
	defer p.handlers.Add(-1)
	ci, _ := r.Context().Value(connInfoKey).(*connInfo)
	if ci == nil {
		http.Error(w, "skein: request without connection info", http.StatusInternalServerError)
		return
	}
	if p.draining.Load() && r.ProtoMajor == 1 {
		w.Header().Set("Connection", "close")
	}
	t := p.table.Load() // per request: route changes apply to open connections too
	rec := &RequestRecord{
		Start:     time.Now(),
		Source:    ci.origin.Source,
		OrigDst:   ci.origin.Dst,
		Method:    r.Method,
		Authority: r.Host,
		Path:      r.URL.Path,
		Query:     r.URL.RawQuery,
		Protocol:  protocolName(r),
		Header:    r.Header,
		Reporter:  ReporterSource,
		Security:  SecurityNone,
	}
	cw := &countingWriter{ResponseWriter: w}
	if r.Body != nil && r.Body != http.NoBody {
		r.Body = &countingBody{ReadCloser: r.Body, n: &rec.ReqBytes}
	}
	ctx, span := p.startSpan(r, rec, trace.SpanKindClient)
	r = r.WithContext(ctx)
	defer func() {
		rec.Duration = time.Since(rec.Start)
		if rec.Code == 0 {
			rec.Code = cw.code
		}
		rec.RespBytes = cw.n
		rec.GRPCStatus = grpcStatus(cw.Header(), rec.Code, rec.Protocol)
		endSpan(span, rec, trace.SpanKindClient)
		p.finishRequest(rec)
	}()

	st := &reqState{rec: rec, table: t, inBody: r.Body}
	svc := t.Services[ci.origin.Dst]
	if svc == nil {
		// A pod IP: no routing, straight to the pod the app dialed.
		st.podDst = ci.origin.Dst
		rec.Dest = t.Workloads[ci.origin.Dst.Addr()]
		st.h2 = r.ProtoMajor == 2
		p.forward(cw, r, st)
		return
	}
	rec.Service = svc
	st.svc = svc

	clientNS := ""
	if ci.origin.Source != nil {
		clientNS = ci.origin.Source.Namespace
	}
	var res route.Result
	if t.Routes != nil {
		res = t.Routes.Match(route.ServiceRef{Namespace: svc.Namespace, Name: svc.Name, Port: svc.Port}, clientNS, r)
	}
	if res.Attached {
		if res.Rule == nil {
			rec.addFlag(FlagNoRoute)
			p.respond(cw, rec, http.StatusNotFound, "no route matched")
			return
		}
		if !p.applyRule(cw, r, st, t, res) {
			return
		}
	}
	if st.svc != nil && st.bal == nil {
		bal, err := p.balancerFor(st.svc)
		if err != nil {
			p.respond(cw, rec, http.StatusInternalServerError, err.Error())
			return
		}
		st.bal = bal
	}
	st.h2 = useH2(st.svc, r)
	p.forward(cw, r, st)
}

// applyRule runs a matched rule's filters and picks its backend. It
// answers the request itself (redirect, error) and returns false, or
// returns true with st ready to forward.
func (p *Proxy) applyRule(w *countingWriter, r *http.Request, st *reqState, t *Table, res route.Result) bool {
	rule := res.Rule
	st.rule = rule
	ref := rule.Route
	st.rec.Route = &ref
	if rule.Redirect != nil {
		loc, code := rule.Redirect.Location(r, res.MatchedPrefix)
		w.Header().Set("Location", loc)
		p.respond(w, st.rec, code, "")
		return false
	}
	if rule.RequestHeaders != nil {
		rule.RequestHeaders.ApplyToRequest(r)
	}
	if rule.Rewrite != nil {
		rule.Rewrite.Apply(r, res.MatchedPrefix)
	}
	if len(rule.Mirrors) > 0 || rule.Retry != nil {
		p.bufferBody(r, st)
	}
	for i := range rule.Mirrors {
		p.mirror(r, st, t, &rule.Mirrors[i])
	}
	be := rule.PickBackend(rand.IntN)
	if be == nil || !be.Valid {
		// Gateway API: requests that would go to a missing or invalid
		// backend (or to none, all weights 0) get a 500.
		st.rec.addFlag(FlagNoRoute)
		msg := "no backend for this route"
		if be != nil {
			msg = "backend " + be.Service.Namespace + "/" + be.Service.Name + " is not usable: " + be.Reason
		}
		p.respond(w, st.rec, http.StatusInternalServerError, msg)
		return false
	}
	svc := t.ServicesByRef[be.Service]
	if svc == nil {
		st.rec.addFlag(FlagNoRoute)
		p.respond(w, st.rec, http.StatusInternalServerError, "backend service "+be.Service.Namespace+"/"+be.Service.Name+" not found")
		return false
	}
	if be.RequestHeaders != nil {
		be.RequestHeaders.ApplyToRequest(r)
	}
	st.backendResponseHeaders = be.ResponseHeaders
	st.svc = svc
	st.rec.Service = svc
	return true
}

// respond answers the request from the proxy itself. A gRPC client gets a
// trailers-only gRPC response with the matching status, as gRPC requires.
func (p *Proxy) respond(w http.ResponseWriter, rec *RequestRecord, code int, msg string) {
	rec.Code = code
	if code >= 300 && code < 400 {
		w.WriteHeader(code)
		return
	}
	if rec.Protocol == "grpc" {
		gs := grpcStatus(nil, code, "grpc")
		w.Header().Set("Content-Type", "application/grpc")
		w.Header().Set("Grpc-Status", gs)
		w.Header().Set("Grpc-Message", "skein: "+msg)
		w.WriteHeader(http.StatusOK)
		rec.GRPCStatus = gs
		return
	}
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(code)
	if msg != "" {
		fmt.Fprintf(w, "skein: %s\n", msg)
	}
}

// balancerFor returns the balancer of a service port: the one the table
// update attached, or, for a table built elsewhere, from the registry.
func (p *Proxy) balancerFor(svc *Service) (*balancer.Balancer, error) {
	if svc.bal != nil {
		return svc.bal, nil
	}
	eps := make([]netip.AddrPort, len(svc.Endpoints))
	for i, ep := range svc.Endpoints {
		eps[i] = ep.Addr
	}
	return p.balancers.Get(svc.key(), svc.Balancer, eps)
}

// key names a service port for the balancer registry.
func (s *Service) key() string {
	return s.Namespace + "/" + s.Name + ":" + strconv.Itoa(int(s.Port))
}

// useH2 says whether to speak HTTP/2 to the upstream.
func useH2(svc *Service, r *http.Request) bool {
	if svc != nil {
		switch svc.Protocol {
		case ProtocolHTTP2, ProtocolGRPC:
			return true
		case ProtocolHTTP:
			return false
		}
	}
	return r.ProtoMajor == 2
}

func protocolName(r *http.Request) string {
	if r.ProtoMajor == 2 {
		if strings.HasPrefix(r.Header.Get("Content-Type"), "application/grpc") {
			return "grpc"
		}
		return "http2"
	}
	return "http"
}

// bufferBody reads a small request body into memory so that it can be sent
// more than once (retries, mirrors). Larger or streaming bodies are not
// buffered: such requests are neither retried nor mirrored with a body.
func (p *Proxy) bufferBody(r *http.Request, st *reqState) {
	if r.Body == nil || r.Body == http.NoBody {
		st.bodyOK = true
		return
	}
	if r.ContentLength < 0 || r.ContentLength > p.cfg.HTTP.MaxRetryBody {
		return
	}
	b, err := io.ReadAll(io.LimitReader(r.Body, p.cfg.HTTP.MaxRetryBody+1))
	if err != nil || int64(len(b)) > p.cfg.HTTP.MaxRetryBody {
		// Give back what was read, followed by the rest.
		r.Body = readCloser{io.MultiReader(bytes.NewReader(b), r.Body), r.Body}
		return
	}
	r.Body.Close()
	st.body, st.bodyOK = b, true
	r.Body = io.NopCloser(bytes.NewReader(b))
	r.GetBody = func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(b)), nil }
}

type readCloser struct {
	io.Reader
	io.Closer
}

// forward sends the request upstream through the reverse proxy, whose
// transport picks an endpoint per attempt.
func (p *Proxy) forward(w *countingWriter, r *http.Request, st *reqState) {
	ctx := context.WithValue(r.Context(), reqStateKey, st)
	if st.rule != nil && st.rule.Timeouts.Request > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, st.rule.Timeouts.Request)
		defer cancel()
	}
	if st.rule != nil && (st.rule.ResponseHeaders != nil || st.backendResponseHeaders != nil) {
		rule, be := st.rule.ResponseHeaders, st.backendResponseHeaders
		w.modify = func(h http.Header) {
			if rule != nil {
				rule.Apply(h)
			}
			if be != nil {
				be.Apply(h)
			}
		}
	}
	p.reverse.ServeHTTP(w, r.WithContext(ctx))
}

// rewrite prepares the outgoing request: the upstream is chosen per attempt
// by the transport, so only the scheme and the forwarding headers are set.
func (p *Proxy) rewrite(pr *httputil.ProxyRequest) {
	pr.Out.URL.Scheme = "http"
	pr.Out.URL.Host = pr.In.Host
	pr.Out.Host = pr.In.Host
	// The app's own X-Forwarded-* headers are kept: the proxy is
	// transparent, not an edge. No X-Forwarded-For is added, since the
	// upstream sees the real client through the mesh's identity instead.
	pr.Out.Header["X-Forwarded-For"] = pr.In.Header["X-Forwarded-For"]
}

// errorHandler maps transport errors onto statuses and response flags.
func (p *Proxy) errorHandler(w http.ResponseWriter, r *http.Request, err error) {
	st, _ := r.Context().Value(reqStateKey).(*reqState)
	code, flag := http.StatusBadGateway, FlagUpstreamReset
	bodyCode, bodyErr, clientFailed := clientBodyError(r, err)
	switch {
	case clientFailed:
		code, flag, err = bodyCode, FlagDownstreamProtocol, bodyErr
	case errors.Is(err, balancer.ErrNoEndpoints):
		code, flag = http.StatusServiceUnavailable, FlagNoHealthyUpstream
	case errors.Is(err, balancer.ErrOverflow):
		code, flag = http.StatusServiceUnavailable, FlagUpstreamOverflow
	case errors.Is(err, context.DeadlineExceeded), errors.Is(err, errBackendTimeout):
		code, flag = http.StatusGatewayTimeout, FlagUpstreamTimeout
	case errors.Is(err, context.Canceled):
		code, flag = 499, FlagDownstreamClosed
	case errors.Is(err, errDenied):
		code, flag = http.StatusForbidden, FlagUnauthorized
	case isDialError(err):
		code, flag = http.StatusServiceUnavailable, FlagUpstreamConnect
	}
	if st != nil {
		st.rec.addFlag(flag)
		st.rec.Err = err
		msg := "upstream: " + cleanErr(err)
		if clientFailed {
			msg = cleanErr(err)
		}
		p.respond(w, st.rec, code, msg)
		return
	}
	w.WriteHeader(code)
}

var errBackendTimeout = errors.New("backend request timeout")

type dialError struct{ err error }

func (e *dialError) Error() string { return "connect: " + e.err.Error() }
func (e *dialError) Unwrap() error { return e.err }

func isDialError(err error) bool {
	var de *dialError
	var oe *net.OpError
	return errors.As(err, &de) || errors.As(err, &oe) && oe.Op == "dial" || errors.Is(err, syscall.ECONNREFUSED)
}

func cleanErr(err error) string {
	s := err.Error()
	if i := strings.LastIndex(s, ": "); i > 0 && len(s) > 200 {
		s = s[i+2:]
	}
	return s
}

// grpcStatus returns the grpc-status of a response (trailer or, for a
// trailers-only response, header); for a gRPC request the proxy answered
// itself, the status matching the HTTP code.
func grpcStatus(h http.Header, code int, proto string) string {
	if proto != "grpc" {
		return ""
	}
	if s := h.Get("Grpc-Status"); s != "" {
		return s
	}
	if s := h.Get(http.TrailerPrefix + "Grpc-Status"); s != "" {
		return s
	}
	if h != nil && code == http.StatusOK {
		return "0"
	}
	switch code {
	case http.StatusOK:
		return ""
	case http.StatusInternalServerError:
		return "14" // UNAVAILABLE: what gRPC clients retry on
	case http.StatusNotFound:
		return "12" // UNIMPLEMENTED
	case http.StatusServiceUnavailable, http.StatusBadGateway:
		return "14" // UNAVAILABLE
	case http.StatusGatewayTimeout:
		return "4" // DEADLINE_EXCEEDED
	case http.StatusForbidden:
		return "7" // PERMISSION_DENIED
	}
	return "2" // UNKNOWN
}

func (p *Proxy) finishRequest(rec *RequestRecord) {
	p.stats.Requests.Add(1)
	if rec.Code >= 500 || len(rec.Flags) > 0 {
		p.stats.RequestErrors.Add(1)
	}
	if p.cfg.RequestRecorder != nil {
		p.cfg.RequestRecorder.RecordRequest(rec)
	}
	if ce := p.log.Check(zap.DebugLevel, "request"); ce != nil {
		fields := []zap.Field{
			zap.String("src_pod", podName(rec.Source)),
			zap.String("src_principal", identityOf(rec.Source)),
			zap.String("reporter", rec.Reporter),
			zap.String("security", rec.Security),
			zap.Stringer("orig_dst", rec.OrigDst),
			zap.String("method", rec.Method),
			zap.String("authority", rec.Authority),
			zap.String("path", rec.Path),
			zap.Int("code", rec.Code),
			zap.String("flags", rec.FlagString()),
			zap.String("trace_id", rec.TraceID),
			zap.Stringer("upstream", rec.Upstream),
			zap.Duration("duration", rec.Duration),
		}
		if rec.Err != nil {
			fields = append(fields, zap.Error(rec.Err))
		}
		ce.Write(fields...)
	}
}

func identityOf(w *Workload) string {
	if w == nil {
		return ""
	}
	return w.Identity
}

// countingWriter counts response bytes and applies response header filters
// just before the header is written.
type countingWriter struct {
	http.ResponseWriter
	n      int64
	code   int
	modify func(http.Header)
}

func (w *countingWriter) WriteHeader(code int) {
	if w.code == 0 || code >= 200 && w.code < 200 {
		if code >= 200 && w.modify != nil {
			w.modify(w.ResponseWriter.Header())
			w.modify = nil
		}
		w.code = code
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *countingWriter) Write(b []byte) (int, error) {
	if w.code == 0 {
		w.WriteHeader(http.StatusOK)
	}
	n, err := w.ResponseWriter.Write(b)
	w.n += int64(n)
	return n, err
}

// Unwrap lets http.ResponseController reach Flush and Hijack.
func (w *countingWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// Flush is here for code that checks for http.Flusher directly.
func (w *countingWriter) Flush() {
	if w.code == 0 {
		w.WriteHeader(http.StatusOK)
	}
	_ = http.NewResponseController(w.ResponseWriter).Flush()
}

type countingBody struct {
	io.ReadCloser
	n *int64
}

func (b *countingBody) Read(p []byte) (int, error) {
	n, err := b.ReadCloser.Read(p)
	atomic.AddInt64(b.n, int64(n))
	return n, err
}
