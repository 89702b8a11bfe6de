//go:build linux

package capture

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io/fs"
	"net/netip"
	"os"
	"path/filepath"
	"sort"
	"sync"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"
)

// Config says where to attach and pin.
type Config struct {
	// CgroupPath is the cgroup v2 directory that contains every pod cgroup
	// of the node. Required.
	CgroupPath string
	// PinPath is the bpffs directory under which maps and links are pinned
	// and from which a restarting agent adopts them. Empty: nothing is
	// pinned and everything is detached on Close (tests).
	PinPath string
	// Events, if set, replaces the object's trace ring buffer so that every
	// BPF object of the agent writes to one ring.
	Events *ebpf.Map
	// TraceConfig, if set, replaces the object's trace filter array.
	TraceConfig *ebpf.Map
	// TraceLost, if set, replaces the object's lost-event counter.
	TraceLost *ebpf.Map
}

// Datapath owns the capture programs, their maps and their links.
type Datapath struct {
	cfg Config

	mu     sync.Mutex
	objs   objects
	links  map[string]link.Link
	closed bool
}

// objects are the parts of the generated collection the agent loads: the
// test-only program is left out.
type objects struct {
	SkeinConnect4     *ebpf.Program `ebpf:"skein_connect4"`
	SkeinConnect6     *ebpf.Program `ebpf:"skein_connect6"`
	SkeinGetpeername4 *ebpf.Program `ebpf:"skein_getpeername4"`
	SkeinGetpeername6 *ebpf.Program `ebpf:"skein_getpeername6"`
	SkeinSockops      *ebpf.Program `ebpf:"skein_sockops"`
	SkeinIngress      *ebpf.Program `ebpf:"skein_ingress"`

	captureMaps
}

func (o *objects) Close() error {
	return errors.Join(closeAll(o.SkeinConnect4, o.SkeinConnect6, o.SkeinGetpeername4,
		o.SkeinGetpeername6, o.SkeinSockops, o.SkeinIngress), o.captureMaps.Close())
}

func closeAll(progs ...*ebpf.Program) error {
	var errs []error
	for _, p := range progs {
		if p != nil {
			errs = append(errs, p.Close())
		}
	}
	return errors.Join(errs...)
}

// attachment says where each program goes.
type attachment struct {
	name   string
	attach ebpf.AttachType
	prog   func(*objects) *ebpf.Program
}

var attachments = []attachment{
	{"skein_connect4", ebpf.AttachCGroupInet4Connect, func(o *objects) *ebpf.Program { return o.SkeinConnect4 }},
	{"skein_connect6", ebpf.AttachCGroupInet6Connect, func(o *objects) *ebpf.Program { return o.SkeinConnect6 }},
	{"skein_getpeername4", ebpf.AttachCgroupInet4GetPeername, func(o *objects) *ebpf.Program { return o.SkeinGetpeername4 }},
	{"skein_getpeername6", ebpf.AttachCgroupInet6GetPeername, func(o *objects) *ebpf.Program { return o.SkeinGetpeername6 }},
	{"skein_sockops", ebpf.AttachCGroupSockOps, func(o *objects) *ebpf.Program { return o.SkeinSockops }},
	{"skein_ingress", ebpf.AttachCGroupInetIngress, func(o *objects) *ebpf.Program { return o.SkeinIngress }},
}

// pinnedMaps are the maps whose state outlives the agent (see the package doc).
var pinnedMaps = []string{
	"capture_cfg", "members", "excluded_ports", "mesh_dsts", "proxy_listener",
	"sock_origin", "orig_dst", "verdicts", "trusted_srcs", "strict_stats",
}

// New loads the capture programs and attaches them to cfg.CgroupPath, or,
// when pinned links exist under cfg.PinPath, swaps the new programs into them.
func New(cfg Config) (*Datapath, error) {
	if cfg.CgroupPath == "" {
		return nil, errors.New("capture config: CgroupPath is required")
	}
	spec, err := loadCapture()
	if err != nil {
		return nil, fmt.Errorf("load capture spec: %w", err)
	}
	d := &Datapath{cfg: cfg, links: make(map[string]link.Link)}
	if err := d.load(spec); err != nil {
		return nil, err
	}
	if err := d.attach(); err != nil {
		return nil, errors.Join(err, d.Close())
	}
	return d, nil
}

