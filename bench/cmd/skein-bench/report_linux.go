package main

import (
	"bufio"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"time"
)

// report is everything one run measured (written as JSON, summarized as
// markdown).
type report struct {
	Started  time.Time `json:"started"`
	Finished time.Time `json:"finished"`
	Kernel   string    `json:"kernel"`
	Commit   string    `json:"commit"`
	Go       string    `json:"go"`
	CPU      string    `json:"cpu"`
	Pinning  string    `json:"pinning"`
	Config   runConfig `json:"config"`
	Versions []string  `json:"versions"`
	// LoadAvg is /proc/loadavg at the start and at the end: how busy the
	// machine was with other work.
	LoadAvg [2]string `json:"loadAvg"`

	Topologies []*topology      `json:"topologies"`
	Runs       []runRecord      `json:"runs"`
	Idle       *idleResult      `json:"idle,omitempty"`
	Scale      *scaleResult     `json:"scale,omitempty"`
	Capture    []*captureCase   `json:"capture,omitempty"`
	Profiles   []profileSummary `json:"profiles,omitempty"`
	GoBench    []goBenchResult  `json:"goBench,omitempty"`
	Failures   []string         `json:"failures,omitempty"`
}

type runRecord struct {
	Topology string     `json:"topology"`
	Load     string     `json:"load"`
	Round    int        `json:"round"`
	Result   loadResult `json:"result"`
}

type profileSummary struct {
	Name      string   `json:"name"`
	Topology  string   `json:"topology"`
	Node      string   `json:"node"`
	Files     []string `json:"files"`
	CPUTop    []string `json:"cpuTop"`
	CPUTopCum []string `json:"cpuTopCum"`
	AllocTop  []string `json:"allocTop"`
}

type goBenchResult struct {
	Package     string  `json:"package"`
	Name        string  `json:"name"`
	Runs        int     `json:"runs"`
	NsPerOp     float64 `json:"nsPerOp"` // median
	BytesPerOp  float64 `json:"bytesPerOp"`
	AllocsPerOp float64 `json:"allocsPerOp"`
}

func newReport(c runConfig) *report {
	r := &report{
		Started: time.Now().UTC(), Kernel: kernelRelease(), Commit: c.Commit, Go: runtime.Version(), CPU: cpuModel(), Config: c,
		Pinning: fmt.Sprintf("clients and backends on CPU %s, every proxy process (Skein agents, nginx, HAProxy, Go proxy) on CPU %s, with taskset; "+
			"Go processes take GOMAXPROCS=1 from the affinity mask, nginx runs 1 worker, HAProxy 1 thread", c.ClientCPU, c.ProxyCPU),
	}
	r.LoadAvg[0] = loadAvg()
	for _, v := range [][]string{{"nginx", "-v"}, {"haproxy", "-v"}} {
		out, _ := exec.Command(v[0], v[1:]...).CombinedOutput()
		if line, _, _ := strings.Cut(string(out), "\n"); line != "" {
			r.Versions = append(r.Versions, strings.TrimSpace(line))
		}
	}
	return r
}

// pick returns the median round of a topology under a load (by p50 for
// fixed-rate loads, by throughput for max), or nil.
func (r *report) pick(topo, load string) *loadResult {
	var rs []*loadResult
	for i := range r.Runs {
		if r.Runs[i].Topology == topo && r.Runs[i].Load == load {
			rs = append(rs, &r.Runs[i].Result)
		}
	}
	if len(rs) == 0 {
		return nil
	}
	slices.SortFunc(rs, func(a, b *loadResult) int {
		if a.Mode == "max" {
			return cmpF(a.RPS, b.RPS)
		}
		return cmpF(a.Latency.P50, b.Latency.P50)
	})
	return rs[len(rs)/2]
}

func cmpF(a, b float64) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

func (r *report) topo(name string) *topology {
	for _, t := range r.Topologies {
		if t.Name == name {
			return t
		}
	}
	return nil
}

func f0(v float64) string { return strconv.FormatFloat(v, 'f', 0, 64) }
func f1(v float64) string { return strconv.FormatFloat(v, 'f', 1, 64) }
func f2(v float64) string { return strconv.FormatFloat(v, 'f', 2, 64) }
func signed(v float64) string {
	if v >= 0 {
		return "+" + f0(v)
	}
	return f0(v)
}

