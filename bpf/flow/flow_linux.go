//go:build linux

package flow

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/netip"
	"os"
	"path/filepath"
	"sort"
	"sync"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"
	"golang.org/x/sys/unix"
)

// Config says where to attach and pin, and which of the agent's maps to
// share.
type Config struct {
	// CgroupPath is the cgroup v2 directory that contains every pod cgroup
	// of the node. Required.
	CgroupPath string
	// PinPath is the bpffs directory under which maps and links are pinned
	// and from which a restarting agent adopts them. Empty: nothing is
	// pinned and everything is detached on Close (tests).
	PinPath string
	// Members is the capture object's members map (pod cgroup id -> flags):
	// flows are followed only for the cgroups it marks meshed. Required.
	Members *ebpf.Map
	// Origins, if set, is the capture object's sock_origin storage: outbound
	// flows that capture redirected are then keyed by the destination the app
	// dialed instead of the node proxy's address.
	Origins *ebpf.Map
	// Events, if set, replaces the object's trace ring buffer so that every
	// BPF object of the agent writes to one ring.
	Events *ebpf.Map
	// TraceConfig, if set, replaces the object's trace filter array.
	TraceConfig *ebpf.Map
	// TraceLost, if set, replaces the object's lost-event counter.
	TraceLost *ebpf.Map
	// MaxAggregates bounds the aggregate map (keys); 0 means 4096. Memory
	// is allocated per key and per CPU, about 500 bytes each.
	MaxAggregates int
	// MaxLive bounds the map of live flows; 0 means 32768.
	MaxLive int
	// RTTSampleInterval is how often at most a flow adds a sample to the
	// RTT histogram (and its bytes to the aggregate) from the RTT callback;
	// 0 means one second.
	RTTSampleInterval time.Duration

	// resetHooks forces a flavour of the reset hooks (tests).
	resetHooks resetFlavour
}

type resetFlavour int

const (
	resetAuto    resetFlavour = iota // tp_btf, else classic tracepoints
	resetClassic                     // classic tracepoints only
	resetNone                        // no reset hooks
)

// Default sizes.
const (
	defaultMaxAggregates = 4096
	defaultMaxLive       = 32768
)

// Flows owns the flow programs, their maps and their links.
type Flows struct {
	cfg Config

	mu      sync.Mutex
	maps    flowMaps
	progs   map[string]*ebpf.Program
	links   map[string]link.Link
	hooks   []ProgramInfo
	refresh *link.Iter
	closed  bool
}

// hook is one attachment point of the package.
type hook struct {
	prog string // program name in flow.c
	name string // where it runs
}

var (
	hookSockops      = hook{"skein_flow_sockops", "sockops"}
	hookRstRcvBTF    = hook{"skein_flow_rst_rcv", "tp_btf/tcp_receive_reset"}
	hookRstSentBTF   = hook{"skein_flow_rst_sent", "tp_btf/tcp_send_reset"}
	hookRstRcvClass  = hook{"skein_flow_rst_rcv_tp", "tracepoint/tcp/tcp_receive_reset"}
	hookRstSentClass = hook{"skein_flow_rst_sent_tp", "tracepoint/tcp/tcp_send_reset"}
	hookRefresh      = hook{"skein_flow_refresh", "iter/bpf_sk_storage_map"}
)

// pinnedMaps are the maps whose state outlives the agent (see the package
// doc). The shared maps (members, sock_origin, the trace maps) belong to
// their owners.
var pinnedMaps = []string{"flow_stats", "flow_sk", "flow_live", "flow_errors"}

// sharedMaps are the maps the agent may pass in instead of the object's own.
func (c *Config) sharedMaps() map[string]*ebpf.Map {
	m := map[string]*ebpf.Map{"members": c.Members}
	for name, mp := range map[string]*ebpf.Map{
		"sock_origin": c.Origins, "events": c.Events, "trace_cfg": c.TraceConfig, "trace_lost": c.TraceLost,
	} {
		if mp != nil {
			m[name] = mp
		}
	}
	return m
}

