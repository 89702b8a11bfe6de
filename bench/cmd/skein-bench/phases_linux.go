package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/skeinmesh/skein/bench"
)

// idle holds many idle keep-alive connections through the node-a agent.
func (h *harness) idle(ctx context.Context) error {
	pid := h.lab.AgentPid("node-a")
	if pid == 0 {
		return errors.New("no agent on node-a")
	}
	h.logf("idle: %d keep-alive connections through Skein", h.cfg.IdleConns)
	// While they are held, a heap profile says what a connection costs.
	heapDone := make(chan struct{})
	go func() {
		defer close(heapDone)
		deadline := time.Now().Add(90 * time.Second)
		for time.Now().Before(deadline) && ctx.Err() == nil {
			fds, _ := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid))
			if len(fds) >= h.cfg.IdleConns {
				h.heapProfile(ctx, "idle-conns")
				return
			}
			time.Sleep(100 * time.Millisecond)
		}
	}()
	var r idleResult
	err := h.exec(ctx, 3*time.Minute, "bench/client", &r, "skein-bench", "idle", "--target", "http://"+vipLocal+"/",
		"--conns", strconv.Itoa(h.cfg.IdleConns), "--watch-pid", strconv.Itoa(pid), "--timeout", "150s", "--settle", "3s")
	<-heapDone
	if err != nil {
		return err
	}
	h.rep.Idle = &r
	h.logf("idle: %d open (%d errors) in %.1fs; agent RSS %.1f -> %.1f MB (anon %.1f -> %.1f): %.1f KB per connection",
		r.Opened, r.Errors, r.OpenSeconds, mb(r.RSSBefore), mb(r.RSSAfter), mb(r.AnonBefore), mb(r.AnonAfter), r.PerConn/1024)
	if r.Opened < r.Wanted {
		return fmt.Errorf("only %d of %d connections opened: %s", r.Opened, r.Wanted, r.FirstError)
	}
	return nil
}

func mb(b int64) float64 { return float64(b) / (1 << 20) }

// scaleResult is the agent at a large configuration.
type scaleResult struct {
	Services    int   `json:"services"`
	Endpoints   int   `json:"endpoints"`
	Routes      int   `json:"routes"`
	ConfigBytes int   `json:"configBytes"`
	RSSBefore   int64 `json:"rssBeforeBytes"` // node-a agent, small config
	RSSAfter    int64 `json:"rssAfterBytes"`  // node-a agent, large config applied
	PeakAfter   int64 `json:"peakRssAfterBytes"`
	AnonBefore  int64 `json:"anonRssBeforeBytes"`
	AnonAfter   int64 `json:"anonRssAfterBytes"`
	// Route change times (write the config, change one HTTPRoute, until
	// the new backend answers), in milliseconds.
	SmallChangeMs []float64 `json:"smallChangeMs"`
	LoadMs        float64   `json:"loadMs"` // writing the large config until a route in it answers
	ChangeMs      []float64 `json:"changeMs"`
	// During each large change: the node-a agent's time on a CPU and
	// waiting in a run queue for one (contention), in milliseconds.
	ChangeRunMs  []float64 `json:"changeRunMs"`
	ChangeWaitMs []float64 `json:"changeWaitMs"`
	// ChangeCPUBusyMs is how long the agent's CPU was busy in that window,
	// whoever used it.
	ChangeCPUBusyMs []float64 `json:"changeCpuBusyMs"`
}

