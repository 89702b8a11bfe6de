//go:build linux

package agent

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"path/filepath"
	"slices"
	"sort"
	"sync"
	"time"

	"go.uber.org/zap"

	"github.com/skeinmesh/skein/agent/admin"
	"github.com/skeinmesh/skein/bpf/flow"
	"github.com/skeinmesh/skein/l7proxy"
	"github.com/skeinmesh/skein/telemetry"
)

// Flow telemetry settings. Constants rather than flags: the defaults suit
// any node, and a flag would be one more thing to get wrong.
const (
	// flowPruneInterval is how often idle aggregates are pruned.
	flowPruneInterval = time.Minute
	// flowPruneIdle is how long an aggregate must have had no open flow and
	// no update before it is pruned (its figures stay in the carry).
	flowPruneIdle = 10 * time.Minute
	// tcpSeriesTTL is how long one read of the kernel's aggregates serves
	// the TCP collectors: the nine families of one scrape read it once.
	tcpSeriesTTL = 250 * time.Millisecond
	// flowCountersFile, next to the admin socket (a tmpfs that, like
	// bpffs, lives until reboot), keeps the carries across restarts.
	flowCountersFile = "flow-counters.json"
)

// flowTelemetry is the agent's side of the kernel flow figures.
type flowTelemetry struct {
	flows *flow.Flows // nil when unavailable
	err   error       // why flows is nil
	pin   string

	acct *tcpAccount

	mu       sync.Mutex // serializes reads of the kernel maps and the account
	cache    []telemetry.TCPSeries
	cacheErr error
	cacheAt  time.Time
	// gone remembers the workload of each cgroup the kernel has figures
	// of, for pods that have left the model since.
	gone   map[uint64]*l7proxy.Workload
	keys   int
	pruned uint64
}

// errFlowsUnavailable wraps why the kernel figures are missing.
var errFlowsUnavailable = errors.New("kernel flow figures unavailable")

// startFlows loads the flow programs next to capture, sharing its
// membership and origin maps and the trace ring. A kernel that refuses them
// (no sockops, no socket storage) costs the kernel figures only: the agent
// logs why, says so in status, and runs on.
func (a *Agent) startFlows() {
	a.flow = &flowTelemetry{acct: newTCPAccount(), gone: map[uint64]*l7proxy.Workload{},
		pin: filepath.Join(a.cfg.PinRoot, a.cfg.NodeName, "flow")}
	if err := a.flow.acct.load(a.flowCountersPath()); err != nil {
		a.log.Warn("flow counters of the previous agent unreadable: label sets with pruned keys restart from the kernel's figures", zap.Error(err))
	}
	maps := a.datapath.Maps()
	f, err := flow.New(flow.Config{
		CgroupPath: a.cgroupRoot, PinPath: a.flow.pin,
		Members: maps["members"], Origins: maps["sock_origin"],
		Events: a.traceMaps.Events(), TraceConfig: a.traceMaps.Config(), TraceLost: a.traceMaps.Lost(),
	})
	if err != nil {
		a.flow.err = fmt.Errorf("%w: %w", errFlowsUnavailable, err)
		a.log.Error("kernel flow figures are unavailable; the agent runs without skein_tcp_* metrics from the kernel and agentctl flows",
			zap.Error(err))
		return
	}
	a.flow.flows = f
	for _, p := range f.Programs() {
		if p.Missing != "" {
			a.log.Info("flow hook unavailable", zap.String("program", p.Name), zap.String("hook", p.Hook), zap.String("why", p.Missing))
		}
	}
	a.log.Info("kernel flow figures collected", zap.String("pins", a.flow.pin))
}

// closeFlows releases the flow objects (pinned links and maps stay for the
// next agent) and saves the carries.
func (a *Agent) closeFlows() error {
	if a.flow == nil {
		return nil
	}
	var errs []error
	if a.flow.flows != nil {
		errs = append(errs, a.flow.flows.Close())
	}
	errs = append(errs, a.flow.acct.save(a.flowCountersPath()))
	return errors.Join(errs...)
}

func (a *Agent) flowCountersPath() string {
	return filepath.Join(filepath.Dir(a.cfg.AdminSocket), flowCountersFile)
}

// resolver returns a label resolver over the current model; gone, if set,
// must be used under a.flow.mu.
func (a *Agent) resolver(gone map[uint64]*l7proxy.Workload) *flowResolver {
	return &flowResolver{d: a.state.Load(), node: a.cfg.NodeName, tunnel: a.tunnel != nil,
		proxy: a.trustedSources(), gone: gone}
}

// TCPSeries implements telemetry.TCPSource: the kernel's aggregates read
// now, resolved to label sets, with the carries. Before the configuration
// is applied there is no model to name the pods with, so nothing.
func (a *Agent) TCPSeries() ([]telemetry.TCPSeries, error) {
	if !a.ready.Load() {
		return nil, errors.New("configuration not applied yet")
	}
	ft := a.flow
	ft.mu.Lock()
	defer ft.mu.Unlock()
	if time.Since(ft.cacheAt) < tcpSeriesTTL {
		return ft.cache, ft.cacheErr
	}
	ft.cache, ft.cacheErr = a.updateFlowsLocked()
	ft.cacheAt = time.Now()
	return ft.cache, ft.cacheErr
}