func (c *Config) validate() error {
	var errs []error
	if c.CgroupPath == "" {
		errs = append(errs, errors.New("flow config: CgroupPath is required (the cgroup v2 directory of the node's pods)"))
	}
	if c.Members == nil {
		errs = append(errs, ErrNoMembers)
	}
	if c.MaxAggregates < 0 {
		errs = append(errs, fmt.Errorf("flow config: MaxAggregates %d is negative", c.MaxAggregates))
	}
	if c.MaxLive < 0 {
		errs = append(errs, fmt.Errorf("flow config: MaxLive %d is negative", c.MaxLive))
	}
	if c.RTTSampleInterval < 0 {
		errs = append(errs, fmt.Errorf("flow config: RTTSampleInterval %s is negative", c.RTTSampleInterval))
	}
	return errors.Join(errs...)
}

// New loads the flow programs and attaches them to cfg.CgroupPath, or, when
// pinned links exist under cfg.PinPath, swaps the new sockops program into
// its link and replaces the reset hooks. Hooks that this kernel lacks (BTF
// tracepoints, tracefs, the storage iterator) are left out and reported by
// Programs; only sockops is required.
func New(cfg Config) (*Flows, error) {
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	spec, err := loadFlow()
	if err != nil {
		return nil, fmt.Errorf("load flow spec: %w", err)
	}
	if err := configure(spec, &cfg); err != nil {
		return nil, err
	}
	f := &Flows{cfg: cfg, progs: make(map[string]*ebpf.Program), links: make(map[string]link.Link)}
	if err := f.loadMaps(spec); err != nil {
		return nil, errors.Join(err, f.Close())
	}
	// The reset hooks go first: their flavour decides how sockops keeps
	// closed flows (keep_closed).
	classic, err := f.attachResets(spec)
	if err != nil {
		return nil, errors.Join(err, f.Close())
	}
	if classic {
		if err := spec.Variables["keep_closed"].Set(uint8(1)); err != nil {
			return nil, errors.Join(fmt.Errorf("set keep_closed: %w", err), f.Close())
		}
	}
	if err := f.attachSockops(spec); err != nil {
		return nil, errors.Join(err, f.Close())
	}
	f.attachRefresh(spec)
	return f, nil
}

// configure applies the sizes and the sampling interval to spec.
func configure(spec *ebpf.CollectionSpec, cfg *Config) error {
	aggs, live := cfg.MaxAggregates, cfg.MaxLive
	if aggs == 0 {
		aggs = defaultMaxAggregates
	}
	if live == 0 {
		live = defaultMaxLive
	}
	spec.Maps["flow_stats"].MaxEntries = uint32(aggs)
	spec.Maps["flow_live"].MaxEntries = uint32(live)
	interval := cfg.RTTSampleInterval
	if interval == 0 {
		interval = time.Second
	}
	if err := spec.Variables["rtt_sample_ns"].Set(uint64(interval.Nanoseconds())); err != nil {
		return fmt.Errorf("set rtt_sample_ns: %w", err)
	}
	return nil
}

func (f *Flows) mapPinDir() string  { return filepath.Join(f.cfg.PinPath, "maps") }
func (f *Flows) linkPinDir() string { return filepath.Join(f.cfg.PinPath, "links") }

func (f *Flows) loadMaps(spec *ebpf.CollectionSpec) error {
	opts := &ebpf.CollectionOptions{MapReplacements: f.cfg.sharedMaps()}
	if f.cfg.PinPath != "" {
		if err := os.MkdirAll(f.mapPinDir(), 0o700); err != nil {
			return fmt.Errorf("create pin dir: %w", err)
		}
		opts.Maps.PinPath = f.mapPinDir()
		for _, name := range pinnedMaps {
			spec.Maps[name].Pinning = ebpf.PinByName
		}
	}
	err := spec.LoadAndAssign(&f.maps, opts)
	if errors.Is(err, ebpf.ErrMapIncompatible) && f.cfg.PinPath != "" {
		// A new version changed a map's layout or size: drop the old pins
		// and start afresh. Counters restart from zero; flows open across
		// the upgrade are no longer followed.
		for _, name := range pinnedMaps {
			_ = os.Remove(filepath.Join(f.mapPinDir(), name))
		}
		err = spec.LoadAndAssign(&f.maps, opts)
	}
	if err != nil {
		return fmt.Errorf("load flow maps: %w", err)
	}
	return nil
}