// markdown renders the run as a section of docs/benchmarks.md.
func (r *report) markdown() string {
	var b strings.Builder
	w := func(format string, args ...any) { fmt.Fprintf(&b, format, args...) }
	c := r.Config
	w("\n## Run of %s (kernel %s, commit %s)\n\n", r.Started.Format("2006-01-02 15:04 MST"), r.Kernel, r.Commit)
	w("Machine: %s; %s; %s. %s.\n", r.CPU, r.Go, strings.Join(r.Versions, "; "), r.Pinning)
	w("Fixed-rate runs: %d requests/s on a fixed schedule, %d connections, 1 KB responses, %s warm-up then %s measured; "+
		"latency is measured from each request's intended send time (coordinated-omission free), percentiles from all samples. "+
		"Proxy CPU is utime+stime of the proxy processes over the measured window (both hops for cross-node rows); peak RSS is VmHWM "+
		"reset at the window's start (summed over the processes). Took %s. Load average (1, 5, 15 min) %s at the start, %s at the end: "+
		"other work shared the machine, unpinned, so tails (p99, p99.9) carry its noise.\n",
		c.Rate, c.Conns, c.Warmup, c.Duration, r.Finished.Sub(r.Started).Round(time.Second), r.LoadAvg[0], r.LoadAvg[1])

	for _, l := range []struct{ load, title string }{
		{"h1", fmt.Sprintf("HTTP/1.1 keep-alive, %d rps", c.Rate)},
		{"h2c", fmt.Sprintf("HTTP/2 cleartext (h2c), %d rps", c.Rate)},
		{"grpc", fmt.Sprintf("gRPC unary (grpc-go client, skein-lab grpc-server), %d rps", c.Rate)},
	} {
		if !r.has(l.load) {
			continue
		}
		w("\n### %s\n\n", l.title)
		w("| path | topology | p50 µs | p90 µs | p99 µs | p99.9 µs | added p50 µs | added p99 µs | proxy CPU ms / 1k req | proxy peak RSS MB (anon) | errors |\n")
		w("|---|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|\n")
		for _, t := range r.Topologies {
			res := r.pick(t.Name, l.load)
			if res == nil {
				continue
			}
			base := r.pick(directOf(t), l.load)
			add50, add99 := "", ""
			if base != nil && !strings.HasPrefix(t.Name, "direct") {
				add50, add99 = signed(res.Latency.P50-base.Latency.P50), signed(res.Latency.P99-base.Latency.P99)
			}
			cpu, rss := "", ""
			if !strings.HasPrefix(t.Name, "direct") {
				cpu, rss = f2(res.ProcCPUPer1k*1000), f1(mb(res.ProcPeakRSS))+" ("+f1(mb(res.ProcAnonRSS))+")"
			}
			w("| %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %d |\n", where(t), t.Label,
				f0(res.Latency.P50), f0(res.Latency.P90), f0(res.Latency.P99), f0(res.Latency.P999), add50, add99, cpu, rss, res.Errors)
		}
	}
	if len(r.Runs) > 0 {
		r.restAndMax(w)
	}
	if s := r.Scale; s != nil || r.Idle != nil {
		w("\n### Skein at scale\n\n")
		if i := r.Idle; i != nil {
			w("- %d idle HTTP/1.1 keep-alive connections through the node-a agent (one request each, then held): %d opened in %.1f s, %d errors; "+
				"agent RSS %.1f MB before, %.1f MB with them open (anon %.1f -> %.1f MB): **%.1f KB per connection**.\n",
				i.Wanted, i.Opened, i.OpenSeconds, i.Errors, mb(i.RSSBefore), mb(i.RSSAfter), mb(i.AnonBefore), mb(i.AnonAfter), i.PerConn/1024)
		}
		if s != nil {
			w("- %d Services, %d endpoints, %d HTTPRoutes (%.1f MB of YAML): node-a agent RSS %.1f MB before, %.1f MB after (peak %.1f MB; anon %.1f -> %.1f MB); "+
				"writing that config until a route in it answered: %.0f ms.\n",
				s.Services, s.Endpoints, s.Routes, mb(int64(s.ConfigBytes)), mb(s.RSSBefore), mb(s.RSSAfter), mb(s.PeakAfter), mb(s.AnonBefore), mb(s.AnonAfter), s.LoadMs)
			w("- Route change (rewrite the config with one HTTPRoute's backend changed, poll on new connections every 1 ms until the new backend answers): "+
				"small config %s ms; at %d Services %s ms. During each of the latter (a window that also holds the poller's 0.7 s head start) "+
				"the agent's threads ran for %s ms and waited in a run queue for %s ms (summed over threads), while its CPU was busy for %s ms in all.\n",
				joinF(s.SmallChangeMs), s.Services, joinF(s.ChangeMs), joinF(s.ChangeRunMs), joinF(s.ChangeWaitMs), joinF(s.ChangeCPUBusyMs))
		}
	}
	if len(r.Capture) > 0 {
		w("\n### Capture cost\n\n")
		w("Each case has a client pod of its own and delivers to the same kind of listener, in the client pod's netns on port %d, "+
			"which recovers the original destination (eBPF: the capture programs' map; iptables: SO_ORIGINAL_DST) and answers one byte. "+
			"The client dials, sends a byte, reads a byte, closes, one connection after another; 3 rounds interleaved, medians shown.\n\n", captureListenPort)
		w("| capture | connections/s | connect p50 µs | connect p99 µs | added connect p50 µs | whole exchange p50 µs | unverified | errors |\n|---|--:|--:|--:|--:|--:|--:|--:|\n")
		var none *captureCase
		for _, cc := range r.Capture {
			if cc.Name == "none" {
				none = cc
			}
		}
		for _, cc := range r.Capture {
			add := ""
			if none != nil && cc != none {
				add = fmt.Sprintf("%+.1f", cc.ConnectP50-none.ConnectP50)
			}
			w("| %s | %s | %s | %s | %s | %s | %d | %d |\n", cc.Label, f0(cc.ConnsPerSec), f1(cc.ConnectP50), f1(cc.ConnectP99), add, f1(cc.ExchangeP50), cc.Unverified, cc.Errors)
		}
		for _, cc := range r.Capture {
			if cc.KernelNsPerConn > 0 {
				w("\nThe flow programs (sockops, state, reset and retransmit hooks of `bpf/flow`) ran for **%.0f ns per connection** in the kernel "+
					"(BPF statistics over the %s rounds; the client's socket is followed, the listener's is outside the pod's cgroup), the cost of the `skein_tcp_*` figures.\n", cc.KernelNsPerConn, cc.Label)
			}
		}
	}
	if targets := r.targets(); len(targets) > 0 {
		w("\n### Targets\n\n| target | this run | met |\n|---|---|---|\n")
		for _, t := range targets {
			w("| %s | %s | %s |\n", t[0], t[1], t[2])
		}
	}
	if len(r.GoBench) > 0 {
		w("\n### Go micro-benchmarks (median of the runs in `make bench`)\n\n| package | benchmark | runs | ns/op | B/op | allocs/op |\n|---|---|--:|--:|--:|--:|\n")
		for _, g := range r.GoBench {
			ns := f1(g.NsPerOp)
			if g.NsPerOp >= 1000 {
				ns = f0(g.NsPerOp)
			}
			w("| %s | %s | %d | %s | %s | %s |\n", g.Package, g.Name, g.Runs, ns, f0(g.BytesPerOp), f0(g.AllocsPerOp))
		}
	}
	for _, p := range r.Profiles {
		if p.Name == "idle-conns" {
			w("\n<details><summary>Agent heap (in use) and goroutines with %d idle connections open</summary>\n\n```\n%s\n```\n\n```\n%s\n```\n</details>\n",
				c.IdleConns, strings.Join(firstN(p.AllocTop, 20), "\n"), strings.Join(firstN(p.CPUTop, 30), "\n"))
			continue
		}
		if p.Name == "route-change" {
			w("\n<details><summary>Agent CPU profile while the config of %d Services changes (6 s from just before the write)</summary>\n\n"+
				"CPU, flat:\n\n```\n%s\n```\n\nCPU, cumulative:\n\n```\n%s\n```\n</details>\n",
				c.Services, strings.Join(firstN(p.CPUTop, 22), "\n"), strings.Join(firstN(p.CPUTopCum, 30), "\n"))
			continue
		}
		w("\n<details><summary>Agent profile, %s, agent on %s (HTTP/1.1, closed loop, %d connections)</summary>\n\n"+
			"CPU, flat:\n\n```\n%s\n```\n\nCPU, cumulative:\n\n```\n%s\n```\n\nAllocations during the load (alloc_space, delta):\n\n```\n%s\n```\n</details>\n",
			p.Topology, p.Node, c.Conns, strings.Join(firstN(p.CPUTop, 22), "\n"), strings.Join(firstN(p.CPUTopCum, 28), "\n"), strings.Join(firstN(p.AllocTop, 17), "\n"))
	}
	if len(r.Failures) > 0 {
		w("\n### What failed in this run\n\n")
		for _, f := range r.Failures {
			w("- %s\n", strings.ReplaceAll(f, "\n", " "))
		}
	}
	return b.String()
}

