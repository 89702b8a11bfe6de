package main

import (
	"context"
	"fmt"
	"slices"
	"strconv"
	"time"

	"github.com/skeinmesh/skein/bench"
)

// topology is one way from a client pod to a backend.
type topology struct {
	Name  string `json:"name"`
	Label string `json:"label"`
	Cross bool   `json:"crossNode"`
	// Client is the pod the load runs in.
	Client string `json:"client"`
	// Targets by protocol (h1, h2c: URL; grpc: host:port). A protocol
	// without a target is not measured in this topology.
	Targets map[string]string `json:"targets"`
	// IdleCPUms is the proxies' CPU with no traffic, in ms per second;
	// IdleRSS and IdleAnon their memory then.
	IdleCPUms float64 `json:"idleCpuMsPerSec"`
	IdleRSS   int64   `json:"idleRssBytes"`
	IdleAnon  int64   `json:"idleAnonRssBytes"`
	// pids are the proxy processes whose CPU and memory count.
	pids func() []int
}

// loadSpec is one kind of load.
type loadSpec struct {
	Name     string
	Proto    string
	Rate     int // 0: closed loop, max throughput
	NewConn  bool
	Duration time.Duration
}

func (h *harness) topologies(b backends) []*topology {
	agent := func(nodes ...string) func() []int {
		return func() []int {
			var out []int
			for _, n := range nodes {
				if pid := h.lab.AgentPid(n); pid > 0 {
					out = append(out, pid)
				}
			}
			return out
		}
	}
	p := h.proxies
	pids := func(ps ...int) func() []int { return func() []int { return withChildren(ps...) } }
	proxied := func(base, off int) map[string]string {
		at := func(o int) string { return fmt.Sprintf("%s:%d", gatewayA, base+off+o) }
		return map[string]string{"h1": "http://" + at(offH1) + "/", "h2c": "http://" + at(offH2C) + "/", "grpc": at(offGRPC)}
	}
	direct := func(http, grpc string) map[string]string {
		return map[string]string{"h1": "http://" + http + ":8080/", "h2c": "http://" + http + ":8080/", "grpc": grpc + ":9000"}
	}
	goTargets := func(port int) map[string]string {
		a := fmt.Sprintf("%s:%d", gatewayA, port)
		return map[string]string{"h1": "http://" + a + "/", "h2c": "http://" + a + "/", "grpc": a}
	}
	return []*topology{
		{Name: "direct", Label: "direct (no proxy)", Client: "plain/raw", Targets: direct(b.SrvA, b.GRPCA), pids: func() []int { return nil }},
		{Name: "skein", Label: "Skein", Client: "bench/client", pids: agent("node-a"),
			Targets: map[string]string{"h1": "http://" + vipLocal + "/", "h2c": "http://" + vipLocal + "/", "grpc": vipGRPCLoc + ":9000"}},
		{Name: "haproxy", Label: "HAProxy 2.6", Client: "plain/raw", Targets: proxied(portHAProxy, 0), pids: pids(p.haproxyA)},
		{Name: "nginx", Label: "nginx 1.22", Client: "plain/raw", Targets: proxied(portNginx, 0), pids: pids(p.nginxA)},
		{Name: "goproxy", Label: "Go ReverseProxy", Client: "plain/raw", Targets: goTargets(portGo), pids: pids(p.goA)},
		{Name: "direct-x", Label: "direct (no proxy)", Cross: true, Client: "plain/raw", Targets: direct(b.SrvB, b.GRPCB), pids: func() []int { return nil }},
		{Name: "skein-x", Label: "Skein (mTLS tunnel)", Cross: true, Client: "bench/client", pids: agent("node-a", "node-b"),
			Targets: map[string]string{"h1": "http://" + vipRemote + "/", "h2c": "http://" + vipRemote + "/", "grpc": vipGRPCRem + ":9000"}},
		{Name: "haproxy-x", Label: "HAProxy 2.6 pair (TLS)", Cross: true, Client: "plain/raw", Targets: proxied(portHAProxy, offCross), pids: pids(p.haproxyA, p.haproxyB)},
		{Name: "nginx-x", Label: "nginx 1.22 pair (TLS)", Cross: true, Client: "plain/raw", Targets: proxied(portNginx, offCross), pids: pids(p.nginxA, p.nginxB)},
		{Name: "goproxy-x", Label: "Go ReverseProxy pair (TLS)", Cross: true, Client: "plain/raw", Targets: goTargets(portGo + offCross), pids: pids(p.goAX, p.goB)},
	}
}

func (h *harness) loads() []loadSpec {
	c := h.cfg
	all := []loadSpec{
		{Name: "h1", Proto: "h1", Rate: c.Rate, Duration: c.Duration},
		{Name: "h2c", Proto: "h2c", Rate: c.Rate, Duration: c.Duration},
		{Name: "grpc", Proto: "grpc", Rate: c.Rate, Duration: c.Duration},
		{Name: "h1-max", Proto: "h1", Rate: 0, Duration: c.MaxDuration},
		{Name: "h1-newconn", Proto: "h1", Rate: c.NewConnRate, NewConn: true, Duration: c.Duration},
	}
	if len(c.Loads) == 0 {
		return all
	}
	return slices.DeleteFunc(all, func(l loadSpec) bool { return !slices.Contains(c.Loads, l.Name) })
}