// allMaps names every map of the object as loaded, for loading programs
// against them.
func (f *Flows) allMaps() map[string]*ebpf.Map {
	return map[string]*ebpf.Map{
		"events":      f.maps.Events,
		"flow_closed": f.maps.FlowClosed,
		"flow_errors": f.maps.FlowErrors,
		"flow_live":   f.maps.FlowLive,
		"flow_sk":     f.maps.FlowSk,
		"flow_stats":  f.maps.FlowStats,
		"members":     f.maps.Members,
		"sock_origin": f.maps.SockOrigin,
		"trace_cfg":   f.maps.TraceCfg,
		"trace_lost":  f.maps.TraceLost,
	}
}

// loadProgram loads one program against the already loaded maps, so that a
// program this kernel refuses does not keep the others from loading.
func (f *Flows) loadProgram(spec *ebpf.CollectionSpec, name string) (*ebpf.Program, error) {
	one := spec.Copy()
	for n := range one.Programs {
		if n != name {
			delete(one.Programs, n)
		}
	}
	for _, n := range pinnedMaps {
		one.Maps[n].Pinning = ebpf.PinNone // replaced below; no pin path here
	}
	coll, err := ebpf.NewCollectionWithOptions(one, ebpf.CollectionOptions{MapReplacements: f.allMaps()})
	if err != nil {
		return nil, fmt.Errorf("load %s: %w", name, err)
	}
	defer coll.Close()
	prog := coll.DetachProgram(name)
	if prog == nil {
		return nil, fmt.Errorf("load %s: program not in collection", name)
	}
	f.progs[name] = prog
	return prog, nil
}

func (f *Flows) linkPin(prog string) string { return filepath.Join(f.linkPinDir(), prog) }

func (f *Flows) ensureLinkDir() error {
	if f.cfg.PinPath == "" {
		return nil
	}
	if err := os.MkdirAll(f.linkPinDir(), 0o700); err != nil {
		return fmt.Errorf("create pin dir: %w", err)
	}
	return nil
}

// attachSockops attaches the sockops program, or swaps it into the pinned
// link atomically, so that no callback is missed and none runs twice.
func (f *Flows) attachSockops(spec *ebpf.CollectionSpec) error {
	prog, err := f.loadProgram(spec, hookSockops.prog)
	if err != nil {
		return err
	}
	if err := f.ensureLinkDir(); err != nil {
		return err
	}
	pin := f.linkPin(hookSockops.prog)
	if f.cfg.PinPath != "" {
		l, err := link.LoadPinnedLink(pin, nil)
		if err == nil {
			if err := l.Update(prog); err != nil {
				_ = l.Close()
				return fmt.Errorf("update pinned link %s: %w", hookSockops.prog, err)
			}
			f.addLink(hookSockops, l, true)
			return nil
		}
		if !errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("load pinned link %s: %w", hookSockops.prog, err)
		}
	}
	l, err := link.AttachCgroup(link.CgroupOptions{Path: f.cfg.CgroupPath, Attach: ebpf.AttachCGroupSockOps, Program: prog})
	if err != nil {
		return fmt.Errorf("attach %s to %s: %w", hookSockops.prog, f.cfg.CgroupPath, err)
	}
	pinned := false
	if f.cfg.PinPath != "" {
		if err := l.Pin(pin); err != nil {
			_ = l.Close()
			return fmt.Errorf("pin link %s: %w", hookSockops.prog, err)
		}
		pinned = true
	}
	f.addLink(hookSockops, l, pinned)
	return nil
}

func (f *Flows) addLink(h hook, l link.Link, pinned bool) {
	f.links[h.prog] = l
	f.hooks = append(f.hooks, ProgramInfo{Name: h.prog, Hook: h.name, Pinned: pinned})
}

func (f *Flows) addMissing(h hook, why string) {
	f.hooks = append(f.hooks, ProgramInfo{Name: h.prog, Hook: h.name, Missing: why})
}

