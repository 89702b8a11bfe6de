//go:build linux

package flow

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"
	"github.com/cilium/ebpf/ringbuf"
	"github.com/stretchr/testify/require"
	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"

	"github.com/skeinmesh/skein/bpf/capture"
	"github.com/skeinmesh/skein/internal/testenv"
)

// Test addresses, all on lo inside the test's network namespace.
var (
	addrServer  = netip.MustParseAddr("10.1.1.1")
	addrClient  = netip.MustParseAddr("10.1.1.2")
	addrOther   = netip.MustParseAddr("10.1.1.3")
	addrServer6 = netip.MustParseAddr("fd00:5ce1::1")
	addrClient6 = netip.MustParseAddr("fd00:5ce1::2")
)

// cgroup2Mount finds the cgroup v2 mount point in /proc/self/mountinfo.
func cgroup2Mount(t testing.TB) string {
	t.Helper()
	f, err := os.Open("/proc/self/mountinfo")
	require.NoError(t, err)
	defer f.Close()
	s := bufio.NewScanner(f)
	for s.Scan() {
		fields := strings.Fields(s.Text())
		for i, fld := range fields {
			if fld == "-" && i+1 < len(fields) && fields[i+1] == "cgroup2" {
				return fields[4]
			}
		}
	}
	t.Skip("no cgroup2 mount")
	return ""
}

// cgroups is a temporary node cgroup root with a meshed pod and an unmeshed
// one below it.
type cgroups struct {
	mount, root, pod, other string
	podID, otherID          uint64
}

func tempCgroups(t testing.TB) cgroups {
	t.Helper()
	mount := cgroup2Mount(t)
	root, err := os.MkdirTemp(mount, "skein-flow-test-")
	require.NoError(t, err)
	c := cgroups{mount: mount, root: root, pod: filepath.Join(root, "pod"), other: filepath.Join(root, "other")}
	t.Cleanup(func() {
		// Back to the root cgroup first, in case a test failed inside one.
		_ = os.WriteFile(filepath.Join(mount, "cgroup.procs"), []byte(fmt.Sprint(os.Getpid())), 0)
		_ = os.Remove(c.pod)
		_ = os.Remove(c.other)
		_ = os.Remove(c.root)
	})
	require.NoError(t, os.Mkdir(c.pod, 0o755))
	require.NoError(t, os.Mkdir(c.other, 0o755))
	c.podID = cgroupID(t, c.pod)
	c.otherID = cgroupID(t, c.other)
	return c
}

func cgroupID(t testing.TB, path string) uint64 {
	t.Helper()
	var st syscall.Stat_t
	require.NoError(t, syscall.Stat(path, &st))
	return st.Ino
}

// in runs fn with this process in the cgroup at path: sockets fn creates
// belong to it.
func (c cgroups) in(t testing.TB, path string, fn func()) {
	t.Helper()
	require.NoError(t, os.WriteFile(filepath.Join(path, "cgroup.procs"), []byte(fmt.Sprint(os.Getpid())), 0))
	defer func() {
		require.NoError(t, os.WriteFile(filepath.Join(c.mount, "cgroup.procs"), []byte(fmt.Sprint(os.Getpid())), 0))
	}()
	fn()
}

// newMembers creates a members map like capture's and marks ids meshed.
func newMembers(t testing.TB, ids ...uint64) *ebpf.Map {
	t.Helper()
	m, err := ebpf.NewMap(&ebpf.MapSpec{Type: ebpf.Hash, KeySize: 8, ValueSize: 8, MaxEntries: 16384})
	require.NoError(t, err)
	t.Cleanup(func() { m.Close() })
	for _, id := range ids {
		require.NoError(t, m.Put(id, flowMember{Flags: 1}))
	}
	return m
}

// testNetns is a fresh network namespace with lo up and the test addresses
// on it. A goroutine enters it with enter; sockets must be created by a
// goroutine inside it, others may use them.
type testNetns struct {
	ns netns.NsHandle
	nl *netlink.Handle
	lo netlink.Link
}

func newNetns(t testing.TB) *testNetns {
	t.Helper()
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	orig, err := netns.Get()
	require.NoError(t, err)
	defer orig.Close()
	ns, err := netns.New()
	require.NoError(t, err)
	require.NoError(t, netns.Set(orig))
	t.Cleanup(func() { ns.Close() })

	nl, err := netlink.NewHandleAt(ns)
	require.NoError(t, err)
	t.Cleanup(nl.Close)
	lo, err := nl.LinkByName("lo")
	require.NoError(t, err)
	require.NoError(t, nl.LinkSetUp(lo))
	for _, a := range []netip.Addr{addrServer, addrClient, addrOther, addrServer6, addrClient6} {
		addr := &netlink.Addr{IPNet: netlink.NewIPNet(a.AsSlice()), Flags: unix.IFA_F_NODAD}
		require.NoError(t, nl.AddrAdd(lo, addr))
	}
	return &testNetns{ns: ns, nl: nl, lo: lo}
}

// enter locks the calling goroutine to its thread and moves the thread into
// the namespace; the returned function moves it back.
func (n *testNetns) enter(t testing.TB) func() {
	t.Helper()
	runtime.LockOSThread()
	orig, err := netns.Get()
	require.NoError(t, err)
	require.NoError(t, netns.Set(n.ns))
	return func() {
		require.NoError(t, netns.Set(orig))
		orig.Close()
		runtime.UnlockOSThread()
	}
}

func listen(t testing.TB, addr netip.Addr) (net.Listener, netip.AddrPort) {
	t.Helper()
	lc := net.ListenConfig{}
	lc.SetMultipathTCP(false)
	ln, err := lc.Listen(context.Background(), "tcp", netip.AddrPortFrom(addr, 0).String())
	require.NoError(t, err)
	t.Cleanup(func() { ln.Close() })
	return ln, netip.MustParseAddrPort(ln.Addr().String())
}

