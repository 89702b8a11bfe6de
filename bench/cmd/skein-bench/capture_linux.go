package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os/exec"
	"runtime"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/cilium/ebpf"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"

	"github.com/skeinmesh/skein/agent/cgroup"
	"github.com/skeinmesh/skein/bpf/capture"
	"github.com/skeinmesh/skein/bpf/flow"
)

// captureListenPort is where every capture case delivers: a listener in the
// client pod's own network namespace, as a sidecar's would be, so that the
// three cases differ only in how the connect gets there.
const captureListenPort = 15006

// captureCase is one way of getting a connect to the listener.
type captureCase struct {
	Name  string `json:"name"` // none, ebpf, iptables
	Label string `json:"label"`
	Pod   string `json:"pod"`
	// Dial is what the client dials: the listener itself, or the VIP that
	// the capture sends to it.
	Dial   string          `json:"dial"`
	Rounds []connectResult `json:"rounds"`
	// Medians over the rounds.
	ConnsPerSec  float64 `json:"connsPerSec"`
	ConnectP50   float64 `json:"connectP50Us"`
	ConnectP99   float64 `json:"connectP99Us"`
	ExchangeP50  float64 `json:"exchangeP50Us"`
	Unverified   int     `json:"unverified"`
	Errors       int     `json:"errors"`
	ListenerNote string  `json:"listenerNote,omitempty"`
	// KernelNsPerConn is, for the flow case, the kernel's BPF statistics
	// of the flow programs over the rounds divided by the connections
	// made: what following a connection costs in the kernel (the client's
	// socket is followed; the listener runs outside the pod's cgroup).
	KernelNsPerConn float64 `json:"kernelNsPerConn,omitempty"`
	flows           *flow.Flows
}