// attachResets attaches the reset hooks: BTF tracepoints, else classic
// tracepoints, else none (the reset counters then stay zero, and Programs
// says why). Tracing links cannot be updated in place, so a pinned one of an
// earlier agent is detached first: resets in the gap of a few microseconds
// go uncounted rather than counted twice. Returns whether a classic
// tracepoint is in use.
func (f *Flows) attachResets(spec *ebpf.CollectionSpec) (classic bool, _ error) {
	if err := f.ensureLinkDir(); err != nil {
		return false, err
	}
	if f.cfg.PinPath != "" {
		for _, h := range []hook{hookRstRcvBTF, hookRstSentBTF, hookRstRcvClass, hookRstSentClass} {
			if err := os.Remove(f.linkPin(h.prog)); err != nil && !errors.Is(err, fs.ErrNotExist) {
				return false, fmt.Errorf("remove pinned link %s: %w", h.prog, err)
			}
		}
	}
	pairs := []struct {
		btf, classic hook
		tracepoint   string
	}{
		{hookRstRcvBTF, hookRstRcvClass, "tcp_receive_reset"},
		{hookRstSentBTF, hookRstSentClass, "tcp_send_reset"},
	}
	for _, p := range pairs {
		var btfErr error = errors.New("disabled")
		if f.cfg.resetHooks == resetAuto {
			btfErr = f.attachBTF(spec, p.btf)
			if btfErr == nil {
				continue
			}
		}
		var classicErr error = errors.New("disabled")
		if f.cfg.resetHooks != resetNone {
			classicErr = f.attachClassic(spec, p.classic, p.tracepoint)
			if classicErr == nil {
				classic = true
				continue
			}
		}
		f.addMissing(p.btf, btfErr.Error())
		f.addMissing(p.classic, classicErr.Error())
	}
	return classic, nil
}

func (f *Flows) attachBTF(spec *ebpf.CollectionSpec, h hook) error {
	prog, err := f.loadProgram(spec, h.prog)
	if err != nil {
		return err
	}
	l, err := link.AttachTracing(link.TracingOptions{Program: prog, AttachType: ebpf.AttachTraceRawTp})
	if err != nil {
		f.dropProgram(h.prog)
		return fmt.Errorf("attach %s: %w", h.name, err)
	}
	f.addLink(h, l, f.pinLink(h, l))
	return nil
}

func (f *Flows) attachClassic(spec *ebpf.CollectionSpec, h hook, tracepoint string) error {
	prog, err := f.loadProgram(spec, h.prog)
	if err != nil {
		return err
	}
	l, err := link.Tracepoint("tcp", tracepoint, prog, nil)
	if err != nil {
		f.dropProgram(h.prog)
		return fmt.Errorf("attach %s (needs tracefs): %w", h.name, err)
	}
	f.addLink(h, l, f.pinLink(h, l))
	return nil
}

// pinLink pins a tracing link when there is a pin path and the link can be
// pinned (perf-event links of old kernels cannot); an unpinned one detaches
// when the agent exits.
func (f *Flows) pinLink(h hook, l link.Link) bool {
	if f.cfg.PinPath == "" {
		return false
	}
	return l.Pin(f.linkPin(h.prog)) == nil
}

func (f *Flows) dropProgram(name string) {
	if p, ok := f.progs[name]; ok {
		_ = p.Close()
		delete(f.progs, name)
	}
}

// attachRefresh prepares the storage iterator that brings open flows up to
// date at read time. Without it, open flows are counted up to their last
// RTT sample, and flows that only receive up to their end.
func (f *Flows) attachRefresh(spec *ebpf.CollectionSpec) {
	prog, err := f.loadProgram(spec, hookRefresh.prog)
	if err != nil {
		f.addMissing(hookRefresh, err.Error())
		return
	}
	it, err := link.AttachIter(link.IterOptions{Program: prog, Map: f.maps.FlowSk})
	if err != nil {
		f.dropProgram(hookRefresh.prog)
		f.addMissing(hookRefresh, fmt.Sprintf("attach %s: %v", hookRefresh.name, err))
		return
	}
	f.refresh = it
	f.hooks = append(f.hooks, ProgramInfo{Name: hookRefresh.prog, Hook: hookRefresh.name})
}