// restAndMax renders the proxies at rest and the throughput and
// new-connection table.
func (r *report) restAndMax(w func(string, ...any)) {
	c := r.Config
	w("\n### The proxies at rest\n\nCPU burnt with no traffic (over %s before the loads; 0 means under one 10 ms clock tick, 3.3 ms/s), and memory then:\n\n| path | topology | idle CPU ms/s | RSS MB (anon) |\n|---|---|--:|--:|\n", "3s")
	for _, t := range r.Topologies {
		if !strings.HasPrefix(t.Name, "direct") && t.IdleRSS > 0 {
			w("| %s | %s | %s | %s (%s) |\n", where(t), t.Label, f1(t.IdleCPUms), f1(mb(t.IdleRSS)), f1(mb(t.IdleAnon)))
		}
	}
	w("\n### Maximum throughput (HTTP/1.1, closed loop, %d connections) and a new connection per request (%d rps)\n\n", c.Conns, c.NewConnRate)
	w("The closed loop shares CPU %s between client and backend, so the direct rows are bounded by that core, not by the network.\n\n", c.ClientCPU)
	w("| path | topology | max rps | p50 µs at max | proxy CPU ms / 1k req | new-conn p50 µs | new-conn p99 µs | added p50 µs | new-conn proxy CPU ms / 1k |\n")
	w("|---|---|--:|--:|--:|--:|--:|--:|--:|\n")
	for _, t := range r.Topologies {
		mx, nc := r.pick(t.Name, "h1-max"), r.pick(t.Name, "h1-newconn")
		if mx == nil && nc == nil {
			continue
		}
		cells := []string{where(t), t.Label, "", "", "", "", "", "", ""}
		proxy := !strings.HasPrefix(t.Name, "direct")
		if mx != nil {
			cells[2], cells[3] = f0(mx.RPS), f0(mx.Latency.P50)
			if proxy {
				cells[4] = f2(mx.ProcCPUPer1k * 1000)
			}
		}
		if nc != nil {
			cells[5], cells[6] = f0(nc.Latency.P50), f0(nc.Latency.P99)
			if base := r.pick(directOf(t), "h1-newconn"); base != nil && proxy {
				cells[7] = signed(nc.Latency.P50 - base.Latency.P50)
			}
			if proxy {
				cells[8] = f2(nc.ProcCPUPer1k * 1000)
			}
		}
		w("| %s |\n", strings.Join(cells, " | "))
	}
}

