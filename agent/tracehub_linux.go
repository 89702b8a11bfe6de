//go:build linux

package agent

import (
	"encoding/json"

	"fmt"
	"net/http"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"go.uber.org/zap"
	"golang.org/x/sys/unix"

	"github.com/skeinmesh/skein/agent/admin"
	"github.com/skeinmesh/skein/bpf/capture"
	"github.com/skeinmesh/skein/bpf/flow"
	"github.com/skeinmesh/skein/bpf/trace"
	"github.com/skeinmesh/skein/l7proxy"
)

// traceFilter is what one `agentctl trace` session asked for.
type traceFilter struct {
	kinds     uint32 // mask of 1<<trace.Kind
	pod       string // namespace/name
	cgroupID  uint64 // the pod's cgroup, set when pod is local
	namespace string
	service   string // namespace/name
}

// traceSession is one client of the event stream.
type traceSession struct {
	f         traceFilter
	ch        chan admin.TraceEvent
	dropped   atomic.Uint64
	delivered atomic.Uint64
}

// traceHub fans the kernel's event stream (and the proxy's events) out to
// the agentctl trace sessions. The kernel emits only while a session wants
// a kind, and only for a pod when every session watches that one pod.
type traceHub struct {
	a    *Agent
	maps *trace.Maps
	log  *zap.Logger

	mu       sync.Mutex
	sessions map[*traceSession]struct{}
	stop     func()
}

func newTraceHub(a *Agent, maps *trace.Maps) *traceHub {
	return &traceHub{a: a, maps: maps, log: a.log.Named("trace"), sessions: map[*traceSession]struct{}{}}
}

func (h *traceHub) subscribe(f traceFilter) (*traceSession, error) {
	s := &traceSession{f: f, ch: make(chan admin.TraceEvent, 4096)}
	h.mu.Lock()
	defer h.mu.Unlock()
	h.sessions[s] = struct{}{}
	if err := h.applyFilterLocked(); err != nil {
		delete(h.sessions, s)
		return nil, err
	}
	if h.stop == nil {
		if err := h.startReaderLocked(); err != nil {
			delete(h.sessions, s)
			_ = h.applyFilterLocked()
			return nil, err
		}
	}
	return s, nil
}

func (h *traceHub) unsubscribe(s *traceSession) {
	h.mu.Lock()
	defer h.mu.Unlock()
	delete(h.sessions, s)
	_ = h.applyFilterLocked()
	if len(h.sessions) == 0 && h.stop != nil {
		h.stop()
		h.stop = nil
	}
}

// applyFilterLocked sets the kernel filter to the union of what sessions
// want.
func (h *traceHub) applyFilterLocked() error {
	var kinds uint32
	var cg uint64
	first := true
	for s := range h.sessions {
		kinds |= s.f.kinds
		if first {
			cg = s.f.cgroupID
			first = false
		} else if cg != s.f.cgroupID {
			cg = 0
		}
	}
	// Policy denials come from the proxy, not the kernel.
	return h.maps.SetFilter(kinds&^(1<<trace.KindPolicyDeny), cg)
}

func (h *traceHub) startReaderLocked() error {
	r, err := h.maps.NewReader()
	if err != nil {
		return fmt.Errorf("open trace ring buffer: %w", err)
	}
	done := make(chan struct{})
	h.stop = func() {
		r.Close()
		<-done
	}
	go func() {
		defer close(done)
		for {
			rec, err := r.Read()
			if err != nil {
				return // closed
			}
			ev, err := trace.Decode(rec.RawSample)
			if err != nil {
				continue
			}
			h.publish(h.resolve(ev))
		}
	}()
	return nil
}

// publish hands an event to every session that wants it, never blocking:
// a slow client loses events, counted and reported to it.
func (h *traceHub) publish(ev admin.TraceEvent) {
	kind, _ := trace.ParseKind(ev.Type)
	h.mu.Lock()
	defer h.mu.Unlock()
	for s := range h.sessions {
		if !s.f.match(kind, ev) {
			continue
		}
		select {
		case s.ch <- ev:
		default:
			s.dropped.Add(1)
		}
	}
}

func (f *traceFilter) match(kind trace.Kind, ev admin.TraceEvent) bool {
	if f.kinds&(1<<kind) == 0 {
		return false
	}
	if f.pod != "" && ev.Pod != f.pod && ev.SrcPod != f.pod && ev.DstPod != f.pod {
		return false
	}
	if f.namespace != "" && !strings.HasPrefix(ev.Pod+"/", f.namespace+"/") &&
		!strings.HasPrefix(ev.SrcPod+"/", f.namespace+"/") && !strings.HasPrefix(ev.DstPod+"/", f.namespace+"/") {
		return false
	}
	if f.service != "" && ev.Service != f.service {
		return false
	}
	return true
}

// bootOffset converts the kernel's monotonic timestamps to wall time.
func bootOffset() time.Time {
	var ts unix.Timespec
	if err := unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts); err != nil {
		return time.Now()
	}
	return time.Now().Add(-time.Duration(ts.Nano()))
}