// runRefresh runs the iterator and returns how many open flows it saw, or -1
// without an iterator. Callers hold f.mu.
func (f *Flows) runRefresh() (int, error) {
	if f.refresh == nil {
		return -1, nil
	}
	rd, err := f.refresh.Open()
	if err != nil {
		return 0, fmt.Errorf("run %s: %w", hookRefresh.prog, err)
	}
	defer rd.Close()
	n, err := io.Copy(io.Discard, rd)
	if err != nil {
		return 0, fmt.Errorf("read %s: %w", hookRefresh.prog, err)
	}
	return int(n), nil
}

func (f *Flows) checkOpen() error {
	if f.closed {
		return errors.New("flows: closed")
	}
	return nil
}

// Aggregates returns the figures of every key, summed over CPUs. Open flows
// are first brought up to date, so the figures are those of the moment of
// the call (scrape time).
func (f *Flows) Aggregates() (map[Key]Stats, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.checkOpen(); err != nil {
		return nil, err
	}
	if _, err := f.runRefresh(); err != nil {
		return nil, err
	}
	out := make(map[Key]Stats)
	var (
		k    flowFlowKey
		vals []flowFlowAgg
	)
	it := f.maps.FlowStats.Iterate()
	for it.Next(&k, &vals) {
		out[keyFrom(k)] = sumStats(vals)
	}
	if err := it.Err(); err != nil {
		return nil, fmt.Errorf("iterate flow_stats: %w", err)
	}
	return out, nil
}

func keyFrom(k flowFlowKey) Key {
	return Key{
		CgroupID:  k.CgroupId,
		Peer:      netip.AddrPortFrom(wordsAddr(k.Peer.W), k.Port),
		Direction: Direction(k.Dir),
	}
}

func sumStats(vals []flowFlowAgg) Stats {
	var (
		s        Stats
		rtt, con [histBuckets]uint64
		rttSum   uint64
		conSum   uint64
		dur      uint64
		last     uint64
	)
	for _, v := range vals {
		s.Opened += v.Opened
		s.Closed += v.Closed
		s.Failed += v.Failed
		s.Retransmits += v.Retransmits
		s.ResetsSent += v.ResetsSent
		s.ResetsReceived += v.ResetsReceived
		s.BytesSent += v.BytesSent
		s.BytesReceived += v.BytesReceived
		dur += v.DurationUs
		last = max(last, v.LastNs)
		rttSum += v.Rtt.SumUs
		conSum += v.Connect.SumUs
		for i := range rtt {
			rtt[i] += v.Rtt.Buckets[i]
			con[i] += v.Connect.Buckets[i]
		}
	}
	s.RTT = histogram(rtt, rttSum)
	s.Connect = histogram(con, conSum)
	s.Duration = time.Duration(dur) * time.Microsecond
	s.LastUpdate = time.Duration(last)
	return s
}

// Prune deletes the keys that have no open flow and have not changed for at
// least idle, e.g. those of pods that are gone, so that the bounded map keeps
// room for new keys. A deleted key's counters restart from zero if it comes
// back, which Prometheus reads as a counter reset. Returns how many keys it
// deleted.
func (f *Flows) Prune(idle time.Duration) (int, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.checkOpen(); err != nil {
		return 0, err
	}
	now, err := monotonicNow()
	if err != nil {
		return 0, err
	}
	var (
		k     flowFlowKey
		vals  []flowFlowAgg
		stale []flowFlowKey
	)
	it := f.maps.FlowStats.Iterate()
	for it.Next(&k, &vals) {
		s := sumStats(vals)
		if s.Open() == 0 && now-s.LastUpdate >= idle {
			stale = append(stale, k)
		}
	}
	if err := it.Err(); err != nil {
		return 0, fmt.Errorf("iterate flow_stats: %w", err)
	}
	n := 0
	for _, k := range stale {
		err := f.maps.FlowStats.Delete(k)
		if err != nil && !errors.Is(err, ebpf.ErrKeyNotExist) {
			return n, fmt.Errorf("delete from flow_stats: %w", err)
		}
		if err == nil {
			n++
		}
	}
	return n, nil
}