func (d *Datapath) mapPinDir() string  { return filepath.Join(d.cfg.PinPath, "maps") }
func (d *Datapath) linkPinDir() string { return filepath.Join(d.cfg.PinPath, "links") }

func (d *Datapath) load(spec *ebpf.CollectionSpec) error {
	opts := &ebpf.CollectionOptions{MapReplacements: map[string]*ebpf.Map{}}
	if d.cfg.Events != nil {
		opts.MapReplacements["events"] = d.cfg.Events
	}
	if d.cfg.TraceConfig != nil {
		opts.MapReplacements["trace_cfg"] = d.cfg.TraceConfig
	}
	if d.cfg.TraceLost != nil {
		opts.MapReplacements["trace_lost"] = d.cfg.TraceLost
	}
	if d.cfg.PinPath != "" {
		if err := os.MkdirAll(d.mapPinDir(), 0o700); err != nil {
			return fmt.Errorf("create pin dir: %w", err)
		}
		opts.Maps.PinPath = d.mapPinDir()
		for _, name := range pinnedMaps {
			spec.Maps[name].Pinning = ebpf.PinByName
		}
	}
	err := spec.LoadAndAssign(&d.objs, opts)
	if errors.Is(err, ebpf.ErrMapIncompatible) && d.cfg.PinPath != "" {
		// A new version changed a map's layout: drop the old pins (the
		// agent repopulates policy maps; old connections lose their
		// origin) and load afresh.
		for _, name := range pinnedMaps {
			_ = os.Remove(filepath.Join(d.mapPinDir(), name))
		}
		err = spec.LoadAndAssign(&d.objs, opts)
	}
	if err != nil {
		return fmt.Errorf("load capture objects: %w", err)
	}
	return nil
}

func (d *Datapath) attach() error {
	if d.cfg.PinPath != "" {
		if err := os.MkdirAll(d.linkPinDir(), 0o700); err != nil {
			return fmt.Errorf("create pin dir: %w", err)
		}
	}
	for _, a := range attachments {
		prog := a.prog(&d.objs)
		pin := filepath.Join(d.linkPinDir(), a.name)
		if d.cfg.PinPath != "" {
			l, err := link.LoadPinnedLink(pin, nil)
			if err == nil {
				if err := l.Update(prog); err != nil {
					_ = l.Close()
					return fmt.Errorf("update pinned link %s: %w", a.name, err)
				}
				d.links[a.name] = l
				continue
			}
			if !errors.Is(err, fs.ErrNotExist) {
				return fmt.Errorf("load pinned link %s: %w", a.name, err)
			}
		}
		l, err := link.AttachCgroup(link.CgroupOptions{Path: d.cfg.CgroupPath, Attach: a.attach, Program: prog})
		if err != nil {
			return fmt.Errorf("attach %s to %s: %w", a.name, d.cfg.CgroupPath, err)
		}
		d.links[a.name] = l
		if d.cfg.PinPath != "" {
			if err := l.Pin(pin); err != nil {
				return fmt.Errorf("pin link %s: %w", a.name, err)
			}
		}
	}
	return nil
}

// Configure writes the proxy's coordinates and the failure mode.
func (d *Datapath) Configure(s Settings) error {
	var c captureCaptureConfig
	if s.Proxy4.IsValid() {
		if !s.Proxy4.Is4() {
			return fmt.Errorf("configure capture: Proxy4 %s is not an IPv4 address", s.Proxy4)
		}
		c.Proxy4.W = addrWords(s.Proxy4)
	}
	if s.Proxy6.IsValid() {
		if !s.Proxy6.Is6() || s.Proxy6.Is4In6() {
			return fmt.Errorf("configure capture: Proxy6 %s is not an IPv6 address", s.Proxy6)
		}
		c.Proxy6.W = addrWords(s.Proxy6)
	}
	c.ProxyPort = s.ProxyPort
	if s.FailClosed {
		c.Flags |= 1
	}
	if err := d.objs.CaptureCfg.Update(uint32(0), &c, ebpf.UpdateAny); err != nil {
		return fmt.Errorf("update capture_cfg: %w", err)
	}
	return nil
}

// SetListener registers the proxy's listening socket as the liveness entry.
// The kernel removes it when the socket closes.
func (d *Datapath) SetListener(fd uintptr) error {
	if err := d.objs.ProxyListener.Update(uint32(0), uint64(fd), ebpf.UpdateAny); err != nil {
		return fmt.Errorf("update proxy_listener: %w", err)
	}
	return nil
}