// updateFlowsLocked reads the kernel's aggregates into the account. Without
// the kernel figures, the proxy's connect failures are still exported, and
// the error says what is missing. Callers hold a.flow.mu.
func (a *Agent) updateFlowsLocked() ([]telemetry.TCPSeries, error) {
	ft := a.flow
	aggs := map[flow.Key]flow.Stats{}
	err := ft.err
	if ft.flows != nil {
		aggs, err = ft.flows.Aggregates()
		if err != nil {
			return nil, err
		}
	}
	r := a.resolver(ft.gone)
	cgroups := map[uint64]bool{}
	for k := range aggs {
		cgroups[k.CgroupID] = true
		if w := r.d.byCgroup[k.CgroupID]; w != nil {
			ft.gone[k.CgroupID] = w
		}
	}
	for id := range ft.gone {
		if !cgroups[id] {
			delete(ft.gone, id)
		}
	}
	ft.keys = len(aggs)
	return ft.acct.update(aggs, r.labels, time.Now()), err
}

// runFlowPruner prunes idle aggregates periodically, so that the bounded
// map keeps room, and saves the carries when they changed.
func (a *Agent) runFlowPruner(ctx context.Context) error {
	tick := time.NewTicker(flowPruneInterval)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-tick.C:
			a.pruneFlows()
		}
	}
}

func (a *Agent) pruneFlows() {
	defer func() {
		if r := recover(); r != nil {
			a.log.Error("pruning flow aggregates panicked", zap.Any("panic", r), zap.Stack("stack"))
		}
	}()
	ft := a.flow
	if ft.flows != nil && a.ready.Load() {
		ft.mu.Lock()
		// Read first, so the account holds the last figures of the keys
		// Prune deletes; read again after, so it carries them.
		_, _ = a.updateFlowsLocked()
		n, err := ft.flows.Prune(flowPruneIdle)
		if err != nil {
			a.log.Warn("prune flow aggregates", zap.Error(err))
		}
		if n > 0 {
			ft.pruned += uint64(n)
			ft.cache, ft.cacheErr = a.updateFlowsLocked()
			ft.cacheAt = time.Now()
			a.log.Debug("pruned idle flow aggregates", zap.Int("keys", n))
		}
		ft.mu.Unlock()
	}
	if err := ft.acct.save(a.flowCountersPath()); err != nil {
		a.log.Warn("save flow counters", zap.Error(err))
	}
}

// noteProxyConnectFailure counts, as a failed TCP connect, a connect the
// node proxy made on behalf of a captured one and that failed: the pod's own
// socket reached the proxy, so the kernel saw it established, and the
// proxy's socket is not a pod's, so the kernel does not follow it. Only the
// source side counts (reporter=source), once per failed connection or
// request, with the labels the kernel's figures of the same connect get.
func (a *Agent) noteProxyConnectFailure(src *l7proxy.Workload, dst netip.AddrPort, reporter string) {
	if a.flow == nil || src == nil || reporter != l7proxy.ReporterSource {
		return
	}
	l := a.resolver(nil).outbound(src, true, dst)
	a.flow.acct.addFailure(l, time.Now())
}

// flowStatus is the flow part of agentctl status.
func (a *Agent) flowStatus() *admin.FlowStatus {
	ft := a.flow
	if ft == nil {
		return nil
	}
	st := &admin.FlowStatus{Enabled: ft.flows != nil, PinPath: ft.pin, Carried: ft.acct.carries()}
	if ft.err != nil {
		st.Error = ft.err.Error()
	}
	ft.mu.Lock()
	st.Keys, st.Pruned = ft.keys, ft.pruned
	ft.mu.Unlock()
	if ft.flows == nil {
		return st
	}
	over, _ := ft.flows.Overhead()
	for _, p := range ft.flows.Programs() {
		fp := admin.FlowProgram{Name: p.Name, Hook: p.Hook, ID: p.ID, LinkID: p.LinkID, Pinned: p.Pinned, Missing: p.Missing}
		if o, ok := over[p.Name]; ok {
			fp.RunCount, fp.RunTimeNs, fp.NsPerRun = o.RunCount, uint64(o.RunTime), o.NsPerRun
		}
		st.Programs = append(st.Programs, fp)
	}
	h, err := ft.flows.Health()
	if err != nil {
		st.Error = "read map health: " + err.Error()
		return st
	}
	st.LostEvents = h.Lost
	for name, m := range h.Maps {
		fm := admin.FlowMap{Name: name, Entries: m.Entries, MaxEntries: m.Max, InsertFailures: m.InsertFailures, Evicted: m.Evicted}
		if m.Max > 0 && m.Entries >= 0 {
			fm.Fill = float64(m.Entries) / float64(m.Max)
		}
		st.Maps = append(st.Maps, fm)
	}
	sort.Slice(st.Maps, func(i, j int) bool { return st.Maps[i].Name < st.Maps[j].Name })
	return st
}