// scale measures route-change time at the lab's small configuration, then
// loads Services x endpoints (with one HTTPRoute each) and measures the
// agent's memory and route-change time again.
func (h *harness) scale(ctx context.Context) error {
	pid := h.lab.AgentPid("node-a")
	if pid == 0 {
		return errors.New("no agent on node-a")
	}
	// In the lab both agents read the same file on the same CPU, and the
	// harness writes it there: a real node has its agent to itself. For
	// this phase the node-b agent and the harness move to the client CPU.
	if b := h.lab.AgentPid("node-b"); b > 0 {
		if err := pinProcess(ctx, b, h.cfg.ClientCPU); err != nil {
			return err
		}
		defer pinProcess(context.WithoutCancel(ctx), b, h.cfg.ProxyCPU)
	}
	if err := pinProcess(ctx, os.Getpid(), h.cfg.ClientCPU); err != nil {
		return err
	}
	defer pinProcess(context.WithoutCancel(ctx), os.Getpid(), h.cfg.ProxyCPU)
	r := &scaleResult{Services: h.cfg.Services, Endpoints: h.cfg.Services * h.cfg.EndpointsPer, Routes: h.cfg.Services}
	h.rep.Scale = r
	small := func(backend string) []byte { return []byte(probeRoute(backend)) }
	big := func(backend string) []byte {
		return append(scaleObjects(h.cfg.Services, h.cfg.EndpointsPer), probeRoute(backend)...)
	}
	r.ConfigBytes = len(big("local"))
	// Route changes at the small configuration: local -> alt -> local.
	for _, to := range []string{"alt", "local", "alt", "local"} {
		d, err := h.timeRouteChange(ctx, small(to), podOf(to))
		if err != nil {
			return fmt.Errorf("route change (small config): %w", err)
		}
		r.SmallChangeMs = append(r.SmallChangeMs, ms(d))
	}
	runtimeSettle()
	m, err := bench.Memory(pid)
	if err != nil {
		return err
	}
	r.RSSBefore, r.AnonBefore = m.RSS, m.Anon
	if err := bench.ResetPeak(pid); err != nil {
		return err
	}
	h.logf("scale: loading %d Services, %d endpoints, %d HTTPRoutes (%.1f MB of YAML)", r.Services, r.Endpoints, r.Routes, mb(int64(r.ConfigBytes)))
	d, err := h.timeRouteChange(ctx, big("alt"), podOf("alt"))
	if err != nil {
		return fmt.Errorf("load the large config: %w", err)
	}
	r.LoadMs = ms(d)
	runtimeSettle()
	if m, err = bench.Memory(pid); err != nil {
		return err
	}
	r.RSSAfter, r.PeakAfter, r.AnonAfter = m.RSS, m.Peak, m.Anon
	for i, to := range []string{"local", "alt", "local"} {
		// The first change is profiled: where do the seconds go?
		var prof chan error
		cpuFile := ""
		if i == 0 && h.cfg.phase("profile") {
			prof = make(chan error, 1)
			dir, _ := filepath.Abs(h.cfg.ProfileDir)
			_ = os.MkdirAll(dir, 0o755)
			cpuFile = filepath.Join(dir, "route-change-node-a.cpu.pprof")
			go func() { prof <- h.fetchProfile(ctx, "node-a", "/debug/pprof/profile?seconds=6", cpuFile) }()
		}
		proxyCPU, _ := strconv.Atoi(h.cfg.ProxyCPU)
		busy0, _ := bench.CPUBusy(proxyCPU)
		run0, wait0, _ := bench.SchedTimes(pid)
		d, err := h.timeRouteChange(ctx, big(to), podOf(to))
		if err != nil {
			return fmt.Errorf("route change (large config): %w", err)
		}
		run1, wait1, _ := bench.SchedTimes(pid)
		busy1, _ := bench.CPUBusy(proxyCPU)
		r.ChangeCPUBusyMs = append(r.ChangeCPUBusyMs, ms(busy1-busy0))
		r.ChangeMs = append(r.ChangeMs, ms(d))
		// The window also holds the poller's 0.7 s head start, in which
		// the agent idles.
		r.ChangeRunMs = append(r.ChangeRunMs, ms(run1-run0))
		r.ChangeWaitMs = append(r.ChangeWaitMs, ms(wait1-wait0))
		if prof != nil {
			if err := <-prof; err != nil {
				h.logf("scale: no profile of the route change: %v", err)
				continue
			}
			ps := profileSummary{Name: "route-change", Topology: "route change at scale", Node: "node-a", Files: []string{cpuFile}}
			ps.CPUTop, _ = pprofTop(ctx, filepath.Join(h.cfg.BinDir, "skein-agent"), cpuFile, "-top", "-nodecount=25")
			ps.CPUTopCum, _ = pprofTop(ctx, filepath.Join(h.cfg.BinDir, "skein-agent"), cpuFile, "-top", "-cum", "-nodecount=30")
			h.rep.Profiles = append(h.rep.Profiles, ps)
		}
	}
	h.logf("scale: agent on CPU %v ms, waiting for a CPU %v ms, its CPU busy %v ms during the large changes", r.ChangeRunMs, r.ChangeWaitMs, r.ChangeCPUBusyMs)
	h.logf("scale: load %.0fms; agent RSS %.1f -> %.1f MB (peak %.1f, anon %.1f -> %.1f); route change small %v ms, large %v ms",
		r.LoadMs, mb(r.RSSBefore), mb(r.RSSAfter), mb(r.PeakAfter), mb(r.AnonBefore), mb(r.AnonAfter), r.SmallChangeMs, r.ChangeMs)
	// Back to the small configuration for what follows.
	return h.lab.SetObjects(small("local"))
}

func runtimeSettle() { time.Sleep(2 * time.Second) }

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

func podOf(service string) string {
	if service == "alt" {
		return "alt-a"
	}
	return "srv-a"
}

