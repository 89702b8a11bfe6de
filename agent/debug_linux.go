//go:build linux

package agent

import (
	"fmt"
	"net/http"
	"net/netip"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/cilium/ebpf"
	"golang.org/x/sys/unix"

	"github.com/skeinmesh/skein/agent/admin"
	"github.com/skeinmesh/skein/agent/model"
	"github.com/skeinmesh/skein/l7proxy"
)

// registerDebug adds the troubleshooting endpoints to the admin API.
func (a *Agent) registerDebug(s *admin.Server) {
	s.Handle("GET "+admin.APIVersion+"/bpf/maps", func(*http.Request) (any, error) {
		return a.allMaps(), nil
	})
	s.Handle("GET "+admin.APIVersion+"/bpf/maps/{name}", func(r *http.Request) (any, error) {
		return a.mapDump(r.PathValue("name"))
	})
	s.Handle("GET "+admin.APIVersion+"/bpf/progs", func(*http.Request) (any, error) {
		return a.programStats(), nil
	})
	s.Handle("GET "+admin.APIVersion+"/diagnose/{namespace}/{pod}", func(r *http.Request) (any, error) {
		return a.diagnose(r.PathValue("namespace"), r.PathValue("pod")), nil
	})
	// A debug action: count BPF program run time for a while (it costs a
	// little on every run, so it is off by default).
	s.Handle("POST "+admin.APIVersion+"/bpf/stats", func(r *http.Request) (any, error) {
		secs, err := strconv.Atoi(r.URL.Query().Get("seconds"))
		if err != nil || secs < 1 || secs > 600 {
			return nil, admin.BadRequest("seconds: want 1 to 600")
		}
		closer, err := ebpf.EnableStats(uint32(unix.BPF_STATS_RUN_TIME))
		if err != nil {
			return nil, fmt.Errorf("enable BPF statistics: %w", err)
		}
		time.AfterFunc(time.Duration(secs)*time.Second, func() { closer.Close() })
		return map[string]int{"enabledForSeconds": secs}, nil
	})
}

// mapDump decodes a BPF map and names what its keys stand for.
func (a *Agent) mapDump(name string) (admin.MapDump, error) {
	entries, err := a.datapath.Dump(name)
	if err != nil {
		return admin.MapDump{}, admin.NotFound("%v", err)
	}
	d := a.state.Load()
	out := admin.MapDump{Name: name}
	for _, e := range entries {
		me := admin.MapEntry{Key: e.Key, Value: e.Value}
		if id, ok := strings.CutPrefix(e.Key, "cgroup "); ok {
			n, _ := strconv.ParseUint(strings.Fields(id)[0], 10, 64)
			if w := d.byCgroup[n]; w != nil {
				me.Note = "pod " + w.Namespace + "/" + w.Pod
			}
		}
		if ap, err := netip.ParseAddrPort(e.Key); err == nil {
			if s := d.table.Services[ap]; s != nil {
				me.Note = "service " + s.Namespace + "/" + s.Name
			} else if w := d.table.Workloads[ap.Addr()]; w != nil {
				me.Note = "pod " + w.Namespace + "/" + w.Pod
			}
		}
		out.Entries = append(out.Entries, me)
	}
	sort.Slice(out.Entries, func(i, j int) bool { return out.Entries[i].Key < out.Entries[j].Key })
	return out, nil
}

// allMaps lists capture's maps and the flow telemetry's, with their fill.
func (a *Agent) allMaps() []admin.Map {
	all := a.datapath.Maps()
	if a.flow != nil && a.flow.flows != nil {
		for name, m := range a.flow.flows.Maps() {
			all[name] = m
		}
	}
	return mapStatus(all)
}

// programStats lists the attached programs, capture's and the flow
// telemetry's, with what the kernel counts of their runs (run time only
// while kernel.bpf_stats_enabled is 1).
func (a *Agent) programStats() []admin.ProgramStats {
	var progs []admin.Program
	for _, p := range a.datapath.Programs() {
		progs = append(progs, admin.Program{Name: p.Name, ID: uint32(p.ID), LinkID: uint32(p.LinkID), Pinned: p.Pinned})
	}
	if a.flow != nil && a.flow.flows != nil {
		for _, p := range a.flow.flows.Programs() {
			if p.Missing == "" {
				progs = append(progs, admin.Program{Name: p.Name, ID: p.ID, LinkID: p.LinkID, Pinned: p.Pinned})
			}
		}
	}
	var out []admin.ProgramStats
	for _, p := range progs {
		ps := admin.ProgramStats{Program: p}
		if prog, err := ebpf.NewProgramFromID(ebpf.ProgramID(p.ID)); err == nil {
			if info, err := prog.Info(); err == nil {
				ps.Type = info.Type.String()
			}
			if st, err := prog.Stats(); err == nil {
				ps.RunCount, ps.RunTimeNs = st.RunCount, uint64(st.Runtime)
				if ps.RunCount > 0 {
					ps.NsPerRun = float64(ps.RunTimeNs) / float64(ps.RunCount)
				}
			}
			prog.Close()
		}
		out = append(out, ps)
	}
	return out
}

