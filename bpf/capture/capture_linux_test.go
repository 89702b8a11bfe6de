//go:build linux

package capture

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"
	"github.com/stretchr/testify/require"
	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"

	"github.com/skeinmesh/skein/internal/testenv"
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

// tempCgroup creates a cgroup (and a child, the "pod") and removes both at
// cleanup, moving this process back to where it was first.
func tempCgroup(t testing.TB) (root, pod string) {
	t.Helper()
	root, err := os.MkdirTemp(cgroup2Mount(t), "skein-test-")
	require.NoError(t, err)
	pod = filepath.Join(root, "pod")
	require.NoError(t, os.Mkdir(pod, 0o755))
	t.Cleanup(func() {
		_ = os.Remove(pod)
		_ = os.Remove(root)
	})
	return root, pod
}

func cgroupID(t testing.TB, path string) uint64 {
	t.Helper()
	var st syscall.Stat_t
	require.NoError(t, syscall.Stat(path, &st))
	return st.Ino
}

func TestPrivilegedDecide(t *testing.T) {
	testenv.RequirePrivileged(t)
	spec, err := loadCapture()
	require.NoError(t, err)
	var objs struct {
		TestDecide *ebpf.Program `ebpf:"test_decide"`
		captureMaps
	}
	require.NoError(t, spec.LoadAndAssign(&objs, nil))
	t.Cleanup(func() { objs.TestDecide.Close(); objs.captureMaps.Close() })

	d := &Datapath{objs: objects{captureMaps: objs.captureMaps}}
	require.NoError(t, d.Configure(Settings{
		Proxy4: netip.MustParseAddr("10.244.1.1"), ProxyPort: 15001,
	}))
	const meshed, optedOut = 100, 200
	require.NoError(t, d.Sync(State{
		Members:       map[uint64]MemberFlags{meshed: MemberMeshed, optedOut: 0},
		ExcludedPorts: map[uint64][]uint16{meshed: {3306}},
		Destinations: map[netip.AddrPort]DstKind{
			netip.MustParseAddrPort("10.96.0.10:80"):    DstService,
			netip.MustParseAddrPort("10.244.2.7:0"):     DstPod,
			netip.MustParseAddrPort("[fd00::10]:80"):    DstService,
			netip.MustParseAddrPort("10.96.0.11:3306"):  DstService,
			netip.MustParseAddrPort("10.96.0.12:8080"):  DstService,
			netip.MustParseAddrPort("127.0.0.1:80"):     DstService,
			netip.MustParseAddrPort("[::1]:80"):         DstService,
			netip.MustParseAddrPort("10.244.3.3:12345"): DstService,
		},
	}))

	run := func(t *testing.T, cg uint64, dst string, alive bool, v6 bool) Verdict {
		ap := netip.MustParseAddrPort(dst)
		var in captureDecideArgs
		in.CgroupId = cg
		in.Dst.W = addrWords(ap.Addr())
		in.Port = ap.Port()
		if alive {
			in.Alive = 1
		}
		if v6 {
			in.V6 = 1
		}
		var out captureDecideArgs
		_, err := objs.TestDecide.Run(&ebpf.RunOptions{Context: in, ContextOut: &out})
		require.NoError(t, err)
		return Verdict(out.Verdict)
	}

	tests := []struct {
		name  string
		cg    uint64
		dst   string
		alive bool
		v6    bool
		want  Verdict
	}{
		{"service vip is redirected", meshed, "10.96.0.10:80", true, false, VerdictRedirect},
		{"meshed pod ip on any port is redirected", meshed, "10.244.2.7:9999", true, false, VerdictRedirect},
		{"unknown cgroup is not a member", 999, "10.96.0.10:80", true, false, VerdictNotMember},
		{"opted-out pod is not a member", optedOut, "10.96.0.10:80", true, false, VerdictNotMember},
		{"loopback is never captured", meshed, "127.0.0.1:80", true, false, VerdictLoopback},
		{"ipv6 loopback is never captured", meshed, "[::1]:80", true, true, VerdictLoopback},
		{"excluded port bypasses", meshed, "10.96.0.11:3306", true, false, VerdictExcludedPort},
		{"vip on a port the service lacks is not a mesh destination", meshed, "10.96.0.10:81", true, false, VerdictNotMeshDst},
		{"outside address is not a mesh destination", meshed, "192.0.2.1:443", true, false, VerdictNotMeshDst},
		{"proxy down fails open", meshed, "10.96.0.10:80", false, false, VerdictFailOpen},
		{"ipv6 without a proxy address is not redirected", meshed, "[fd00::10]:80", true, true, VerdictNoProxyAddr},
		{"ipv4-mapped on a v6 socket uses the v4 proxy", meshed, "[::ffff:10.96.0.10]:80", true, true, VerdictRedirect},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			require.Equal(t, tt.want, run(t, tt.cg, tt.dst, tt.alive, tt.v6))
		})
	}

	t.Run("proxy down fails closed when configured", func(t *testing.T) {
		require.NoError(t, d.Configure(Settings{Proxy4: netip.MustParseAddr("10.244.1.1"), ProxyPort: 15001, FailClosed: true}))
		require.Equal(t, VerdictFailClosed, run(t, meshed, "10.96.0.10:80", false, false))
		require.Equal(t, VerdictRedirect, run(t, meshed, "10.96.0.10:80", true, false))
	})
	t.Run("sync removes stale entries", func(t *testing.T) {
		require.NoError(t, d.Sync(State{Members: map[uint64]MemberFlags{meshed: MemberMeshed}}))
		require.Equal(t, VerdictNotMeshDst, run(t, meshed, "10.96.0.10:80", true, false))
		require.Equal(t, VerdictNotMember, run(t, optedOut, "10.96.0.10:80", true, false))
	})
}