// Live lists the open flows of meshed pods, brought up to date first.
func (f *Flows) Live() ([]Live, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.checkOpen(); err != nil {
		return nil, err
	}
	if _, err := f.runRefresh(); err != nil {
		return nil, err
	}
	mono, err := monotonicNow()
	if err != nil {
		return nil, err
	}
	wall := time.Now()
	var (
		cookie uint64
		e      flowLiveEntry
		out    []Live
	)
	it := f.maps.FlowLive.Iterate()
	for it.Next(&cookie, &e) {
		l := Live{
			Cookie:        cookie,
			CgroupID:      e.Key.CgroupId,
			Local:         netip.AddrPortFrom(wordsAddr(e.Local.W), e.Lport),
			Peer:          netip.AddrPortFrom(wordsAddr(e.Remote.W), e.Rport),
			Direction:     Direction(e.Key.Dir),
			Start:         wall.Add(time.Duration(e.StartNs) - mono),
			SRTT:          time.Duration(e.SrttUs) * time.Microsecond,
			Retransmits:   e.Retrans,
			BytesSent:     e.BytesSent,
			BytesReceived: e.BytesReceived,
			State:         StateName(e.State),
		}
		if dialed := netip.AddrPortFrom(wordsAddr(e.Key.Peer.W), e.Key.Port); l.Direction == Outbound && dialed != l.Peer {
			l.Dialed = dialed
		}
		out = append(out, l)
	}
	if err := it.Err(); err != nil {
		return nil, fmt.Errorf("iterate flow_live: %w", err)
	}
	return out, nil
}

// Failure counters (enum flow_error in flow.c).
const (
	feStatsFull = iota
	feLiveInsert
	feLiveLost
	feSkStorage
	feMax
)

// Health reports map fill and losses.
func (f *Flows) Health() (Health, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.checkOpen(); err != nil {
		return Health{}, err
	}
	var errs [feMax]uint64
	for i := range errs {
		n, err := sumPerCPU(f.maps.FlowErrors, uint32(i))
		if err != nil {
			return Health{}, fmt.Errorf("look up flow_errors: %w", err)
		}
		errs[i] = n
	}
	stats, err := countKeys[flowFlowKey](f.maps.FlowStats)
	if err != nil {
		return Health{}, err
	}
	live, err := countKeys[uint64](f.maps.FlowLive)
	if err != nil {
		return Health{}, err
	}
	socks, err := f.runRefresh()
	if err != nil {
		return Health{}, err
	}
	lost, err := sumPerCPU(f.maps.TraceLost, 0)
	if err != nil {
		return Health{}, fmt.Errorf("look up trace_lost: %w", err)
	}
	return Health{
		Maps: map[string]MapHealth{
			"flow_stats": {Entries: stats, Max: int(f.maps.FlowStats.MaxEntries()), InsertFailures: errs[feStatsFull]},
			"flow_live": {Entries: live, Max: int(f.maps.FlowLive.MaxEntries()),
				InsertFailures: errs[feLiveInsert], Evicted: errs[feLiveLost]},
			"flow_sk": {Entries: socks, InsertFailures: errs[feSkStorage]},
		},
		Lost: lost,
	}, nil
}

func sumPerCPU(m *ebpf.Map, key uint32) (uint64, error) {
	var perCPU []uint64
	if err := m.Lookup(key, &perCPU); err != nil {
		return 0, err
	}
	var sum uint64
	for _, n := range perCPU {
		sum += n
	}
	return sum, nil
}

// countKeys counts a hash map's keys without reading its values.
func countKeys[K any](m *ebpf.Map) (int, error) {
	var (
		cur, next K
		n         int
	)
	prev := any(nil)
	for {
		err := m.NextKey(prev, &next)
		if errors.Is(err, ebpf.ErrKeyNotExist) {
			return n, nil
		}
		if err != nil {
			return n, fmt.Errorf("iterate %s: %w", m, err)
		}
		n++
		cur = next
		prev = &cur
	}
}

