//go:build linux

package e2e

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/skeinmesh/skein/scripts/lab"
)

const soakTopology = `
nodes: [{name: node-a}, {name: node-b}]
namespaces:
  - {name: shop, labels: {skein.io/mesh: enabled}}
pods:
  - {name: client-a, namespace: shop, node: node-a, serviceAccount: client, labels: {app: client}, command: [sleep, infinity]}
  - {name: client-b, namespace: shop, node: node-b, serviceAccount: client, labels: {app: client}, command: [sleep, infinity]}
  - {name: web-v1-a, namespace: shop, node: node-a, serviceAccount: web, labels: {app: web, version: v1}, ports: [{name: http, containerPort: 8080}], command: [skein-lab, echo]}
  - {name: web-v1-b, namespace: shop, node: node-b, serviceAccount: web, labels: {app: web, version: v1}, ports: [{name: http, containerPort: 8080}], command: [skein-lab, echo]}
  - {name: web-v2-b, namespace: shop, node: node-b, serviceAccount: web, labels: {app: web, version: v2}, ports: [{name: http, containerPort: 8080}], command: [skein-lab, echo]}
services:
  - {name: web, namespace: shop, clusterIP: 10.96.0.60, selector: {app: web}, ports: [{name: http, port: 80, targetPort: 8080}]}
  - {name: web-v1, namespace: shop, clusterIP: 10.96.0.61, selector: {app: web, version: v1}, ports: [{name: http, port: 80, targetPort: 8080}]}
  - {name: web-v2, namespace: shop, clusterIP: 10.96.0.62, selector: {app: web, version: v2}, ports: [{name: http, port: 80, targetPort: 8080}]}
objects: []
`

func soakRoutes(v1, v2 int) []byte {
	return []byte(fmt.Sprintf(`apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: web, namespace: shop}
spec:
  parentRefs: [{group: "", kind: Service, name: web, port: 80}]
  rules:
  - backendRefs: [{name: web-v1, port: 80, weight: %d}, {name: web-v2, port: 80, weight: %d}]
    retry: {codes: [503], attempts: 2, backoff: 10ms}
`, v1, v2))
}

// agentSample is what the soak reads from one agent: after a forced GC,
// its live heap (bytes of objects still reachable) and the heap spans
// holding them, goroutines, open descriptors and resident memory.
type agentSample struct {
	HeapAlloc  float64 `json:"heapLiveBytes"`
	HeapInuse  float64 `json:"heapInuseBytes"`
	Goroutines float64 `json:"goroutines"`
	OpenFDs    float64 `json:"openFDs"`
	RSS        float64 `json:"rssBytes"`
}

// soakReport is the soak's summary, written to $SKEIN_SOAK_REPORT when set.
type soakReport struct {
	Duration    string                 `json:"duration"`
	Requests    map[string]int         `json:"requests"`
	Failed      map[string]int         `json:"failed"`
	StreamEcho  int                    `json:"streamRounds"`
	RouteChange int                    `json:"routeChanges"`
	PodsChurned int                    `json:"podsChurned"`
	Rotations   int                    `json:"rootRotations"`
	Retirements int                    `json:"rootRetirements"`
	CertsIssued int                    `json:"certificatesIssued"`
	Before      map[string]agentSample `json:"before"`
	After       map[string]agentSample `json:"after"`
}

// TestPrivilegedSoak runs steady traffic across the lab for
// $SKEIN_SOAK (a duration; unset: skipped) while routes change, pods come
// and go and certificates renew and the root rotates, then requires that
// no request failed and that no agent grew: live heap within 10%,
// goroutines and descriptors back to where they were. `make soak` runs it
// for 20 minutes; `make test` for 2.
func TestPrivilegedSoak(t *testing.T) {
	d, err := time.ParseDuration(os.Getenv("SKEIN_SOAK"))
	if err != nil || d < time.Minute {
		t.Skip("SKEIN_SOAK not set (a duration of at least 1m, e.g. SKEIN_SOAK=20m)")
	}
	// Pooled upstream and tunnel connections close 2s after their last
	// request, so that the idle samples (5s after the load) compare the
	// agents' own state, not how many pooled connections, each with its
	// buffers, the last seconds of load happened to leave.
	e := newMeshEnv(t, soakTopology, []string{"--pprof-addr", "127.0.0.1:6060", "--cert-ttl", "2m", "--upstream-idle-timeout", "2s"})
	require.NoError(t, e.lab.SetObjects(soakRoutes(50, 50)))
	require.Eventually(t, func() bool {
		r := e.load("shop/client-a", "--url", "http://10.96.0.60/", "--requests", "40", "--concurrency", "4")
		return r.ByStatus["200"] == 40 && r.ByPod["web-v2-b"] > 0
	}, 20*time.Second, 200*time.Millisecond, "route applied")

	report := soakReport{Duration: d.String(), Requests: map[string]int{}, Failed: map[string]int{},
		Before: map[string]agentSample{}, After: map[string]agentSample{}}
	churn := &soakChurn{e: e, t: t, extra: "web-v1-b", report: &report}
	sample := func(into map[string]agentSample) {
		// Let connections the load closed finish closing on the agents.
		time.Sleep(5 * time.Second)
		for _, n := range []string{"node-a", "node-b"} {
			into[n] = sampleAgent(t, e, n)
		}
	}
	// Warm up with the same traffic and churn, so every code path has run
	// and every pool has grown once; the baseline is taken idle after it,
	// and compared with the agents idle after the run.
	soakPhase(t, e, max(d/10, 30*time.Second), churn, &report)
	sample(report.Before)
	soakPhase(t, e, d, churn, &report)
	sample(report.After)
	for _, n := range []string{"node-a", "node-b"} {
		report.CertsIssued += strings.Count(e.lab.AgentLog(n), "certificate issued")
	}
	b, _ := json.MarshalIndent(report, "", "  ")
	t.Logf("soak report:\n%s", b)
	if p := os.Getenv("SKEIN_SOAK_REPORT"); p != "" {
		require.NoError(t, os.WriteFile(p, b, 0o644))
	}
	for n, before := range report.Before {
		after := report.After[n]
		require.LessOrEqual(t, after.HeapAlloc, before.HeapAlloc*1.10, "%s: live heap grew more than 10%%", n)
		require.LessOrEqual(t, after.Goroutines, before.Goroutines+5, "%s: goroutines leaked", n)
		require.LessOrEqual(t, after.OpenFDs, before.OpenFDs+5, "%s: descriptors leaked", n)
	}
	require.Positive(t, report.PodsChurned)
	require.Positive(t, report.RouteChange)
}