// has says whether any run of this load was recorded.
func (r *report) has(load string) bool {
	return slices.ContainsFunc(r.Runs, func(x runRecord) bool { return x.Load == load })
}

func firstN(s []string, n int) []string { return s[:min(len(s), n)] }

func joinF(v []float64) string {
	var s []string
	for _, x := range v {
		s = append(s, f0(x))
	}
	return strings.Join(s, ", ")
}

func where(t *topology) string {
	if t.Cross {
		return "cross-node"
	}
	return "same node"
}

func directOf(t *topology) string {
	if t.Cross {
		return "direct-x"
	}
	return "direct"
}

// targets checks the targets against this run.
func (r *report) targets() [][3]string {
	var out [][3]string
	yes := func(ok bool) string {
		if ok {
			return "yes"
		}
		return "**no**"
	}
	for _, pair := range [][2]string{{"skein", "haproxy"}, {"skein-x", "haproxy-x"}} {
		ts, th := r.topo(pair[0]), r.topo(pair[1])
		s, hp := r.pick(pair[0], "h1"), r.pick(pair[1], "h1")
		if ts == nil || th == nil || s == nil || hp == nil {
			continue
		}
		ds, dh := r.pick(directOf(ts), "h1"), r.pick(directOf(th), "h1")
		if ds == nil || dh == nil {
			continue
		}
		where := "same node"
		if pair[0] == "skein-x" {
			where = "cross-node"
		}
		s50, h50 := s.Latency.P50-ds.Latency.P50, hp.Latency.P50-dh.Latency.P50
		s99, h99 := s.Latency.P99-ds.Latency.P99, hp.Latency.P99-dh.Latency.P99
		out = append(out,
			[3]string{"added p50 latency ≤ HAProxy, " + where, fmt.Sprintf("Skein %+.0f µs, HAProxy %+.0f µs", s50, h50), yes(s50 <= h50)},
			[3]string{"added p99 latency ≤ HAProxy, " + where, fmt.Sprintf("Skein %+.0f µs, HAProxy %+.0f µs", s99, h99), yes(s99 <= h99)},
			[3]string{"CPU per 1,000 requests ≤ HAProxy, " + where, fmt.Sprintf("Skein %.2f ms, HAProxy %.2f ms (%.1fx)", s.ProcCPUPer1k*1000, hp.ProcCPUPer1k*1000, s.ProcCPUPer1k/hp.ProcCPUPer1k), yes(s.ProcCPUPer1k <= hp.ProcCPUPer1k)})
	}
	if s := r.pick("skein", "h1"); s != nil {
		out = append(out, [3]string{"agent peak RSS at 1,000 rps < 30 MB", fmt.Sprintf("VmHWM %.1f MB, of which anon %.1f MB (node-a agent, same-node h1; the rest is the agent's own executable, mapped)",
			mb(s.ProcPeakRSS), mb(s.ProcAnonRSS)), yes(s.ProcPeakRSS < 30<<20)})
	}
	if s := r.pick("skein-x", "h1"); s != nil {
		out = append(out, [3]string{"agent peak RSS at 1,000 rps < 30 MB, cross-node", fmt.Sprintf("VmHWM %.1f MB for both agents together (anon %.1f MB)", mb(s.ProcPeakRSS), mb(s.ProcAnonRSS)), yes(s.ProcPeakRSS < 2*30<<20)})
	}
	var e, ipt *captureCase
	for _, c := range r.Capture {
		switch c.Name {
		case "ebpf":
			e = c
		case "iptables":
			ipt = c
		}
	}
	if e != nil && ipt != nil {
		out = append(out, [3]string{"eBPF capture cheaper per connection than iptables REDIRECT",
			fmt.Sprintf("%.0f vs %.0f connections/s; connect p50 %.1f vs %.1f µs", e.ConnsPerSec, ipt.ConnsPerSec, e.ConnectP50, ipt.ConnectP50),
			yes(e.ConnsPerSec >= ipt.ConnsPerSec && e.ConnectP50 <= ipt.ConnectP50)})
	}
	return out
}

