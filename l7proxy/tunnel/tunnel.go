package tunnel

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"

	"sync"
	"time"

	"golang.org/x/net/http2"

	"github.com/skeinmesh/skein/internal/spiffe"
)

// Port is the tunnel port.
const Port = 15008

// Headers of tunnelled HTTP requests.
const (
	// TargetHeader carries the pod address, ip:port.
	TargetHeader = "Skein-Target"
	// ProtocolHeader says how to talk to the pod: "http1" or "h2c".
	ProtocolHeader = "Skein-Protocol"
	// SourceHeader is never trusted from a client: the receiving proxy
	// strips it and the source identity comes from the peer certificate.
	SourceHeader = "Skein-Source"
	// Peer metadata, for the receiving proxy's telemetry only (never for
	// decisions): the source workload's name, the destination Service's
	// host name and the protocol the client spoke.
	PeerWorkloadHeader = "Skein-Peer-Workload"
	PeerServiceHeader  = "Skein-Peer-Service"
	PeerProtocolHeader = "Skein-Peer-Protocol"
	// ResultHeader is set on a response the receiving proxy made itself
	// instead of the pod, to its response flag (UF: connecting to the
	// pod failed), so the sending proxy can retry and count it as the
	// endpoint's connect failure. The sending proxy removes it.
	ResultHeader = "Skein-Result"
)

// HopHeaders are the tunnel's own headers, removed before a request goes
// on to the pod.
var HopHeaders = []string{TargetHeader, ProtocolHeader, SourceHeader, PeerWorkloadHeader, PeerServiceHeader, PeerProtocolHeader}

// Protocols named by ProtocolHeader.
const (
	ProtoHTTP1 = "http1"
	ProtoH2C   = "h2c"
)

// Certs is what the tunnel needs from the node's identity layer.
type Certs interface {
	// Certificate returns the certificate of a local workload identity,
	// waiting until ctx ends if it is being issued.
	Certificate(ctx context.Context, id spiffe.ID) (*tls.Certificate, error)
	// Roots returns the current trust bundle.
	Roots() *x509.CertPool
}

// ErrPeerIdentity is returned when a peer's certificate does not carry the
// expected identity or does not verify.
var ErrPeerIdentity = errors.New("peer identity")

// verifyChain verifies raw certificates against roots for usage and returns
// the leaf's SPIFFE ID.
func verifyChain(raw [][]byte, roots *x509.CertPool, usage x509.ExtKeyUsage) (spiffe.ID, error) {
	if len(raw) == 0 {
		return spiffe.ID{}, fmt.Errorf("%w: no certificate", ErrPeerIdentity)
	}
	certs := make([]*x509.Certificate, len(raw))
	for i, r := range raw {
		c, err := x509.ParseCertificate(r)
		if err != nil {
			return spiffe.ID{}, fmt.Errorf("%w: %w", ErrPeerIdentity, err)
		}
		certs[i] = c
	}
	inter := x509.NewCertPool()
	for _, c := range certs[1:] {
		inter.AddCert(c)
	}
	if _, err := certs[0].Verify(x509.VerifyOptions{Roots: roots, Intermediates: inter, KeyUsages: []x509.ExtKeyUsage{usage}}); err != nil {
		return spiffe.ID{}, fmt.Errorf("%w: %w", ErrPeerIdentity, err)
	}
	id, err := spiffe.FromCert(certs[0])
	if err != nil {
		return spiffe.ID{}, fmt.Errorf("%w: %w", ErrPeerIdentity, err)
	}
	return id, nil
}