// flowMapFill is the flow maps' part of skein_bpf_map_entries and
// skein_bpf_map_max_entries: the aggregates, the live flows, and the
// sockets followed (which have no fixed maximum).
func (a *Agent) flowMapFill() ([]telemetry.MapFill, error) {
	if a.flow == nil || a.flow.flows == nil {
		return nil, nil
	}
	h, err := a.flow.flows.Health()
	if err != nil {
		return nil, err
	}
	var out []telemetry.MapFill
	for name, m := range h.Maps {
		out = append(out, telemetry.MapFill{Name: name, Entries: m.Entries, MaxEntries: m.Max,
			CountsLosses: true, LRU: name == "flow_live", InsertFailures: m.InsertFailures, Evicted: m.Evicted})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out, nil
}

// Flows implements admin.Backend: the open flows of the node's meshed pods.
func (a *Agent) Flows(q admin.FlowQuery) (admin.Flows, error) {
	if a.flow == nil || a.flow.flows == nil {
		out := admin.Flows{}
		if a.flow != nil && a.flow.err != nil {
			out.Error = a.flow.err.Error()
		}
		return out, nil
	}
	live, err := a.flow.flows.Live()
	if err != nil {
		return admin.Flows{}, err
	}
	d := a.state.Load()
	proxies := a.trustedSources()
	out := admin.Flows{Enabled: true, Flows: []admin.Flow{}}
	for _, l := range live {
		f := admin.Flow{Direction: l.Direction.String(), Local: l.Local.String(), Peer: l.Peer.String(),
			State: l.State, SRTTUs: uint64(l.SRTT / time.Microsecond), Retransmits: l.Retransmits,
			BytesSent: l.BytesSent, BytesReceived: l.BytesReceived, Start: l.Start, Cookie: l.Cookie}
		w := d.byCgroup[l.CgroupID]
		if w == nil {
			a.flow.mu.Lock()
			w = a.flow.gone[l.CgroupID]
			a.flow.mu.Unlock()
		}
		if w != nil {
			f.Pod, f.Workload = w.Namespace+"/"+w.Pod, w.Namespace+"/"+w.Name
		} else {
			f.Pod = fmt.Sprintf("cgroup %d", l.CgroupID)
		}
		if q.Pod != "" && f.Pod != q.Pod {
			continue
		}
		if q.Direction != "" && f.Direction != q.Direction {
			continue
		}
		named := l.Peer
		if l.Dialed.IsValid() {
			f.Dialed, named = l.Dialed.String(), l.Dialed
		}
		switch {
		case d.table.Services[named] != nil:
			s := d.table.Services[named]
			f.PeerName = "service " + s.Namespace + "/" + s.Name
		case d.table.Workloads[named.Addr()] != nil:
			p := d.table.Workloads[named.Addr()]
			f.PeerName = "pod " + p.Namespace + "/" + p.Pod
		case slices.Contains(proxies, named.Addr()):
			f.PeerName = "node proxy"
		}
		out.Flows = append(out.Flows, f)
	}
	sort.Slice(out.Flows, func(i, j int) bool {
		if out.Flows[i].Pod != out.Flows[j].Pod {
			return out.Flows[i].Pod < out.Flows[j].Pod
		}
		return out.Flows[i].Start.Before(out.Flows[j].Start)
	})
	return out, nil
}

// FlowSummary implements admin.Backend: what skein_tcp_* export now.
func (a *Agent) FlowSummary() (admin.FlowSummary, error) {
	out := admin.FlowSummary{Enabled: a.flow != nil && a.flow.flows != nil, Series: []admin.FlowSeries{}}
	series, err := a.TCPSeries()
	if err != nil {
		out.Error = err.Error()
		if !errors.Is(err, errFlowsUnavailable) {
			return out, nil
		}
	}
	for _, s := range series {
		l, st := s.Labels, s.Stats
		fs := admin.FlowSeries{
			Reporter: l.Reporter, SourceWorkload: orUnknown(l.SourceWorkload), SourceNamespace: orUnknown(l.SourceNamespace),
			DestinationService: orUnknown(l.DestinationService), DestinationWorkload: orUnknown(l.DestinationWorkload),
			DestinationNamespace: orUnknown(l.DestinationNamespace), SecurityPolicy: l.SecurityPolicy,
			Opened: st.Opened, Closed: st.Closed, Failed: st.Failed, Retransmits: st.Retransmits,
			ResetsSent: st.ResetsSent, ResetsReceived: st.ResetsReceived, SentBytes: st.SentBytes, ReceivedBytes: st.ReceivedBytes,
		}
		if st.RTT.Count > 0 {
			fs.RTTMeanUs = st.RTT.Sum / float64(st.RTT.Count) * 1e6
		}
		if st.Connect.Count > 0 {
			fs.ConnectMeanUs = st.Connect.Sum / float64(st.Connect.Count) * 1e6
		}
		out.Series = append(out.Series, fs)
	}
	return out, nil
}

func orUnknown(s string) string {
	if s == "" {
		return "unknown"
	}
	return s
}

var _ telemetry.TCPSource = (*Agent)(nil)
