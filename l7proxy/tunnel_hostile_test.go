package l7proxy

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"io"
	"math/big"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"runtime"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.uber.org/zap"

	"github.com/skeinmesh/skein/internal/spiffe"
	"github.com/skeinmesh/skein/l7proxy/tunnel"
)

// hostileCA issues workload certificates for the tunnel tests: the
// tunnel.Certs of the node under test and of its honest peers.
type hostileCA struct {
	key   *ecdsa.PrivateKey
	cert  *x509.Certificate
	roots *x509.CertPool

	mu     sync.Mutex
	issued map[spiffe.ID]*tls.Certificate
}

var _ tunnel.Certs = (*hostileCA)(nil)

func newHostileCA(t testing.TB, name string) *hostileCA {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(t, err)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: name},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	require.NoError(t, err)
	cert, err := x509.ParseCertificate(der)
	require.NoError(t, err)
	roots := x509.NewCertPool()
	roots.AddCert(cert)
	return &hostileCA{key: key, cert: cert, roots: roots, issued: map[spiffe.ID]*tls.Certificate{}}
}

// issue signs a certificate for id; self-signed when ca is nil.
func (ca *hostileCA) issue(id spiffe.ID) (*tls.Certificate, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	serial, _ := rand.Int(rand.Reader, big.NewInt(1<<62))
	tmpl := &x509.Certificate{SerialNumber: serial, URIs: []*url.URL{id.URL()},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		KeyUsage:    x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth, x509.ExtKeyUsageServerAuth}}
	parent, signer := tmpl, any(key)
	if ca != nil {
		parent, signer = ca.cert, ca.key
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, parent, &key.PublicKey, signer)
	if err != nil {
		return nil, err
	}
	return &tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}, nil
}

func (ca *hostileCA) Certificate(_ context.Context, id spiffe.ID) (*tls.Certificate, error) {
	ca.mu.Lock()
	defer ca.mu.Unlock()
	if c := ca.issued[id]; c != nil {
		return c, nil
	}
	c, err := ca.issue(id)
	if err != nil {
		return nil, err
	}
	ca.issued[id] = c
	return c, nil
}

func (ca *hostileCA) Roots() *x509.CertPool { return ca.roots }

var (
	tunnelServerID = spiffe.ID{TrustDomain: "cluster.local", Namespace: "shop", ServiceAccount: "web"}
	tunnelPeerA    = spiffe.ID{TrustDomain: "cluster.local", Namespace: "shop", ServiceAccount: "noisy"}
	tunnelPeerB    = spiffe.ID{TrustDomain: "cluster.local", Namespace: "shop", ServiceAccount: "quiet"}
)

type tunnelHarness struct {
	proxy *Proxy
	ca    *hostileCA
	addr  netip.AddrPort
	be    *hostileBackend
}

// newTunnelHarness serves the tunnel on loopback in front of one local
// meshed pod, the backend.
func newTunnelHarness(t *testing.T, cfg Config) *tunnelHarness {
	t.Helper()
	th := &tunnelHarness{ca: newHostileCA(t, "mesh root"), be: startHostileBackend(t)}
	p, err := New(cfg, &fakeResolver{}, zap.NewNop())
	require.NoError(t, err)
	th.proxy = p
	p.Update(&Table{LocalNode: "n1", Workloads: map[netip.Addr]*Workload{th.be.addr.Addr(): {
		Name: "web", Namespace: "shop", Pod: "web-1", ServiceAccount: "web", Identity: tunnelServerID.String(), Node: "n1", Meshed: true,
	}}})
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	require.NoError(t, err)
	th.addr = netip.MustParseAddrPort(ln.Addr().String())
	done := make(chan error, 1)
	go func() {
		done <- p.ServeTunnel(ln, th.ca, func(sni string) (spiffe.ID, bool) {
			return tunnelServerID, sni == tunnelServerID.SNI()
		})
	}()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		_ = p.Shutdown(ctx)
		require.ErrorIs(t, <-done, ErrClosed)
	})
	return th
}

