package l7proxy

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"net/url"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.uber.org/zap"

	"github.com/skeinmesh/skein/l7proxy/tunnel"
)

// FuzzSniff: protocol detection decides from a prefix and never changes
// its mind as more bytes come; sniffing a connection replays every byte
// it read, whatever they are.
func FuzzSniff(f *testing.F) {
	for _, s := range []string{"GET / HTTP/1.1\r\n", string(http2Preface), "PRI * HTTP/1.1", "\x16\x03\x01\x02\x00", "POS", "", "OPTIONS * HTTP/1.1", "SSH-2.0-x"} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		if len(b) > 4096 {
			return
		}
		d, done := classify(b)
		for i := 0; i <= len(b); i++ {
			if di, ok := classify(b[:i]); ok {
				require.True(t, done, "decided at %d bytes, undecided at %d", i, len(b))
				require.Equal(t, di, d, "decided %s at %d bytes, %s at %d", di, i, d, len(b))
				break
			}
		}
		client, server := net.Pipe()
		go func() {
			_, _ = client.Write(b)
			client.Close()
		}()
		got, sc, err := sniff(server, 20*time.Millisecond)
		if done {
			require.NoError(t, err)
			require.Equal(t, d, got)
		} else {
			require.Equal(t, DetectedTCP, got, "undecided bytes are opaque TCP")
		}
		_ = sc.SetReadDeadline(time.Now().Add(time.Second)) // fails once the client side closed
		replay, _ := io.ReadAll(sc)
		require.Equal(t, b, replay, "sniffing must replay every byte")
		server.Close()
	})
}

// FuzzTunnelRequest sends arbitrary streams to the tunnel's handler as an
// authenticated peer: any method, authority, target and tunnel headers.
// Invariants: nothing panics; only a stream whose target is exactly the
// local pod reaches it; every refusal is a 4xx with a reason.
func FuzzTunnelRequest(f *testing.F) {
	for _, s := range [][5]string{
		{"GET", "web", "127.0.0.1:8080", "http1", "client"},
		{"CONNECT", "127.0.0.1:8080", "", "", ""},
		{"GET", "web", "[::ffff:127.0.0.1]:8080", "h2c", "x"},
		{"POST", "web", "10.0.0.1:80", "gopher", "\x00"},
		{"GET", "", "127.0.0.1:0", "", ""},
	} {
		f.Add(s[0], s[1], s[2], s[3], s[4])
	}
	// A proxy in front of one local pod, and a peer's certificate.
	be := startHostileBackend(f)
	beAddr := be.addr
	ca := newHostileCA(f, "mesh root")
	p, err := New(Config{ConnectTimeout: time.Second}, &fakeResolver{}, zap.NewNop())
	require.NoError(f, err)
	p.Update(&Table{LocalNode: "n1", Workloads: map[netip.Addr]*Workload{beAddr.Addr(): {
		Name: "web", Namespace: "shop", Identity: tunnelServerID.String(), Node: "n1", Meshed: true,
	}}})
	peer, err := ca.Certificate(context.Background(), tunnelPeerA)
	require.NoError(f, err)
	leaf, err := x509.ParseCertificate(peer.Certificate[0])
	require.NoError(f, err)
	cs := &tls.ConnectionState{ServerName: tunnelServerID.SNI(), PeerCertificates: []*x509.Certificate{leaf}}
	f.Fuzz(func(t *testing.T, method, host, target, proto, workload string) {
		// A target on the pod's address goes to the pod's real port: the
		// proxy dials what the stream names, and the fuzzer must not send
		// requests to whatever else listens on loopback.
		onPod := func(s string) string {
			if ap, err := netip.ParseAddrPort(s); err == nil && ap.Addr().Unmap() == beAddr.Addr() {
				return netip.AddrPortFrom(ap.Addr(), beAddr.Port()).String()
			}
			return s
		}
		target, host = onPod(target), onPod(host)
		req := &http.Request{Method: method, URL: &url.URL{Path: "/"}, Host: host, Proto: "HTTP/2.0", ProtoMajor: 2,
			Header: http.Header{}, Body: http.NoBody, TLS: cs, RemoteAddr: "192.0.2.1:4000"}
		req.Header.Set(tunnel.TargetHeader, target)
		req.Header.Set(tunnel.ProtocolHeader, proto)
		req.Header.Set(tunnel.PeerWorkloadHeader, workload)
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
		defer cancel()
		req = req.WithContext(ctx)
		rec := httptest.NewRecorder()
		before := be.n.Load()
		p.serveTunnel(rec, req)

		named := target
		if method == http.MethodConnect {
			named = host
		}
		ap, err := netip.ParseAddrPort(named)
		toPod := err == nil && netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port()) == beAddr
		if !toPod {
			require.Equal(t, before, be.n.Load(), "a stream to %q reached the pod", named)
			require.GreaterOrEqual(t, rec.Code, 400)
			if err == nil && ap.Addr().Unmap() == beAddr.Addr() {
				// Another port of the pod: connecting may fail (503).
				require.Contains(t, []int{http.StatusServiceUnavailable, http.StatusBadGateway, http.StatusBadRequest, http.StatusMisdirectedRequest}, rec.Code)
			} else {
				require.Less(t, rec.Code, 500)
			}
			require.True(t, rec.Body.Len() > 0 || rec.Header().Get("Skein-Error") != "", "a refusal says why")
			return
		}
		if method != http.MethodConnect {
			require.Contains(t, []int{http.StatusOK, http.StatusBadRequest, http.StatusBadGateway}, rec.Code, "body %q", rec.Body.String())
			if rec.Code == http.StatusOK {
				require.Equal(t, "ok", rec.Body.String())
				require.True(t, bytes.Equal(rec.Body.Bytes(), []byte("ok")))
			}
		}
	})
}