func dial(from netip.Addr, to netip.AddrPort) (*net.TCPConn, error) {
	return dialControl(from, to, nil)
}

// dialControl dials with control run on the socket before it connects.
func dialControl(from netip.Addr, to netip.AddrPort, control func(fd uintptr) error) (*net.TCPConn, error) {
	d := net.Dialer{Timeout: 5 * time.Second, LocalAddr: net.TCPAddrFromAddrPort(netip.AddrPortFrom(from, 0))}
	if control != nil {
		d.Control = func(_, _ string, rc syscall.RawConn) error {
			var err error
			if cerr := rc.Control(func(fd uintptr) { err = control(fd) }); cerr != nil {
				return cerr
			}
			return err
		}
	}
	d.SetMultipathTCP(false)
	c, err := d.Dial("tcp", to.String())
	if err != nil {
		return nil, err
	}
	return c.(*net.TCPConn), nil
}

// serveOne accepts one connection and runs handle on it in the background;
// the returned channel yields handle's error when it is done.
func serveOne(ln net.Listener, handle func(c *net.TCPConn) error) <-chan error {
	done := make(chan error, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			done <- err
			return
		}
		defer c.Close()
		done <- handle(c.(*net.TCPConn))
	}()
	return done
}

func wait(t testing.TB, done <-chan error) {
	t.Helper()
	select {
	case err := <-done:
		require.NoError(t, err)
	case <-time.After(20 * time.Second):
		t.Fatal("server did not finish")
	}
}

// waitStats waits until the key's figures satisfy ok and returns them; on a
// timeout it says what the figures were.
func waitStats(t testing.TB, f *Flows, k Key, what string, ok func(Stats) bool) Stats {
	t.Helper()
	var (
		last  Stats
		found bool
		err   error
	)
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		var all map[Key]Stats
		all, err = f.Aggregates()
		if err == nil {
			last, found = all[k]
			if found && ok(last) {
				return last
			}
		}
		time.Sleep(20 * time.Millisecond)
	}
	require.NoError(t, err)
	t.Fatalf("%s: key %+v: found=%v, last figures %+v", what, k, found, last)
	return Stats{}
}

func payload(n int) []byte { return bytes.Repeat([]byte("skein"), n/5+1)[:n] }

// echoN reads exactly in bytes, then writes out bytes, then waits for EOF.
func echoN(in, out int) func(c *net.TCPConn) error {
	return func(c *net.TCPConn) error {
		if _, err := io.CopyN(io.Discard, c, int64(in)); err != nil {
			return fmt.Errorf("server read: %w", err)
		}
		if _, err := c.Write(payload(out)); err != nil {
			return fmt.Errorf("server write: %w", err)
		}
		_, err := io.Copy(io.Discard, c)
		return err
	}
}

// exchange writes out bytes, reads exactly in bytes.
func exchange(c *net.TCPConn, out, in int) error {
	if _, err := c.Write(payload(out)); err != nil {
		return err
	}
	_, err := io.CopyN(io.Discard, c, int64(in))
	return err
}

func newFlows(t testing.TB, cfg Config) *Flows {
	t.Helper()
	f, err := New(cfg)
	require.NoError(t, err)
	t.Cleanup(func() { require.NoError(t, f.Close()) })
	return f
}

