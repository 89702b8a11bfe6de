package l7proxy

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/httputil"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"go.uber.org/zap"

	"github.com/skeinmesh/skein/l7proxy/balancer"
	"github.com/skeinmesh/skein/l7proxy/tunnel"
)

// ErrNotCaptured is what an OrigDstResolver returns for a connection that the
// capture programs did not steer (someone dialed the listener directly).
var ErrNotCaptured = errors.New("connection was not captured")

// Origin is where a captured connection was going and who opened it.
type Origin struct {
	// Dst is the destination the app dialed.
	Dst netip.AddrPort
	// Source is the workload that dialed, nil if the pod is not known.
	Source *Workload
}

// OrigDstResolver recovers the origin of an accepted connection from its
// remote (the pod) and local (the proxy) addresses. The agent implements it
// with one lookup in the capture programs' map.
type OrigDstResolver interface {
	Resolve(remote, local netip.AddrPort) (Origin, error)
}

// ConnRecord describes a finished TCP connection, for metrics and logs.
type ConnRecord struct {
	Start     time.Time
	Duration  time.Duration
	Source    *Workload
	OrigDst   netip.AddrPort
	Service   *Service // nil when the destination was a pod IP
	Upstream  netip.AddrPort
	Dest      *Workload
	SentBytes int64 // from the client to the upstream
	RecvBytes int64 // from the upstream to the client
	Flag      string
	Err       error
	// Reporter is ReporterSource or ReporterDestination.
	Reporter string
	// Security is SecurityMutualTLS when the connection crossed the tunnel.
	Security string
}

// Reporters, as Istio labels them.
const (
	ReporterSource      = "source"
	ReporterDestination = "destination"
)

// Recorder receives what the proxy observed. Implementations must not block.
type Recorder interface {
	RecordConnection(ConnRecord)
}

// Config tunes the proxy. The zero value is usable.
type Config struct {
	// ConnectTimeout bounds dialing an endpoint. Zero: 5s.
	ConnectTimeout time.Duration
	// Recorder receives connection records; nil: none.
	Recorder Recorder
	// RequestRecorder receives HTTP request records; nil: none.
	RequestRecorder RequestRecorder
	// HTTP tunes HTTP handling.
	HTTP HTTPConfig
	// Limits bound what one client can take of the proxy.
	Limits Limits
	// Tunnel, if set, carries traffic to meshed pods on other nodes over
	// mTLS; nil: such traffic goes direct, in plaintext.
	Tunnel *tunnel.Client
	// TunnelPort is the peers' tunnel port. Zero: 15008.
	TunnelPort uint16
	// Authorizer, if set, authorizes traffic to this node's pods.
	Authorizer Authorizer
	// Events, if set, receives troubleshooting events.
	Events EventSink
	// Tracing records a span per proxy hop and propagates trace context.
	Tracing Tracing
}

// Proxy is the node proxy.
type Proxy struct {
	cfg      Config
	log      *zap.Logger
	resolver OrigDstResolver
	table    atomic.Pointer[Table]
	dialer   net.Dialer

	balancers   *balancer.Registry
	retryBudget *balancer.RetryBudget
	httpSrv     *http.Server
	httpLn      *connListener
	reverse     *httputil.ReverseProxy
	h1, h2      *http.Transport
	mirrorSem   chan struct{}
	tunnelSrv   *http.Server

	mu        sync.Mutex
	listeners map[net.Listener]struct{}
	conns     map[net.Conn]struct{}
	closing   bool
	wg        sync.WaitGroup

	stats Stats
	guard guard
	// draining makes HTTP/1.1 responses close their connection, so clients
	// move to the agent that took the listeners over.
	draining atomic.Bool
	// handlers counts HTTP handlers running, upgraded connections (whose
	// handler relays until they end) included: the http.Server forgets
	// hijacked connections, Shutdown must not.
	handlers atomic.Int64
}

// Stats are the proxy's counters.
type Stats struct {
	Accepted    atomic.Int64
	Active      atomic.Int64
	NotCaptured atomic.Int64
	Forwarded   atomic.Int64
	Failed      atomic.Int64

	HTTPConns      atomic.Int64
	TunnelConns    atomic.Int64
	TunnelRefused  atomic.Int64
	AuthzAllowed   atomic.Int64
	AuthzDenied    atomic.Int64
	Requests       atomic.Int64
	RequestErrors  atomic.Int64
	Mirrored       atomic.Int64
	MirrorsFailed  atomic.Int64
	MirrorsSkipped atomic.Int64
}