// failureLog keeps the latest failures, for agentctl diagnose.
type failureLog struct {
	mu   sync.Mutex
	ring []failureEntry
	next int
}

type failureEntry struct {
	f        admin.Failure
	src, dst string // namespace/pod, empty for a pod of another node
	// srcName and dstName are what diagnose shows as the peer: the pod, or
	// for a pod of another node the workload its proxy announced.
	srcName, dstName string
}

const failureLogSize = 512

func (l *failureLog) add(e failureEntry) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if len(l.ring) < failureLogSize {
		l.ring = append(l.ring, e)
		return
	}
	l.ring[l.next] = e
	l.next = (l.next + 1) % failureLogSize
}

// of returns the failures a pod was part of, newest first, at most n.
func (l *failureLog) of(pod string, n int) []admin.Failure {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []admin.Failure
	for i := len(l.ring) - 1; i >= 0 && len(out) < n; i-- {
		e := l.ring[(l.next+i)%len(l.ring)]
		switch pod {
		case e.src:
			f := e.f
			f.Role, f.Peer = "source", e.dstName
			out = append(out, f)
		case e.dst:
			f := e.f
			f.Role, f.Peer = "destination", e.srcName
			out = append(out, f)
		}
	}
	return out
}

func podKey(w *l7proxy.Workload) string {
	if w == nil || w.Pod == "" {
		return ""
	}
	return w.Namespace + "/" + w.Pod
}

// peerName names a failure's peer: its pod, else its workload.
func peerName(w *l7proxy.Workload) string {
	switch {
	case w == nil || w.Name == "" && w.Pod == "":
		return ""
	case w.Pod == "":
		return w.Namespace + "/" + w.Name
	}
	return w.Namespace + "/" + w.Pod
}

// noteRequestFailure records a failed request for diagnose.
func (a *Agent) noteRequestFailure(r *l7proxy.RequestRecord) {
	if r.Code < 500 && len(r.Flags) == 0 && r.Code != http.StatusForbidden {
		return
	}
	what := fmt.Sprintf("%s %s%s", r.Method, r.Authority, r.Path)
	detail := ""
	if r.Err != nil {
		detail = r.Err.Error()
	}
	a.failures.add(failureEntry{
		f:   admin.Failure{Time: r.Start, What: what, Code: r.Code, Flags: r.FlagString(), Detail: detail},
		src: podKey(r.Source), dst: podKey(r.Dest), srcName: peerName(r.Source), dstName: peerName(r.Dest),
	})
}

// noteConnFailure records a failed TCP connection for diagnose.
func (a *Agent) noteConnFailure(r *l7proxy.ConnRecord) {
	if r.Flag == l7proxy.FlagNone {
		return
	}
	detail := ""
	if r.Err != nil {
		detail = r.Err.Error()
	}
	a.failures.add(failureEntry{
		f:   admin.Failure{Time: r.Start, What: "tcp " + r.OrigDst.String(), Flags: r.Flag, Detail: detail},
		src: podKey(r.Source), dst: podKey(r.Dest), srcName: peerName(r.Source), dstName: peerName(r.Dest),
	})
}