func TestPrivilegedLogic(t *testing.T) {
	testenv.RequirePrivileged(t)
	spec, err := loadFlow()
	require.NoError(t, err)
	var objs struct {
		TestBucket  *ebpf.Program `ebpf:"test_bucket"`
		TestKey     *ebpf.Program `ebpf:"test_key"`
		TestPayload *ebpf.Program `ebpf:"test_payload"`
	}
	require.NoError(t, spec.LoadAndAssign(&objs, nil))
	t.Cleanup(func() { objs.TestBucket.Close(); objs.TestKey.Close(); objs.TestPayload.Close() })

	t.Run("bucket", func(t *testing.T) {
		tests := []struct {
			us   uint64
			want uint32
		}{
			{0, 0}, {1, 0}, {2, 1}, {3, 2}, {4, 2}, {5, 3}, {8, 3}, {9, 4},
			{1000, 10}, {1024, 10}, {1025, 11},
			{1 << 22, 22}, {1<<22 + 1, 23}, {1 << 40, 23}, {^uint64(0), 23},
		}
		for _, tt := range tests {
			var in, out flowBucketArgs
			in.Us = tt.us
			_, err := objs.TestBucket.Run(&ebpf.RunOptions{Context: in, ContextOut: &out})
			require.NoError(t, err)
			require.Equal(t, tt.want, out.Bucket, "bucket of %d us", tt.us)
			// The Go bounds say the same: the value is <= its bucket's bound
			// and > the previous one.
			if b := int(out.Bucket); b < len(histBounds) {
				require.LessOrEqual(t, float64(tt.us)/1e6, histBounds[b])
			}
			if b := int(out.Bucket); b > 0 {
				require.Greater(t, float64(tt.us)/1e6, histBounds[b-1])
			}
		}
	})

	t.Run("key", func(t *testing.T) {
		tests := []struct {
			name      string
			dir       Direction
			remote    string
			lport     uint16
			orig      string // "" no origin
			skip      bool
			wantPeer  string
			wantCgrpD Direction
		}{
			{"outbound keys the peer and its port", Outbound, "10.244.2.7:8080", 40000, "", false, "10.244.2.7:8080", Outbound},
			{"inbound keys the client and the pod's port", Inbound, "10.244.2.7:40000", 8080, "", false, "10.244.2.7:8080", Inbound},
			{"redirected outbound keys the dialed destination", Outbound, "10.244.1.1:15001", 40000, "10.96.0.10:80", false, "10.96.0.10:80", Outbound},
			{"inbound ignores an origin", Inbound, "10.244.2.7:40000", 8080, "10.96.0.10:80", false, "10.244.2.7:8080", Inbound},
			{"ipv6 peer", Outbound, "[fd00::7]:443", 40000, "", false, "[fd00::7]:443", Outbound},
			{"loopback is not followed", Outbound, "127.0.0.1:80", 40000, "", true, "", 0},
			{"ipv6 loopback is not followed", Inbound, "[::1]:40000", 80, "", true, "", 0},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				remote := netip.MustParseAddrPort(tt.remote)
				var in, out flowKeyArgs
				in.CgroupId = 42
				in.Dir = uint8(tt.dir)
				in.Remote.W = addrWords(remote.Addr())
				in.Rport = remote.Port()
				in.Lport = tt.lport
				if tt.orig != "" {
					o := netip.MustParseAddrPort(tt.orig)
					in.Orig.W = addrWords(o.Addr())
					in.OrigPort = o.Port()
				}
				_, err := objs.TestKey.Run(&ebpf.RunOptions{Context: in, ContextOut: &out})
				require.NoError(t, err)
				require.Equal(t, tt.skip, out.Skip == 1)
				if tt.skip {
					return
				}
				require.Equal(t, Key{CgroupID: 42, Peer: netip.MustParseAddrPort(tt.wantPeer), Direction: tt.wantCgrpD}, keyFrom(out.Key))
			})
		}
	})

	t.Run("payload", func(t *testing.T) {
		tests := []struct {
			name                 string
			raw, base, reported  uint64
			fin                  bool
			wantTotal, wantDelta uint64
		}{
			{"handshake only", 1, 1, 0, false, 0, 0},
			{"data", 1001, 1, 0, false, 1000, 1000},
			{"fin not counted", 1002, 1, 0, true, 1000, 1000},
			{"only the new part is reported", 1001, 1, 400, false, 1000, 600},
			{"never backwards", 1001, 1, 1000, true, 999, 0},
			{"raw below base", 0, 1, 0, false, 0, 0},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				var in, out flowPayloadArgs
				in.Raw, in.Base, in.Reported = tt.raw, tt.base, tt.reported
				if tt.fin {
					in.Fin = 1
				}
				_, err := objs.TestPayload.Run(&ebpf.RunOptions{Context: in, ContextOut: &out})
				require.NoError(t, err)
				require.Equal(t, tt.wantTotal, out.Total)
				require.Equal(t, tt.wantDelta, out.Delta)
			})
		}
	})
}

// TestPrivilegedAggregateFull fills a small aggregate map and checks that
// the keys that did not fit are counted, never dropped silently.
func TestPrivilegedAggregateFull(t *testing.T) {
	testenv.RequirePrivileged(t)
	spec, err := loadFlow()
	require.NoError(t, err)
	spec.Maps["flow_stats"].MaxEntries = 2
	var objs struct {
		TestAgg *ebpf.Program `ebpf:"test_agg"`
		flowMaps
	}
	require.NoError(t, spec.LoadAndAssign(&objs, nil))
	t.Cleanup(func() { objs.TestAgg.Close(); objs.flowMaps.Close() })
	f := &Flows{maps: objs.flowMaps}

	for i, want := range []uint32{0, 0, 1, 0} {
		var k flowFlowKey
		k.CgroupId = uint64(i%3 + 1) // the fourth is the first again
		k.Dir = uint8(Outbound)
		ret, err := objs.TestAgg.Run(&ebpf.RunOptions{Context: k})
		require.NoError(t, err)
		require.Equal(t, want, ret, "key %d", i)
	}
	h, err := f.Health()
	require.NoError(t, err)
	require.Equal(t, MapHealth{Entries: 2, Max: 2, InsertFailures: 1}, h.Maps["flow_stats"])
	all, err := f.Aggregates()
	require.NoError(t, err)
	require.Equal(t, uint64(2), all[Key{CgroupID: 1, Peer: netip.AddrPortFrom(netip.IPv6Unspecified(), 0), Direction: Outbound}].Opened)
}

func TestPrivilegedConfig(t *testing.T) {
	testenv.RequirePrivileged(t)
	_, err := New(Config{})
	require.ErrorIs(t, err, ErrNoMembers)
	require.ErrorContains(t, err, "CgroupPath is required")
	_, err = New(Config{CgroupPath: "/x", Members: newMembers(t), MaxLive: -1})
	require.ErrorContains(t, err, "MaxLive -1 is negative")
}

