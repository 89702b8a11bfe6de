package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/skeinmesh/skein/scripts/lab"
)

// runConfig is one harness run.
type runConfig struct {
	BinDir     string // skein-agent, skein-ca, skein-lab, skein-bench
	Prefix     string
	Out        string // JSON results
	Doc        string // markdown file to append the run to
	GoBench    string // go test -bench output to summarize, if any
	ProfileDir string
	Commit     string

	Rate         int
	NewConnRate  int
	Conns        int
	Warmup       time.Duration
	Duration     time.Duration
	MaxDuration  time.Duration
	Rounds       int
	IdleConns    int
	Services     int
	EndpointsPer int
	CaptureConns int
	Only         []string // phases: matrix, idle, scale, capture, profile
	Loads        []string // loads of the matrix: h1, h2c, grpc, h1-max, h1-newconn
	WorkDir      string
	ClientCPU    string
	ProxyCPU     string
}

func newRunCommand() *cobra.Command {
	c := runConfig{}
	cmd := &cobra.Command{
		Use:   "run",
		Short: "Bring up the lab, measure Skein against direct, nginx, HAProxy and a Go proxy, write JSON and markdown, tear down",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if os.Geteuid() != 0 {
				return errors.New("run: needs root (the lab makes namespaces, cgroups, BPF)")
			}
			if c.Rate < 1 || c.Conns < 1 || c.Duration <= 0 || c.Rounds < 1 || c.Rounds > 5 {
				return errors.New("--rate, --conns, --duration positive; --rounds 1 to 5")
			}
			ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			return run(ctx, c)
		},
	}
	f := cmd.Flags()
	f.StringVar(&c.BinDir, "bin-dir", "bin", "directory with skein-agent, skein-ca, skein-lab and skein-bench")
	f.StringVar(&c.Prefix, "prefix", "skb", "lab prefix")
	f.StringVar(&c.Out, "out", "bin/bench-results.json", "where to write the JSON results")
	f.StringVar(&c.Doc, "doc", "", "markdown file to append the run's tables to (e.g. docs/benchmarks.md)")
	f.StringVar(&c.GoBench, "gobench", "", "go test -bench output to summarize in the markdown")
	f.StringVar(&c.ProfileDir, "profile-dir", "bin/bench-profiles", "where to keep the agent's pprof profiles")
	f.StringVar(&c.Commit, "commit", "", "commit being measured (for the report)")
	f.IntVar(&c.Rate, "rate", 1000, "fixed request rate of the latency runs")
	f.IntVar(&c.NewConnRate, "newconn-rate", 500, "fixed rate of the new-connection-per-request runs")
	f.IntVar(&c.Conns, "conns", 16, "connections of the client")
	f.DurationVar(&c.Warmup, "warmup", time.Second, "unmeasured load before each run")
	f.DurationVar(&c.Duration, "duration", 4*time.Second, "measured window of each fixed-rate run")
	f.DurationVar(&c.MaxDuration, "max-duration", 3*time.Second, "measured window of each max-throughput run")
	f.IntVar(&c.Rounds, "rounds", 1, "times the whole load matrix is repeated (the median run is reported)")
	f.IntVar(&c.IdleConns, "idle-conns", 10000, "idle keep-alive connections held through Skein")
	f.IntVar(&c.Services, "services", 1000, "Services of the scale test")
	f.IntVar(&c.EndpointsPer, "endpoints-per-service", 10, "endpoints per Service of the scale test")
	f.IntVar(&c.CaptureConns, "capture-conns", 12000, "connections per capture-cost case and round")
	f.StringSliceVar(&c.Only, "only", nil, "run only these phases: matrix, idle, scale, capture, profile")
	f.StringSliceVar(&c.Loads, "loads", nil, "run only these loads of the matrix: h1, h2c, grpc, h1-max, h1-newconn")
	f.StringVar(&c.WorkDir, "work-dir", "bin/bench-work", "directory for the proxies' configs, certificates and logs (emptied first)")
	f.StringVar(&c.ClientCPU, "client-cpu", "0", "CPU of clients and backends")
	f.StringVar(&c.ProxyCPU, "proxy-cpu", "1", "CPU of the proxies under test")
	return cmd
}

func (c runConfig) phase(name string) bool {
	if len(c.Only) == 0 {
		return true
	}
	for _, p := range c.Only {
		if p == name {
			return true
		}
	}
	return false
}

// harness is one run's lab and what runs in it.
type harness struct {
	cfg     runConfig
	lab     *lab.Lab
	proxies *proxySet
	tops    []*topology
	rep     *report
	logf    func(string, ...any)
}