// capture measures what capturing a connection costs: connects per second
// and connect latency with no capture (dial the listener), with Skein's
// real capture programs (bpf/capture: connect4 rewrites the VIP to the
// listener, sockops records the origin, the listener looks it up), with
// the kernel flow programs (bpf/flow) as well, as the agent runs them, and with
// an iptables REDIRECT in the client's netns (what Istio's sidecar and
// Linkerd's proxy-init install; the listener recovers the origin with
// SO_ORIGINAL_DST). Each case has a pod of its own, so that conntrack and
// the BPF programs exist only where they are measured.
func (h *harness) capture(ctx context.Context) error {
	vip := netip.MustParseAddrPort(captureVIP + ":80")
	cases := []*captureCase{
		{Name: "none", Label: "no capture (dial the listener)", Pod: "plain/cap-none", Dial: fmt.Sprintf("127.0.0.1:%d", captureListenPort)},
		{Name: "ebpf", Label: "Skein eBPF (connect4 + sockops)", Pod: "plain/cap-ebpf", Dial: vip.String()},
		{Name: "ebpf+flow", Label: "Skein eBPF + flow telemetry (bpf/flow)", Pod: "plain/cap-flow", Dial: vip.String()},
		{Name: "iptables", Label: "iptables REDIRECT (nat OUTPUT)", Pod: "plain/cap-ipt", Dial: vip.String()},
	}
	var wg sync.WaitGroup
	defer wg.Wait()
	for _, c := range cases {
		pod := h.lab.Pod(c.Pod)
		var origin func(net.Conn) (netip.AddrPort, error)
		switch c.Name {
		case "ebpf", "ebpf+flow":
			dp, err := capture.New(capture.Config{CgroupPath: pod.Cgroup})
			if err != nil {
				return fmt.Errorf("load capture programs: %w", err)
			}
			defer dp.Close()
			if c.Name == "ebpf+flow" {
				// The agent's flow programs on top, sharing capture's
				// membership and origin maps as the agent loads them.
				maps := dp.Maps()
				f, err := flow.New(flow.Config{CgroupPath: pod.Cgroup, Members: maps["members"], Origins: maps["sock_origin"]})
				if err != nil {
					return fmt.Errorf("load flow programs: %w", err)
				}
				defer f.Close()
				c.flows = f
			}
			id, err := cgroup.ID(pod.Cgroup)
			if err != nil {
				return err
			}
			if err := dp.Configure(capture.Settings{Proxy4: netip.MustParseAddr("127.0.0.1"), ProxyPort: captureListenPort}); err != nil {
				return err
			}
			if err := dp.Sync(capture.State{
				Members:      map[uint64]capture.MemberFlags{id: capture.MemberMeshed},
				Destinations: map[netip.AddrPort]capture.DstKind{vip: capture.DstService},
			}); err != nil {
				return err
			}
			origin = func(c net.Conn) (netip.AddrPort, error) {
				o, err := dp.Lookup(c.RemoteAddr().(*net.TCPAddr).AddrPort(), c.LocalAddr().(*net.TCPAddr).AddrPort())
				return o.Dst, err
			}
			ln, err := h.listenIn(ctx, pod.NetnsPath, &wg, origin, vip)
			if err != nil {
				return err
			}
			defer ln.Close()
			if err := dp.SetListener(listenerFD(ln)); err != nil {
				return err
			}
			continue
		case "iptables":
			out, err := exec.CommandContext(ctx, "nsenter", "--net="+pod.NetnsPath, "iptables", "-w", "-t", "nat", "-A", "OUTPUT",
				"-p", "tcp", "-d", captureVIP, "--dport", "80", "-j", "REDIRECT", "--to-ports", strconv.Itoa(captureListenPort)).CombinedOutput()
			if err != nil {
				return fmt.Errorf("iptables REDIRECT in %s: %w: %s", c.Pod, err, out)
			}
			if v, err := exec.CommandContext(ctx, "iptables", "-V").Output(); err == nil {
				c.ListenerNote = string(v)
			}
			origin = originalDst
		default:
			origin = func(net.Conn) (netip.AddrPort, error) { return vip, nil }
		}
		ln, err := h.listenIn(ctx, pod.NetnsPath, &wg, origin, vip)
		if err != nil {
			return err
		}
		defer ln.Close()
	}
	// The kernel times the BPF programs while statistics are enabled.
	stats, err := ebpf.EnableStats(uint32(unix.BPF_STATS_RUN_TIME))
	if err != nil {
		h.logf("capture: BPF statistics unavailable (%v): no kernel cost per connection", err)
	} else {
		defer stats.Close()
	}
	// Rounds interleave the cases, so that drift hits all alike.
	for round := range 3 {
		for _, c := range cases {
			var r connectResult
			err := h.exec(ctx, time.Minute, c.Pod, &r, "skein-bench", "connect", "--addr", c.Dial,
				"--count", strconv.Itoa(h.cfg.CaptureConns), "--duration", "4s")
			if err != nil {
				return fmt.Errorf("capture %s round %d: %w", c.Name, round, err)
			}
			c.Rounds = append(c.Rounds, r)
		}
	}
	for _, c := range cases {
		var cps, p50, p99, ex []float64
		for _, r := range c.Rounds {
			cps = append(cps, r.ConnsPerSec)
			p50 = append(p50, r.Connect.P50)
			p99 = append(p99, r.Connect.P99)
			ex = append(ex, r.Exchange.P50)
			c.Unverified += r.Unverified
			c.Errors += r.Errors
		}
		c.ConnsPerSec, c.ConnectP50, c.ConnectP99, c.ExchangeP50 = median(cps), median(p50), median(p99), median(ex)
		if c.flows != nil && stats != nil {
			if err := c.kernelCost(); err != nil {
				return err
			}
			h.logf("capture %s: flow programs ran %.0f ns per connection (kernel BPF statistics)", c.Name, c.KernelNsPerConn)
		}
		h.logf("capture %-8s %7.0f conns/s connect p50 %5.1fus p99 %5.1fus exchange p50 %5.1fus (unverified %d, errors %d)",
			c.Name, c.ConnsPerSec, c.ConnectP50, c.ConnectP99, c.ExchangeP50, c.Unverified, c.Errors)
		if c.Unverified > 0 || c.Errors > 0 {
			h.rep.Failures = append(h.rep.Failures, fmt.Sprintf("capture %s: %d connections not verified, %d errors", c.Name, c.Unverified, c.Errors))
		}
	}
	h.rep.Capture = cases
	return nil
}