// timeRouteChange starts a poller in the client pod, writes objects, and
// returns how long after the write the wanted pod first answered.
func (h *harness) timeRouteChange(ctx context.Context, objects []byte, want string) (time.Duration, error) {
	type res struct {
		r   pollResult
		err error
	}
	ch := make(chan res, 1)
	go func() {
		var r pollResult
		err := h.exec(ctx, 90*time.Second, "bench/client", &r, "skein-bench", "poll",
			"--target", "http://"+vipProbe+"/", "--want-pod", want, "--interval", "1ms", "--timeout", "60s")
		ch <- res{r, err}
	}()
	time.Sleep(700 * time.Millisecond) // the poller is up and sees the old backend
	t0 := time.Now()
	if err := h.lab.SetObjects(objects); err != nil {
		<-ch
		return 0, err
	}
	out := <-ch
	switch {
	case out.err != nil:
		return 0, out.err
	case !out.r.Found:
		return 0, fmt.Errorf("%s never answered (%d polls, last %q, %d errors: %s)", want, out.r.Polls, out.r.LastPod, out.r.Errors, out.r.FirstError)
	case out.r.FirstPod == want:
		return 0, fmt.Errorf("%s answered the first poll: the poller started too late to time the change", want)
	}
	return time.Unix(0, out.r.FirstMatchUnixNano).Sub(t0), nil
}

// scaleObjects is n Services in namespace bench, each with an
// EndpointSlice of per endpoints (addresses no pod has, on both nodes) and
// an HTTPRoute, as a GAMMA user would write them.
func scaleObjects(n, per int) []byte {
	var b strings.Builder
	k := 0
	for i := range n {
		name := fmt.Sprintf("scale-%04d", i)
		ip := fmt.Sprintf("10.96.%d.%d", 100+i/250, i%250+1)
		fmt.Fprintf(&b, `apiVersion: v1
kind: Service
metadata: {name: %s, namespace: bench}
spec:
  type: ClusterIP
  clusterIP: %s
  clusterIPs: [%s]
  ports: [{name: http, port: 80, protocol: TCP, targetPort: 8080}]
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata:
  name: %s-1
  namespace: bench
  labels: {kubernetes.io/service-name: %s, endpointslice.kubernetes.io/managed-by: skein-bench}
addressType: IPv4
ports: [{name: http, port: 8080, protocol: TCP}]
endpoints:
`, name, ip, ip, name, name)
		for j := range per {
			node := "node-a"
			if j%2 == 1 {
				node = "node-b"
			}
			fmt.Fprintf(&b, "- {addresses: [10.245.%d.%d], conditions: {ready: true, serving: true, terminating: false}, nodeName: %s}\n", k/250, k%250+1, node)
			k++
		}
		fmt.Fprintf(&b, `---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: %s, namespace: bench}
spec:
  parentRefs: [{group: "", kind: Service, name: %s, port: 80}]
  rules:
  - matches: [{path: {type: PathPrefix, value: /api}}]
    backendRefs: [{name: %s, port: 80}]
---
`, name, name, name)
	}
	return []byte(b.String())
}

// profile takes CPU and allocation profiles of the agents under a
// closed-loop HTTP/1.1 load (as fast as the client goes: enough samples
// for the per-request costs to stand out; at 1,000 rps a 5 s profile holds
// a few dozen), same node and cross node, and keeps the top of each.
func (h *harness) profile(ctx context.Context) error {
	dir, err := filepath.Abs(h.cfg.ProfileDir)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	tops := map[string]*topology{}
	for _, t := range h.tops {
		tops[t.Name] = t
	}
	agentBin := filepath.Join(h.cfg.BinDir, "skein-agent")
	for _, p := range []struct{ topo, node string }{{"skein", "node-a"}, {"skein-x", "node-a"}, {"skein-x", "node-b"}} {
		name := p.topo + "-" + p.node
		get := func(path, file string) error { return h.fetchProfile(ctx, p.node, path, file) }
		cpuFile := filepath.Join(dir, name+".cpu.pprof")
		allocBefore := filepath.Join(dir, name+".allocs-before.pprof")
		allocAfter := filepath.Join(dir, name+".allocs.pprof")
		if err := get("/debug/pprof/allocs", allocBefore); err != nil {
			return err
		}
		loadDone := make(chan error, 1)
		go func() {
			_, err := h.runOne(ctx, tops[p.topo], loadSpec{Name: "h1-max", Proto: "h1", Rate: 0, Duration: 6 * time.Second}, time.Second)
			loadDone <- err
		}()
		time.Sleep(1500 * time.Millisecond)
		perr := get("/debug/pprof/profile?seconds=5", cpuFile)
		lerr := <-loadDone
		if err := errors.Join(perr, lerr); err != nil {
			return err
		}
		if err := get("/debug/pprof/allocs", allocAfter); err != nil {
			return err
		}
		ps := profileSummary{Name: name, Topology: p.topo, Node: p.node, Files: []string{cpuFile, allocAfter}}
		ps.CPUTop, err = pprofTop(ctx, agentBin, cpuFile, "-top", "-nodecount=25")
		if err != nil {
			return err
		}
		ps.CPUTopCum, _ = pprofTop(ctx, agentBin, cpuFile, "-top", "-cum", "-nodecount=25")
		ps.AllocTop, err = pprofTop(ctx, agentBin, allocAfter, "-top", "-nodecount=20", "-sample_index=alloc_space", "-base", allocBefore)
		if err != nil {
			return err
		}
		h.rep.Profiles = append(h.rep.Profiles, ps)
		h.logf("profile %s: %d CPU lines, %d alloc lines (%s)", name, len(ps.CPUTop), len(ps.AllocTop), dir)
	}
	return nil
}