// request sends one request through the tunnel as an honest peer node.
func (th *tunnelHarness) request(t *testing.T, src spiffe.ID) (int, error) {
	t.Helper()
	c := tunnel.NewClient(th.ca, 2*time.Second)
	defer c.CloseIdle()
	req, err := http.NewRequest(http.MethodGet, "http://web/", nil)
	require.NoError(t, err)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	resp, err := c.RoundTrip(req.WithContext(ctx), tunnel.Hop{Node: th.addr, Target: th.be.addr, Src: src, Dst: tunnelServerID}, false)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, resp.Body)
	return resp.StatusCode, nil
}

// tlsProbe completes a TLS handshake with cfg and sends a tunnel request;
// it returns the error that ended it (TLS 1.3 reports a refused client
// certificate only at the first read) and nil if the proxy answered.
func (th *tunnelHarness) tlsProbe(t *testing.T, cfg *tls.Config) (*tls.Conn, error) {
	t.Helper()
	raw, err := net.DialTimeout("tcp4", th.addr.String(), 2*time.Second)
	require.NoError(t, err)
	require.NoError(t, raw.SetDeadline(time.Now().Add(3*time.Second)))
	tc := tls.Client(raw, cfg)
	if err := tc.Handshake(); err != nil {
		raw.Close()
		return nil, err
	}
	_, err = io.WriteString(tc, "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\x00\x00\x00\x04\x00\x00\x00\x00\x00")
	if err == nil {
		_, err = tc.Read(make([]byte, 64))
	}
	if err != nil {
		tc.Close()
		return nil, err
	}
	return tc, nil
}

func (th *tunnelHarness) clientTLS(t *testing.T, certs ...tls.Certificate) *tls.Config {
	t.Helper()
	return &tls.Config{MinVersion: tls.VersionTLS13, ServerName: tunnelServerID.SNI(), NextProtos: []string{"h2"},
		InsecureSkipVerify: true, Certificates: certs}
}