// TestPrivilegedFlows drives real TCP traffic in a network namespace between
// sockets in and out of a meshed pod cgroup and checks the figures.
func TestPrivilegedFlows(t *testing.T) {
	testenv.RequirePrivileged(t)
	cg := tempCgroups(t)
	f := newFlows(t, Config{CgroupPath: cg.root, Members: newMembers(t, cg.podID)})
	for _, p := range f.Programs() {
		t.Logf("hook %s (%s): id %d link %d %s", p.Name, p.Hook, p.ID, p.LinkID, p.Missing)
	}

	ns := newNetns(t)
	t.Run("outbound flow: exact bytes while open and after close", func(t *testing.T) {
		defer ns.enter(t)()
		const up, down = 100_000, 250_000
		ln, srv := listen(t, addrServer) // the server is not in a pod
		done := serveOne(ln, echoN(up, down))
		var c *net.TCPConn
		cg.in(t, cg.pod, func() {
			var err error
			c, err = dial(addrClient, srv)
			require.NoError(t, err)
		})
		defer c.Close()
		require.NoError(t, exchange(c, up, down))

		k := Key{CgroupID: cg.podID, Peer: srv, Direction: Outbound}
		s := waitStats(t, f, k, "open flow", func(s Stats) bool {
			return s.BytesSent == up && s.BytesReceived == down
		})
		require.Equal(t, uint64(1), s.Opened)
		require.Zero(t, s.Closed)
		require.Equal(t, uint64(1), s.Open())
		require.Equal(t, uint64(1), s.Connect.Count)

		live, err := f.Live()
		require.NoError(t, err)
		l := findLive(live, netip.MustParseAddrPort(c.LocalAddr().String()))
		require.NotNil(t, l, "the open flow is listed: %+v", live)
		require.Equal(t, srv, l.Peer)
		require.Equal(t, cg.podID, l.CgroupID)
		require.Equal(t, Outbound, l.Direction)
		require.Equal(t, "ESTABLISHED", l.State)
		require.Equal(t, uint64(up), l.BytesSent)
		require.Equal(t, uint64(down), l.BytesReceived)
		require.False(t, l.Dialed.IsValid())
		require.Positive(t, l.SRTT)
		require.WithinDuration(t, time.Now(), l.Start, time.Minute)

		require.NoError(t, c.Close()) // the client closes first
		wait(t, done)
		s = waitStats(t, f, k, "closed flow", func(s Stats) bool { return s.Closed == 1 })
		t.Logf("closed flow: %+v", s)
		require.Equal(t, uint64(up), s.BytesSent, "exact, FIN not counted")
		require.Equal(t, uint64(down), s.BytesReceived, "exact, FIN not counted")
		require.Zero(t, s.Failed)
		require.Zero(t, s.ResetsSent+s.ResetsReceived)
		require.Positive(t, s.RTT.Count)
		require.Greater(t, s.RTT.Sum, 0.0)
		require.Less(t, s.RTT.Sum/float64(s.RTT.Count), 0.1, "loopback RTTs are far below 100 ms")
		require.Equal(t, uint64(1), s.Connect.Count)
		require.Less(t, s.Connect.Sum, 1.0)
		require.Equal(t, s.Connect.Count, s.Connect.Counts[len(s.Connect.Counts)-1])
		require.Positive(t, s.Duration)

		live, err = f.Live()
		require.NoError(t, err)
		require.Nil(t, findLive(live, netip.MustParseAddrPort(c.LocalAddr().String())), "a closed flow is not listed")

		all, err := f.Aggregates()
		require.NoError(t, err)
		for k := range all {
			require.False(t, k.Direction == Inbound && k.Peer.Port() == srv.Port(),
				"the server is not in a pod: no inbound key %+v", k)
		}
	})

	t.Run("both ends meshed, server closes first", func(t *testing.T) {
		defer ns.enter(t)()
		const up, down = 3_000, 70_000
		var (
			ln   net.Listener
			srv  netip.AddrPort
			c    *net.TCPConn
			done <-chan error
		)
		cg.in(t, cg.pod, func() {
			ln, srv = listen(t, addrServer) // accepted sockets are the pod's
			done = serveOne(ln, func(c *net.TCPConn) error {
				if _, err := io.CopyN(io.Discard, c, up); err != nil {
					return err
				}
				_, err := c.Write(payload(down))
				return err // then close first
			})
			var err error
			c, err = dial(addrOther, srv)
			require.NoError(t, err)
		})
		defer c.Close()
		_, err := c.Write(payload(up))
		require.NoError(t, err)
		n, err := io.Copy(io.Discard, c) // until the server's FIN
		require.NoError(t, err)
		require.Equal(t, int64(down), n)
		wait(t, done)
		require.NoError(t, c.Close())

		out := waitStats(t, f, Key{CgroupID: cg.podID, Peer: srv, Direction: Outbound}, "outbound",
			func(s Stats) bool { return s.Closed == 1 })
		in := waitStats(t, f, Key{CgroupID: cg.podID, Peer: netip.AddrPortFrom(addrOther, srv.Port()), Direction: Inbound}, "inbound",
			func(s Stats) bool { return s.Closed == 1 })
		require.Equal(t, [2]uint64{up, down}, [2]uint64{out.BytesSent, out.BytesReceived}, "outbound bytes")
		require.Equal(t, [2]uint64{down, up}, [2]uint64{in.BytesSent, in.BytesReceived}, "inbound bytes")
		require.Equal(t, uint64(1), out.Opened)
		require.Equal(t, uint64(1), in.Opened)
		require.Zero(t, in.Connect.Count, "no connect latency for accepted flows")
		require.Positive(t, in.RTT.Count)
	})

	t.Run("ipv6", func(t *testing.T) {
		defer ns.enter(t)()
		const up, down = 5_000, 7_000
		ln, srv := listen(t, addrServer6)
		done := serveOne(ln, echoN(up, down))
		var c *net.TCPConn
		cg.in(t, cg.pod, func() {
			var err error
			c, err = dial(addrClient6, srv)
			require.NoError(t, err)
		})
		defer c.Close()
		require.NoError(t, exchange(c, up, down))
		require.NoError(t, c.Close())
		wait(t, done)
		s := waitStats(t, f, Key{CgroupID: cg.podID, Peer: srv, Direction: Outbound}, "ipv6 flow",
			func(s Stats) bool { return s.Closed == 1 })
		require.Equal(t, [2]uint64{up, down}, [2]uint64{s.BytesSent, s.BytesReceived})
	})

	t.Run("connect to a closed port fails with a reset", func(t *testing.T) {
		defer ns.enter(t)()
		ln, dst := listen(t, addrServer)
		require.NoError(t, ln.Close())
		cg.in(t, cg.pod, func() {
			_, err := dial(addrClient, dst)
			require.ErrorIs(t, err, syscall.ECONNREFUSED)
		})
		s := waitStats(t, f, Key{CgroupID: cg.podID, Peer: dst, Direction: Outbound}, "refused",
			func(s Stats) bool { return s.Failed == 1 && s.ResetsReceived == 1 })
		require.Zero(t, s.Opened)
		require.Zero(t, s.Closed)
		require.Zero(t, s.Connect.Count)
	})

	t.Run("server abort sends a reset", func(t *testing.T) {
		defer ns.enter(t)()
		abort(t, f, cg)
	})

	t.Run("a long-lived flow that only receives is counted while open", func(t *testing.T) {
		defer ns.enter(t)()
		const chunk, chunks = 64 << 10, 8
		ln, srv := listen(t, addrServer)
		next := make(chan struct{})
		done := serveOne(ln, func(c *net.TCPConn) error {
			for range chunks {
				if _, err := c.Write(payload(chunk)); err != nil {
					return err
				}
				<-next
			}
			_, err := io.Copy(io.Discard, c)
			return err
		})
		var c *net.TCPConn
		cg.in(t, cg.pod, func() {
			var err error
			c, err = dial(addrClient, srv)
			require.NoError(t, err)
		})
		defer c.Close()
		k := Key{CgroupID: cg.podID, Peer: srv, Direction: Outbound}
		for i := 1; i <= chunks; i++ {
			_, err := io.CopyN(io.Discard, c, chunk)
			require.NoError(t, err)
			waitStats(t, f, k, fmt.Sprintf("after chunk %d", i), func(s Stats) bool {
				return s.BytesReceived == uint64(i*chunk) && s.Closed == 0
			})
			next <- struct{}{}
		}
		require.NoError(t, c.Close())
		wait(t, done)
		s := waitStats(t, f, k, "closed", func(s Stats) bool { return s.Closed == 1 })
		require.Equal(t, uint64(chunks*chunk), s.BytesReceived)
		require.Zero(t, s.BytesSent)
	})

	t.Run("sockets outside meshed pods are not counted", func(t *testing.T) {
		defer ns.enter(t)()
		ln, srv := listen(t, addrServer)
		done := serveOne(ln, echoN(1000, 1000))
		var c *net.TCPConn
		cg.in(t, cg.other, func() { // a pod that is not meshed
			var err error
			c, err = dial(addrClient, srv)
			require.NoError(t, err)
		})
		defer c.Close()
		require.NoError(t, exchange(c, 1000, 1000))
		live, err := f.Live()
		require.NoError(t, err)
		require.Nil(t, findLive(live, netip.MustParseAddrPort(c.LocalAddr().String())))
		require.NoError(t, c.Close())
		wait(t, done)
		all, err := f.Aggregates()
		require.NoError(t, err)
		for k := range all {
			require.NotEqual(t, srv.Port(), k.Peer.Port(), "unmeshed flow counted: %+v", k)
			require.NotEqual(t, cg.otherID, k.CgroupID)
		}
	})

	t.Run("trace events honour the filter", func(t *testing.T) {
		defer ns.enter(t)()
		rd, err := ringbuf.NewReader(f.maps.Events)
		require.NoError(t, err)
		defer rd.Close()
		const kinds = 1<<2 | 1<<3 // SKEIN_EV_CONNECT_FAIL, SKEIN_EV_RESET
		require.NoError(t, f.maps.TraceCfg.Put(uint32(0), flowTraceFilter{Kinds: kinds, CgroupId: cg.podID}))
		defer func() { require.NoError(t, f.maps.TraceCfg.Put(uint32(0), flowTraceFilter{})) }()

		ln, dst := listen(t, addrServer)
		require.NoError(t, ln.Close())
		cg.in(t, cg.pod, func() {
			_, err := dial(addrClient, dst)
			require.Error(t, err)
		})
		got := map[uint8]flowSkeinEvent{}
		rd.SetDeadline(time.Now().Add(5 * time.Second))
		for len(got) < 2 {
			rec, err := rd.Read()
			require.NoError(t, err, "events so far: %+v", got)
			var ev flowSkeinEvent
			require.NoError(t, binaryRead(rec.RawSample, &ev))
			require.Equal(t, cg.podID, ev.CgroupId)
			got[ev.Kind] = ev
		}
		require.Equal(t, ResetReceived, got[3].Reason)
		require.Equal(t, dst.Port(), got[3].Dport)
		require.Equal(t, dst.Addr(), wordsAddr(got[3].Daddr.W))
		require.Equal(t, uint32(syscall.ECONNREFUSED), got[2].Value, "connect failure carries the errno")
		require.Equal(t, uint8(2), got[2].Reason, "failed in SYN_SENT")

		// Kinds the filter does not ask for are not emitted: a reset
		// sent by an abort is of a wanted kind but another cgroup's
		// event is not.
		require.NoError(t, f.maps.TraceCfg.Put(uint32(0), flowTraceFilter{Kinds: kinds, CgroupId: cg.otherID}))
		cg.in(t, cg.pod, func() {
			_, err := dial(addrClient, dst)
			require.Error(t, err)
		})
		rd.SetDeadline(time.Now().Add(300 * time.Millisecond))
		_, err = rd.Read()
		require.ErrorIs(t, err, os.ErrDeadlineExceeded, "no event for a cgroup the filter excludes")
	})

	// Last: it changes lo's MTU and drops packets.
	t.Run("retransmits", func(t *testing.T) {
		defer ns.enter(t)()
		if _, err := exec.LookPath("nft"); err != nil {
			t.Skip("nft not installed: cannot drop packets (sch_netem is not built here)")
		}
		ln, srv := listen(t, addrServer)
		// Many small packets, one segment each (no GSO super-packets), so
		// that the loss surely hits data and is recovered fast.
		require.NoError(t, ns.nl.LinkSetMTU(ns.lo, 1500))
		require.NoError(t, ns.nl.LinkSetGSOMaxSegs(ns.lo, 1))
		// Dropped on input, so that the stack sees a loss on the wire, not
		// a local transmit error.
		nft := func(stdin string, args ...string) {
			cmd := exec.Command("nft", args...) // runs in this thread's netns
			cmd.Stdin = strings.NewReader(stdin)
			out, err := cmd.CombinedOutput()
			require.NoError(t, err, "nft %s: %s", args, out)
		}
		nft(fmt.Sprintf(`table inet skeinflowtest {
	chain in {
		type filter hook input priority 0; policy accept;
		tcp dport %[1]d numgen random mod 100 < 10 drop
		tcp sport %[1]d numgen random mod 100 < 10 drop
	}
}
`, srv.Port()), "-f", "-")
		dropping := true
		defer func() {
			if dropping {
				nft("", "delete", "table", "inet", "skeinflowtest")
			}
		}()

		const up = 150_000 // about 100 segments: some are lost for sure
		done := serveOne(ln, echoN(up, 10))
		var c *net.TCPConn
		cg.in(t, cg.pod, func() {
			var err error
			c, err = dial(addrClient, srv)
			require.NoError(t, err)
		})
		defer c.Close()
		require.NoError(t, c.SetDeadline(time.Now().Add(30*time.Second)))
		require.NoError(t, exchange(c, up, 10))
		k := Key{CgroupID: cg.podID, Peer: srv, Direction: Outbound}
		s := waitStats(t, f, k, "lossy flow", func(s Stats) bool { return s.Retransmits > 0 && s.BytesSent == up })
		t.Logf("retransmits with 10%% loss each way: %d", s.Retransmits)
		live, err := f.Live()
		require.NoError(t, err)
		l := findLive(live, netip.MustParseAddrPort(c.LocalAddr().String()))
		require.NotNil(t, l)
		require.Positive(t, l.Retransmits)

		nft("", "delete", "table", "inet", "skeinflowtest") // a quick close
		dropping = false
		require.NoError(t, c.Close())
		wait(t, done)
		s = waitStats(t, f, k, "lossy flow closed", func(s Stats) bool { return s.Closed == 1 })
		require.Equal(t, uint64(up), s.BytesSent)
		require.GreaterOrEqual(t, s.Retransmits, uint64(l.Retransmits))
	})

	h, err := f.Health()
	require.NoError(t, err)
	t.Logf("health: %+v", h)
	require.Zero(t, h.Maps["flow_stats"].InsertFailures)
	require.Zero(t, h.Maps["flow_live"].InsertFailures+h.Maps["flow_live"].Evicted)
	require.Zero(t, h.Maps["flow_live"].Entries, "every flow ended")
	require.Zero(t, h.Maps["flow_sk"].Entries, "no followed socket is open")
	require.Equal(t, 4096, h.Maps["flow_stats"].Max)

	n, err := f.Prune(time.Hour)
	require.NoError(t, err)
	require.Zero(t, n, "every key changed within the hour")
	n, err = f.Prune(0)
	require.NoError(t, err)
	require.Equal(t, h.Maps["flow_stats"].Entries, n, "no key has an open flow: all go")
	all, err := f.Aggregates()
	require.NoError(t, err)
	require.Empty(t, all)
}