// StatsSnapshot is a copy of the counters.
type StatsSnapshot struct {
	Accepted    int64 `json:"accepted"`
	Active      int64 `json:"active"`
	NotCaptured int64 `json:"notCaptured"`
	Forwarded   int64 `json:"forwarded"`
	Failed      int64 `json:"failed"`
	HTTPConns   int64 `json:"httpConnections"`
	Requests    int64 `json:"requests"`
	// RequestErrors are requests answered with a 5xx or a proxy error.
	RequestErrors int64 `json:"requestErrors"`
	Mirrored      int64 `json:"mirrored"`
	MirrorsLost   int64 `json:"mirrorsLost"`
	TunnelConns   int64 `json:"tunnelConnections"`
	TunnelRefused int64 `json:"tunnelRefused"`
	AuthzAllowed  int64 `json:"authzAllowed"`
	AuthzDenied   int64 `json:"authzDenied"`
}

// New returns a proxy that resolves origins with resolver.
func New(cfg Config, resolver OrigDstResolver, log *zap.Logger) (*Proxy, error) {
	if resolver == nil {
		return nil, errors.New("proxy config: an OrigDstResolver is required")
	}
	if cfg.ConnectTimeout == 0 {
		cfg.ConnectTimeout = 5 * time.Second
	}
	if cfg.ConnectTimeout < 0 {
		return nil, fmt.Errorf("proxy config: ConnectTimeout %s is negative", cfg.ConnectTimeout)
	}
	cfg.HTTP.setDefaults()
	budget, err := balancer.NewRetryBudget(cfg.HTTP.RetryBudgetRatio, cfg.HTTP.RetryBudgetMinPerSecond, 10*time.Second, nil)
	if err != nil {
		return nil, fmt.Errorf("proxy config: %w", err)
	}
	p := &Proxy{
		cfg:         cfg,
		log:         log.Named("proxy"),
		resolver:    resolver,
		dialer:      net.Dialer{Timeout: cfg.ConnectTimeout},
		listeners:   map[net.Listener]struct{}{},
		conns:       map[net.Conn]struct{}{},
		balancers:   balancer.NewRegistry(nil),
		retryBudget: budget,
		httpLn:      newConnListener(),
		mirrorSem:   make(chan struct{}, maxMirrors),
	}
	p.table.Store(&Table{})
	p.h1, p.h2 = p.newUpstreamTransports()
	p.reverse = &httputil.ReverseProxy{
		Rewrite:        p.rewrite,
		Transport:      upstream{p: p},
		ModifyResponse: flushStreams,
		ErrorHandler:   p.errorHandler,
		ErrorLog:       zap.NewStdLog(p.log.Named("reverse")),
		BufferPool:     reverseBufferPool{},
	}
	p.httpSrv = p.newHTTPServer()
	go func() {
		if err := p.httpSrv.Serve(p.httpLn); err != nil && !errors.Is(err, http.ErrServerClosed) && !errors.Is(err, net.ErrClosed) {
			p.log.Error("http server stopped", zap.Error(err))
		}
	}()
	return p, nil
}

// flushStreams is the reverse proxies' ModifyResponse: it makes them flush
// a streamed response at every write and leaves every other response
// buffered (FlushInterval 0), so that its header and body leave in one
// write rather than a write (and, through the tunnel, a TLS record) per
// flush. ReverseProxy already flushes at once for server-sent events
// (text/event-stream) and for bodies of unknown length (chunked HTTP/1.1,
// HTTP/2 without content-length, so gRPC in practice); gRPC is a stream
// even when it announces a length. Upgrades are hijacked and relayed raw.
//
// A response known to have no body stays buffered, gRPC's trailers-only
// responses among them: flushing its header early would send the status
// in a HEADERS frame without END_STREAM, which a gRPC client takes for a
// stream that ended without trailers (INTERNAL instead of the status).
func flushStreams(resp *http.Response) error {
	if resp.ContentLength > 0 && isGRPC(resp.Header.Get("Content-Type")) {
		resp.ContentLength = -1 // the header stays: only ReverseProxy's flushing looks at this
	}
	return nil
}

// isGRPC reports a gRPC content type: application/grpc, +proto, +json...
func isGRPC(contentType string) bool {
	return strings.HasPrefix(contentType, "application/grpc")
}

// reverseBufferPool shares copy buffers with the TCP relay.
type reverseBufferPool struct{}

func (reverseBufferPool) Get() []byte  { return *bufPool.Get().(*[]byte) }
func (reverseBufferPool) Put(b []byte) { bufPool.Put(&b) }

