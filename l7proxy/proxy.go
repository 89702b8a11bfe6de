package l7proxy

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"go.uber.org/zap"
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
}

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
}

// Proxy is the node proxy.
type Proxy struct {
	cfg      Config
	log      *zap.Logger
	resolver OrigDstResolver
	table    atomic.Pointer[Table]
	dialer   net.Dialer

	rr sync.Map // service key -> *atomic.Uint64, round-robin cursors

	mu        sync.Mutex
	listeners map[net.Listener]struct{}
	conns     map[net.Conn]struct{}
	closing   bool
	wg        sync.WaitGroup

	stats Stats
}

// Stats are the proxy's counters.
type Stats struct {
	Accepted    atomic.Int64
	Active      atomic.Int64
	NotCaptured atomic.Int64
	Forwarded   atomic.Int64
	Failed      atomic.Int64
}

// StatsSnapshot is a copy of the counters.
type StatsSnapshot struct {
	Accepted    int64 `json:"accepted"`
	Active      int64 `json:"active"`
	NotCaptured int64 `json:"notCaptured"`
	Forwarded   int64 `json:"forwarded"`
	Failed      int64 `json:"failed"`
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
	p := &Proxy{
		cfg:       cfg,
		log:       log.Named("proxy"),
		resolver:  resolver,
		dialer:    net.Dialer{Timeout: cfg.ConnectTimeout},
		listeners: map[net.Listener]struct{}{},
		conns:     map[net.Conn]struct{}{},
	}
	p.table.Store(&Table{})
	return p, nil
}

// Update swaps in a new table. Connections in flight keep theirs.
func (p *Proxy) Update(t *Table) { p.table.Store(t) }

// Table returns the current table.
func (p *Proxy) Table() *Table { return p.table.Load() }

// Stats returns a copy of the counters.
func (p *Proxy) Stats() StatsSnapshot {
	return StatsSnapshot{
		Accepted:    p.stats.Accepted.Load(),
		Active:      p.stats.Active.Load(),
		NotCaptured: p.stats.NotCaptured.Load(),
		Forwarded:   p.stats.Forwarded.Load(),
		Failed:      p.stats.Failed.Load(),
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
	p.forwardTCP(c, origin, p.table.Load())
}