// abort has a meshed server abort a connection from a meshed client
// (SO_LINGER 0, then close) and checks the resets on both sides.
func abort(t *testing.T, f *Flows, cg cgroups) {
	t.Helper()
	var (
		srv  netip.AddrPort
		c    *net.TCPConn
		done <-chan error
	)
	cg.in(t, cg.pod, func() {
		var ln net.Listener
		ln, srv = listen(t, addrServer)
		done = serveOne(ln, func(c *net.TCPConn) error {
			if _, err := io.CopyN(io.Discard, c, 1); err != nil {
				return err
			}
			if err := c.SetLinger(0); err != nil {
				return err
			}
			return c.Close()
		})
		var err error
		c, err = dial(addrOther, srv)
		require.NoError(t, err)
	})
	defer c.Close()
	_, err := c.Write([]byte("x"))
	require.NoError(t, err)
	wait(t, done)
	_, err = c.Read(make([]byte, 1))
	require.ErrorIs(t, err, syscall.ECONNRESET)

	in := waitStats(t, f, Key{CgroupID: cg.podID, Peer: netip.AddrPortFrom(addrOther, srv.Port()), Direction: Inbound},
		"aborting server", func(s Stats) bool { return s.ResetsSent == 1 && s.Closed == 1 })
	require.Zero(t, in.ResetsReceived)
	out := waitStats(t, f, Key{CgroupID: cg.podID, Peer: srv, Direction: Outbound},
		"aborted client", func(s Stats) bool { return s.ResetsReceived == 1 && s.Closed == 1 })
	require.Zero(t, out.ResetsSent)
	require.Equal(t, uint64(1), out.BytesSent)
}