// diagnose gathers what the agent knows about one pod.
func (a *Agent) diagnose(namespace, pod string) admin.Diagnosis {
	d := a.state.Load()
	key := namespace + "/" + pod
	out := admin.Diagnosis{Pod: key}
	p := d.snap.Pods[model.Key{Namespace: namespace, Name: pod}]
	if p == nil {
		out.Why = "no such pod in the configuration the agent serves"
		out.Hints = append(out.Hints, "check the name; agentctl workloads lists the pods of this node")
		return out
	}
	out.Found = true
	out.Local = p.Spec.NodeName == a.cfg.NodeName
	for i := range d.local {
		if d.local[i].Namespace == namespace && d.local[i].Pod == pod {
			w := d.local[i]
			out.Workload = &w
			out.Captured, out.Why = w.Captured, w.Reason
			if w.CgroupID != 0 {
				if e, err := a.datapath.Dump("members"); err == nil {
					for _, m := range e {
						if m.Key == fmt.Sprintf("cgroup %d", w.CgroupID) {
							out.BPFMember = m.Value
						}
					}
				}
				if out.BPFMember == "" {
					out.BPFMember = "absent from the members map"
				}
				for _, pr := range a.datapath.Programs() {
					out.Programs = append(out.Programs, fmt.Sprintf("%s (prog %d, link %d) on %s", pr.Name, pr.ID, pr.LinkID, a.cgroupRoot))
				}
			}
		}
	}
	if !out.Local {
		out.Why = "runs on node " + p.Spec.NodeName + ": ask that node's agent"
	}

	// The Services it backs, and the routes of those and of its namespace.
	ips := map[netip.Addr]bool{}
	for _, ip := range model.PodIPs(p) {
		ips[ip] = true
	}
	seen := map[string]bool{}
	for _, s := range d.table.ServicesByRef {
		for _, ep := range s.Endpoints {
			if ips[ep.Addr.Addr()] && !seen[s.Namespace+"/"+s.Name] {
				seen[s.Namespace+"/"+s.Name] = true
				out.Services = append(out.Services, fmt.Sprintf("%s/%s (port %d -> %d)", s.Namespace, s.Name, s.Port, ep.Addr.Port()))
			}
		}
	}
	sort.Strings(out.Services)
	for _, st := range d.routes {
		r := st.Route
		applies := r.Namespace == namespace
		for _, par := range st.Parents {
			if par.ParentRef.Name != "" {
				for svc := range seen {
					if strings.HasSuffix(svc, "/"+string(par.ParentRef.Name)) {
						applies = true
					}
				}
			}
		}
		if applies {
			out.Routes = append(out.Routes, r.String())
		}
	}
	// Policies that select it.
	for k, ap := range d.snap.AuthorizationPolicies {
		if k.Namespace != namespace && k.Namespace != a.cfg.RootNamespace {
			continue
		}
		sel := ap.Spec.Selector
		match := true
		if sel != nil {
			for lk, lv := range sel.MatchLabels {
				if p.Labels[lk] != lv {
					match = false
				}
			}
		}
		if match {
			action := ap.Spec.Action
			if action == "" {
				action = model.ActionAllow
			}
			out.Policies = append(out.Policies, fmt.Sprintf("%s (%s)", k, action))
		}
	}
	sort.Strings(out.Policies)
	// Its certificate.
	if out.Workload != nil && a.certs != nil {
		for _, c := range a.Certs().Certificates {
			if c.Identity == out.Workload.Identity {
				c := c
				out.Certificate = &c
			}
		}
	}
	out.Failures = a.failures.of(key, 10)

	// Hints.
	switch {
	case out.Local && out.Workload != nil && !out.Captured:
		out.Hints = append(out.Hints, "not captured: "+out.Why+"; agentctl trace --pod "+key+" --type capture shows each connect's verdict")
	case out.Local && out.Captured && out.Certificate == nil && a.certs != nil:
		out.Hints = append(out.Hints, "no certificate for "+out.Workload.Identity+" yet: agentctl certs and the CA's log")
	}
	if len(out.Policies) > 0 {
		out.Hints = append(out.Hints, "authorization applies: agentctl trace --type policy_deny shows denials")
	}
	for _, f := range out.Failures {
		switch {
		case strings.Contains(f.Flags, l7proxy.FlagNoRoute):
			out.Hints = append(out.Hints, "requests found no route (NR): agentctl routes --service <service>")
		case strings.Contains(f.Flags, l7proxy.FlagNoHealthyUpstream), strings.Contains(f.Flags, l7proxy.FlagUpstreamConnect):
			out.Hints = append(out.Hints, "endpoints unavailable (UH/UF): agentctl endpoints --service <service>")
		case strings.Contains(f.Flags, l7proxy.FlagUnauthorized):
			out.Hints = append(out.Hints, "denied by authorization (UAEX): agentctl trace --type policy_deny")
		}
		break
	}
	if out.Workload != nil && out.Workload.Mode == model.ModeStrict {
		out.Hints = append(out.Hints, "STRICT: plaintext from outside the mesh is dropped (agentctl trace --type strict_drop)")
	}
	return out
}