// inNetns runs fn on a locked thread inside a new network namespace with lo up.
func inNetns(t *testing.T, fn func()) {
	t.Helper()
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	orig, err := netns.Get()
	require.NoError(t, err)
	defer orig.Close()
	ns, err := netns.New()
	require.NoError(t, err)
	defer func() {
		require.NoError(t, netns.Set(orig))
		ns.Close()
	}()
	lo, err := netlink.LinkByName("lo")
	require.NoError(t, err)
	require.NoError(t, netlink.LinkSetUp(lo))
	fn()
}

// joinCgroup moves this process into path until the test ends.
func joinCgroup(t *testing.T, mount, path string) {
	t.Helper()
	require.NoError(t, os.WriteFile(filepath.Join(path, "cgroup.procs"), []byte(fmt.Sprint(os.Getpid())), 0))
	t.Cleanup(func() {
		_ = os.WriteFile(filepath.Join(mount, "cgroup.procs"), []byte(fmt.Sprint(os.Getpid())), 0)
	})
}

func TestPrivilegedRedirect(t *testing.T) {
	testenv.RequirePrivileged(t)
	root, pod := tempCgroup(t)
	d, err := New(Config{CgroupPath: root})
	require.NoError(t, err)
	t.Cleanup(func() { require.NoError(t, d.Close()) })

	inNetns(t, func() {
		lc := net.ListenConfig{}
		lc.SetMultipathTCP(false)
		ln, err := lc.Listen(context.Background(), "tcp4", "127.0.0.1:0")
		require.NoError(t, err)
		defer ln.Close()
		proxy := netip.MustParseAddrPort(ln.Addr().String())

		require.NoError(t, d.Configure(Settings{Proxy4: proxy.Addr(), ProxyPort: proxy.Port()}))
		podID := cgroupID(t, pod)
		vip := netip.MustParseAddrPort("10.96.0.10:80")
		require.NoError(t, d.Sync(State{
			Members:      map[uint64]MemberFlags{podID: MemberMeshed},
			Destinations: map[netip.AddrPort]DstKind{vip: DstService},
		}))

		// No listener registered yet: fail-open, and the VIP has no route
		// in this namespace, so the connect fails with no capture.
		joinCgroup(t, cgroup2Mount(t), pod)
		_, err = net.DialTimeout("tcp4", vip.String(), time.Second)
		require.Error(t, err, "a connect must not be captured while no proxy listens")

		raw, err := ln.(*net.TCPListener).SyscallConn()
		require.NoError(t, err)
		require.NoError(t, raw.Control(func(fd uintptr) { require.NoError(t, d.SetListener(fd)) }))
		_, ok := d.ListenerCookie()
		require.True(t, ok)

		c, err := net.DialTimeout("tcp4", vip.String(), time.Second)
		require.NoError(t, err)
		defer c.Close()
		require.Equal(t, vip.String(), c.RemoteAddr().String(), "getpeername must show the dialed address")

		acc, err := ln.Accept()
		require.NoError(t, err)
		defer acc.Close()
		o, err := d.Lookup(netip.MustParseAddrPort(acc.RemoteAddr().String()), netip.MustParseAddrPort(acc.LocalAddr().String()))
		require.NoError(t, err)
		require.Equal(t, vip, o.Dst)
		require.Equal(t, podID, o.CgroupID)
		_, err = d.Lookup(netip.MustParseAddrPort(acc.RemoteAddr().String()), netip.MustParseAddrPort(acc.LocalAddr().String()))
		require.ErrorIs(t, err, ErrNotFound, "lookup forgets the entry")

		// Closing the listener removes the liveness entry in the kernel.
		require.NoError(t, ln.Close())
		_, ok = d.ListenerCookie()
		require.False(t, ok)

		v, err := d.Verdicts()
		require.NoError(t, err)
		require.Equal(t, uint64(1), v[VerdictRedirect])
		require.Equal(t, uint64(1), v[VerdictFailOpen])
	})
}

