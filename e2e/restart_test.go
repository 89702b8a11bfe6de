//go:build linux

package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

const restartTopology = `
nodes: [{name: node-a}, {name: node-b}]
namespaces:
  - {name: shop, labels: {skein.io/mesh: enabled}}
pods:
  - {name: client, namespace: shop, node: node-a, serviceAccount: client, labels: {app: client}, command: [sleep, infinity]}
  - {name: product-v1, namespace: shop, node: node-a, serviceAccount: product, labels: {app: product}, ports: [{name: http, containerPort: 8080}], command: [skein-lab, echo]}
  - {name: product-v2, namespace: shop, node: node-b, serviceAccount: product, labels: {app: product}, ports: [{name: http, containerPort: 8080}], command: [skein-lab, echo]}
services:
  - {name: product, namespace: shop, clusterIP: 10.96.0.10, selector: {app: product}, ports: [{name: http, port: 80, targetPort: 8080}]}
`

// bulkServices is n Services with one endpoint each (addresses nothing
// listens on): a configuration big enough that a starting agent takes a
// while to apply it, which is when it must not serve yet.
func bulkServices(n int) []byte {
	var b strings.Builder
	for i := range n {
		fmt.Fprintf(&b, `---
apiVersion: v1
kind: Service
metadata: {name: bulk-%[1]d, namespace: shop}
spec: {clusterIP: 10.97.%[2]d.%[3]d, ports: [{name: http, port: 80, targetPort: 8080}]}
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {name: bulk-%[1]d, namespace: shop, labels: {kubernetes.io/service-name: bulk-%[1]d}}
addressType: IPv4
ports: [{name: http, port: 8080}]
endpoints: [{addresses: [10.250.%[2]d.%[3]d]}]
`, i, i/250, i%250+1)
	}
	return []byte(b.String())
}

// upgradedAgent builds the agent again as another version, for the upgrade.
func upgradedAgent(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "skein-agent-next")
	out, err := exec.Command("go", "build", "-ldflags", "-X main.version=next-test", "-o", bin, "../cmd/skein-agent").CombinedOutput()
	require.NoError(t, err, "%s", out)
	return bin
}