// TestHostileTunnel: what is not an authenticated peer of the mesh's
// trust domain never gets past the tunnel's handshake; each refusal is
// counted and nothing reaches the pod.
func TestHostileTunnel(t *testing.T) {
	th := newTunnelHarness(t, Config{Limits: Limits{MaxConnsPerPeer: 2, HandshakeTimeout: time.Second}})
	code, err := th.request(t, tunnelPeerB)
	require.NoError(t, err)
	require.Equal(t, http.StatusOK, code, "an honest peer is served")
	upBefore := th.be.settled()
	base := leakBaseline{goroutines: runtime.NumGoroutine(), fds: openFDs(t)}

	otherCA := newHostileCA(t, "someone else's root")
	selfSigned, err := (*hostileCA)(nil).issue(tunnelPeerA)
	require.NoError(t, err)
	untrusted, err := otherCA.issue(tunnelPeerA)
	require.NoError(t, err)
	foreign, err := th.ca.issue(spiffe.ID{TrustDomain: "evil.example", Namespace: "shop", ServiceAccount: "noisy"})
	require.NoError(t, err)
	valid, err := th.ca.Certificate(context.Background(), tunnelPeerA)
	require.NoError(t, err)

	raw := func(payload string) func(t *testing.T) (string, error) {
		return func(t *testing.T) (string, error) {
			c, err := net.DialTimeout("tcp4", th.addr.String(), 2*time.Second)
			require.NoError(t, err)
			defer c.Close()
			require.NoError(t, c.SetDeadline(time.Now().Add(3*time.Second)))
			_, _ = io.WriteString(c, payload)
			b, err := io.ReadAll(c)
			return string(b), err
		}
	}
	viaTLS := func(cfg *tls.Config) func(t *testing.T) (string, error) {
		return func(t *testing.T) (string, error) {
			c, err := th.tlsProbe(t, cfg)
			if c != nil {
				c.Close()
			}
			if err == nil {
				return "", errors.New("served")
			}
			return "", err
		}
	}
	tests := []struct {
		name   string
		probe  func(t *testing.T) (string, error)
		answer string // what a plaintext client reads, if anything
		reason RejectReason
	}{
		{"a handshake that never starts (cut at HandshakeTimeout)", raw(""), "", RejectTLSHandshake},
		{"random bytes", raw("\x8f\x03\xa7\x11\x00\xfe\x42\x42\x99\x01\x02\x03\x04\x05\x06\x07random"), "", RejectTLSHandshake},
		{"plaintext HTTP request", raw("GET / HTTP/1.1\r\nHost: web\r\nSkein-Target: 127.0.0.1:1\r\n\r\n"), "speaks HTTP/2 over mutual TLS only", RejectTLSHandshake},
		{"plaintext HTTP/2 preface", raw("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"), "speaks HTTP/2 over mutual TLS only", RejectTLSHandshake},
		{"TLS without a client certificate", viaTLS(th.clientTLS(t)), "", RejectTLSHandshake},
		{"TLS with a self-signed client certificate", viaTLS(th.clientTLS(t, *selfSigned)), "", RejectTLSHandshake},
		{"TLS with a certificate of another CA", viaTLS(th.clientTLS(t, *untrusted)), "", RejectTLSHandshake},
		{"TLS with a valid chain of another trust domain", viaTLS(th.clientTLS(t, *foreign)), "", RejectTLSHandshake},
		{"TLS for a server name no local pod has", viaTLS(&tls.Config{MinVersion: tls.VersionTLS13, ServerName: "evil.id.skein",
			NextProtos: []string{"h2"}, InsecureSkipVerify: true, Certificates: []tls.Certificate{*valid}}), "", RejectTLSHandshake},
		{"TLS without HTTP/2", viaTLS(&tls.Config{MinVersion: tls.VersionTLS13, ServerName: tunnelServerID.SNI(),
			InsecureSkipVerify: true, Certificates: []tls.Certificate{*valid}}), "", RejectBadRequest},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before, total := rejectedCount(th.proxy, ListenerTunnel, tt.reason), totalRejected(th.proxy)
			answer, err := tt.probe(t)
			var ne net.Error
			require.False(t, errors.As(err, &ne) && ne.Timeout(), "the proxy neither answered nor closed: %v", err)
			require.Contains(t, answer, tt.answer)
			require.Eventually(t, func() bool { return rejectedCount(th.proxy, ListenerTunnel, tt.reason) == before+1 },
				2*time.Second, 10*time.Millisecond, "counted as %s", tt.reason)
			require.Equal(t, total+1, totalRejected(th.proxy))
		})
	}
	require.Equal(t, upBefore, th.be.settled(), "nothing reached the pod")

	t.Run("connections per peer", func(t *testing.T) {
		before := rejectedCount(th.proxy, ListenerTunnel, RejectConnLimit)
		var held []*tls.Conn
		for i := 0; i < 2; i++ {
			c, err := th.tlsProbe(t, th.clientTLS(t, *valid))
			require.NoError(t, err, "connection %d of peer A", i+1)
			held = append(held, c)
		}
		require.Eventually(t, func() bool { return th.proxy.guard.peers.count(tunnelPeerA.String()) == 2 }, 2*time.Second, 5*time.Millisecond)
		start := time.Now()
		_, err := th.tlsProbe(t, th.clientTLS(t, *valid))
		require.Error(t, err, "a third connection of peer A was served")
		require.Less(t, time.Since(start), 2*time.Second, "refused at once")
		require.Eventually(t, func() bool { return rejectedCount(th.proxy, ListenerTunnel, RejectConnLimit) == before+1 },
			2*time.Second, 10*time.Millisecond)
		code, err := th.request(t, tunnelPeerB)
		require.NoError(t, err)
		require.Equal(t, http.StatusOK, code, "another peer is not affected")
		for _, c := range held {
			c.Close()
		}
		require.Eventually(t, func() bool { return th.proxy.guard.peers.count(tunnelPeerA.String()) == 0 }, 3*time.Second, 10*time.Millisecond)
		code, err = th.request(t, tunnelPeerA)
		require.NoError(t, err)
		require.Equal(t, http.StatusOK, code, "peer A is served again under its limit")
	})
	// Tunnel clients keep nothing: their connections are closed above.
	var g, fds int
	require.Eventually(t, func() bool {
		th.proxy.h1.CloseIdleConnections()
		g, fds = runtime.NumGoroutine(), openFDs(t)
		return g <= base.goroutines+2 && fds <= base.fds
	}, 10*time.Second, 50*time.Millisecond, "leak: goroutines %d (baseline %d), fds %d (baseline %d)", g, base.goroutines, fds, base.fds)
}