// soakChurn makes one change to the lab per call, in turn: a route change,
// a pod replaced, a route change, a root rotation.
type soakChurn struct {
	e      *env
	t      *testing.T
	turn   int
	extra  string // the web-v1 pod the next replacement deletes
	report *soakReport
}

func (c *soakChurn) next() {
	i := c.turn
	c.turn++
	switch i % 4 {
	case 0, 2:
		w := 20 + (i*37)%61
		if err := c.e.lab.SetObjects(soakRoutes(w, 100-w)); err != nil {
			c.t.Errorf("route change: %v", err)
		}
		c.report.RouteChange++
	case 1:
		name := fmt.Sprintf("web-v1-n%d", i)
		// The replacement lands on either node in turn, so both agents
		// see local pods come and go.
		node := []string{"node-a", "node-b"}[(i/4)%2]
		if err := replacePod(c.e, name, node, c.extra); err != nil {
			c.t.Errorf("churn: %v", err)
			return
		}
		c.extra = name
		c.report.PodsChurned++
	case 3:
		// A root rotation the way an operator does it: rotate, and retire
		// the old root once every certificate it signed has expired (two
		// minutes here, 120s after the rotation); in between, a route
		// change.
		switch (i / 4) % 3 {
		case 0:
			out, err := exec.Command(filepath.Join(binDir, "skein-ca"), "--dir", filepath.Join(c.e.lab.CADir(), "keys"), "rotate").CombinedOutput()
			if err != nil {
				c.t.Errorf("skein-ca rotate: %v: %s", err, out)
			}
			c.report.Rotations++
		case 1:
			if err := c.e.lab.SetObjects(soakRoutes(50, 50)); err != nil {
				c.t.Errorf("route change: %v", err)
			}
			c.report.RouteChange++
		case 2:
			out, err := exec.Command(filepath.Join(binDir, "skein-ca"), "--dir", filepath.Join(c.e.lab.CADir(), "keys"), "retire").CombinedOutput()
			if err != nil {
				c.t.Errorf("skein-ca retire: %v: %s", err, out)
			}
			c.report.Retirements++
		}
	}
}