func run(ctx context.Context, c runConfig) (err error) {
	logf := func(format string, args ...any) {
		fmt.Fprintf(os.Stderr, "%s "+format+"\n", append([]any{time.Now().Format("15:04:05")}, args...)...)
	}
	binDir, err := filepath.Abs(c.BinDir)
	if err != nil {
		return err
	}
	c.BinDir = binDir
	for _, b := range []string{"skein-agent", "skein-ca", "skein-lab", "skein-bench"} {
		if _, err := os.Stat(filepath.Join(binDir, b)); err != nil {
			return fmt.Errorf("binary %s: %w (scripts/bench.sh builds them)", b, err)
		}
	}
	// Pod commands (skein-bench, skein-lab) are found on PATH.
	os.Setenv("PATH", binDir+":"+os.Getenv("PATH"))

	// The agent, pinned like the other proxies: a wrapper the lab starts
	// in its place, so its pid, cgroup and netns are the agent's.
	// Configs, certificates, pid files and the proxies' logs: kept after
	// the run for a look at what went wrong.
	work, err := filepath.Abs(c.WorkDir)
	if err != nil {
		return err
	}
	if err := os.RemoveAll(work); err != nil {
		return err
	}
	if err := os.MkdirAll(work, 0o755); err != nil {
		return err
	}
	wrapper := filepath.Join(work, "skein-agent")
	script := fmt.Sprintf("#!/bin/sh\nexec taskset -c %s %s \"$@\"\n", c.ProxyCPU, filepath.Join(binDir, "skein-agent"))
	if err := os.WriteFile(wrapper, []byte(script), 0o755); err != nil {
		return err
	}

	topo, err := lab.Parse([]byte(benchTopology))
	if err != nil {
		return fmt.Errorf("bench topology: %w", err)
	}
	rep := newReport(c)
	h := &harness{cfg: c, rep: rep, logf: logf}
	// Whatever happens from here on, the lab goes down.
	defer func() {
		if h.lab != nil {
			logf("tearing the lab down")
			if derr := h.lab.Down(); derr != nil {
				err = errors.Join(err, fmt.Errorf("tear down: %w", derr))
			}
		} else {
			_ = lab.Teardown(c.Prefix)
		}
	}()
	upCtx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	logf("lab %s up (2 nodes, agents with the CA: mTLS between nodes)", c.Prefix)
	h.lab, err = lab.Up(upCtx, topo, lab.Options{
		Prefix:      c.Prefix,
		AgentBinary: wrapper,
		// The idle phase holds 10,000 connections from one client pod, ten
		// times the default per-workload limit (--max-conns-per-source).
		AgentArgs: []string{"--pprof-addr", "127.0.0.1:6060", "--max-conns-per-source", "-1"},
		CABinary:  filepath.Join(binDir, "skein-ca"),
	})
	if err != nil {
		return fmt.Errorf("lab up: %w", err)
	}
	if err := h.waitLab(upCtx); err != nil {
		return err
	}
	if err := h.lab.SetObjects([]byte(probeRoute("local"))); err != nil {
		return err
	}
	b := backends{
		SrvA: h.lab.Pod("srv-a").IP, GRPCA: h.lab.Pod("grpc-a").IP,
		SrvB: h.lab.Pod("srv-b").IP, GRPCB: h.lab.Pod("grpc-b").IP,
		GatewayA: gatewayA, NodeB: nodeBIP, ServerName: tlsServerName,
		Dir: filepath.Join(work, "proxies"),
	}
	if h.proxies, err = startProxies(upCtx, h.lab, b, c.ProxyCPU); err != nil {
		return err
	}
	tops := h.topologies(b)
	h.tops = tops
	rep.Topologies = tops
	if err := h.sanity(ctx, tops); err != nil {
		return err
	}
	var errs []error
	phase := func(name string, f func(context.Context) error) {
		if !c.phase(name) || ctx.Err() != nil {
			return
		}
		start := time.Now()
		if err := f(ctx); err != nil {
			logf("phase %s failed: %v", name, err)
			errs = append(errs, fmt.Errorf("%s: %w", name, err))
			rep.Failures = append(rep.Failures, fmt.Sprintf("%s: %v", name, err))
		}
		logf("phase %s took %s", name, time.Since(start).Round(time.Second))
	}
	// The memory figures of idle and scale each start from a freshly
	// started agent: a Go heap that has just grown and shrunk would
	// hide growth in its slack.
	phase("matrix", func(ctx context.Context) error { return h.matrix(ctx, tops) })
	phase("profile", h.profile)
	phase("idle", func(ctx context.Context) error { return h.freshAgent(ctx, h.idle) })
	phase("scale", func(ctx context.Context) error { return h.freshAgent(ctx, h.scale) })
	phase("capture", h.capture)
	if ctx.Err() != nil {
		errs = append(errs, ctx.Err())
	}
	rep.Finished = time.Now().UTC()
	rep.LoadAvg[1] = loadAvg()
	if c.GoBench != "" {
		rep.GoBench, _ = parseGoBench(c.GoBench)
	}
	if err := writeJSONFile(c.Out, rep); err != nil {
		errs = append(errs, err)
	} else {
		logf("results in %s", c.Out)
	}
	if c.Doc != "" {
		if err := appendMarkdown(c.Doc, rep); err != nil {
			errs = append(errs, err)
		} else {
			logf("tables appended to %s", c.Doc)
		}
	}
	return errors.Join(errs...)
}

