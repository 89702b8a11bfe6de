package l7proxy

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"io"
	"math/big"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.uber.org/zap"

	"github.com/skeinmesh/skein/internal/spiffe"
	"github.com/skeinmesh/skein/l7proxy/tunnel"
)

// The fixtures here take testing.TB so that tests and benchmarks share
// them: a proxy on loopback, captured connections, and two proxies joined
// by the mTLS tunnel as on two nodes.

// countingListener counts the write calls on the connections it accepts,
// i.e. the syscalls a proxy spends sending to its clients.
type countingListener struct {
	net.Listener
	writes *atomic.Int64
}

func (l countingListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return countingConn{Conn: c, writes: l.writes}, nil
}

type countingConn struct {
	net.Conn
	writes *atomic.Int64
}

func (c countingConn) Write(p []byte) (int, error) {
	c.writes.Add(1)
	return c.Conn.Write(p)
}

// portResolver maps a client's local port to an origin. The client
// registers its port once connected, so the proxy may look it up first:
// Resolve waits for it a little.
type portResolver struct {
	mu     sync.Mutex
	cond   *sync.Cond
	byPort map[uint16]Origin
}

func (r *portResolver) set(port uint16, o Origin) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.byPort[port] = o
	if r.cond != nil {
		r.cond.Broadcast()
	}
}

func (r *portResolver) Resolve(remote, _ netip.AddrPort) (Origin, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.cond == nil {
		r.cond = sync.NewCond(&r.mu)
	}
	deadline := time.Now().Add(2 * time.Second)
	timer := time.AfterFunc(2*time.Second, func() {
		r.mu.Lock()
		r.cond.Broadcast()
		r.mu.Unlock()
	})
	defer timer.Stop()
	for {
		if o, ok := r.byPort[remote.Port()]; ok {
			delete(r.byPort, remote.Port())
			return o, nil
		}
		if time.Now().After(deadline) {
			return Origin{}, ErrNotCaptured
		}
		r.cond.Wait()
	}
}

// proxyFixture is a proxy listening on loopback, with origins set per
// client port.
type proxyFixture struct {
	proxy  *Proxy
	res    *portResolver
	addr   string
	writes atomic.Int64 // write calls to clients
}

func startProxy(tb testing.TB, cfg Config) *proxyFixture {
	tb.Helper()
	f := &proxyFixture{res: &portResolver{byPort: map[uint16]Origin{}}}
	p, err := New(cfg, f.res, zap.NewNop())
	require.NoError(tb, err)
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	require.NoError(tb, err)
	f.proxy, f.addr = p, ln.Addr().String()
	done := make(chan error, 1)
	go func() { done <- p.Serve(countingListener{Listener: ln, writes: &f.writes}) }()
	tb.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		_ = p.Shutdown(ctx)
		<-done
	})
	return f
}

// dial opens a connection to the proxy that it sees as captured on its
// way to dst from src.
func (f *proxyFixture) dial(tb testing.TB, dst netip.AddrPort, src *Workload) (net.Conn, error) {
	tb.Helper()
	c, err := net.Dial("tcp4", f.addr)
	if err != nil {
		return nil, err
	}
	f.res.set(netip.MustParseAddrPort(c.LocalAddr().String()).Port(), Origin{Dst: dst, Source: src})
	return c, nil
}

// client returns an HTTP/1.1 client whose connections the proxy sees as
// captured on their way to dst.
func (f *proxyFixture) client(tb testing.TB, dst netip.AddrPort, src *Workload) *http.Client {
	tb.Helper()
	tr := &http.Transport{
		DialContext: func(context.Context, string, string) (net.Conn, error) { return f.dial(tb, dst, src) },
		// The client must not add anything the proxy has to undo.
		DisableCompression: true,
	}
	tb.Cleanup(tr.CloseIdleConnections)
	return &http.Client{Transport: tr, Timeout: 10 * time.Second}
}

// startBackend serves h on loopback.
func startBackend(tb testing.TB, h http.Handler) netip.AddrPort {
	tb.Helper()
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	require.NoError(tb, err)
	var protos http.Protocols
	protos.SetHTTP1(true)
	protos.SetUnencryptedHTTP2(true)
	srv := &http.Server{Handler: h, Protocols: &protos}
	go srv.Serve(ln)
	tb.Cleanup(func() { srv.Close() })
	return netip.MustParseAddrPort(ln.Addr().String())
}

