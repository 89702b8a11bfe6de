//go:build linux

package e2e

import (
	"encoding/json"
	"fmt"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

const faultsTopology = `
nodes: [{name: node-a}, {name: node-b}]
namespaces:
  - {name: shop, labels: {skein.io/mesh: enabled}}
pods:
  - {name: client, namespace: shop, node: node-a, labels: {app: client}, command: [sleep, infinity]}
  - {name: web-1, namespace: shop, node: node-a, labels: {app: web}}
  - {name: web-2, namespace: shop, node: node-b, labels: {app: web}}
  - {name: web-3, namespace: shop, node: node-b, labels: {app: web}}
  - {name: ok, namespace: shop, node: node-b, labels: {app: hang}, ports: [{name: http, containerPort: 8080}], command: [skein-lab, echo]}
  - {name: hole, namespace: shop, node: node-b, labels: {app: hang, role: hole}, ports: [{name: http, containerPort: 8080}], command: [skein-lab, blackhole]}
  - {name: fast-1, namespace: shop, node: node-a, labels: {app: mix}, ports: [{name: http, containerPort: 8080}], command: [skein-lab, echo]}
  - {name: fast-2, namespace: shop, node: node-b, labels: {app: mix}, ports: [{name: http, containerPort: 8080}], command: [skein-lab, echo]}
  - {name: slow, namespace: shop, node: node-b, labels: {app: mix}, ports: [{name: http, containerPort: 8080}], command: [skein-lab, echo, --delay, 50ms]}
services:
  - name: web
    namespace: shop
    clusterIP: 10.96.0.50
    selector: {app: web}
    annotations: {skein.io/outlier-base-ejection: 2s}
    ports: [{name: http, port: 80, targetPort: 8080}]
  - {name: hang, namespace: shop, clusterIP: 10.96.0.51, selector: {app: hang}, ports: [{name: http, port: 80, targetPort: 8080}]}
  - {name: mix, namespace: shop, clusterIP: 10.96.0.52, selector: {app: mix}, ports: [{name: http, port: 80, targetPort: 8080}]}
  - {name: hole, namespace: shop, clusterIP: 10.96.0.53, selector: {role: hole}, ports: [{name: http, port: 80, targetPort: 8080}]}
objects: []
`

const faultsRoutes = `apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: web, namespace: shop}
spec:
  parentRefs: [{group: "", kind: Service, name: web, port: 80}]
  rules:
  - backendRefs: [{name: web, port: 80}]
    retry: {codes: [502, 503], attempts: 2, backoff: 10ms}
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: hang, namespace: shop}
spec:
  parentRefs: [{group: "", kind: Service, name: hang, port: 80}]
  rules:
  - backendRefs: [{name: hang, port: 80}]
    timeouts: {request: 3s, backendRequest: 250ms}
    retry: {codes: [504], attempts: 2, backoff: 10ms}
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: hole, namespace: shop}
spec:
  parentRefs: [{group: "", kind: Service, name: hole, port: 80}]
  rules:
  - backendRefs: [{name: hole, port: 80}]
    timeouts: {request: 500ms}
`

// TestPrivilegedEndpointFaults breaks endpoints under load, the ways they
// break in production: a pod killed, a pod that hangs, a pod that is slow.
func TestPrivilegedEndpointFaults(t *testing.T) {
	e := newMeshEnv(t, faultsTopology, nil)
	require.NoError(t, e.lab.SetObjects([]byte(faultsRoutes)))

	// The web pods' servers are started here, so the test can kill them.
	servers := map[string]*exec.Cmd{}
	var mu sync.Mutex
	start := func(pod string) {
		cmd, err := e.lab.Start("shop/"+pod, "skein-lab", "echo")
		require.NoError(t, err)
		go func() { _ = cmd.Wait() }()
		mu.Lock()
		servers[pod] = cmd
		mu.Unlock()
	}
	kill := func(pod string) {
		mu.Lock()
		cmd := servers[pod]
		mu.Unlock()
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
	}
	t.Cleanup(func() {
		for pod := range servers {
			kill(pod)
		}
	})
	for _, p := range []string{"web-1", "web-2", "web-3"} {
		start(p)
	}
	require.Eventually(t, func() bool {
		r := e.load("shop/client", "--url", "http://10.96.0.50/", "--requests", "30", "--concurrency", "3")
		return r.ByStatus["200"] == 30 && len(r.ByPod) == 3
	}, 20*time.Second, 200*time.Millisecond, "all three web endpoints serve")

	t.Run("killing endpoints under load fails fewer than 0.1% of requests, and they come back", func(t *testing.T) {
		// 4,000 requests at 250/s over 16 s; web-3 (the other node, behind
		// the tunnel) is killed after 3 s, web-1 (this node) after 7 s,
		// and both restart at 11 s.
		var res loadResult
		done := make(chan struct{})
		go func() {
			defer close(done)
			out, err := e.exec("shop/client", "skein-lab", "http-load", "-o", "json", "--url", "http://10.96.0.50/",
				"--requests", "4000", "--rate", "250", "--concurrency", "32", "--timeout", "60s")
			if err == nil {
				_ = json.Unmarshal([]byte(out), &res)
			} else {
				res.FirstError = out
			}
		}()
		time.Sleep(3 * time.Second)
		kill("web-3")
		time.Sleep(4 * time.Second)
		kill("web-1")
		time.Sleep(4 * time.Second)
		start("web-1")
		start("web-3")
		<-done
		failed := res.Requests - res.ByStatus["200"]
		t.Logf("sent %d, succeeded %d, failed %d, by pod %v, latency ms p50 %.2f p99 %.2f max %.2f",
			res.Requests, res.ByStatus["200"], failed, res.ByPod, res.LatencyMs.P50, res.LatencyMs.P99, res.LatencyMs.Max)
		require.Equal(t, 4000, res.Requests, res.FirstError)
		require.LessOrEqual(t, failed, 4, "at most 0.1%% failed: %+v %s", res.ByStatus, res.FirstError)

		// Recovery is automatic: once their ejection is over, the restarted
		// endpoints get traffic again, with no operator action.
		require.Eventually(t, func() bool {
			r := e.load("shop/client", "--url", "http://10.96.0.50/", "--requests", "60", "--concurrency", "3")
			return r.ByStatus["200"] == 60 && r.ByPod["web-1"] > 0 && r.ByPod["web-3"] > 0
		}, 20*time.Second, 500*time.Millisecond, "the restarted endpoints are back in rotation")
	})

	t.Run("a black-holed endpoint is cut by timeouts and loses its traffic", func(t *testing.T) {
		// hole accepts and never answers. Each try gets 250ms and the retry
		// goes to ok, so every request succeeds in bounded time; the
		// timeout counts as a 250ms answer in hole's peak-EWMA estimate, so
		// P2C stops sending it requests after the first.
		r := e.load("shop/client", "--url", "http://10.96.0.51/", "--requests", "200", "--concurrency", "4")
		t.Logf("black hole: %+v, latency ms p50 %.2f p99 %.2f max %.2f", r.ByStatus, r.LatencyMs.P50, r.LatencyMs.P99, r.LatencyMs.Max)
		require.Equal(t, 200, r.ByStatus["200"], "%+v %s", r.ByStatus, r.FirstError)
		require.Equal(t, 200, r.ByPod["ok"])
		require.Less(t, r.LatencyMs.Max, 1500.0, "no request waits for the black hole beyond its per-try timeouts")
		out, err := e.agentctl("node-a", "endpoints", "--service", "shop/hang")
		require.NoError(t, err)
		m := regexp.MustCompile(`shop/hole\s+node-b\s+\S+\s+(\S+)\s+\d+\s+(\d+)\s+(\d+)`).FindStringSubmatch(out)
		require.NotNil(t, m, out)
		ewma, err := time.ParseDuration(m[1])
		require.NoError(t, err)
		require.GreaterOrEqual(t, ewma, 200*time.Millisecond, "the timeout raised its estimate: %s", out)
		require.Equal(t, m[2], m[3], "every request hole got timed out: %s", out)
		tries, _ := strconv.Atoi(m[2])
		require.LessOrEqual(t, tries, 5, "P2C stopped picking it: %s", out)

		// With no other endpoint, the route's request timeout answers 504
		// in its time: the caller does not hang.
		start := time.Now()
		code, err := e.curl("shop/client", "-o", "/dev/null", "-w", "%{http_code}", "--max-time", "5", "http://10.96.0.53/")
		require.NoError(t, err)
		require.Equal(t, "504", code)
		require.Less(t, time.Since(start), 3*time.Second)
		require.Regexp(t, `GET 10\.96\.0\.53/\s+504\s+UT`, must(e.agentctl("node-a", "diagnose", "shop/client")))
	})

	t.Run("a slow endpoint loses traffic to P2C over peak EWMA", func(t *testing.T) {
		r := e.load("shop/client", "--url", "http://10.96.0.52/", "--requests", "600", "--concurrency", "4")
		t.Logf("slow endpoint: %v", r.ByPod)
		require.Equal(t, 600, r.ByStatus["200"], "%+v %s", r.ByStatus, r.FirstError)
		require.Less(t, r.ByPod["slow"], 30, "the 50ms endpoint gets under 5%% of the requests: %v", r.ByPod)
		require.Greater(t, r.ByPod["fast-1"], 100)
		require.Greater(t, r.ByPod["fast-2"], 100, "the remote fast endpoint still gets its share: %v", r.ByPod)
		out, err := e.agentctl("node-a", "endpoints", "--service", "shop/mix")
		require.NoError(t, err)
		require.True(t, strings.Contains(out, "shop/slow"), out)
	})
}

func must(out string, err error) string {
	if err != nil {
		panic(fmt.Sprintf("%v: %s", err, out))
	}
	return out
}