// ServerTLS returns the server side's TLS configuration: the certificate of
// the local identity the client names by SNI, a client certificate that
// must verify against the bundle. local maps an SNI to a local identity.
func ServerTLS(certs Certs, local func(sni string) (spiffe.ID, bool)) *tls.Config {
	return &tls.Config{
		MinVersion: tls.VersionTLS13,
		NextProtos: []string{"h2"},
		ClientAuth: tls.RequireAnyClientCert,
		GetCertificate: func(hello *tls.ClientHelloInfo) (*tls.Certificate, error) {
			id, ok := local(hello.ServerName)
			if !ok {
				return nil, fmt.Errorf("no local workload answers to server name %q", hello.ServerName)
			}
			ctx, cancel := context.WithTimeout(hello.Context(), 2*time.Second)
			defer cancel()
			return certs.Certificate(ctx, id)
		},
		VerifyPeerCertificate: func(raw [][]byte, _ [][]*x509.Certificate) error {
			_, err := verifyChain(raw, certs.Roots(), x509.ExtKeyUsageClientAuth)
			return err
		},
		// A chain that verifies may still name another trust domain: the
		// peer must be of the local workload's.
		VerifyConnection: func(cs tls.ConnectionState) error {
			if len(cs.PeerCertificates) == 0 {
				return fmt.Errorf("%w: no certificate", ErrPeerIdentity)
			}
			peer, err := spiffe.FromCert(cs.PeerCertificates[0])
			if err != nil {
				return fmt.Errorf("%w: %w", ErrPeerIdentity, err)
			}
			if id, ok := local(cs.ServerName); !ok || peer.TrustDomain != id.TrustDomain {
				return fmt.Errorf("%w: peer %s is not of trust domain %q", ErrPeerIdentity, peer, id.TrustDomain)
			}
			return nil
		},
	}
}

// PeerIdentity returns the verified client identity of a tunnel request.
func PeerIdentity(cs *tls.ConnectionState) (spiffe.ID, error) {
	if cs == nil || len(cs.PeerCertificates) == 0 {
		return spiffe.ID{}, fmt.Errorf("%w: not a tunnel connection", ErrPeerIdentity)
	}
	return spiffe.FromCert(cs.PeerCertificates[0])
}

// Client opens tunnel streams to peer nodes. It keeps one HTTP/2 transport
// per (source identity, destination identity); each transport keeps one
// connection per peer node.
type Client struct {
	certs  Certs
	dialer net.Dialer

	mu         sync.Mutex
	transports map[pairKey]*http2.Transport
}

type pairKey struct{ src, dst spiffe.ID }

// NewClient returns a tunnel client.
func NewClient(certs Certs, connectTimeout time.Duration) *Client {
	return &Client{certs: certs, dialer: net.Dialer{Timeout: connectTimeout}, transports: map[pairKey]*http2.Transport{}}
}

func (c *Client) transport(src, dst spiffe.ID) *http2.Transport {
	c.mu.Lock()
	defer c.mu.Unlock()
	k := pairKey{src, dst}
	if t := c.transports[k]; t != nil {
		return t
	}
	t := &http2.Transport{
		DialTLSContext: func(ctx context.Context, network, addr string, _ *tls.Config) (net.Conn, error) {
			return c.dialTLS(ctx, network, addr, src, dst)
		},
		ReadIdleTimeout:            30 * time.Second,
		PingTimeout:                15 * time.Second,
		IdleConnTimeout:            5 * time.Minute,
		StrictMaxConcurrentStreams: false,
		// The client's own Accept-Encoding goes through; the tunnel
		// asks for no compression of its own, which it would undo on
		// arrival at the cost of both nodes' CPU.
		DisableCompression: true,
	}
	c.transports[k] = t
	return t
}

// dialTLS opens a tunnel connection: the source's certificate, the
// destination's identity as SNI, and a server certificate that must be the
// destination's.
func (c *Client) dialTLS(ctx context.Context, network, addr string, src, dst spiffe.ID) (net.Conn, error) {
	cert, err := c.certs.Certificate(ctx, src)
	if err != nil {
		return nil, fmt.Errorf("tunnel to %s: source certificate: %w", addr, err)
	}
	cfg := &tls.Config{
		MinVersion:         tls.VersionTLS13,
		NextProtos:         []string{"h2"},
		ServerName:         dst.SNI(),
		Certificates:       []tls.Certificate{*cert},
		InsecureSkipVerify: true, // verified below, against the live bundle and the expected identity
		VerifyConnection: func(cs tls.ConnectionState) error {
			raw := make([][]byte, len(cs.PeerCertificates))
			for i, pc := range cs.PeerCertificates {
				raw[i] = pc.Raw
			}
			got, err := verifyChain(raw, c.certs.Roots(), x509.ExtKeyUsageServerAuth)
			if err != nil {
				return err
			}
			if got != dst {
				return fmt.Errorf("%w: peer is %s, want %s", ErrPeerIdentity, got, dst)
			}
			return nil
		},
	}
	raw, err := c.dialer.DialContext(ctx, network, addr)
	if err != nil {
		return nil, err
	}
	tc := tls.Client(raw, cfg)
	if err := tc.HandshakeContext(ctx); err != nil {
		raw.Close()
		return nil, fmt.Errorf("tunnel handshake with %s: %w", addr, err)
	}
	return tc, nil
}