// ClearListener removes the liveness entry, so that connects fail open or
// closed at once instead of reaching a proxy that is shutting down.
func (d *Datapath) ClearListener() error {
	err := d.objs.ProxyListener.Delete(uint32(0))
	if err != nil && !errors.Is(err, ebpf.ErrKeyNotExist) {
		return fmt.Errorf("delete proxy_listener: %w", err)
	}
	return nil
}

// ListenerCookie returns the socket cookie of the registered listener, and
// false if none is registered (no proxy is accepting).
func (d *Datapath) ListenerCookie() (uint64, bool) {
	var cookie uint64
	if err := d.objs.ProxyListener.Lookup(uint32(0), &cookie); err != nil {
		return 0, false
	}
	return cookie, true
}

// Sync makes the policy maps equal to s.
func (d *Datapath) Sync(s State) error {
	var errs []error

	members := make(map[uint64]captureMember, len(s.Members))
	for id, flags := range s.Members {
		members[id] = captureMember{Flags: uint32(flags)}
	}
	errs = append(errs, syncMap(d.objs.Members, members))

	trusted := make(map[captureSkeinAddr]uint8, len(s.TrustedSources))
	for _, a := range s.TrustedSources {
		trusted[captureSkeinAddr{W: addrWords(a)}] = 1
	}
	errs = append(errs, syncMap(d.objs.TrustedSrcs, trusted))

	excluded := make(map[captureExcludedKey]uint8)
	for id, ports := range s.ExcludedPorts {
		for _, p := range ports {
			excluded[captureExcludedKey{CgroupId: id, Port: p}] = 1
		}
	}
	errs = append(errs, syncMap(d.objs.ExcludedPorts, excluded))

	dsts := make(map[captureDstKey]captureDstInfo, len(s.Destinations))
	for ap, kind := range s.Destinations {
		var k captureDstKey
		k.Addr.W = addrWords(ap.Addr())
		k.Port = ap.Port()
		dsts[k] = captureDstInfo{Flags: uint32(kind)}
	}
	errs = append(errs, syncMap(d.objs.MeshDsts, dsts))
	return errors.Join(errs...)
}

// syncMap deletes the keys of m that want lacks and writes those it has.
func syncMap[K comparable, V comparable](m *ebpf.Map, want map[K]V) error {
	var (
		k     K
		v     V
		stale []K
	)
	it := m.Iterate()
	for it.Next(&k, &v) {
		if w, ok := want[k]; !ok {
			stale = append(stale, k)
		} else if w == v {
			delete(want, k) // already right
		}
	}
	if err := it.Err(); err != nil {
		return fmt.Errorf("iterate %s: %w", m, err)
	}
	for _, k := range stale {
		if err := m.Delete(k); err != nil && !errors.Is(err, ebpf.ErrKeyNotExist) {
			return fmt.Errorf("delete from %s: %w", m, err)
		}
	}
	for k, v := range want {
		if err := m.Put(k, v); err != nil {
			return fmt.Errorf("update %s: %w", m, err)
		}
	}
	return nil
}

// Lookup returns the origin of a connection accepted by the proxy, given the
// connection's remote (the pod) and local (the proxy) addresses, and forgets
// it. Returns ErrNotFound for a connection that was not captured.
func (d *Datapath) Lookup(remote, local netip.AddrPort) (Origin, error) {
	var k captureConnKey
	k.Src.W = addrWords(remote.Addr())
	k.Dst.W = addrWords(local.Addr())
	k.Sport = remote.Port()
	k.Dport = local.Port()
	var o captureOrigin
	if err := d.objs.OrigDst.LookupAndDelete(&k, &o); err != nil {
		if errors.Is(err, ebpf.ErrKeyNotExist) {
			return Origin{}, ErrNotFound
		}
		return Origin{}, fmt.Errorf("look up orig_dst: %w", err)
	}
	return Origin{
		Dst:      netip.AddrPortFrom(wordsAddr(o.Addr.W), o.Port),
		CgroupID: o.CgroupId,
	}, nil
}

