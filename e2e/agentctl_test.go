//go:build linux

package e2e

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/skeinmesh/skein/agent/admin"
)

const agentctlTopology = `
nodes: [{name: node-a}, {name: node-b}]
namespaces:
  - {name: shop, labels: {skein.io/mesh: enabled}}
  - {name: vault, labels: {skein.io/mesh: enabled, skein.io/mtls-mode: STRICT}}
  - {name: legacy}
pods:
  - {name: client, namespace: shop, node: node-a, serviceAccount: client, labels: {app: client}, command: [sleep, infinity]}
  - {name: optout, namespace: shop, node: node-a, labels: {app: optout}, annotations: {skein.io/mesh: disabled}, command: [sleep, infinity]}
  - {name: outsider, namespace: legacy, node: node-a, labels: {app: outsider}, command: [sleep, infinity]}
  - {name: product, namespace: shop, node: node-b, serviceAccount: product, labels: {app: product}, ports: [{name: http, containerPort: 8080}], command: [skein-lab, echo]}
  - {name: broken, namespace: shop, node: node-a, labels: {app: broken}, command: [sleep, infinity]}
  - {name: safe, namespace: vault, node: node-a, labels: {app: safe}, ports: [{name: http, containerPort: 8080}], command: [skein-lab, echo]}
services:
  - {name: product, namespace: shop, clusterIP: 10.96.0.10, selector: {app: product}, ports: [{name: http, port: 80, targetPort: 8080}]}
  - {name: broken, namespace: shop, clusterIP: 10.96.0.12, selector: {app: broken}, ports: [{name: http, port: 80, targetPort: 8080}]}
objects: []
`

const agentctlObjects = `apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: product-api, namespace: shop}
spec:
  parentRefs: [{group: "", kind: Service, name: product, port: 80}]
  rules:
  - matches: [{path: {type: PathPrefix, value: /api}}]
    backendRefs: [{name: product, port: 80}]
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: no-admin, namespace: shop}
spec:
  selector: {matchLabels: {app: product}}
  action: DENY
  rules: [{to: [{operation: {paths: ["/api/admin*"]}}]}]
`