func TestPrivilegedPinAndAdopt(t *testing.T) {
	testenv.RequirePrivileged(t)
	root, _ := tempCgroup(t)
	pins := filepath.Join("/sys/fs/bpf", fmt.Sprintf("skein-test-%d", os.Getpid()))
	t.Cleanup(func() { _ = Cleanup(pins) })

	attached := func() int {
		n := 0
		for _, a := range attachments {
			res, err := link.QueryPrograms(link.QueryOptions{Target: mustOpen(t, root), Attach: a.attach})
			require.NoError(t, err)
			n += len(res.Programs)
		}
		return n
	}

	d1, err := New(Config{CgroupPath: root, PinPath: pins})
	require.NoError(t, err)
	require.NoError(t, d1.Sync(State{Members: map[uint64]MemberFlags{42: MemberMeshed}}))
	require.NoError(t, d1.Close())
	require.Equal(t, len(attachments), attached(), "pinned links stay attached after Close")

	d2, err := New(Config{CgroupPath: root, PinPath: pins})
	require.NoError(t, err)
	require.Equal(t, len(attachments), attached(), "a new agent adopts the links instead of adding programs")
	var m captureMember
	require.NoError(t, d2.objs.Members.Lookup(uint64(42), &m), "pinned maps keep their state")
	require.NoError(t, d2.Close())

	require.NoError(t, Cleanup(pins))
	require.Eventually(t, func() bool { return attached() == 0 }, 5*time.Second, 50*time.Millisecond,
		"cleanup detaches everything")
}

func mustOpen(t *testing.T, path string) int {
	t.Helper()
	f, err := os.Open(path)
	require.NoError(t, err)
	t.Cleanup(func() { f.Close() })
	return int(f.Fd())
}