// Verdicts returns how many connects got each verdict, summed over CPUs.
func (d *Datapath) Verdicts() (map[Verdict]uint64, error) {
	out := make(map[Verdict]uint64)
	for v := VerdictRedirect; v < verdictMax; v++ {
		var perCPU []uint64
		if err := d.objs.Verdicts.Lookup(uint32(v), &perCPU); err != nil {
			return nil, fmt.Errorf("look up verdicts: %w", err)
		}
		var sum uint64
		for _, n := range perCPU {
			sum += n
		}
		out[v] = sum
	}
	return out, nil
}

// StrictStats returns how many new inbound connections STRICT mode dropped
// and passed, summed over CPUs.
func (d *Datapath) StrictStats() (dropped, passed uint64, err error) {
	for i, out := range []*uint64{&dropped, &passed} {
		var perCPU []uint64
		if err := d.objs.StrictStats.Lookup(uint32(i), &perCPU); err != nil {
			return 0, 0, fmt.Errorf("look up strict_stats: %w", err)
		}
		for _, n := range perCPU {
			*out += n
		}
	}
	return dropped, passed, nil
}

// TraceLost returns how many trace events found the ring buffer full,
// summed over CPUs.
func (d *Datapath) TraceLost() (uint64, error) {
	var perCPU []uint64
	if err := d.objs.TraceLost.Lookup(uint32(0), &perCPU); err != nil {
		return 0, fmt.Errorf("look up trace_lost: %w", err)
	}
	var n uint64
	for _, v := range perCPU {
		n += v
	}
	return n, nil
}

// ProgramInfo describes one attached program.
type ProgramInfo struct {
	Name   string
	ID     ebpf.ProgramID
	LinkID link.ID
	Pinned bool
}

