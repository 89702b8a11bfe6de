package l7proxy

import (
	"bufio"
	"io"
	"net"
	"net/http"
	"net/netip"
	"runtime"
	"testing"
)

// BenchmarkIdleConnection is the proxy's heap per idle client connection:
// each op opens a connection, sends one HTTP/1.1 request, reads the
// answer and leaves the connection open. The client side is a bare socket,
// so the heap that grows is the proxy's. Run with a fixed count (e.g.
// -benchtime 2000x): the connections stay open until the end.
func BenchmarkIdleConnection(b *testing.B) {
	backend := startBackend(b, kbHandler())
	f := startProxy(b, Config{Limits: Limits{MaxConnsPerSource: -1}})
	vip := netip.MustParseAddrPort("10.96.0.10:80")
	f.proxy.Update(&Table{Services: map[netip.AddrPort]*Service{vip: {
		Namespace: "bench", Name: "server", Port: 80, Protocol: ProtocolAuto, Endpoints: []*Endpoint{{Addr: backend}},
	}}})
	conns := make([]net.Conn, 0, b.N)
	b.Cleanup(func() {
		for _, c := range conns {
			c.Close()
		}
	})
	req := []byte("GET / HTTP/1.1\r\nHost: server\r\n\r\n")
	open := func() net.Conn {
		c, err := f.dial(b, vip, nil)
		if err != nil {
			b.Fatal(err)
		}
		if _, err := c.Write(req); err != nil {
			b.Fatal(err)
		}
		resp, err := http.ReadResponse(bufio.NewReaderSize(c, 2048), nil)
		if err != nil {
			b.Fatalf("connection %d from %s: %v", len(conns), c.LocalAddr(), err)
		}
		if _, err := io.Copy(io.Discard, resp.Body); err != nil {
			b.Fatal(err)
		}
		resp.Body.Close()
		return c
	}
	open().Close() // warm up the upstream pool
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		conns = append(conns, open())
	}
	b.StopTimer()
	runtime.GC()
	runtime.ReadMemStats(&after)
	b.ReportMetric(float64(int64(after.HeapInuse)-int64(before.HeapInuse))/float64(b.N), "heap-B/conn")
	b.ReportMetric(float64(int64(after.StackInuse)-int64(before.StackInuse))/float64(b.N), "stack-B/conn")
}