// TestPrivilegedHitlessRestart restarts and upgrades agents under steady
// load and requires that no request fails and no connection is reset.
func TestPrivilegedHitlessRestart(t *testing.T) {
	e := newMeshEnv(t, restartTopology, []string{"--drain-timeout", "30s"})
	next := upgradedAgent(t)
	linksBefore := e.status("node-a").Programs
	require.NoError(t, e.lab.SetObjects(bulkServices(1000)))
	require.Eventually(t, func() bool { return e.status("node-a").Config.Objects["Service"] == 1001 },
		30*time.Second, 100*time.Millisecond, "the big configuration applied")

	type result struct {
		name string
		out  string
		err  error
	}
	var (
		wg      sync.WaitGroup
		mu      sync.Mutex
		results []result
	)
	run := func(name string, argv ...string) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			out, err := e.exec("shop/client", argv...)
			mu.Lock()
			results = append(results, result{name, out, err})
			mu.Unlock()
		}()
	}
	// About 12 seconds of steady load: HTTP/1.1 keep-alive, HTTP/2, and
	// one long-lived stream (an HTTP/1.1 upgrade: raw TCP after the 101).
	run("http1", "skein-lab", "http-load", "-o", "json", "--url", "http://10.96.0.10/", "--requests", "3600", "--rate", "300", "--concurrency", "8")
	run("http2", "skein-lab", "http-load", "-o", "json", "--url", "http://10.96.0.10/", "--requests", "3600", "--rate", "300", "--concurrency", "8", "--http2")
	run("stream", "skein-lab", "upgrade-client", "-o", "json", "--url", "http://10.96.0.10/upgrade", "--message", "tick", "--rounds", "120", "--interval", "100ms", "--timeout", "40s")

	time.Sleep(2 * time.Second)
	require.NoError(t, e.lab.StartAgentSuccessor("node-a", ""), "restart node-a's agent (same build)")
	time.Sleep(3 * time.Second)
	require.NoError(t, e.lab.StartAgentSuccessor("node-b", ""), "restart node-b's agent (the tunnel's far end)")
	time.Sleep(3 * time.Second)
	require.NoError(t, e.lab.StartAgentSuccessor("node-a", next), "upgrade node-a's agent to another build")
	wg.Wait()

	for _, r := range results {
		require.NoError(t, r.err, "%s: %s", r.name, r.out)
		switch r.name {
		case "stream":
			var s struct {
				Echo string `json:"echo"`
			}
			require.NoError(t, json.Unmarshal([]byte(r.out), &s), r.out)
			require.Equal(t, strings.Repeat("tick", 120), s.Echo, "the long-lived stream went on across the restarts")
		default:
			var l loadResult
			require.NoError(t, json.Unmarshal([]byte(r.out), &l), r.out)
			require.Equal(t, 3600, l.Requests, r.name)
			require.Equal(t, 3600, l.ByStatus["200"], "%s: no failed request: %+v %s", r.name, l.ByStatus, l.FirstError)
			require.Zero(t, l.Errors, "%s: no reset connection: %s", r.name, l.FirstError)
		}
	}
	// The new agents served only once configured: no request was answered
	// without knowing its source.
	for _, node := range []string{"node-a", "node-b"} {
		metrics, err := e.lab.ExecNode(context.Background(), node, "curl", "-sf", "--max-time", "5", "http://127.0.0.1:15020/metrics")
		require.NoError(t, err)
		require.Contains(t, string(metrics), `source_workload="client"`, node)
		// Request metrics only: the kernel's TCP figures of connections a
		// pod accepted from the node proxy have no source workload by design.
		for _, line := range strings.Split(string(metrics), "\n") {
			if strings.HasPrefix(line, "skein_request") {
				require.NotContains(t, line, `source_workload="unknown"`, "%s served requests before its configuration applied", node)
			}
		}
	}
	st := e.status("node-a")
	require.Equal(t, "next-test", st.Version, "the upgraded build serves")
	require.Len(t, st.Programs, len(linksBefore))
	for i := range linksBefore {
		require.Equal(t, linksBefore[i].LinkID, st.Programs[i].LinkID, "the same pinned links, no duplicate programs")
	}
	require.NoError(t, e.lab.WaitRetiredAgents(40*time.Second), "old agents drain and exit")
	require.Contains(t, e.lab.AgentLog("node-a"), "a new agent took the listeners")
	require.Contains(t, e.lab.AgentLog("node-a"), "took the listeners of the running agent")
}

// TestPrivilegedKillNine: a killed agent leaves capture failing open, and
// the next agent adopts the pinned state without duplicate programs.
func TestPrivilegedKillNine(t *testing.T) {
	e := newMeshEnv(t, restartTopology, nil)
	before := e.status("node-a")
	require.NoError(t, e.lab.StopAgent("node-a", syscall.SIGKILL))
	podV2 := fmt.Sprintf("http://%s:8080/", e.lab.Pod("product-v2").IP)
	r := parseEcho(t, e.mustCurl("shop/client", podV2))
	require.Equal(t, "product-v2", r.Pod, "fail-open: pod IPs are reached directly while no proxy listens")

	require.NoError(t, e.lab.StartAgent("node-a"))
	e.waitReady("node-a")
	after := e.status("node-a")
	require.Greater(t, after.Capture["fail_open"], before.Capture["fail_open"])
	require.Len(t, after.Programs, len(before.Programs))
	for i := range before.Programs {
		require.Equal(t, before.Programs[i].LinkID, after.Programs[i].LinkID, "adopted, not attached twice")
	}
	parseEcho(t, e.mustCurl("shop/client", "http://10.96.0.10/"))

	t.Run("in STRICT the same crash fails closed, visibly", func(t *testing.T) {
		require.NoError(t, e.lab.StopAgent("node-a", syscall.SIGTERM))
		require.NoError(t, e.lab.StartAgent("node-a", "--mode", "STRICT"))
		e.waitReady("node-a")
		require.Equal(t, "closed", e.status("node-a").FailMode)
		require.NoError(t, e.lab.StopAgent("node-a", syscall.SIGKILL))
		out, err := e.curl("shop/client", "-v", "--connect-timeout", "1", podV2)
		require.Error(t, err)
		require.Contains(t, out, "Operation not permitted")
		require.NoError(t, e.lab.StartAgent("node-a"))
		e.waitReady("node-a")
		parseEcho(t, e.mustCurl("shop/client", podV2))
	})
}