func findLive(ls []Live, local netip.AddrPort) *Live {
	for i := range ls {
		if ls[i].Local == local {
			return &ls[i]
		}
	}
	return nil
}

func binaryRead(b []byte, v *flowSkeinEvent) error {
	return binary.Read(bytes.NewReader(b), binary.NativeEndian, v)
}

// TestPrivilegedOrigins passes a sock_origin storage like capture's and
// plays capture's part (recording the dialed destination before the connect):
// the flow is keyed by the dialed destination, not by the address it reached.
func TestPrivilegedOrigins(t *testing.T) {
	testenv.RequirePrivileged(t)
	cg := tempCgroups(t)
	spec, err := loadFlow()
	require.NoError(t, err)
	origins, err := ebpf.NewMap(spec.Maps["sock_origin"])
	require.NoError(t, err)
	t.Cleanup(func() { origins.Close() })
	f := newFlows(t, Config{CgroupPath: cg.root, Members: newMembers(t, cg.podID), Origins: origins})

	defer newNetns(t).enter(t)()
	ln, proxy := listen(t, addrServer) // plays the node proxy
	done := serveOne(ln, echoN(10, 10))
	vip := netip.MustParseAddrPort("10.96.0.10:80")
	var c *net.TCPConn
	cg.in(t, cg.pod, func() {
		var err error
		c, err = dialControl(addrClient, proxy, func(fd uintptr) error {
			var o flowOrigin
			o.Addr.W = addrWords(vip.Addr())
			o.Port = vip.Port()
			o.Family = unix.AF_INET
			o.CgroupId = cg.podID
			return origins.Put(int32(fd), o)
		})
		require.NoError(t, err)
	})
	defer c.Close()
	require.NoError(t, exchange(c, 10, 10))

	live, err := f.Live()
	require.NoError(t, err)
	l := findLive(live, netip.MustParseAddrPort(c.LocalAddr().String()))
	require.NotNil(t, l)
	require.Equal(t, proxy, l.Peer)
	require.Equal(t, vip, l.Dialed)

	require.NoError(t, c.Close())
	wait(t, done)
	s := waitStats(t, f, Key{CgroupID: cg.podID, Peer: vip, Direction: Outbound}, "redirected flow",
		func(s Stats) bool { return s.Closed == 1 })
	require.Equal(t, [2]uint64{10, 10}, [2]uint64{s.BytesSent, s.BytesReceived})
	all, err := f.Aggregates()
	require.NoError(t, err)
	_, ok := all[Key{CgroupID: cg.podID, Peer: proxy, Direction: Outbound}]
	require.False(t, ok, "not keyed by the proxy")
}