// soakPhase runs d of steady load, HTTP/1.1 from node-a and HTTP/2 from
// node-b at 50 requests per second each, plus one long-lived stream (an
// HTTP/1.1 upgrade to web-v2, which churn leaves alone), with one churn
// change every 15 seconds. Every request must succeed.
func soakPhase(t *testing.T, e *env, d time.Duration, churn *soakChurn, report *soakReport) {
	const rate = 50
	var wg sync.WaitGroup
	var mu sync.Mutex
	timeout := (d + 2*time.Minute).String()
	ctx, cancel := context.WithTimeout(context.Background(), d+3*time.Minute)
	defer cancel()
	load := func(name, pod string, args ...string) {
		n := rate * int(d.Seconds())
		wg.Add(1)
		go func() {
			defer wg.Done()
			argv := append([]string{"skein-lab", "http-load", "-o", "json", "--url", "http://10.96.0.60/",
				"--requests", strconv.Itoa(n), "--rate", strconv.Itoa(rate), "--concurrency", "8", "--timeout", timeout}, args...)
			out, err := e.lab.Exec(ctx, pod, argv...)
			var r loadResult
			if jerr := json.Unmarshal(out, &r); jerr != nil {
				t.Errorf("%s: %v: %s", name, err, out)
				return
			}
			mu.Lock()
			defer mu.Unlock()
			report.Requests[name] += r.Requests
			report.Failed[name] += r.Requests - r.ByStatus["200"]
			if r.Requests != n || r.ByStatus["200"] != n {
				t.Errorf("%s: %d of %d requests succeeded: %+v, first error %s", name, r.ByStatus["200"], n, r.ByStatus, r.FirstError)
			}
		}()
	}
	load("http1 node-a", "shop/client-a")
	load("http2 node-b", "shop/client-b", "--http2")
	rounds := int(d.Seconds())
	wg.Add(1)
	go func() {
		defer wg.Done()
		out, err := e.lab.Exec(ctx, "shop/client-a", "skein-lab", "upgrade-client", "-o", "json",
			"--url", "http://10.96.0.62/upgrade", "--message", "t", "--rounds", strconv.Itoa(rounds),
			"--interval", "1s", "--timeout", timeout)
		var s struct {
			Echo string `json:"echo"`
		}
		if jerr := json.Unmarshal(out, &s); jerr != nil || err != nil {
			t.Errorf("stream: %v: %s", err, out)
			return
		}
		mu.Lock()
		report.StreamEcho += len(s.Echo)
		mu.Unlock()
		if len(s.Echo) != rounds {
			t.Errorf("the long-lived stream echoed %d of %d rounds", len(s.Echo), rounds)
		}
	}()
	end := time.After(d)
	tick := time.NewTicker(15 * time.Second)
	defer tick.Stop()
churn:
	for {
		select {
		case <-end:
			break churn
		case <-tick.C:
			churn.next()
		}
	}
	wg.Wait()
}

// replacePod adds a web-v1 pod and, once it serves, takes old out of
// rotation (not ready) before deleting it, as a rolling update does.
func replacePod(e *env, name, node, old string) error {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := e.lab.AddPod(ctx, lab.PodSpec{Name: name, Namespace: "shop", Node: node, ServiceAccount: "web",
		Labels: map[string]string{"app": "web", "version": "v1"}, Command: []string{"skein-lab", "echo"}}); err != nil {
		return err
	}
	if err := e.lab.WaitTCP(ctx, "shop/"+name, 8080); err != nil {
		return err
	}
	if err := e.lab.SetPodReady(old, false); err != nil {
		return err
	}
	// Endpoint removal reaches both agents within the file watcher's
	// delay; requests already sent to old finish.
	time.Sleep(3 * time.Second)
	return e.lab.DeletePod(ctx, old)
}

// sampleAgent forces a GC in a node's agent (through pprof) and reads its
// figures from /metrics.
func sampleAgent(t *testing.T, e *env, node string) agentSample {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var s agentSample
	// The heap right after a forced GC, from the same request: the
	// runtime's MemStats that pprof's debug=1 output ends with are read
	// just after runtime.GC(), before anything else allocates (a metrics
	// scrape would count its own garbage as live).
	out, err := e.lab.ExecNode(ctx, node, "curl", "-sS", "http://127.0.0.1:6060/debug/pprof/heap?gc=1&debug=1")
	require.NoError(t, err, string(out))
	for _, line := range strings.Split(string(out), "\n") {
		name, val, ok := strings.Cut(strings.TrimPrefix(line, "# "), " = ")
		switch {
		case !ok:
		case name == "HeapAlloc":
			s.HeapAlloc, _ = strconv.ParseFloat(val, 64)
		case name == "HeapInuse":
			s.HeapInuse, _ = strconv.ParseFloat(val, 64)
		}
	}
	require.Positive(t, s.HeapAlloc, "heap profile of %s: %.200s", node, out)
	if dir := os.Getenv("SKEIN_SOAK_PROFILES"); dir != "" {
		// Kept for go tool pprof -base before.pb.gz after.pb.gz.
		f := filepath.Join(dir, fmt.Sprintf("%s-%d.pb.gz", node, time.Now().Unix()))
		out, err := e.lab.ExecNode(ctx, node, "curl", "-sS", "-o", f, "http://127.0.0.1:6060/debug/pprof/heap")
		require.NoError(t, err, string(out))
	}
	var ip string
	for _, n := range e.lab.Nodes() {
		if n.Name == node {
			ip = n.IP
		}
	}
	out, err = e.lab.ExecNode(ctx, node, "curl", "-sS", fmt.Sprintf("http://%s:15020/metrics", ip))
	require.NoError(t, err, string(out))
	want := map[string]*float64{"go_goroutines": &s.Goroutines, "process_open_fds": &s.OpenFDs, "process_resident_memory_bytes": &s.RSS}
	sc := bufio.NewScanner(strings.NewReader(string(out)))
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		name, val, ok := strings.Cut(sc.Text(), " ")
		if p := want[name]; ok && p != nil {
			*p, _ = strconv.ParseFloat(val, 64)
		}
	}
	require.Positive(t, s.Goroutines, "metrics of %s", node)
	return s
}