// resolve names the pods, workloads and services of a kernel event.
func (h *traceHub) resolve(ev trace.Event) admin.TraceEvent {
	d := h.a.state.Load()
	out := admin.TraceEvent{Time: bootOffset().Add(ev.Time), Type: ev.Kind.String(), Value: ev.Value}
	if w := d.byCgroup[ev.CgroupID]; w != nil {
		out.Pod, out.Workload = w.Namespace+"/"+w.Pod, w.Namespace+"/"+w.Name
	}
	podOf := func(ap netip.AddrPort) string {
		if w := d.table.Workloads[ap.Addr()]; w != nil {
			return w.Namespace + "/" + w.Pod
		}
		return ""
	}
	src, dst, orig := ev.Src, ev.Dst, ev.Orig
	if flowEvent(ev.Kind) {
		// The flow programs send the pod socket's own addresses (local,
		// remote) and the aggregate's peer in orig: for a connect that
		// capture redirected, the address the app dialed; for a connection
		// the pod accepted, the client's address with the pod's port.
		switch {
		case orig == dst:
			orig = netip.AddrPort{} // a connect straight to its destination
		case orig.IsValid() && orig.Addr() == dst.Addr() && orig.Port() == src.Port():
			// Inbound: show it as the connection goes, client first.
			src, dst, orig = dst, src, netip.AddrPort{}
		}
	}
	if src.IsValid() {
		out.Src, out.SrcPod = src.String(), podOf(src)
	}
	if dst.IsValid() {
		out.Dst, out.DstPod = dst.String(), podOf(dst)
	}
	if orig.IsValid() {
		out.Orig = orig.String()
		if s := d.table.Services[orig]; s != nil {
			out.Service = s.Namespace + "/" + s.Name
		} else if p := podOf(orig); p != "" {
			out.DstPod = p
		}
	}
	switch ev.Kind {
	case trace.KindCapture:
		out.Reason = capture.Verdict(ev.Reason).String()
	case trace.KindReset:
		out.Reason = map[uint8]string{flow.ResetReceived: "received", flow.ResetSent: "sent"}[ev.Reason]
	case trace.KindConnectFail:
		out.Reason = "failed in " + flow.StateName(ev.Reason)
		if ev.Value != 0 {
			out.Reason = syscall.Errno(ev.Value).Error() + " (in " + flow.StateName(ev.Reason) + ")"
		}
	case trace.KindState:
		// reason is the new state, value the old one.
		out.Reason = flow.StateName(uint8(ev.Value)) + " -> " + flow.StateName(ev.Reason)
		out.Value = 0
	case trace.KindRetransmit:
		out.Reason = fmt.Sprintf("%d segment(s)", ev.Value)
	case trace.KindStrictDrop:
		out.Reason = "plaintext from outside the mesh"
		if out.Pod == "" {
			out.Pod = out.DstPod
		}
	}
	return out
}

// PolicyDenied implements l7proxy.EventSink.
func (h *traceHub) PolicyDenied(r *l7proxy.AuthzRequest, d l7proxy.Decision) {
	h.mu.Lock()
	active := len(h.sessions) > 0
	h.mu.Unlock()
	if !active {
		return
	}
	ev := admin.TraceEvent{Time: time.Now(), Type: trace.KindPolicyDeny.String(), Reason: "denied by " + d.Policy,
		Principal: r.Principal}
	if r.Dest != nil {
		ev.Pod, ev.DstPod, ev.Workload = r.Dest.Namespace+"/"+r.Dest.Pod, r.Dest.Namespace+"/"+r.Dest.Pod, r.Dest.Namespace+"/"+r.Dest.Name
	}
	if r.Source != nil && r.Source.Pod != "" {
		ev.SrcPod = r.Source.Namespace + "/" + r.Source.Pod
	}
	if r.HTTP {
		ev.Reason += fmt.Sprintf(" (%s %s)", r.Method, r.Path)
	}
	ev.Value = uint32(r.Port)
	h.publish(ev)
}

// serveTrace streams events as JSON lines until the client goes away,
// with a summary line each second that says how many were lost.
func (h *traceHub) serveTrace(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	f := traceFilter{pod: q.Get("pod"), namespace: q.Get("namespace"), service: q.Get("service")}
	if types := q.Get("type"); types != "" {
		for _, t := range strings.Split(types, ",") {
			k, err := trace.ParseKind(strings.TrimSpace(t))
			if err != nil {
				http.Error(w, err.Error(), http.StatusBadRequest)
				return
			}
			f.kinds |= 1 << k
		}
	} else {
		f.kinds = trace.AllKinds
	}
	if f.pod != "" {
		for id, wl := range h.a.state.Load().byCgroup {
			if wl.Namespace+"/"+wl.Pod == f.pod {
				f.cgroupID = id
			}
		}
	}
	s, err := h.subscribe(f)
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	defer h.unsubscribe(s)
	lostAtStart, _ := h.maps.LostCount()

	w.Header().Set("Content-Type", "application/x-ndjson")
	w.WriteHeader(http.StatusOK)
	rc := http.NewResponseController(w)
	enc := json.NewEncoder(w)
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	ctx := r.Context()
	summary := func() error {
		lost, _ := h.maps.LostCount()
		return enc.Encode(admin.TraceEvent{Time: time.Now(), Type: "lost",
			LostKernel: lost - lostAtStart, LostAgent: s.dropped.Load(), Delivered: s.delivered.Load()})
	}
	for {
		select {
		case <-ctx.Done():
			return
		case ev := <-s.ch:
			if err := enc.Encode(ev); err != nil {
				return
			}
			s.delivered.Add(1)
			// Write what is queued before flushing, in one go.
			for n := len(s.ch); n > 0; n-- {
				if err := enc.Encode(<-s.ch); err != nil {
					return
				}
				s.delivered.Add(1)
			}
			if err := rc.Flush(); err != nil {
				return
			}
		case <-tick.C:
			if err := summary(); err != nil || rc.Flush() != nil {
				return
			}
		}
	}
}

var _ l7proxy.EventSink = (*traceHub)(nil)

// flowEvent says whether events of a kind come from the flow programs
// (bpf/flow), which send a socket's own addresses.
func flowEvent(k trace.Kind) bool {
	switch k {
	case trace.KindConnectFail, trace.KindReset, trace.KindRetransmit, trace.KindState:
		return true
	}
	return false
}