// runOne runs one load against one topology.
func (h *harness) runOne(ctx context.Context, t *topology, l loadSpec, warmup time.Duration) (*loadResult, error) {
	target, ok := t.Targets[l.Proto]
	if !ok {
		return nil, nil
	}
	args := []string{"skein-bench", "load", "--proto", l.Proto, "--target", target,
		"--rate", strconv.Itoa(l.Rate), "--conns", strconv.Itoa(h.cfg.Conns),
		"--warmup", warmup.String(), "--duration", l.Duration.String()}
	if l.NewConn {
		args = append(args, "--new-conn")
	}
	for _, pid := range t.pids() {
		args = append(args, "--watch-pid", strconv.Itoa(pid))
	}
	var r loadResult
	if err := h.exec(ctx, warmup+l.Duration+45*time.Second, t.Client, &r, args...); err != nil {
		return nil, err
	}
	return &r, nil
}

// sanity checks every topology and protocol with a few requests, retrying
// while the proxies come up, and drops (with a note in the report) what
// does not work, so one broken path does not sink the run.
func (h *harness) sanity(ctx context.Context, tops []*topology) error {
	for _, t := range tops {
		for _, proto := range []string{"h1", "h2c", "grpc"} {
			if _, ok := t.Targets[proto]; !ok {
				continue
			}
			var last string
			for attempt := 0; ; attempt++ {
				r, err := h.runOne(ctx, t, loadSpec{Name: "sanity", Proto: proto, Rate: 100, Duration: 100 * time.Millisecond}, 0)
				if err == nil && r.Errors == 0 && r.Requests > 0 {
					break
				}
				if err != nil {
					last = err.Error()
				} else {
					last = fmt.Sprintf("%d errors, first: %s", r.Errors, r.FirstError)
				}
				if attempt == 4 || ctx.Err() != nil {
					h.logf("sanity: %s %s does not work, left out: %s", t.Name, proto, last)
					h.rep.Failures = append(h.rep.Failures, fmt.Sprintf("%s %s left out: %s", t.Name, proto, last))
					delete(t.Targets, proto)
					break
				}
				time.Sleep(500 * time.Millisecond)
			}
		}
	}
	return ctx.Err()
}

// matrix runs every load against every topology, interleaved (all
// topologies for one load, then the next load), so that drift in the
// machine's background noise hits every topology alike.
func (h *harness) matrix(ctx context.Context, tops []*topology) error {
	h.idleCPU(ctx, tops)
	for round := range h.cfg.Rounds {
		for _, l := range h.loads() {
			for _, t := range tops {
				if ctx.Err() != nil {
					return ctx.Err()
				}
				r, err := h.runOne(ctx, t, l, h.cfg.Warmup)
				if err != nil {
					h.logf("%s %s: %v", t.Name, l.Name, err)
					h.rep.Failures = append(h.rep.Failures, fmt.Sprintf("%s %s: %v", t.Name, l.Name, err))
					continue
				}
				if r == nil {
					continue
				}
				h.rep.Runs = append(h.rep.Runs, runRecord{Topology: t.Name, Load: l.Name, Round: round, Result: *r})
				h.logf("%-10s %-10s p50 %7.0fus p99 %7.0fus p99.9 %7.0fus rps %7.0f cpu/1k %6.1fms peak %5.1fMB err %d",
					t.Name, l.Name, r.Latency.P50, r.Latency.P99, r.Latency.P999, r.RPS, r.ProcCPUPer1k*1000, float64(r.ProcPeakRSS)/(1<<20), r.Errors)
			}
		}
	}
	return nil
}

// idleCPU measures what each topology's proxies burn with no traffic at
// all (timers, telemetry, config watching), so that it can be told apart
// from the per-request cost in the CPU per 1,000 requests at a fixed rate.
func (h *harness) idleCPU(ctx context.Context, tops []*topology) {
	const window = 3 * time.Second
	before := map[string]bench.ProcSample{}
	for _, t := range tops {
		if pids := t.pids(); len(pids) > 0 {
			if s, err := bench.SampleProcs(pids); err == nil {
				before[t.Name] = s
			}
		}
	}
	select {
	case <-time.After(window):
	case <-ctx.Done():
		return
	}
	for _, t := range tops {
		b, ok := before[t.Name]
		if !ok {
			continue
		}
		if a, err := bench.SampleProcs(t.pids()); err == nil {
			t.IdleCPUms = (a.CPU - b.CPU) / window.Seconds() * 1000
			t.IdleRSS, t.IdleAnon = a.RSS, a.Anon
		}
	}
}