// testCerts is a CA that issues SPIFFE certificates on demand: the
// tunnel.Certs of both nodes.
type testCerts struct {
	key   *ecdsa.PrivateKey
	cert  *x509.Certificate
	roots *x509.CertPool

	mu     sync.Mutex
	issued map[spiffe.ID]*tls.Certificate
}

var _ tunnel.Certs = (*testCerts)(nil)

func newTestCerts(tb testing.TB) *testCerts {
	tb.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(tb, err)
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "test root"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	require.NoError(tb, err)
	cert, err := x509.ParseCertificate(der)
	require.NoError(tb, err)
	roots := x509.NewCertPool()
	roots.AddCert(cert)
	return &testCerts{key: key, cert: cert, roots: roots, issued: map[spiffe.ID]*tls.Certificate{}}
}

func (c *testCerts) Certificate(_ context.Context, id spiffe.ID) (*tls.Certificate, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if tc := c.issued[id]; tc != nil {
		return tc, nil
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(int64(len(c.issued) + 2)),
		NotBefore:    time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		URIs:        []*url.URL{id.URL()},
		KeyUsage:    x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, c.cert, &key.PublicKey, c.key)
	if err != nil {
		return nil, err
	}
	tc := &tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}
	c.issued[id] = tc
	return tc, nil
}

func (c *testCerts) Roots() *x509.CertPool { return c.roots }

// nodePair is two proxies as on two nodes: a client's captured
// connections enter node a's proxy, which reaches the backend through the
// mTLS tunnel and node b's proxy.
type nodePair struct {
	a, b   *proxyFixture
	src    *Workload      // the meshed client, on node a
	dst    *Workload      // the backend's pod, on node b
	vip    netip.AddrPort // the Service, whose one endpoint is on node b
	nodeB  netip.Addr     // where node b's tunnel listens
	writes atomic.Int64   // write calls of node b's tunnel server
}

// startNodePair builds the pair in front of backend, which speaks proto.
func startNodePair(tb testing.TB, backend netip.AddrPort, proto Protocol) *nodePair {
	tb.Helper()
	certs := newTestCerts(tb)
	const td = "cluster.local"
	srcID := spiffe.ID{TrustDomain: td, Namespace: "bench", ServiceAccount: "client"}
	dstID := spiffe.ID{TrustDomain: td, Namespace: "bench", ServiceAccount: "server"}
	np := &nodePair{
		src: &Workload{Name: "client", Namespace: "bench", Pod: "client-1", ServiceAccount: "client",
			Identity: srcID.String(), Node: "a", Meshed: true},
		vip: netip.MustParseAddrPort("10.96.0.50:80"),
	}
	dst := &Workload{Name: "server", Namespace: "bench", Pod: "server-1", ServiceAccount: "server",
		Identity: dstID.String(), Node: "b", Meshed: true}
	np.dst = dst

	np.b = startProxy(tb, Config{})
	np.b.proxy.Update(&Table{LocalNode: "b", Workloads: map[netip.Addr]*Workload{backend.Addr(): dst}})
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	require.NoError(tb, err)
	tunnelAddr := netip.MustParseAddrPort(ln.Addr().String())
	np.nodeB = tunnelAddr.Addr()
	go np.b.proxy.ServeTunnel(countingListener{Listener: ln, writes: &np.writes}, certs, func(sni string) (spiffe.ID, bool) {
		return dstID, sni == dstID.SNI()
	})

	np.a = startProxy(tb, Config{Tunnel: tunnel.NewClient(certs, 5*time.Second), TunnelPort: tunnelAddr.Port()})
	np.a.proxy.Update(&Table{
		LocalNode: "a",
		Nodes:     map[string]netip.Addr{"b": tunnelAddr.Addr()},
		Services: map[netip.AddrPort]*Service{np.vip: {
			Namespace: "bench", Name: "server", Host: "server.bench.svc.cluster.local", Port: 80, Protocol: proto,
			Endpoints: []*Endpoint{{Addr: backend, Node: "b", Workload: dst}},
		}},
	})
	return np
}

// drain reads a response body to the end and closes it.
func drain(resp *http.Response) (int64, error) {
	n, err := io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return n, err
}