func TestPrivilegedStrictDecide(t *testing.T) {
	testenv.RequirePrivileged(t)
	spec, err := loadCapture()
	require.NoError(t, err)
	var objs struct {
		TestStrict *ebpf.Program `ebpf:"test_strict"`
		captureMaps
	}
	require.NoError(t, spec.LoadAndAssign(&objs, nil))
	t.Cleanup(func() { objs.TestStrict.Close(); objs.captureMaps.Close() })
	d := &Datapath{objs: objects{captureMaps: objs.captureMaps}}
	proxy := netip.MustParseAddr("10.244.1.1")
	require.NoError(t, d.Sync(State{TrustedSources: []netip.Addr{proxy, netip.MustParseAddr("192.168.77.1")}}))

	tests := []struct {
		name   string
		src    string
		syn    bool
		strict bool
		pass   bool
	}{
		{"permissive lets anything in", "10.244.2.10", true, false, true},
		{"strict drops a new connection from a pod", "10.244.2.10", true, true, false},
		{"strict passes the node proxy", "10.244.1.1", true, true, true},
		{"strict passes the node (kubelet probes)", "192.168.77.1", true, true, true},
		{"strict passes loopback", "127.0.0.1", true, true, true},
		{"strict passes packets of established flows", "10.244.2.10", false, true, true},
		{"strict drops an IPv6 source it does not trust", "fd00::5", true, true, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var in, out captureStrictArgs
			in.Src.W = addrWords(netip.MustParseAddr(tt.src))
			if tt.syn {
				in.Syn = 1
			}
			if tt.strict {
				in.Strict = 1
			}
			_, err := objs.TestStrict.Run(&ebpf.RunOptions{Context: in, ContextOut: &out})
			require.NoError(t, err)
			require.Equal(t, tt.pass, out.Verdict == 1)
		})
	}
}

// TestPrivilegedStrictIngress drops a real SYN to a STRICT pod from an
// untrusted source, and lets it through once the source is trusted.
func TestPrivilegedStrictIngress(t *testing.T) {
	testenv.RequirePrivileged(t)
	root, pod := tempCgroup(t)
	d, err := New(Config{CgroupPath: root})
	require.NoError(t, err)
	t.Cleanup(func() { require.NoError(t, d.Close()) })
	podID := cgroupID(t, pod)

	inNetns(t, func() {
		lo, err := netlink.LinkByName("lo")
		require.NoError(t, err)
		for _, a := range []string{"10.1.1.1/32", "10.1.1.2/32"} {
			addr, err := netlink.ParseAddr(a)
			require.NoError(t, err)
			require.NoError(t, netlink.AddrAdd(lo, addr))
		}
		// The listener belongs to the "pod": create it inside the cgroup.
		joinCgroup(t, cgroup2Mount(t), pod)
		lc := net.ListenConfig{}
		lc.SetMultipathTCP(false)
		ln, err := lc.Listen(context.Background(), "tcp4", "10.1.1.1:0")
		require.NoError(t, err)
		defer ln.Close()
		go func() {
			for {
				c, err := ln.Accept()
				if err != nil {
					return
				}
				c.Close()
			}
		}()
		require.NoError(t, os.WriteFile(filepath.Join(cgroup2Mount(t), "cgroup.procs"), []byte(fmt.Sprint(os.Getpid())), 0))

		dial := func() error {
			dl := net.Dialer{Timeout: 300 * time.Millisecond, LocalAddr: &net.TCPAddr{IP: net.ParseIP("10.1.1.2")}}
			c, err := dl.Dial("tcp4", ln.Addr().String())
			if err == nil {
				c.Close()
			}
			return err
		}
		require.NoError(t, d.Sync(State{Members: map[uint64]MemberFlags{podID: MemberMeshed}}))
		require.NoError(t, dial(), "permissive: accepted")

		require.NoError(t, d.Sync(State{Members: map[uint64]MemberFlags{podID: MemberMeshed | MemberStrict}}))
		require.Error(t, dial(), "strict: the SYN from an untrusted source is dropped")
		dropped, _, err := d.StrictStats()
		require.NoError(t, err)
		require.GreaterOrEqual(t, dropped, uint64(1))

		require.NoError(t, d.Sync(State{
			Members:        map[uint64]MemberFlags{podID: MemberMeshed | MemberStrict},
			TrustedSources: []netip.Addr{netip.MustParseAddr("10.1.1.2")},
		}))
		require.NoError(t, dial(), "strict: the node proxy's address is trusted")
	})
}