// TestPrivilegedWithCapture runs next to the real capture object on the same
// cgroup, sharing its members and sock_origin maps: both sockops programs run,
// and a connect that capture redirects to the proxy is keyed by the Service
// VIP the app dialed.
func TestPrivilegedWithCapture(t *testing.T) {
	testenv.RequirePrivileged(t)
	cg := tempCgroups(t)
	d, err := capture.New(capture.Config{CgroupPath: cg.root})
	require.NoError(t, err)
	t.Cleanup(func() { require.NoError(t, d.Close()) })
	cm := d.Maps()
	f := newFlows(t, Config{CgroupPath: cg.root, Members: cm["members"], Origins: cm["sock_origin"]})

	defer newNetns(t).enter(t)()
	ln, proxy := listen(t, addrServer) // the node proxy, outside every pod
	vip := netip.MustParseAddrPort("10.96.0.10:80")
	require.NoError(t, d.Configure(capture.Settings{Proxy4: proxy.Addr(), ProxyPort: proxy.Port()}))
	require.NoError(t, d.Sync(capture.State{
		Members:      map[uint64]capture.MemberFlags{cg.podID: capture.MemberMeshed},
		Destinations: map[netip.AddrPort]capture.DstKind{vip: capture.DstService},
	}))
	raw, err := ln.(*net.TCPListener).SyscallConn()
	require.NoError(t, err)
	require.NoError(t, raw.Control(func(fd uintptr) { require.NoError(t, d.SetListener(fd)) }))

	done := serveOne(ln, echoN(100, 200))
	var c *net.TCPConn
	cg.in(t, cg.pod, func() {
		var err error
		c, err = dial(addrClient, vip)
		require.NoError(t, err)
	})
	defer c.Close()
	require.NoError(t, exchange(c, 100, 200))
	require.NoError(t, c.Close())
	wait(t, done)

	s := waitStats(t, f, Key{CgroupID: cg.podID, Peer: vip, Direction: Outbound}, "captured flow",
		func(s Stats) bool { return s.Closed == 1 })
	require.Equal(t, [2]uint64{100, 200}, [2]uint64{s.BytesSent, s.BytesReceived})
	v, err := d.Verdicts()
	require.NoError(t, err)
	require.Equal(t, uint64(1), v[capture.VerdictRedirect], "capture redirected the connect")
}

// TestPrivilegedResetFallback counts resets through the classic tracepoints,
// as on a kernel where tp_btf programs cannot load.
func TestPrivilegedResetFallback(t *testing.T) {
	testenv.RequirePrivileged(t)
	if _, err := os.Stat("/sys/kernel/tracing/events/tcp/tcp_send_reset"); err != nil {
		t.Skip("tracefs is not mounted: the classic tracepoints are not available")
	}
	cg := tempCgroups(t)
	f := newFlows(t, Config{CgroupPath: cg.root, Members: newMembers(t, cg.podID), resetHooks: resetClassic})
	hooks := map[string]ProgramInfo{}
	for _, p := range f.Programs() {
		hooks[p.Name] = p
	}
	require.Empty(t, hooks["skein_flow_rst_rcv_tp"].Missing)
	require.Empty(t, hooks["skein_flow_rst_sent_tp"].Missing)
	require.Equal(t, "tracepoint/tcp/tcp_send_reset", hooks["skein_flow_rst_sent_tp"].Hook)
	require.NotContains(t, hooks, "skein_flow_rst_rcv", "the BTF hooks were not tried")

	defer newNetns(t).enter(t)()
	{
		ln, dst := listen(t, addrServer)
		require.NoError(t, ln.Close())
		cg.in(t, cg.pod, func() {
			_, err := dial(addrClient, dst)
			require.ErrorIs(t, err, syscall.ECONNREFUSED)
		})
		waitStats(t, f, Key{CgroupID: cg.podID, Peer: dst, Direction: Outbound}, "refused",
			func(s Stats) bool { return s.Failed == 1 && s.ResetsReceived == 1 })
		abort(t, f, cg)
	}
}