// Maps returns the maps this object owns by name (not the shared ones
// passed in Config), for listing with their fill.
func (f *Flows) Maps() map[string]*ebpf.Map {
	return map[string]*ebpf.Map{
		"flow_stats":  f.maps.FlowStats,
		"flow_live":   f.maps.FlowLive,
		"flow_sk":     f.maps.FlowSk,
		"flow_closed": f.maps.FlowClosed,
		"flow_errors": f.maps.FlowErrors,
	}
}

// Programs lists the package's hooks: those in use with their program and
// link ids, and those missing with the reason.
func (f *Flows) Programs() []ProgramInfo {
	f.mu.Lock()
	defer f.mu.Unlock()
	out := make([]ProgramInfo, 0, len(f.hooks))
	for _, h := range f.hooks {
		if p, ok := f.progs[h.Name]; ok {
			if info, err := p.Info(); err == nil {
				id, _ := info.ID()
				h.ID = uint32(id)
			}
		}
		if l, ok := f.links[h.Name]; ok {
			if info, err := l.Info(); err == nil {
				h.LinkID = uint32(info.ID)
			}
		}
		out = append(out, h)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

// Overhead returns, per loaded program, its run count and run time as the
// kernel's BPF statistics recorded them. The kernel counts only while
// statistics are enabled (sysctl kernel.bpf_stats_enabled=1, or while the
// io.Closer of ebpf.EnableStats(unix.BPF_STATS_RUN_TIME) is held); the
// counts are cumulative since the program was loaded.
func (f *Flows) Overhead() (map[string]ProgramStats, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.checkOpen(); err != nil {
		return nil, err
	}
	out := make(map[string]ProgramStats, len(f.progs))
	for name, p := range f.progs {
		st, err := p.Stats()
		if err != nil {
			return nil, fmt.Errorf("read stats of %s: %w", name, err)
		}
		ps := ProgramStats{RunCount: st.RunCount, RunTime: st.Runtime}
		if st.RunCount > 0 {
			ps.NsPerRun = float64(st.Runtime.Nanoseconds()) / float64(st.RunCount)
		}
		out[name] = ps
	}
	return out, nil
}

// Close releases the agent's handles. Pinned links and maps stay, so flows
// go on being counted until a new agent adopts them; without a pin path
// everything is detached. Idempotent.
func (f *Flows) Close() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.closed {
		return nil
	}
	f.closed = true
	var errs []error
	if f.refresh != nil {
		errs = append(errs, f.refresh.Close())
		f.refresh = nil
	}
	for name, l := range f.links {
		if err := l.Close(); err != nil {
			errs = append(errs, fmt.Errorf("close link %s: %w", name, err))
		}
	}
	f.links = nil
	for name, p := range f.progs {
		if err := p.Close(); err != nil {
			errs = append(errs, fmt.Errorf("close program %s: %w", name, err))
		}
	}
	f.progs = nil
	errs = append(errs, f.maps.Close())
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

// monotonicNow is CLOCK_MONOTONIC, the clock of bpf_ktime_get_ns.
func monotonicNow() (time.Duration, error) {
	var ts unix.Timespec
	if err := unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts); err != nil {
		return 0, fmt.Errorf("read CLOCK_MONOTONIC: %w", err)
	}
	return time.Duration(ts.Nano()), nil
}

// wordsAddr decodes a struct skein_addr: 16 bytes in network order, IPv4 as
// IPv4-mapped IPv6.
func wordsAddr(w [4]uint32) netip.Addr {
	var b [16]byte
	for i := range w {
		binary.NativeEndian.PutUint32(b[i*4:], w[i])
	}
	return netip.AddrFrom16(b).Unmap()
}

// addrWords lays an address out as struct skein_addr.
func addrWords(a netip.Addr) [4]uint32 {
	b := a.As16()
	var w [4]uint32
	for i := range w {
		w[i] = binary.NativeEndian.Uint32(b[i*4:])
	}
	return w
}