// TestPrivilegedAgentctl runs every agentctl command against running
// agents and checks what they say, then walks through one failure class
// after another with the command that shows its cause.
func TestPrivilegedAgentctl(t *testing.T) {
	e := newMeshEnv(t, agentctlTopology, nil)
	require.NoError(t, e.lab.SetObjects([]byte(agentctlObjects)))
	// Without the route every path reaches product; with it, only /api.
	require.Eventually(t, func() bool {
		out, err := e.curl("shop/client", "-s", "-o", "/dev/null", "-w", "%{http_code}", "http://10.96.0.10/other")
		return err == nil && out == "404"
	}, 20*time.Second, 100*time.Millisecond, "route applied; agent status:\n%s", func() string { out, _ := e.agentctl("node-a", "status"); return out }())
	ctl := func(t *testing.T, node string, args ...string) string {
		t.Helper()
		out, err := e.agentctl(node, args...)
		require.NoError(t, err, "agentctl %v: %s", args, out)
		return out
	}

	t.Run("every command answers with what the agent serves", func(t *testing.T) {
		out := ctl(t, "node-a", "status")
		require.Contains(t, out, "Node:           node-a (ready)")
		require.Contains(t, out, "PERMISSIVE, fail-open")
		require.Contains(t, out, "skein_connect4")
		require.Contains(t, out, "mesh_dsts")
		out = ctl(t, "node-a", "workloads")
		require.Regexp(t, `shop\s+client\s+client\s+10\.244\.1\.\d+\s+spiffe://cluster\.local/ns/shop/sa/client\s+yes`, out)
		out = ctl(t, "node-a", "services")
		require.Regexp(t, `shop/product:80\s+10\.96\.0\.10\s+auto\s+p2c-ewma\s+1\s+yes`, out)
		out = ctl(t, "node-a", "routes")
		require.Contains(t, out, "PathPrefix /api")
		require.Contains(t, out, "HTTPRoute shop/product-api rule 0")
		require.Regexp(t, `Accepted\s+True`, out)
		out = ctl(t, "node-a", "endpoints", "--service", "shop/product")
		require.Contains(t, out, "shop/product")
		require.Contains(t, out, "healthy")
		out = ctl(t, "node-a", "certs")
		require.Contains(t, out, "spiffe://cluster.local/ns/shop/sa/client")
		out = ctl(t, "node-a", "bpf", "maps")
		require.Regexp(t, `members\s+Hash\s+\d+\s+16384`, out)
		out = ctl(t, "node-a", "bpf", "maps", "mesh_dsts")
		require.Contains(t, out, "service shop/product")
		out = ctl(t, "node-a", "bpf", "progs")
		require.Regexp(t, `skein_sockops\s+SockOps`, out)
		out = ctl(t, "node-a", "diagnose", "shop/client")
		require.Contains(t, out, "Captured:        yes: meshed")

		var st admin.Status
		require.NoError(t, json.Unmarshal([]byte(ctl(t, "node-a", "status", "-o", "json")), &st))
		require.Equal(t, "node-a", st.Node)
		require.Contains(t, ctl(t, "node-a", "workloads", "-o", "yaml"), "identity: spiffe://cluster.local/ns/shop/sa/client")

		// Offline validation, with an exit status for CI.
		bad := filepath.Join(t.TempDir(), "bad.yaml")
		require.NoError(t, writeFile(bad, "apiVersion: v1\nkind: Service\nmetadata: {name: s, namespace: shop}\nspec: {clusterIP: 10.96.0.300, ports: [{port: 80}]}\n"))
		out, err := e.agentctl("node-a", "config", "validate", bad)
		require.Error(t, err)
		require.Contains(t, out, "Service shop/s: spec.clusterIP")
		good := filepath.Join(t.TempDir(), "good.yaml")
		require.NoError(t, writeFile(good, agentctlObjects))
		require.Contains(t, ctl(t, "node-a", "config", "validate", good), "2 object(s) valid")

		// The agent is absent: a clear error.
		raw, err := exec.Command(filepath.Join(binDir, "agentctl"), "--socket", filepath.Join(t.TempDir(), "none.sock"), "status").CombinedOutput()
		require.Error(t, err)
		require.Contains(t, string(raw), "no agent is running")
	})

	t.Run("no route: diagnose shows the 404 and points at the routes", func(t *testing.T) {
		require.Equal(t, "404", e.mustCurl("shop/client", "-o", "/dev/null", "-w", "%{http_code}", "http://10.96.0.10/other"))
		out := ctl(t, "node-a", "diagnose", "shop/client")
		require.Regexp(t, `source\s+\S*\s+GET 10\.96\.0\.10/other\s+404\s+NR`, out)
		require.Contains(t, out, "agentctl routes")
	})

	t.Run("endpoint down: diagnose and endpoints show it", func(t *testing.T) {
		require.Equal(t, "503", e.mustCurl("shop/client", "-o", "/dev/null", "-w", "%{http_code}", "http://10.96.0.12/"))
		out := ctl(t, "node-a", "diagnose", "shop/client")
		require.Regexp(t, `GET 10\.96\.0\.12/\s+503\s+UF`, out)
		require.Contains(t, out, "agentctl endpoints")
		out = ctl(t, "node-a", "endpoints", "--service", "broken")
		// The one request is tried three times (a failed connect is retried,
		// DefaultConnectRetries), each on the only endpoint, which then waits
		// out a connect backoff before it is picked again.
		require.Regexp(t, `shop/broken:80\s+10\.244\.1\.\d+:8080\s+shop/broken\s+node-a\s+(healthy|UNREACHABLE, probe at \S+)\s+\S+\s+0\s+3\s+3\s+0/3`, out,
			"three attempts, three failures, three consecutive connect failures")
	})

	t.Run("pod not captured (opt-out): workloads, diagnose and trace say why", func(t *testing.T) {
		require.Regexp(t, `shop\s+optout\s+.*\s+no\s+-\s+pod opted out \(annotation skein\.io/mesh=disabled\)`, ctl(t, "node-a", "workloads"))
		require.Contains(t, ctl(t, "node-a", "diagnose", "shop/optout"), "Captured:        no: pod opted out")
		events := traceWhile(t, e, "node-a", []string{"--pod", "shop/optout", "--type", "capture"}, func() {
			_, _ = e.curl("shop/optout", "--connect-timeout", "1", "http://10.96.0.10/api/x")
		})
		require.NotEmpty(t, events)
		require.Equal(t, "not_member", events[0].Reason)
		require.Equal(t, "shop/optout", events[0].Pod)
	})

	t.Run("authorization deny: trace shows the policy, diagnose the 403", func(t *testing.T) {
		events := traceWhile(t, e, "node-b", []string{"--type", "policy_deny"}, func() {
			require.Equal(t, "403", e.mustCurl("shop/client", "-o", "/dev/null", "-w", "%{http_code}", "http://10.96.0.10/api/admin/users"))
		})
		require.NotEmpty(t, events)
		require.Contains(t, events[0].Reason, "denied by shop/no-admin")
		require.Equal(t, "cluster.local/ns/shop/sa/client", events[0].Principal)
		require.Equal(t, "shop/product", events[0].DstPod)
		// The source sees the 403; the destination says who refused it.
		require.Regexp(t, `source\s+shop/product\s+GET 10\.96\.0\.10/api/admin/users\s+403\s+-`, ctl(t, "node-a", "diagnose", "shop/client"))
		require.Regexp(t, `destination\s+shop/client\s+GET 10\.96\.0\.10/api/admin/users\s+403\s+UAEX`, ctl(t, "node-b", "diagnose", "shop/product"))
	})

	t.Run("STRICT drop: trace names the dropped client", func(t *testing.T) {
		url := fmt.Sprintf("http://%s:8080/", e.lab.Pod("safe").IP)
		events := traceWhile(t, e, "node-a", []string{"--type", "strict_drop"}, func() {
			_, err := e.curl("legacy/outsider", "--connect-timeout", "1", url)
			require.Error(t, err)
		})
		require.NotEmpty(t, events)
		require.Equal(t, "vault/safe", events[0].Pod)
		require.Equal(t, "legacy/outsider", events[0].SrcPod)
		require.Contains(t, ctl(t, "node-a", "status"), "inbound plaintext connections dropped by STRICT")
	})

	t.Run("trace under load keeps up or counts exactly what it lost", func(t *testing.T) {
		const n = 30000 // more than the 1 MiB ring holds
		var lost admin.TraceEvent
		events := 0
		traceCtx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		defer cancel()
		cmd := exec.CommandContext(traceCtx, filepath.Join(binDir, "agentctl"), "--socket", e.lab.AdminSocket("node-a"),
			"trace", "-o", "json", "--pod", "shop/client", "--type", "capture")
		stdout, err := cmd.StdoutPipe()
		require.NoError(t, err)
		require.NoError(t, cmd.Start())
		done := make(chan struct{})
		go func() {
			defer close(done)
			sc := bufio.NewScanner(stdout)
			for sc.Scan() {
				var ev admin.TraceEvent
				if json.Unmarshal(sc.Bytes(), &ev) != nil {
					continue
				}
				if ev.Type == "lost" {
					lost = ev
				} else {
					events++
				}
			}
		}()
		time.Sleep(500 * time.Millisecond)
		out, err := e.exec("shop/client", "skein-lab", "connect-storm", "--target", "127.0.0.1:9", "--count", fmt.Sprint(n))
		require.NoError(t, err, out)
		require.Contains(t, out, fmt.Sprintf(`"connects":%d`, n))
		// Let the last summary line come (one a second), then stop.
		time.Sleep(2500 * time.Millisecond)
		cancel()
		<-done
		_ = cmd.Wait()
		t.Logf("trace under load: %d events delivered, %d lost in the kernel, %d in the agent", events, lost.LostKernel, lost.LostAgent)
		require.Equal(t, n, events+int(lost.LostKernel)+int(lost.LostAgent),
			"every connect's event was delivered or counted as lost")
	})
}

// traceWhile runs agentctl trace with args while fn runs and returns the
// events it printed.
func traceWhile(t *testing.T, e *env, node string, args []string, fn func()) []admin.TraceEvent {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, filepath.Join(binDir, "agentctl"), append([]string{"--socket", e.lab.AdminSocket(node), "trace", "-o", "json"}, args...)...)
	stdout, err := cmd.StdoutPipe()
	require.NoError(t, err)
	require.NoError(t, cmd.Start())
	var events []admin.TraceEvent
	done := make(chan struct{})
	go func() {
		defer close(done)
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			var ev admin.TraceEvent
			if json.Unmarshal(sc.Bytes(), &ev) == nil && ev.Type != "lost" {
				events = append(events, ev)
			}
		}
	}()
	time.Sleep(500 * time.Millisecond) // the session is open
	fn()
	time.Sleep(500 * time.Millisecond)
	cancel()
	<-done
	_ = cmd.Wait()
	return events
}