// Update swaps in a new table. TCP connections in flight keep theirs; HTTP
// requests each use the newest. Balancers of services that are gone are
// dropped; those that stay keep their endpoint state.
func (p *Proxy) Update(t *Table) {
	keep := make(map[string]bool, len(t.Services))
	for _, s := range t.Services {
		if s.bal != nil {
			continue // the same port under another VIP
		}
		keep[s.key()] = true
		b, err := p.balancerFor(s)
		if err != nil {
			p.log.Warn("balancer config rejected; the last good one keeps serving", zap.String("service", s.key()), zap.Error(err))
		}
		s.bal = b
	}
	for _, s := range t.ServicesByRef {
		if s.bal == nil {
			keep[s.key()] = true
			s.bal, _ = p.balancerFor(s)
		}
	}
	p.table.Store(t)
	p.balancers.Retain(keep)
}

// Endpoints returns the balancers' view of every endpoint, by service port.
func (p *Proxy) Endpoints() map[string][]balancer.EndpointStatus { return p.balancers.Snapshot() }

// Table returns the current table.
func (p *Proxy) Table() *Table { return p.table.Load() }

// Stats returns a copy of the counters.
func (p *Proxy) Stats() StatsSnapshot {
	return StatsSnapshot{
		Accepted:      p.stats.Accepted.Load(),
		Active:        p.stats.Active.Load(),
		NotCaptured:   p.stats.NotCaptured.Load(),
		Forwarded:     p.stats.Forwarded.Load(),
		Failed:        p.stats.Failed.Load(),
		HTTPConns:     p.stats.HTTPConns.Load(),
		Requests:      p.stats.Requests.Load(),
		RequestErrors: p.stats.RequestErrors.Load(),
		Mirrored:      p.stats.Mirrored.Load(),
		MirrorsLost:   p.stats.MirrorsFailed.Load() + p.stats.MirrorsSkipped.Load(),
		TunnelConns:   p.stats.TunnelConns.Load(),
		TunnelRefused: p.stats.TunnelRefused.Load(),
		AuthzAllowed:  p.stats.AuthzAllowed.Load(),
		AuthzDenied:   p.stats.AuthzDenied.Load(),
	}
}

// ErrClosed is returned by Serve after Shutdown.
var ErrClosed = errors.New("proxy closed")

// Serve accepts captured connections on ln until Shutdown. It takes
// ownership of ln.
func (p *Proxy) Serve(ln net.Listener) error {
	p.mu.Lock()
	if p.closing {
		p.mu.Unlock()
		ln.Close()
		return ErrClosed
	}
	p.listeners[ln] = struct{}{}
	p.mu.Unlock()
	defer func() {
		p.mu.Lock()
		delete(p.listeners, ln)
		p.mu.Unlock()
	}()

	var backoff time.Duration
	for {
		c, err := ln.Accept()
		if err != nil {
			p.mu.Lock()
			closing := p.closing
			p.mu.Unlock()
			if closing {
				return ErrClosed
			}
			if isTemporaryAccept(err) {
				backoff = min(max(2*backoff, 5*time.Millisecond), time.Second)
				p.log.Warn("accept failed; retrying", zap.Error(err), zap.Duration("backoff", backoff))
				time.Sleep(backoff)
				continue
			}
			return fmt.Errorf("accept: %w", err)
		}
		backoff = 0
		if !p.track(c) {
			c.Close()
			return ErrClosed
		}
		p.stats.Accepted.Add(1)
		go p.serveConn(c)
	}
}

// isTemporaryAccept reports accept errors worth retrying: running out of
// file descriptors or memory, or a client that gave up in the queue.
func isTemporaryAccept(err error) bool {
	return errors.Is(err, syscall.EMFILE) || errors.Is(err, syscall.ENFILE) ||
		errors.Is(err, syscall.ENOBUFS) || errors.Is(err, syscall.ENOMEM) ||
		errors.Is(err, syscall.ECONNABORTED)
}

// track registers a connection for Shutdown; false if shutting down.
func (p *Proxy) track(c net.Conn) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closing {
		return false
	}
	p.conns[c] = struct{}{}
	p.wg.Add(1)
	p.stats.Active.Add(1)
	return true
}

func (p *Proxy) untrack(c net.Conn) {
	p.mu.Lock()
	delete(p.conns, c)
	p.mu.Unlock()
	p.stats.Active.Add(-1)
	p.wg.Done()
}