// TestPrivilegedNoResetHooks: without reset hooks the rest still works, and
// Programs says what is missing.
func TestPrivilegedNoResetHooks(t *testing.T) {
	testenv.RequirePrivileged(t)
	cg := tempCgroups(t)
	f := newFlows(t, Config{CgroupPath: cg.root, Members: newMembers(t, cg.podID), resetHooks: resetNone})
	missing := 0
	for _, p := range f.Programs() {
		if p.Missing != "" {
			missing++
		}
	}
	require.Equal(t, 4, missing, "both flavours of both reset hooks: %+v", f.Programs())
}

// TestPrivilegedPinAndAdopt restarts the "agent" with a flow open across the
// restart: the new one adopts the links and the state, and the flow is
// closed and counted by it.
func TestPrivilegedPinAndAdopt(t *testing.T) {
	testenv.RequirePrivileged(t)
	cg := tempCgroups(t)
	pins := filepath.Join("/sys/fs/bpf", fmt.Sprintf("skein-flow-test-%d", os.Getpid()))
	t.Cleanup(func() { _ = Cleanup(pins) })
	members := newMembers(t, cg.podID)
	sockops := func() int {
		res, err := link.QueryPrograms(link.QueryOptions{Target: mustOpen(t, cg.root), Attach: ebpf.AttachCGroupSockOps})
		require.NoError(t, err)
		return len(res.Programs)
	}

	f1, err := New(Config{CgroupPath: cg.root, PinPath: pins, Members: members})
	require.NoError(t, err)
	t.Cleanup(func() { f1.Close() })
	for _, p := range f1.Programs() {
		if p.Hook == "sockops" || strings.HasPrefix(p.Hook, "tp_btf/") {
			require.True(t, p.Pinned, "%s is pinned", p.Name)
		}
	}

	leave := newNetns(t).enter(t)
	ln, srv := listen(t, addrServer)
	done := serveOne(ln, echoN(10, 20))
	var c *net.TCPConn
	cg.in(t, cg.pod, func() {
		var err error
		c, err = dial(addrClient, srv)
		require.NoError(t, err)
	})
	t.Cleanup(func() { c.Close() })
	k := Key{CgroupID: cg.podID, Peer: srv, Direction: Outbound}
	waitStats(t, f1, k, "before restart", func(s Stats) bool { return s.Opened == 1 })

	require.NoError(t, f1.Close())
	require.NoError(t, f1.Close(), "Close is idempotent")
	require.Equal(t, 1, sockops(), "the pinned link stays attached after Close")

	f2, err := New(Config{CgroupPath: cg.root, PinPath: pins, Members: members})
	require.NoError(t, err)
	t.Cleanup(func() { f2.Close() })
	require.Equal(t, 1, sockops(), "a new agent adopts the link instead of adding a program")

	require.NoError(t, exchange(c, 10, 20))
	require.NoError(t, c.Close())
	wait(t, done)
	s := waitStats(t, f2, k, "after restart", func(s Stats) bool { return s.Closed == 1 })
	require.Equal(t, uint64(1), s.Opened, "the count from before the restart is kept")
	require.Equal(t, [2]uint64{10, 20}, [2]uint64{s.BytesSent, s.BytesReceived})
	leave()

	require.NoError(t, f2.Close())
	require.NoError(t, Cleanup(pins))
	require.Eventually(t, func() bool { return sockops() == 0 }, 5*time.Second, 50*time.Millisecond,
		"cleanup detaches everything")
}

func mustOpen(t testing.TB, path string) int {
	t.Helper()
	f, err := os.Open(path)
	require.NoError(t, err)
	t.Cleanup(func() { f.Close() })
	return int(f.Fd())
}

// TestPrivilegedOverhead measures what the sockops program costs per
// callback and per connection, with the kernel's BPF statistics, over a
// bounded number of short connections from a meshed pod.
func TestPrivilegedOverhead(t *testing.T) {
	testenv.RequirePrivileged(t)
	const conns = 1000
	cg := tempCgroups(t)
	f := newFlows(t, Config{CgroupPath: cg.root, Members: newMembers(t, cg.podID)})
	stats, err := ebpf.EnableStats(uint32(unix.BPF_STATS_RUN_TIME))
	require.NoError(t, err)
	defer stats.Close()

	defer newNetns(t).enter(t)()
	ln, srv := listen(t, addrServer)
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				_ = echoN(1, 1)(c.(*net.TCPConn))
			}()
		}
	}()
	n := 0
	deadline := time.Now().Add(60 * time.Second)
	cg.in(t, cg.pod, func() {
		for ; n < conns && time.Now().Before(deadline); n++ {
			c, err := dial(addrClient, srv)
			require.NoError(t, err)
			require.NoError(t, exchange(c, 1, 1))
			require.NoError(t, c.Close())
		}
	})
	require.NoError(t, ln.Close())
	wg.Wait()
	waitStats(t, f, Key{CgroupID: cg.podID, Peer: srv, Direction: Outbound}, "all closed",
		func(s Stats) bool { return s.Closed == uint64(n) })

	o, err := f.Overhead()
	require.NoError(t, err)
	s := o["skein_flow_sockops"]
	require.Positive(t, s.RunCount)
	t.Logf("sockops: %d runs over %d connections (%.1f per connection), %.0f ns per run, %.0f ns per connection",
		s.RunCount, n, float64(s.RunCount)/float64(n), s.NsPerRun, float64(s.RunTime.Nanoseconds())/float64(n))
}