// pprofTop runs go tool pprof and returns its table (header and rows).
func pprofTop(ctx context.Context, bin, file string, args ...string) ([]string, error) {
	ctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	argv := append([]string{"tool", "pprof"}, args...)
	argv = append(argv, bin, file)
	out, err := exec.CommandContext(ctx, "go", argv...).CombinedOutput()
	if err != nil {
		return nil, fmt.Errorf("go tool pprof %s: %w: %s", file, err, tail(string(out), 5))
	}
	var lines []string
	for line := range strings.Lines(string(out)) {
		lines = append(lines, strings.TrimRight(line, "\n"))
	}
	// Keep from the summary lines ("Showing nodes ...") on.
	if i := slices.IndexFunc(lines, func(s string) bool { return strings.HasPrefix(s, "Showing nodes") }); i > 0 {
		lines = lines[i:]
	}
	return lines, nil
}

// fetchProfile saves a pprof endpoint of a node's agent (--pprof-addr) to
// file, with curl in the node's network namespace.
func (h *harness) fetchProfile(ctx context.Context, node, path, file string) error {
	out, err := h.lab.ExecNode(ctx, node, "curl", "-sf", "--max-time", "30", "-o", file, "http://127.0.0.1:6060"+path)
	if err != nil {
		return fmt.Errorf("fetch %s from the agent on %s (is --pprof-addr supported?): %w: %s", path, node, err, out)
	}
	return nil
}

// heapProfile saves the node-a agent's in-use heap and keeps its top.
func (h *harness) heapProfile(ctx context.Context, name string) {
	dir, _ := filepath.Abs(h.cfg.ProfileDir)
	_ = os.MkdirAll(dir, 0o755)
	file := filepath.Join(dir, name+".heap.pprof")
	// The goroutine count, too: one per connection or more?
	if err := h.fetchProfile(ctx, "node-a", "/debug/pprof/heap?gc=1", file); err != nil {
		h.logf("%s: no heap profile: %v", name, err)
		return
	}
	ps := profileSummary{Name: name, Topology: "idle connections", Node: "node-a", Files: []string{file}}
	ps.AllocTop, _ = pprofTop(ctx, filepath.Join(h.cfg.BinDir, "skein-agent"), file, "-top", "-nodecount=20", "-sample_index=inuse_space")
	gfile := filepath.Join(dir, name+".goroutines.txt")
	if err := h.fetchProfile(ctx, "node-a", "/debug/pprof/goroutine?debug=1", gfile); err == nil {
		// The stacks that hold the most goroutines (debug=1 lists them by
		// count), without the addresses.
		data, _ := os.ReadFile(gfile)
		blocks := strings.Split(string(data), "\n\n")
		for _, block := range blocks[:min(3, len(blocks))] {
			for _, line := range strings.Split(block, "\n")[:min(len(strings.Split(block, "\n")), 18)] {
				if f := strings.Fields(line); len(f) >= 3 && f[0] == "#" {
					line = "#   " + f[2] // function name
				} else if n, _, ok := strings.Cut(line, " @ "); ok {
					line = n + " goroutines:"
				}
				ps.CPUTop = append(ps.CPUTop, line)
			}
		}
	}
	h.rep.Profiles = append(h.rep.Profiles, ps)
}

// pinProcess sets the CPU affinity of every thread of a process.
func pinProcess(ctx context.Context, pid int, cpus string) error {
	out, err := exec.CommandContext(ctx, "taskset", "-a", "-p", "-c", cpus, strconv.Itoa(pid)).CombinedOutput()
	if err != nil {
		return fmt.Errorf("pin pid %d to CPU %s: %w: %s", pid, cpus, err, out)
	}
	return nil
}
