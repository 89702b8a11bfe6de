package l7proxy

import (
	"context"
	"crypto/tls"
	"errors"
	"net"
	"net/http"
	"strconv"
	"sync"

	"github.com/skeinmesh/skein/l7proxy/tunnel"
)

// tunnelListener completes each tunnel connection's TLS handshake before
// the HTTP server sees it, off the accept loop and within the handshake
// timeout, so that it can count failed handshakes and hold each peer
// identity to its connection limit. It hands on *tls.Conn values, as
// net/http needs them to be for HTTP/2 and TLS state.
type tunnelListener struct {
	net.Listener
	p     *Proxy
	cfg   *tls.Config
	conns chan net.Conn
	errc  chan error
	done  chan struct{}
	once  sync.Once

	mu   sync.Mutex
	open map[net.Conn]*connGuard
}

func (p *Proxy) newTunnelListener(ln net.Listener, cfg *tls.Config) *tunnelListener {
	l := &tunnelListener{Listener: ln, p: p, cfg: cfg, conns: make(chan net.Conn), errc: make(chan error, 1),
		done: make(chan struct{}), open: map[net.Conn]*connGuard{}}
	go l.acceptLoop()
	return l
}

func (l *tunnelListener) Accept() (net.Conn, error) {
	select {
	case c := <-l.conns:
		return c, nil
	case err := <-l.errc:
		return nil, err
	case <-l.done:
		return nil, net.ErrClosed
	}
}

func (l *tunnelListener) Close() error {
	l.once.Do(func() { close(l.done) })
	return l.Listener.Close()
}

func (l *tunnelListener) acceptLoop() {
	for {
		raw, err := l.Listener.Accept()
		if err != nil {
			select {
			case l.errc <- err:
			case <-l.done:
				return
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() || isTemporaryAccept(err) {
				continue
			}
			return
		}
		go l.handshake(raw)
	}
}

// plaintextAnswer is what a client speaking HTTP without TLS gets.
const plaintextAnswer = "HTTP/1.0 400 Bad Request\r\nContent-Type: text/plain\r\nConnection: close\r\n\r\n" +
	"skein: the tunnel port speaks HTTP/2 over mutual TLS only\n"

func (l *tunnelListener) handshake(raw net.Conn) {
	client := raw.RemoteAddr().String()
	tc := tls.Server(raw, l.cfg)
	ctx, cancel := context.WithTimeout(context.Background(), l.p.cfg.Limits.handshakeTimeout())
	err := tc.HandshakeContext(ctx)
	cancel()
	if err != nil {
		var rh tls.RecordHeaderError
		if errors.As(err, &rh) && rh.Conn != nil && looksLikeHTTP(rh.RecordHeader[:]) {
			_, _ = rh.Conn.Write([]byte(plaintextAnswer))
		}
		l.p.reject(ListenerTunnel, RejectTLSHandshake, client, err.Error())
		raw.Close()
		return
	}
	cs := tc.ConnectionState()
	if cs.NegotiatedProtocol != "h2" {
		l.p.reject(ListenerTunnel, RejectBadRequest, client, "ALPN "+strconv.Quote(cs.NegotiatedProtocol)+": the tunnel speaks HTTP/2 only")
		tc.Close()
		return
	}
	peer, err := tunnel.PeerIdentity(&cs)
	if err != nil {
		l.p.reject(ListenerTunnel, RejectTLSHandshake, client, err.Error())
		tc.Close()
		return
	}
	key := peer.String()
	if !l.p.guard.peers.acquire(key, l.p.cfg.Limits.maxConnsPerPeer()) {
		l.p.reject(ListenerTunnel, RejectConnLimit, key, "open tunnel connections of the peer at the limit of "+strconv.Itoa(l.p.cfg.Limits.maxConnsPerPeer()))
		tc.Close()
		return
	}
	l.mu.Lock()
	l.open[tc] = &connGuard{p: l.p, listener: ListenerTunnel, conn: tc, client: key}
	l.mu.Unlock()
	select {
	case l.conns <- tc:
	case <-l.done:
		tc.Close()
		l.release(tc)
	}
}

// guardOf returns the state of a connection handed on.
func (l *tunnelListener) guardOf(c net.Conn) *connGuard {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.open[c]
}

// release gives a closed connection's slot back to its peer.
func (l *tunnelListener) release(c net.Conn) {
	l.mu.Lock()
	g := l.open[c]
	delete(l.open, c)
	l.mu.Unlock()
	if g != nil {
		l.p.guard.peers.release(g.client)
	}
}

// connState is the tunnel server's ConnState hook.
func (l *tunnelListener) connState(c net.Conn, s http.ConnState) {
	switch s {
	case http.StateNew:
		l.p.stats.TunnelConns.Add(1)
	case http.StateClosed, http.StateHijacked:
		l.release(c)
	}
}

// looksLikeHTTP reports whether a TLS record header is the start of an
// HTTP/1 request line, as net/http checks it.
func looksLikeHTTP(hdr []byte) bool {
	switch string(hdr) {
	case "GET /", "HEAD ", "POST ", "PUT /", "OPTIO", "DELET", "CONNE", "PATCH", "TRACE", "PRI *":
		return true
	}
	return false
}