func appendMarkdown(path string, r *report) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	f, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	if _, err := f.WriteString(r.markdown()); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// parseGoBench reads `go test -bench` output and keeps, per benchmark, the
// median of its runs.
func parseGoBench(path string) ([]goBenchResult, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	type key struct{ pkg, name string }
	samples := map[key][][3]float64{}
	var order []key
	pkg := ""
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := sc.Text()
		if p, ok := strings.CutPrefix(line, "pkg: "); ok {
			pkg = strings.TrimPrefix(p, "github.com/skeinmesh/skein/")
			continue
		}
		fields := strings.Fields(line)
		if len(fields) < 4 || !strings.HasPrefix(fields[0], "Benchmark") {
			continue
		}
		var v [3]float64
		for i := 2; i+1 < len(fields); i += 2 {
			x, err := strconv.ParseFloat(fields[i], 64)
			if err != nil {
				continue
			}
			switch fields[i+1] {
			case "ns/op":
				v[0] = x
			case "B/op":
				v[1] = x
			case "allocs/op":
				v[2] = x
			}
		}
		k := key{pkg, fields[0]}
		if _, ok := samples[k]; !ok {
			order = append(order, k)
		}
		samples[k] = append(samples[k], v)
	}
	var out []goBenchResult
	for _, k := range order {
		s := samples[k]
		col := func(i int) float64 {
			var c []float64
			for _, v := range s {
				c = append(c, v[i])
			}
			return median(c)
		}
		out = append(out, goBenchResult{Package: k.pkg, Name: k.name, Runs: len(s), NsPerOp: col(0), BytesPerOp: col(1), AllocsPerOp: col(2)})
	}
	return out, sc.Err()
}

func loadAvg() string {
	data, _ := os.ReadFile("/proc/loadavg")
	f := strings.Fields(string(data))
	return strings.Join(f[:min(3, len(f))], " ")
}