// Programs lists the attached programs, sorted by name.
func (d *Datapath) Programs() []ProgramInfo {
	d.mu.Lock()
	defer d.mu.Unlock()
	var out []ProgramInfo
	for _, a := range attachments {
		l, ok := d.links[a.name]
		if !ok {
			continue
		}
		pi := ProgramInfo{Name: a.name, Pinned: d.cfg.PinPath != ""}
		if info, err := a.prog(&d.objs).Info(); err == nil {
			pi.ID, _ = info.ID()
		}
		if info, err := l.Info(); err == nil {
			pi.LinkID = info.ID
		}
		out = append(out, pi)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

// Maps returns the datapath's maps by name, for fill-ratio metrics and dumps.
func (d *Datapath) Maps() map[string]*ebpf.Map {
	return map[string]*ebpf.Map{
		"capture_cfg":    d.objs.CaptureCfg,
		"members":        d.objs.Members,
		"excluded_ports": d.objs.ExcludedPorts,
		"mesh_dsts":      d.objs.MeshDsts,
		"proxy_listener": d.objs.ProxyListener,
		"sock_origin":    d.objs.SockOrigin,
		"orig_dst":       d.objs.OrigDst,
		"verdicts":       d.objs.Verdicts,
		"trusted_srcs":   d.objs.TrustedSrcs,
		"strict_stats":   d.objs.StrictStats,
	}
}

// Close releases the agent's handles. Pinned links and maps stay, so capture
// goes on (failing open or closed while no proxy listens) until a new agent
// adopts them; without a pin path everything is detached. Idempotent.
func (d *Datapath) Close() error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.closed {
		return nil
	}
	d.closed = true
	var errs []error
	for name, l := range d.links {
		if err := l.Close(); err != nil {
			errs = append(errs, fmt.Errorf("close link %s: %w", name, err))
		}
	}
	d.links = nil
	errs = append(errs, d.objs.Close())
	return errors.Join(errs...)
}

// Cleanup removes everything pinned under pinPath, which detaches the
// programs once no process holds them. Missing pins are not an error.
func Cleanup(pinPath string) error {
	if pinPath == "" {
		return nil
	}
	if err := os.RemoveAll(pinPath); err != nil {
		return fmt.Errorf("remove pins %s: %w", pinPath, err)
	}
	return nil
}

// addrWords lays an address out as capture.c's struct skein_addr: 16 bytes
// in network order, IPv4 as IPv4-mapped IPv6.
func addrWords(a netip.Addr) [4]uint32 {
	b := a.As16()
	var w [4]uint32
	for i := range w {
		w[i] = binary.NativeEndian.Uint32(b[i*4:])
	}
	return w
}

func wordsAddr(w [4]uint32) netip.Addr {
	var b [16]byte
	for i := range w {
		binary.NativeEndian.PutUint32(b[i*4:], w[i])
	}
	return netip.AddrFrom16(b).Unmap()
}

// Entry is one map entry, decoded for people.
type Entry struct {
	Key, Value string
}

// Dump returns the entries of one of the datapath's maps with their keys
// and values decoded; name is a key of Maps(). Per-CPU values are summed.
// Socket storage and the SOCKMAP cannot be listed by key and return the
// entry count only.
func (d *Datapath) Dump(name string) ([]Entry, error) {
	var out []Entry
	switch name {
	case "members":
		var k uint64
		var v captureMember
		it := d.objs.Members.Iterate()
		for it.Next(&k, &v) {
			out = append(out, Entry{fmt.Sprintf("cgroup %d", k), memberString(MemberFlags(v.Flags))})
		}
		return out, it.Err()
	case "excluded_ports":
		var k captureExcludedKey
		var v uint8
		it := d.objs.ExcludedPorts.Iterate()
		for it.Next(&k, &v) {
			out = append(out, Entry{fmt.Sprintf("cgroup %d port %d", k.CgroupId, k.Port), "excluded"})
		}
		return out, it.Err()
	case "mesh_dsts":
		var k captureDstKey
		var v captureDstInfo
		it := d.objs.MeshDsts.Iterate()
		for it.Next(&k, &v) {
			kind := "service"
			if DstKind(v.Flags) == DstPod {
				kind = "pod (any port)"
			}
			out = append(out, Entry{netip.AddrPortFrom(wordsAddr(k.Addr.W), k.Port).String(), kind})
		}
		return out, it.Err()
	case "orig_dst":
		var k captureConnKey
		var v captureOrigin
		it := d.objs.OrigDst.Iterate()
		for it.Next(&k, &v) {
			out = append(out, Entry{
				netip.AddrPortFrom(wordsAddr(k.Src.W), k.Sport).String() + " -> " + netip.AddrPortFrom(wordsAddr(k.Dst.W), k.Dport).String(),
				fmt.Sprintf("dialed %s from cgroup %d", netip.AddrPortFrom(wordsAddr(v.Addr.W), v.Port), v.CgroupId),
			})
		}
		return out, it.Err()
	case "trusted_srcs":
		var k captureSkeinAddr
		var v uint8
		it := d.objs.TrustedSrcs.Iterate()
		for it.Next(&k, &v) {
			out = append(out, Entry{wordsAddr(k.W).String(), "trusted (STRICT)"})
		}
		return out, it.Err()
	case "capture_cfg":
		var c captureCaptureConfig
		if err := d.objs.CaptureCfg.Lookup(uint32(0), &c); err != nil {
			return nil, err
		}
		mode := "fail-open"
		if c.Flags&1 != 0 {
			mode = "fail-closed"
		}
		return []Entry{{"0", fmt.Sprintf("proxy %s / %s port %d, %s", wordsAddr(c.Proxy4.W), wordsAddr(c.Proxy6.W), c.ProxyPort, mode)}}, nil
	case "verdicts":
		v, err := d.Verdicts()
		if err != nil {
			return nil, err
		}
		for verdict := VerdictRedirect; verdict < verdictMax; verdict++ {
			out = append(out, Entry{verdict.String(), fmt.Sprint(v[verdict])})
		}
		return out, nil
	case "strict_stats":
		dropped, passed, err := d.StrictStats()
		if err != nil {
			return nil, err
		}
		return []Entry{{"dropped", fmt.Sprint(dropped)}, {"passed", fmt.Sprint(passed)}}, nil
	case "proxy_listener":
		if cookie, ok := d.ListenerCookie(); ok {
			return []Entry{{"0", fmt.Sprintf("listening socket, cookie %d", cookie)}}, nil
		}
		return []Entry{}, nil
	case "sock_origin":
		return nil, fmt.Errorf("%s is socket storage: its entries live on the sockets and cannot be listed", name)
	}
	return nil, fmt.Errorf("no map %q: want one of capture_cfg, members, excluded_ports, mesh_dsts, orig_dst, verdicts, trusted_srcs, strict_stats, proxy_listener", name)
}

func memberString(f MemberFlags) string {
	switch {
	case f&MemberMeshed == 0:
		return "known, not meshed"
	case f&MemberStrict != 0:
		return "meshed, STRICT"
	}
	return "meshed, PERMISSIVE"
}