// Drain is Shutdown for an agent whose listeners a successor took over: the
// successor already accepts on the same sockets. HTTP/1.1 connections get
// "Connection: close" on their next response, so their clients reconnect to
// the successor without a failed request; then Shutdown sends HTTP/2 GOAWAY,
// closes what is idle, and waits for the rest (long-lived TCP streams keep
// flowing through this process) until ctx ends.
func (p *Proxy) Drain(ctx context.Context) error {
	p.draining.Store(true)
	p.mu.Lock()
	for ln := range p.listeners {
		ln.Close() // this process's copy: the socket stays open in the successor
	}
	p.mu.Unlock()
	grace := 2 * time.Second
	if dl, ok := ctx.Deadline(); ok {
		grace = min(grace, time.Until(dl)/2)
	}
	t := time.NewTimer(grace)
	select {
	case <-t.C:
	case <-ctx.Done():
		t.Stop()
	}
	return p.Shutdown(ctx)
}

// Shutdown stops accepting, then waits for connections in flight to finish
// until ctx ends, when it closes the rest.
func (p *Proxy) Shutdown(ctx context.Context) error {
	p.mu.Lock()
	p.closing = true
	var errs []error
	for ln := range p.listeners {
		if err := ln.Close(); err != nil && !errors.Is(err, net.ErrClosed) {
			errs = append(errs, err)
		}
	}
	p.mu.Unlock()

	// HTTP connections: idle ones close now, busy ones after their request.
	p.mu.Lock()
	tsrv := p.tunnelSrv
	p.mu.Unlock()
	if tsrv != nil {
		if err := tsrv.Shutdown(ctx); err != nil {
			errs = append(errs, fmt.Errorf("drain tunnel: %w", err))
			tsrv.Close()
		}
	}
	if err := p.httpSrv.Shutdown(ctx); err != nil {
		errs = append(errs, fmt.Errorf("drain http: %w", err))
		p.httpSrv.Close()
	}
	p.h1.CloseIdleConnections()
	p.h2.CloseIdleConnections()
	// Upgraded connections (WebSocket...) live on in their handlers.
	for p.handlers.Load() > 0 && ctx.Err() == nil {
		select {
		case <-ctx.Done():
		case <-time.After(50 * time.Millisecond):
		}
	}

	done := make(chan struct{})
	go func() { p.wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-ctx.Done():
		p.mu.Lock()
		n := len(p.conns)
		for c := range p.conns {
			c.Close()
		}
		p.mu.Unlock()
		<-done
		errs = append(errs, fmt.Errorf("closed %d connections still open after the drain deadline: %w", n, ctx.Err()))
	}
	return errors.Join(errs...)
}

func (p *Proxy) serveConn(c net.Conn) {
	defer p.untrack(c)
	defer func() {
		if r := recover(); r != nil {
			p.log.Error("connection handler panicked", zap.Any("panic", r), zap.Stack("stack"))
			c.Close()
		}
	}()
	remote, err1 := netip.ParseAddrPort(c.RemoteAddr().String())
	local, err2 := netip.ParseAddrPort(c.LocalAddr().String())
	if err := errors.Join(err1, err2); err != nil {
		p.log.Warn("unparsable connection addresses", zap.Error(err))
		c.Close()
		return
	}
	remote = netip.AddrPortFrom(remote.Addr().Unmap(), remote.Port())
	local = netip.AddrPortFrom(local.Addr().Unmap(), local.Port())
	origin, err := p.resolver.Resolve(remote, local)
	if err != nil {
		p.stats.NotCaptured.Add(1)
		if ce := p.log.Check(zap.DebugLevel, "refusing a connection that was not captured"); ce != nil {
			ce.Write(zap.Stringer("remote", remote), zap.Error(err))
		}
		c.Close()
		return
	}
	c, ok := p.admit(c, origin)
	if !ok {
		return
	}
	p.dispatch(c, origin, p.table.Load())
}

// dispatch chooses how to handle a captured connection: the Service port's
// appProtocol decides when set; known server-first ports and TLS go through
// as opaque TCP; otherwise the first bytes decide.
func (p *Proxy) dispatch(c net.Conn, origin Origin, t *Table) {
	proto := ProtocolAuto
	if svc := t.Services[origin.Dst]; svc != nil {
		proto = svc.Protocol
	}
	switch {
	case proto == ProtocolTCP || proto == ProtocolAuto && serverFirstPorts[origin.Dst.Port()]:
		p.forwardTCP(c, origin, t)
		return
	case proto == ProtocolAuto:
		d, sc, err := sniff(c, p.cfg.HTTP.SniffTimeout)
		if err != nil {
			c.Close()
			return
		}
		c = sc
		if d == DetectedTCP {
			p.forwardTCP(c, origin, t)
			return
		}
	}
	p.stats.HTTPConns.Add(1)
	p.serveHTTP(c, origin)
}