// kernelCost sets KernelNsPerConn from the flow programs' run time.
func (c *captureCase) kernelCost() error {
	o, err := c.flows.Overhead()
	if err != nil {
		return err
	}
	var ns float64
	for _, p := range o {
		ns += float64(p.RunTime.Nanoseconds())
	}
	conns := 0
	for _, r := range c.Rounds {
		conns += r.Conns
	}
	if conns > 0 {
		c.KernelNsPerConn = ns / float64(conns)
	}
	return nil
}

func median(v []float64) float64 {
	if len(v) == 0 {
		return 0
	}
	s := slices.Clone(v)
	slices.Sort(s)
	return s[len(s)/2]
}

// listenIn opens the capture listener in a pod's network namespace (on a
// thread of this process, which stays outside the pod's cgroup like a node
// proxy) and serves it: per connection, recover the origin, read a byte,
// answer '1' if the origin is the VIP, '0' if not, close.
func (h *harness) listenIn(ctx context.Context, nsPath string, wg *sync.WaitGroup, origin func(net.Conn) (netip.AddrPort, error), want netip.AddrPort) (net.Listener, error) {
	ln, err := inNetns(nsPath, func() (net.Listener, error) {
		var lc net.ListenConfig
		lc.SetMultipathTCP(false) // the liveness SOCKMAP refuses MPTCP
		return lc.Listen(ctx, "tcp4", fmt.Sprintf("0.0.0.0:%d", captureListenPort))
	})
	if err != nil {
		return nil, fmt.Errorf("capture listener in %s: %w", nsPath, err)
	}
	wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				o, err := origin(c)
				ok := err == nil && o == want
				c.SetDeadline(time.Now().Add(2 * time.Second))
				var b [1]byte
				if _, err := c.Read(b[:]); err != nil {
					return
				}
				b[0] = '0'
				if ok {
					b[0] = '1'
				}
				c.Write(b[:])
			}()
		}
	})
	return ln, nil
}

func listenerFD(ln net.Listener) uintptr {
	var fd uintptr
	raw, err := ln.(*net.TCPListener).SyscallConn()
	if err == nil {
		_ = raw.Control(func(f uintptr) { fd = f })
	}
	return fd
}

// originalDst is what an iptables-captured listener does: SO_ORIGINAL_DST.
func originalDst(c net.Conn) (netip.AddrPort, error) {
	raw, err := c.(*net.TCPConn).SyscallConn()
	if err != nil {
		return netip.AddrPort{}, err
	}
	var addr netip.AddrPort
	var serr error
	err = raw.Control(func(fd uintptr) {
		mreq, err := unix.GetsockoptIPv6Mreq(int(fd), unix.SOL_IP, unix.SO_ORIGINAL_DST)
		if err != nil {
			serr = err
			return
		}
		// struct sockaddr_in: family(2) port(2, big endian) addr(4).
		m := mreq.Multiaddr
		port := uint16(m[2])<<8 | uint16(m[3])
		addr = netip.AddrPortFrom(netip.AddrFrom4([4]byte{m[4], m[5], m[6], m[7]}), port)
	})
	return addr, errors.Join(err, serr)
}

// inNetns runs fn on a locked OS thread inside the namespace at nsPath and
// puts the thread back; a thread that cannot go back is left locked, so
// the runtime discards it.
func inNetns[T any](nsPath string, fn func() (T, error)) (T, error) {
	type res struct {
		v   T
		err error
	}
	ch := make(chan res, 1)
	go func() {
		runtime.LockOSThread()
		var zero T
		orig, err := netns.Get()
		if err != nil {
			ch <- res{zero, err}
			return
		}
		defer orig.Close()
		target, err := netns.GetFromPath(nsPath)
		if err != nil {
			ch <- res{zero, err}
			return
		}
		defer target.Close()
		if err := netns.Set(target); err != nil {
			ch <- res{zero, err}
			return
		}
		v, err := fn()
		if netns.Set(orig) == nil {
			runtime.UnlockOSThread()
		}
		ch <- res{v, err}
	}()
	r := <-ch
	return r.v, r.err
}
