package l7proxy

import (
	"bufio"
	"context"
	"errors"
	"io"
	"net"
	"net/netip"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.uber.org/zap"

	"github.com/skeinmesh/skein/l7proxy/balancer"
)

// fakeResolver maps a client's local port to an origin, standing in for the
// BPF map in unit tests (the e2e tests use the real one).
type fakeResolver struct {
	mu     sync.Mutex
	byPort map[uint16]Origin
}

func (f *fakeResolver) Resolve(remote, _ netip.AddrPort) (Origin, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	o, ok := f.byPort[remote.Port()]
	if !ok {
		return Origin{}, ErrNotCaptured
	}
	return o, nil
}

type recorder struct {
	mu   sync.Mutex
	recs []ConnRecord
}

func (r *recorder) RecordConnection(rec ConnRecord) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.recs = append(r.recs, rec)
}

func (r *recorder) wait(t *testing.T, n int) []ConnRecord {
	t.Helper()
	require.Eventually(t, func() bool {
		r.mu.Lock()
		defer r.mu.Unlock()
		return len(r.recs) >= n
	}, 5*time.Second, 5*time.Millisecond)
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]ConnRecord(nil), r.recs...)
}

// echoServer answers each line with name + ": " + line.
func echoServer(t *testing.T, name string) netip.AddrPort {
	t.Helper()
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	require.NoError(t, err)
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				s := bufio.NewScanner(c)
				for s.Scan() {
					if _, err := io.WriteString(c, name+": "+s.Text()+"\n"); err != nil {
						return
					}
				}
			}()
		}
	}()
	return netip.MustParseAddrPort(ln.Addr().String())
}

type harness struct {
	proxy *Proxy
	res   *fakeResolver
	rec   *recorder
	addr  string
}

func newHarness(t *testing.T, cfg Config) *harness {
	t.Helper()
	h := &harness{res: &fakeResolver{byPort: map[uint16]Origin{}}, rec: &recorder{}}
	cfg.Recorder = h.rec
	p, err := New(cfg, h.res, zap.NewNop())
	require.NoError(t, err)
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	require.NoError(t, err)
	h.proxy, h.addr = p, ln.Addr().String()
	done := make(chan error, 1)
	go func() { done <- p.Serve(ln) }()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		_ = p.Shutdown(ctx)
		require.ErrorIs(t, <-done, ErrClosed)
	})
	return h
}

// dialCaptured registers the origin before connecting, so the proxy never
// sees the connection unregistered. It returns the dial error, if any: a
// proxy that refuses fast resets the connection before connect returns.
func (h *harness) dialCaptured(t *testing.T, dst string, src *Workload) (net.Conn, error) {
	t.Helper()
	for i := 0; i < 100; i++ {
		laddr := &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 20000 + int(time.Now().UnixNano()%20000)}
		h.res.mu.Lock()
		h.res.byPort[uint16(laddr.Port)] = Origin{Dst: netip.MustParseAddrPort(dst), Source: src}
		h.res.mu.Unlock()
		d := net.Dialer{LocalAddr: laddr}
		c, err := d.Dial("tcp4", h.addr)
		if errors.Is(err, syscall.EADDRINUSE) || errors.Is(err, syscall.EADDRNOTAVAIL) {
			continue // port in use: try another
		}
		if err != nil {
			return nil, err
		}
		t.Cleanup(func() { c.Close() })
		return c, nil
	}
	t.Fatal("no free local port")
	return nil, nil
}

// mustDial is dialCaptured for connections that must succeed.
func (h *harness) mustDial(t *testing.T, dst string, src *Workload) net.Conn {
	t.Helper()
	c, err := h.dialCaptured(t, dst, src)
	require.NoError(t, err)
	return c
}

func roundTrip(t *testing.T, c net.Conn, line string) (string, error) {
	t.Helper()
	require.NoError(t, c.SetDeadline(time.Now().Add(5*time.Second)))
	if _, err := io.WriteString(c, line+"\n"); err != nil {
		return "", err
	}
	return bufio.NewReader(c).ReadString('\n')
}