// waitLab waits until both agents are ready and every backend listens.
func (h *harness) waitLab(ctx context.Context) error {
	for _, n := range []string{"node-a", "node-b"} {
		deadline := time.Now().Add(30 * time.Second)
		for {
			out, err := h.lab.ExecNode(ctx, n, "curl", "-sf", "--max-time", "1", "http://127.0.0.1:15020/readyz")
			if err == nil && strings.Contains(string(out), "ready") {
				break
			}
			if time.Now().After(deadline) {
				return fmt.Errorf("agent on %s not ready after 30s: %s\n%s", n, out, tail(h.lab.AgentLog(n), 20))
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
	for pod, port := range map[string]int{"srv-a": 8080, "alt-a": 8080, "grpc-a": 9000, "srv-b": 8080, "grpc-b": 9000} {
		wctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		err := h.lab.WaitTCP(wctx, "bench/"+pod, port)
		cancel()
		if err != nil {
			return err
		}
	}
	return nil
}

// exec runs skein-bench (or another tool) in a pod, pinned to the client
// CPU, and decodes its JSON output into v.
func (h *harness) exec(ctx context.Context, timeout time.Duration, pod string, v any, argv ...string) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	argv = append([]string{"taskset", "-c", h.cfg.ClientCPU}, argv...)
	out, err := h.lab.Exec(ctx, pod, argv...)
	if err != nil {
		return fmt.Errorf("%w: %s", err, tail(string(out), 10))
	}
	if v == nil {
		return nil
	}
	// Only the JSON object: a tool may have logged before it.
	s := string(out)
	if i := strings.Index(s, "{"); i > 0 {
		s = s[i:]
	}
	if err := json.Unmarshal([]byte(s), v); err != nil {
		return fmt.Errorf("decode output of %s: %w: %s", strings.Join(argv, " "), err, tail(string(out), 10))
	}
	return nil
}

func tail(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

func writeJSONFile(path string, v any) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if err := printJSON(f, v); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

func kernelRelease() string {
	var u syscall.Utsname
	if err := syscall.Uname(&u); err != nil {
		return "unknown"
	}
	var b strings.Builder
	for _, c := range u.Release {
		if c == 0 {
			break
		}
		b.WriteByte(byte(c))
	}
	return b.String()
}

// cpuModel names the machine's CPU and counts its CPUs from /proc/cpuinfo
// (runtime.NumCPU counts only those the harness is pinned to).
func cpuModel() string {
	data, _ := os.ReadFile("/proc/cpuinfo")
	model, n := "", 0
	for line := range strings.Lines(string(data)) {
		k, v, ok := strings.Cut(line, ":")
		switch k = strings.TrimSpace(k); {
		case !ok:
		case k == "processor":
			n++
		case k == "model name" && model == "":
			model = strings.TrimSpace(v)
		}
	}
	if n == 0 {
		n = runtime.NumCPU()
	}
	return fmt.Sprintf("%s, %d CPUs", model, n)
}

// freshAgent restarts the node-a agent, waits until it routes again, and
// runs f.
func (h *harness) freshAgent(ctx context.Context, f func(context.Context) error) error {
	if err := h.lab.StopAgent("node-a", syscall.SIGTERM); err != nil {
		return err
	}
	if err := h.lab.StartAgent("node-a"); err != nil {
		return err
	}
	var r pollResult
	err := h.exec(ctx, time.Minute, "bench/client", &r, "skein-bench", "poll", "--target", "http://"+vipProbe+"/",
		"--want-pod", "srv-a", "--interval", "20ms", "--timeout", "30s")
	if err != nil {
		return err
	}
	if !r.Found {
		return fmt.Errorf("restarted agent on node-a does not route: %d polls, %s\n%s", r.Polls, r.FirstError, tail(h.lab.AgentLog("node-a"), 20))
	}
	time.Sleep(2 * time.Second) // let start-up garbage be collected
	return f(ctx)
}
