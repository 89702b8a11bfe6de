//go:build unix

package l7proxy

import (
	"bytes"
	"context"
	"io"
	"net"
	"net/http"
	"net/netip"
	"strconv"
	"syscall"
	"testing"
)

// The proxy benchmarks send one request at a time through a proxy on
// loopback to a backend answering 1 KB, as the lab's fixed-rate load does;
// ns/op and allocs/op include the client and the backend, which stay the
// same between runs; cpu-ns/op is the process's CPU time per request.
// writes/op counts the proxy's write calls towards its
// client (or, across nodes, node b's towards node a), the syscalls that
// flushing adds.

var kbBody = bytes.Repeat([]byte("x"), 1024)

func kbHandler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		w.Header().Set("Content-Type", "application/octet-stream")
		w.Header().Set("Content-Length", strconv.Itoa(len(kbBody)))
		_, _ = w.Write(kbBody)
	})
}

func runRequests(b *testing.B, c *http.Client, url string, writes func() int64) {
	b.Helper()
	get := func() {
		resp, err := c.Get(url)
		if err != nil {
			b.Fatal(err)
		}
		n, err := drain(resp)
		if err != nil || resp.StatusCode != http.StatusOK || n != int64(len(kbBody)) {
			b.Fatalf("status %d, %d bytes, %v", resp.StatusCode, n, err)
		}
	}
	get() // connect and warm the pools outside the measurement
	w0, cpu0 := writes(), cpuTime()
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		get()
	}
	b.StopTimer()
	b.ReportMetric(float64(writes()-w0)/float64(b.N), "writes/op")
	b.ReportMetric(float64(cpuTime()-cpu0)/float64(b.N), "cpu-ns/op")
}

// cpuTime is the CPU time the process used so far, in nanoseconds: on a
// shared machine it varies less than the wall time per op, which counts
// the waits for a CPU others hold.
func cpuTime() int64 {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return ru.Utime.Nano() + ru.Stime.Nano()
}

// BenchmarkProxyHTTP1 is the same-node path: client, proxy, pod.
func BenchmarkProxyHTTP1(b *testing.B) {
	backend := startBackend(b, kbHandler())
	f := startProxy(b, Config{})
	vip := netip.MustParseAddrPort("10.96.0.10:80")
	f.proxy.Update(&Table{Services: map[netip.AddrPort]*Service{vip: {
		Namespace: "bench", Name: "server", Host: "server.bench.svc.cluster.local", Port: 80, Protocol: ProtocolHTTP,
		Endpoints: []*Endpoint{{Addr: backend}},
	}}})
	c := f.client(b, vip, &Workload{Name: "client", Namespace: "bench"})
	runRequests(b, c, "http://"+vip.String()+"/", f.writes.Load)
}

// BenchmarkProxyHTTP1CrossNode is the path between nodes: client, node a's
// proxy, the mTLS tunnel (HTTP/2 over TLS 1.3), node b's proxy, pod.
func BenchmarkProxyHTTP1CrossNode(b *testing.B) {
	backend := startBackend(b, kbHandler())
	np := startNodePair(b, backend, ProtocolHTTP)
	c := np.a.client(b, np.vip, np.src)
	runRequests(b, c, "http://"+np.vip.String()+"/", np.writes.Load)
}

// BenchmarkProxyH2C is the same-node path for HTTP/2 with prior
// knowledge, on one client connection, to an h2c backend.
func BenchmarkProxyH2C(b *testing.B) {
	backend := startBackend(b, kbHandler())
	f := startProxy(b, Config{})
	vip := netip.MustParseAddrPort("10.96.0.10:80")
	f.proxy.Update(&Table{Services: map[netip.AddrPort]*Service{vip: {
		Namespace: "bench", Name: "server", Host: "server.bench.svc.cluster.local", Port: 80, Protocol: ProtocolHTTP2,
		Endpoints: []*Endpoint{{Addr: backend}},
	}}})
	var protos http.Protocols
	protos.SetUnencryptedHTTP2(true)
	tr := &http.Transport{
		DialContext: func(context.Context, string, string) (net.Conn, error) {
			return f.dial(b, vip, &Workload{Name: "client", Namespace: "bench"})
		},
		Protocols:          &protos,
		DisableCompression: true,
	}
	b.Cleanup(tr.CloseIdleConnections)
	runRequests(b, &http.Client{Transport: tr}, "http://"+vip.String()+"/", f.writes.Load)
}