func TestForwardToServiceEndpoints(t *testing.T) {
	a, b := echoServer(t, "a"), echoServer(t, "b")
	h := newHarness(t, Config{})
	client := &Workload{Name: "client", Namespace: "shop", Pod: "client-1"}
	vip := netip.MustParseAddrPort("10.96.0.10:80")
	h.proxy.Update(&Table{Services: map[netip.AddrPort]*Service{
		vip: {Namespace: "shop", Name: "product", Port: 80, Endpoints: []*Endpoint{{Addr: a}, {Addr: b}},
			Balancer: balancer.Config{Policy: balancer.RoundRobin}},
	}})

	got := map[string]int{}
	for i := 0; i < 4; i++ {
		c := h.mustDial(t, vip.String(), client)
		line, err := roundTrip(t, c, "hi")
		require.NoError(t, err)
		got[line]++
		c.Close()
	}
	require.Equal(t, map[string]int{"a: hi\n": 2, "b: hi\n": 2}, got, "round robin across endpoints")
	recs := h.rec.wait(t, 4)
	require.Equal(t, FlagNone, recs[0].Flag)
	require.Equal(t, vip, recs[0].OrigDst)
	require.Equal(t, "product", recs[0].Service.Name)
	require.Equal(t, client, recs[0].Source)
	require.Equal(t, int64(3), recs[0].SentBytes)
	require.Equal(t, int64(len("a: hi\n")), recs[0].RecvBytes)
}

func TestForwardToPodIP(t *testing.T) {
	a := echoServer(t, "pod")
	h := newHarness(t, Config{})
	c := h.mustDial(t, a.String(), nil)
	line, err := roundTrip(t, c, "x")
	require.NoError(t, err)
	require.Equal(t, "pod: x\n", line)
}

func TestForwardFailures(t *testing.T) {
	// A port with no listener: connect is refused.
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	require.NoError(t, err)
	refused := ln.Addr().String()
	ln.Close()

	vip := netip.MustParseAddrPort("10.96.0.10:80")
	tests := []struct {
		name     string
		table    *Table
		dst      string
		wantFlag string
	}{
		{"service without endpoints", &Table{Services: map[netip.AddrPort]*Service{vip: {Name: "empty"}}}, vip.String(), FlagNoHealthyUpstream},
		{"endpoint refuses", &Table{Services: map[netip.AddrPort]*Service{vip: {Name: "down",
			Endpoints: []*Endpoint{{Addr: netip.MustParseAddrPort(refused)}}}}}, vip.String(), FlagUpstreamConnect},
		{"pod ip refuses", &Table{}, refused, FlagUpstreamConnect},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := newHarness(t, Config{})
			h.proxy.Update(tt.table)
			c, err := h.dialCaptured(t, tt.dst, nil)
			if err == nil {
				_, err = roundTrip(t, c, "x")
			}
			require.Error(t, err, "the client must see the failure")
			recs := h.rec.wait(t, 1)
			require.Equal(t, tt.wantFlag, recs[0].Flag)
			require.Equal(t, int64(1), h.proxy.Stats().Failed, "%+v", h.rec.recs)
		})
	}
}

func TestRefusesUncapturedConnections(t *testing.T) {
	h := newHarness(t, Config{})
	c, err := net.Dial("tcp4", h.addr)
	require.NoError(t, err)
	defer c.Close()
	_, err = roundTrip(t, c, "x")
	require.Error(t, err)
	require.Eventually(t, func() bool { return h.proxy.Stats().NotCaptured == 1 }, 5*time.Second, 5*time.Millisecond)
}

func TestShutdownDrains(t *testing.T) {
	a := echoServer(t, "a")
	h := newHarness(t, Config{})
	c := h.mustDial(t, a.String(), nil)
	_, err := roundTrip(t, c, "before")
	require.NoError(t, err)

	// A connection in flight keeps working while Shutdown waits for it...
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	shut := make(chan error, 1)
	go func() { shut <- h.proxy.Shutdown(ctx) }()
	time.Sleep(50 * time.Millisecond)
	line, err := roundTrip(t, c, "during")
	require.NoError(t, err)
	require.Equal(t, "a: during\n", line)

	// ...new ones are refused...
	_, err = net.DialTimeout("tcp4", h.addr, time.Second)
	require.Error(t, err)

	// ...and after the deadline the rest are closed.
	err = <-shut
	require.ErrorIs(t, err, context.DeadlineExceeded)
	_, err = roundTrip(t, c, "after")
	require.Error(t, err)
	require.True(t, errors.Is(err, io.EOF) || err != nil)
}

func TestNewValidates(t *testing.T) {
	_, err := New(Config{}, nil, zap.NewNop())
	require.Error(t, err)
	_, err = New(Config{ConnectTimeout: -1}, &fakeResolver{}, zap.NewNop())
	require.Error(t, err)
}
