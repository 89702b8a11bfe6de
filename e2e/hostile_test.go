//go:build linux

package e2e

import (
	"context"
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

const hostileTopology = `
nodes: [{name: node-a}, {name: node-b}]
namespaces:
  - {name: shop, labels: {skein.io/mesh: enabled}}
pods:
  - {name: noisy, namespace: shop, node: node-a, serviceAccount: noisy, labels: {app: noisy}, command: [sleep, infinity]}
  - {name: quiet, namespace: shop, node: node-a, serviceAccount: quiet, labels: {app: quiet}, command: [sleep, infinity]}
  - name: web-a
    namespace: shop
    node: node-a
    serviceAccount: web
    labels: {app: web}
    ports: [{name: http, containerPort: 8080}]
    command: [skein-lab, echo, --listen, ":8080"]
  - name: web-b
    namespace: shop
    node: node-b
    serviceAccount: web
    labels: {app: web}
    ports: [{name: http, containerPort: 8080}]
    command: [skein-lab, echo, --listen, ":8080"]
services:
  - {name: web, namespace: shop, clusterIP: 10.96.0.20, selector: {app: web}, ports: [{name: http, port: 80, targetPort: 8080}]}
`

// hostileLimitArgs are small limits, so that probes cross them fast.
var hostileLimitArgs = []string{
	"--max-conns-per-source", "20", "--read-header-timeout", "2s", "--body-read-timeout", "2s",
	"--max-uri-bytes", "4096", "--max-header-bytes", "16384",
}

// rejections scrapes a node agent's skein_proxy_rejected_total from inside
// the node's network namespace: "listener/reason" -> count.
func rejections(t *testing.T, e *env, node string) map[string]int {
	t.Helper()
	out, err := e.lab.ExecNode(context.Background(), node, "curl", "-sf", "--max-time", "5", "http://127.0.0.1:15020/metrics")
	require.NoError(t, err, string(out))
	re := regexp.MustCompile(`(?m)^skein_proxy_rejected_total\{listener="([a-z]+)",reason="([a-z0-9_]+)"\} ([0-9.e+]+)$`)
	got := map[string]int{}
	for _, m := range re.FindAllStringSubmatch(string(out), -1) {
		v, err := strconv.ParseFloat(m[3], 64)
		require.NoError(t, err)
		got[m[1]+"/"+m[2]] = int(v)
	}
	require.Contains(t, got, "outbound/conn_limit", "the family is exported with every reason")
	return got
}

// requireRejected waits (boundedly) until node's count for key grew by at
// least want.
func requireRejected(t *testing.T, e *env, node, key string, before map[string]int, want int) {
	t.Helper()
	var now map[string]int
	require.Eventually(t, func() bool {
		now = rejections(t, e, node)
		return now[key]-before[key] >= want
	}, 10*time.Second, 200*time.Millisecond, "%s on %s: before %d, now %d, want +%d", key, node, before[key], now[key], want)
}

// TestPrivilegedHostileInput sends hostile probes from a pod through
// capture to a Service and to a peer node's tunnel port, checks that each
// is refused and counted on the agent's /metrics, that the agent still
// serves, and that one pod over its connection limit does not take a
// single request away from another pod of the node.
func TestPrivilegedHostileInput(t *testing.T) {
	e := newMeshEnv(t, hostileTopology, hostileLimitArgs)
	nodeB := e.lab.Nodes()[1].IP
	sh := func(pod, script string) string {
		t.Helper()
		out, _ := e.exec(pod, "bash", "-c", script)
		return out
	}
	// The mesh works before anything else.
	require.Eventually(t, func() bool {
		out, err := e.curl("shop/quiet", "-sf", "--max-time", "3", "http://10.96.0.20/")
		return err == nil && strings.Contains(out, "web-")
	}, 20*time.Second, 200*time.Millisecond)

	t.Run("oversized and smuggling probes through capture", func(t *testing.T) {
		before := rejections(t, e, "node-a")
		// 431, then the proxy closes with the rest of the header unread,
		// which resets the connection: a client may lose the answer to the
		// reset, so up to 3 tries (each is counted).
		var out string
		for i := 0; i < 3 && !strings.HasSuffix(out, "431"); i++ {
			out, _ = e.curl("shop/quiet", "-s", "--max-time", "5", "-o", "/dev/null", "-w", "%{http_code}",
				"-H", "X-A: "+strings.Repeat("a", 30000), "http://10.96.0.20/") // net/http allows 4 KiB over the limit
		}
		require.True(t, strings.HasSuffix(out, "431"), out)
		out, _ = e.curl("shop/quiet", "-s", "--max-time", "5", "http://10.96.0.20/"+strings.Repeat("a", 5000))
		require.Contains(t, out, "request URI is 5001 bytes, more than the limit of 4096")
		out = sh("shop/quiet", `exec 3<>/dev/tcp/10.96.0.20/80
printf 'POST / HTTP/1.1\r\nHost: web\r\nContent-Length: 6\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\nGET /smuggled HTTP/1.1\r\nHost: web\r\n\r\n' >&3
timeout 5 cat <&3`)
		require.Contains(t, out, "HTTP/1.1 400 ")
		require.Contains(t, out, "both Content-Length and Transfer-Encoding")
		require.Equal(t, 1, strings.Count(out, "HTTP/1.1 "), "the smuggled request got no answer: %q", out)
		// Slowloris: headers never finished; the proxy closes at 2s.
		out = sh("shop/quiet", `exec 3<>/dev/tcp/10.96.0.20/80
printf 'GET / HTTP/1.1\r\nHost: web\r\n' >&3
s=$(date +%s); timeout 8 cat <&3 >/dev/null; echo "closed after $(( $(date +%s) - s ))s"`)
		m := regexp.MustCompile(`closed after (\d+)s`).FindStringSubmatch(out)
		require.NotNil(t, m, out)
		secs, _ := strconv.Atoi(m[1])
		require.Less(t, secs, 6, "slowloris cut by the 2s header timeout")

		requireRejected(t, e, "node-a", "outbound/header_too_large", before, 1)
		requireRejected(t, e, "node-a", "outbound/uri_too_long", before, 1)
		requireRejected(t, e, "node-a", "outbound/bad_request", before, 1)
		requireRejected(t, e, "node-a", "outbound/read_timeout", before, 1)
		require.Contains(t, e.lab.AgentLog("node-a"), `"reason":"uri_too_long"`, "rejections are in the agent's debug log")
	})

	t.Run("probes on a peer node's tunnel port", func(t *testing.T) {
		before := rejections(t, e, "node-b")
		sh("shop/quiet", fmt.Sprintf(`exec 3<>/dev/tcp/%s/15008; head -c 512 /dev/urandom >&3; timeout 5 cat <&3 >/dev/null`, nodeB))
		out, _ := e.curl("shop/quiet", "-s", "--max-time", "5", "--http1.1", fmt.Sprintf("http://%s:15008/", nodeB))
		require.Contains(t, out, "speaks HTTP/2 over mutual TLS only")
		// TLS without a client certificate, for a server name no pod has.
		sh("shop/quiet", fmt.Sprintf(`timeout 5 openssl s_client -connect %s:15008 -alpn h2 -servername x.id.skein </dev/null`, nodeB))
		requireRejected(t, e, "node-b", "tunnel/tls_handshake", before, 3)
	})

	t.Run("a noisy pod over its connection limit does not starve a quiet one", func(t *testing.T) {
		before := rejections(t, e, "node-a")
		// The noisy pod opens 40 connections and holds them: 20 are over
		// its limit and are reset at once.
		noisy, err := e.lab.Start("shop/noisy", "bash", "-c",
			`for i in $(seq 40); do exec {fd}<>/dev/tcp/10.96.0.20/80 || echo open-failed; done; sleep 20`)
		require.NoError(t, err)
		done := make(chan struct{})
		go func() { _ = noisy.Wait(); close(done) }()
		stop := func() {
			if noisy.Process != nil {
				_ = noisy.Process.Kill()
			}
			<-done
		}
		defer stop()
		requireRejected(t, e, "node-a", "outbound/conn_limit", before, 20)

		// While it holds 20, the noisy pod's new connections are refused...
		_, err = e.curl("shop/noisy", "-sf", "--max-time", "3", "http://10.96.0.20/")
		require.Error(t, err, "a connection over the noisy pod's limit was served")
		// ...and the quiet pod gets every request through.
		r := e.load("shop/quiet", "--url", "http://10.96.0.20/", "--requests", "300", "--concurrency", "8")
		require.Equal(t, 300, r.Requests)
		require.Zero(t, r.Errors, r.FirstError)
		require.Equal(t, 300, r.ByStatus["200"], "%v", r.ByStatus)
		require.Contains(t, e.lab.AgentLog("node-a"), `"reason":"conn_limit","client":"shop/noisy"`)

		stop()
		require.Eventually(t, func() bool {
			_, err := e.curl("shop/noisy", "-sf", "--max-time", "3", "http://10.96.0.20/")
			return err == nil
		}, 10*time.Second, 200*time.Millisecond, "the noisy pod is served again once it closed its connections")
	})

	t.Run("the agents still serve normal traffic", func(t *testing.T) {
		r := e.load("shop/quiet", "--url", "http://10.96.0.20/", "--requests", "100", "--concurrency", "4")
		require.Zero(t, r.Errors, r.FirstError)
		require.Equal(t, 100, r.ByStatus["200"], "%v", r.ByStatus)
		// Across the tunnel too (the balancer may prefer the local pod).
		out := e.mustCurl("shop/quiet", fmt.Sprintf("http://%s:8080/", e.lab.Pod("web-b").IP))
		require.Contains(t, out, "web-b")
		for _, n := range []string{"node-a", "node-b"} {
			require.True(t, e.status(n).Ready, "agent on %s ready", n)
			t.Logf("skein_proxy_rejected_total on %s: %v", n, rejections(t, e, n))
		}
	})
}