// Hop says where a stream goes: the peer node's tunnel address, the pod,
// and the identities at both ends.
type Hop struct {
	Node     netip.AddrPort
	Target   netip.AddrPort
	Src, Dst spiffe.ID
}

// RoundTrip sends an HTTP request through the tunnel. It changes req
// rather than a copy of it, which the caller must own: the URL is the
// node's (https://node:15008), the pod and the protocol go in headers
// (TargetHeader, ProtocolHeader) and SourceHeader is removed.
func (c *Client) RoundTrip(req *http.Request, hop Hop, h2c bool) (*http.Response, error) {
	req.URL.Scheme = "https"
	req.URL.Host = hop.Node.String()
	req.Header.Set(TargetHeader, hop.Target.String())
	proto := ProtoHTTP1
	if h2c {
		proto = ProtoH2C
	}
	req.Header.Set(ProtocolHeader, proto)
	req.Header.Del(SourceHeader)
	return c.transport(hop.Src, hop.Dst).RoundTrip(req)
}

// Dial opens a CONNECT stream to the pod: a net.Conn whose bytes reach it.
func (c *Client) Dial(ctx context.Context, hop Hop) (net.Conn, error) {
	pr, pw := io.Pipe()
	req, err := http.NewRequestWithContext(context.WithoutCancel(ctx), http.MethodConnect, "https://"+hop.Node.String(), pr)
	if err != nil {
		return nil, err
	}
	req.Host = hop.Target.String()
	req.URL.Host = hop.Node.String()
	type result struct {
		resp *http.Response
		err  error
	}
	done := make(chan result, 1)
	go func() {
		resp, err := c.transport(hop.Src, hop.Dst).RoundTrip(req)
		done <- result{resp, err}
	}()
	select {
	case r := <-done:
		if r.err != nil {
			pw.Close()
			return nil, fmt.Errorf("tunnel CONNECT to %s via %s: %w", hop.Target, hop.Node, r.err)
		}
		if r.resp.StatusCode != http.StatusOK {
			r.resp.Body.Close()
			pw.Close()
			return nil, &StatusError{Code: r.resp.StatusCode, Msg: r.resp.Header.Get("Skein-Error")}
		}
		return &streamConn{r: r.resp.Body, w: pw, local: hop.Node, remote: hop.Target}, nil
	case <-ctx.Done():
		pw.CloseWithError(ctx.Err())
		go func() {
			if r := <-done; r.resp != nil {
				r.resp.Body.Close()
			}
		}()
		return nil, ctx.Err()
	}
}

// StatusError is a peer's refusal of a stream.
type StatusError struct {
	Code int
	Msg  string
}

func (e *StatusError) Error() string {
	s := fmt.Sprintf("peer answered %d %s", e.Code, http.StatusText(e.Code))
	if e.Msg != "" {
		s += ": " + e.Msg
	}
	return s
}

// CloseIdle closes idle tunnel connections, e.g. after a trust bundle
// change.
func (c *Client) CloseIdle() {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, t := range c.transports {
		t.CloseIdleConnections()
	}
}

// streamConn is a CONNECT stream as a net.Conn.
type streamConn struct {
	r       io.ReadCloser
	w       *io.PipeWriter
	local   netip.AddrPort
	remote  netip.AddrPort
	closeMu sync.Once
}

func (c *streamConn) Read(p []byte) (int, error)  { return c.r.Read(p) }
func (c *streamConn) Write(p []byte) (int, error) { return c.w.Write(p) }

// CloseWrite ends the stream's request side (a half-close).
func (c *streamConn) CloseWrite() error { return c.w.Close() }

func (c *streamConn) Close() error {
	var err error
	c.closeMu.Do(func() {
		err = errors.Join(c.w.Close(), c.r.Close())
	})
	return err
}

func (c *streamConn) LocalAddr() net.Addr  { return net.TCPAddrFromAddrPort(c.local) }
func (c *streamConn) RemoteAddr() net.Addr { return net.TCPAddrFromAddrPort(c.remote) }

// Deadlines are not supported on streams; the proxy bounds them by context.
func (c *streamConn) SetDeadline(time.Time) error      { return nil }
func (c *streamConn) SetReadDeadline(time.Time) error  { return nil }
func (c *streamConn) SetWriteDeadline(time.Time) error { return nil }
