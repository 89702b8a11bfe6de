//go:build linux

package e2e

import (
	"encoding/json"
	"fmt"
	"math"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

const l7Topology = `
nodes: [{name: node-a}, {name: node-b}]
namespaces:
  - {name: shop, labels: {skein.io/mesh: enabled}}
pods:
  - {name: client, namespace: shop, node: node-a, serviceAccount: client, labels: {app: client}, command: [sleep, infinity]}
  - {name: product, namespace: shop, node: node-a, labels: {app: product}, ports: [{name: http, containerPort: 8080}], command: [skein-lab, echo]}
  - {name: profile, namespace: shop, node: node-b, labels: {app: profile}, ports: [{name: http, containerPort: 8080}], command: [skein-lab, echo]}
  - {name: web-v1, namespace: shop, node: node-a, labels: {app: web, version: v1}, ports: [{name: http, containerPort: 8080}], command: [skein-lab, echo]}
  - {name: web-v2, namespace: shop, node: node-b, labels: {app: web, version: v2}, ports: [{name: http, containerPort: 8080}], command: [skein-lab, echo]}
  - {name: shadow, namespace: shop, node: node-b, labels: {app: shadow}, ports: [{name: http, containerPort: 8080}], command: [skein-lab, echo, -v]}
  - {name: slow, namespace: shop, node: node-a, labels: {app: slow}, ports: [{name: http, containerPort: 8080}], command: [skein-lab, echo, --delay, 2s]}
  - {name: flaky-1, namespace: shop, node: node-a, labels: {app: flaky}, ports: [{name: http, containerPort: 8080}], command: [skein-lab, echo]}
  - {name: flaky-2, namespace: shop, node: node-b, labels: {app: flaky}, ports: [{name: http, containerPort: 8080}], command: [skein-lab, echo]}
  - {name: flaky-bad, namespace: shop, node: node-b, labels: {app: flaky}, ports: [{name: http, containerPort: 8080}], command: [skein-lab, echo, --status, "503"]}
  - {name: grpc-1, namespace: shop, node: node-a, labels: {app: grpc}, ports: [{name: grpc, containerPort: 9000}], command: [skein-lab, grpc-server, --listen, ":9000"]}
  - {name: grpc-2, namespace: shop, node: node-b, labels: {app: grpc}, ports: [{name: grpc, containerPort: 9000}], command: [skein-lab, grpc-server, --listen, ":9000"]}
  - {name: grpc-3, namespace: shop, node: node-b, labels: {app: grpc}, ports: [{name: grpc, containerPort: 9000}], command: [skein-lab, grpc-server, --listen, ":9000"]}
services:
  - {name: api, namespace: shop, clusterIP: 10.96.0.20, selector: {app: product}, ports: [{name: http, port: 80, targetPort: 8080}]}
  - {name: product, namespace: shop, clusterIP: 10.96.0.21, selector: {app: product}, ports: [{name: http, port: 80, targetPort: 8080}]}
  - {name: profile, namespace: shop, clusterIP: 10.96.0.22, selector: {app: profile}, ports: [{name: http, port: 80, targetPort: 8080}]}
  - {name: web, namespace: shop, clusterIP: 10.96.0.23, selector: {app: web}, ports: [{name: http, port: 80, targetPort: 8080}]}
  - {name: web-v1, namespace: shop, clusterIP: 10.96.0.24, selector: {app: web, version: v1}, ports: [{name: http, port: 80, targetPort: 8080}]}
  - {name: web-v2, namespace: shop, clusterIP: 10.96.0.25, selector: {app: web, version: v2}, ports: [{name: http, port: 80, targetPort: 8080}]}
  - {name: shadow, namespace: shop, clusterIP: 10.96.0.26, selector: {app: shadow}, ports: [{name: http, port: 80, targetPort: 8080}]}
  - {name: slow, namespace: shop, clusterIP: 10.96.0.27, selector: {app: slow}, ports: [{name: http, port: 80, targetPort: 8080}]}
  - name: flaky
    namespace: shop
    clusterIP: 10.96.0.28
    selector: {app: flaky}
    ports: [{name: http, port: 80, targetPort: 8080}]
  - {name: grpc, namespace: shop, clusterIP: 10.96.0.30, selector: {app: grpc}, ports: [{name: grpc, port: 9000, targetPort: 9000, appProtocol: grpc}]}
  - name: grpc-rr
    namespace: shop
    clusterIP: 10.96.0.31
    annotations: {skein.io/lb-policy: round-robin}
    selector: {app: grpc}
    ports: [{name: grpc, port: 9000, targetPort: 9000, appProtocol: grpc}]
`

// l7Routes are the routes of the L7 test; webWeights sets the v1/v2 split.
func l7Routes(v1, v2 int) []byte {
	return []byte(fmt.Sprintf(`apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: api, namespace: shop}
spec:
  parentRefs: [{group: "", kind: Service, name: api, port: 80}]
  rules:
  - matches: [{path: {type: PathPrefix, value: /api/product}}]
    filters:
    - type: RequestHeaderModifier
      requestHeaderModifier: {set: [{name: x-skein-test, value: "set"}], remove: [x-drop-me]}
    - type: ResponseHeaderModifier
      responseHeaderModifier: {add: [{name: x-resp, value: "added"}]}
    backendRefs: [{name: product, port: 80}]
  - matches: [{path: {type: PathPrefix, value: /api/profile}}]
    filters:
    - type: RequestMirror
      requestMirror: {backendRef: {name: shadow, port: 80}}
    backendRefs: [{name: profile, port: 80}]
  - matches: [{path: {type: PathPrefix, value: /legacy}}]
    filters:
    - type: URLRewrite
      urlRewrite: {path: {type: ReplacePrefixMatch, replacePrefixMatch: /api/v2}}
    backendRefs: [{name: product, port: 80}]
  - matches: [{path: {type: Exact, value: /old}}]
    filters:
    - type: RequestRedirect
      requestRedirect: {path: {type: ReplaceFullPath, replaceFullPath: /new}, statusCode: 301}
  - matches: [{path: {type: PathPrefix, value: /nowhere}}]
    backendRefs: [{name: no-such-service, port: 80}]
  - matches: [{path: {type: PathPrefix, value: /zero}}]
    backendRefs: [{name: product, port: 80, weight: 0}]
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: web, namespace: shop}
spec:
  parentRefs: [{group: "", kind: Service, name: web, port: 80}]
  rules:
  - matches: [{headers: [{name: x-version, value: v2}]}]
    backendRefs: [{name: web-v2, port: 80}]
  - backendRefs: [{name: web-v1, port: 80, weight: %d}, {name: web-v2, port: 80, weight: %d}]
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: slow, namespace: shop}
spec:
  parentRefs: [{group: "", kind: Service, name: slow, port: 80}]
  rules:
  - backendRefs: [{name: slow, port: 80}]
    timeouts: {request: 500ms}
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: flaky, namespace: shop}
spec:
  parentRefs: [{group: "", kind: Service, name: flaky, port: 80}]
  rules:
  - backendRefs: [{name: flaky, port: 80}]
    retry: {codes: [503], attempts: 2, backoff: 10ms}
`, v1, v2))
}

// loadResult is skein-lab http-load's JSON summary.
type loadResult struct {
	Requests   int            `json:"requests"`
	ByStatus   map[string]int `json:"byStatus"`
	ByPod      map[string]int `json:"byPod"`
	Errors     int            `json:"errors"`
	FirstError string         `json:"firstError"`
	// Connections is how many TCP connections the client established.
	Connections int `json:"connections"`
	LatencyMs   struct {
		P50, P90, P99, Max float64
	} `json:"latencyMs"`
}

func (e *env) load(pod string, args ...string) loadResult {
	e.t.Helper()
	out, err := e.exec(pod, append([]string{"skein-lab", "http-load", "-o", "json"}, args...)...)
	require.NoError(e.t, err, out)
	var r loadResult
	require.NoError(e.t, json.Unmarshal([]byte(out), &r), out)
	return r
}

// grpcResult is skein-lab grpc-client's JSON summary.
type grpcResult struct {
	Calls       int               `json:"calls"`
	OK          int               `json:"ok"`
	Errors      map[string]int    `json:"errors"`
	ByHost      map[string]int    `json:"byHost"`
	Connections int               `json:"connections"`
	Trailers    map[string]string `json:"trailers"`
	FirstError  string            `json:"firstError"`
}

func (e *env) grpc(pod string, args ...string) grpcResult {
	e.t.Helper()
	out, err := e.exec(pod, append([]string{"skein-lab", "grpc-client", "-o", "json"}, args...)...)
	require.NoError(e.t, err, out)
	var r grpcResult
	require.NoError(e.t, json.Unmarshal([]byte(out), &r), out)
	return r
}

func TestPrivilegedL7(t *testing.T) {
	// With the CA: everything that crosses nodes goes through the mTLS tunnel.
	e := newMeshEnv(t, l7Topology, nil)
	require.NoError(t, e.lab.SetObjects(l7Routes(90, 10)))
	require.Eventually(t, func() bool {
		out, err := e.curl("shop/client", "http://10.96.0.20/api/profile")
		return err == nil && strings.Contains(out, `"pod":"profile"`)
	}, 10*time.Second, 100*time.Millisecond, "routes applied")

	t.Run("protocols: HTTP/1.1, HTTP/2 prior knowledge, h2load, chunked, upgrade", func(t *testing.T) {
		r := parseEcho(t, e.mustCurl("shop/client", "--http1.1", "http://10.96.0.21/x"))
		require.Equal(t, "HTTP/1.1", e.mustCurl("shop/client", "--http1.1", "-s", "-o", "/dev/null", "-w", "HTTP/%{http_version}", "http://10.96.0.21/")[:8])
		require.Equal(t, "product", r.Pod)
		out := e.mustCurl("shop/client", "--http2-prior-knowledge", "-s", "-w", "\n%{http_version}", "http://10.96.0.21/h2")
		require.True(t, strings.HasSuffix(out, "\n2"), "curl spoke HTTP/2: %s", out)
		require.Contains(t, out, `"proto":"HTTP/2.0"`, "and the proxy spoke HTTP/2 to the pod")

		out, err := e.exec("shop/client", "h2load", "-n", "400", "-c", "4", "-m", "10", "http://10.96.0.21/")
		require.NoError(t, err, out)
		require.Contains(t, out, "400 succeeded, 0 failed, 0 errored", out)
		require.Contains(t, out, "status codes: 400 2xx")

		r = parseEcho(t, e.mustCurl("shop/client", "-H", "Transfer-Encoding: chunked", "--data-binary", "hello chunks", "http://10.96.0.21/chunked"))
		require.Equal(t, "POST", r.Method)

		out, err = e.exec("shop/client", "skein-lab", "upgrade-client", "--url", "http://10.96.0.25/upgrade", "--message", "hello", "--rounds", "3")
		require.NoError(t, err, out)
		require.Contains(t, out, "web-v2:hello", "the upgrade passed through the proxy and the tunnel")
	})

	t.Run("path-based split: /api/product and /api/profile of one Service go to different backends", func(t *testing.T) {
		require.Equal(t, "product", parseEcho(t, e.mustCurl("shop/client", "http://10.96.0.20/api/product/7")).Pod)
		require.Equal(t, "profile", parseEcho(t, e.mustCurl("shop/client", "http://10.96.0.20/api/profile/7")).Pod)
		code := e.mustCurl("shop/client", "-o", "/dev/null", "-w", "%{http_code}", "http://10.96.0.20/unrouted")
		require.Equal(t, "404", code, "routes attached, none matched: 404 (NR)")
	})

	t.Run("header-based routing", func(t *testing.T) {
		for i := 0; i < 10; i++ {
			require.Equal(t, "web-v2", parseEcho(t, e.mustCurl("shop/client", "-H", "x-version: v2", "http://10.96.0.23/")).Pod)
		}
	})

	t.Run("a 90/10 weight split holds within a statistical tolerance", func(t *testing.T) {
		r := e.load("shop/client", "--url", "http://10.96.0.23/", "--requests", "3000", "--concurrency", "8")
		require.Equal(t, 3000, r.ByStatus["200"], r.FirstError)
		share := float64(r.ByPod["web-v2"]) / 3000
		// Binomial(3000, 0.1): sigma = 0.55%; allow 4 sigma.
		require.InDelta(t, 0.10, share, 4*math.Sqrt(0.1*0.9/3000), "web-v2 share %.3f", share)
	})

	t.Run("redirect", func(t *testing.T) {
		out := e.mustCurl("shop/client", "-o", "/dev/null", "-w", "%{http_code} %{redirect_url}", "http://10.96.0.20/old")
		require.Equal(t, "301 http://10.96.0.20/new", out)
	})

	t.Run("rewrite", func(t *testing.T) {
		r := parseEcho(t, e.mustCurl("shop/client", "http://10.96.0.20/legacy/items"))
		require.Equal(t, "/api/v2/items", r.Path)
	})

	t.Run("request and response header modification, visible at the backend and the client", func(t *testing.T) {
		out := e.mustCurl("shop/client", "-i", "-H", "x-drop-me: please", "-H", "x-skein-test: client", "http://10.96.0.20/api/product")
		require.Contains(t, strings.ToLower(out), "x-resp: added")
		body := out[strings.Index(out, "{"):]
		r := parseEcho(t, body)
		require.Equal(t, "set", r.Headers["X-Skein-Test"])
		require.NotContains(t, r.Headers, "X-Drop-Me")
	})

	t.Run("a mirror reaches the shadow backend", func(t *testing.T) {
		e.mustCurl("shop/client", "http://10.96.0.20/api/profile/mirrored-request")
		require.Eventually(t, func() bool {
			b, _ := os.ReadFile(e.lab.PodLogPath("shop/shadow"))
			return strings.Contains(string(b), "/api/profile/mirrored-request")
		}, 5*time.Second, 100*time.Millisecond)
	})

	t.Run("a missing backend and a weight-0 backend answer 500", func(t *testing.T) {
		for _, path := range []string{"/nowhere", "/zero"} {
			require.Equal(t, "500", e.mustCurl("shop/client", "-o", "/dev/null", "-w", "%{http_code}", "http://10.96.0.20"+path), path)
		}
	})

	t.Run("a timeout returns 504", func(t *testing.T) {
		start := time.Now()
		out := e.mustCurl("shop/client", "-o", "/dev/null", "-w", "%{http_code}", "http://10.96.0.27/")
		require.Equal(t, "504", out)
		require.Less(t, time.Since(start), 1900*time.Millisecond, "cut at the route's 500ms, not the pod's 2s")
	})

	t.Run("a retry hides the failing endpoint", func(t *testing.T) {
		r := e.load("shop/client", "--url", "http://10.96.0.28/", "--requests", "300", "--concurrency", "4")
		require.Equal(t, 300, r.ByStatus["200"], "every request succeeds: %+v %s", r.ByStatus, r.FirstError)
		require.Zero(t, r.ByPod["flaky-bad"])
	})

	t.Run("outlier detection ejects the failing endpoint and brings it back", func(t *testing.T) {
		// No retries and a short ejection: the Service's annotations.
		require.NoError(t, e.lab.SetObjects(append(l7Routes(90, 10), []byte(`
---
apiVersion: v1
kind: Service
metadata:
  name: flaky-direct
  namespace: shop
  annotations: {skein.io/outlier-base-ejection: 3s, skein.io/outlier-consecutive-5xx: "3", skein.io/lb-policy: round-robin}
spec:
  clusterIP: 10.96.0.29
  selector: {app: flaky}
  ports: [{name: http, port: 80, targetPort: 8080}]
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {name: flaky-direct-1, namespace: shop, labels: {kubernetes.io/service-name: flaky-direct}}
addressType: IPv4
ports: [{name: http, port: 8080}]
endpoints:
`+endpointsYAML(e, "flaky-1", "flaky-2", "flaky-bad"))...)))
		require.Eventually(t, func() bool {
			_, err := e.curl("shop/client", "http://10.96.0.29/")
			return err == nil
		}, 10*time.Second, 100*time.Millisecond)
		ejected := func() bool {
			out, err := e.agentctl("node-a", "endpoints", "--service", "shop/flaky-direct")
			require.NoError(t, err)
			for _, line := range strings.Split(out, "\n") {
				if strings.Contains(line, "flaky-bad") {
					return strings.Contains(line, "EJECTED")
				}
			}
			return false
		}
		r := e.load("shop/client", "--url", "http://10.96.0.29/", "--requests", "200", "--concurrency", "2")
		require.LessOrEqual(t, r.ByStatus["503"], 10, "ejected after a few 5xx: %+v", r.ByStatus)
		require.True(t, ejected(), "agentctl endpoints shows the ejection")
		require.Eventually(t, func() bool { return !ejected() }, 10*time.Second, 200*time.Millisecond,
			"back in rotation when the ejection time is up")
	})

	t.Run("gRPC: every call is balanced across 3 endpoints over one client connection", func(t *testing.T) {
		// Round robin (the Service's skein.io/lb-policy): a third each.
		r := e.grpc("shop/client", "--target", "10.96.0.31:9000", "--calls", "300", "--concurrency", "4")
		require.Equal(t, 300, r.OK, "%+v", r)
		require.Equal(t, 1, r.Connections, "one client connection")
		require.Len(t, r.ByHost, 3)
		for host, n := range r.ByHost {
			require.InDelta(t, 100, n, 10, "%s got %d of 300", host, n)
		}
		// P2C over peak EWMA (the default) weighs in latency: the local
		// endpoint is faster than the two behind the tunnel, yet every
		// endpoint keeps getting calls: none is starved (how many a remote
		// one gets varies with the latency it showed early: 23 of 300 in
		// one run on this machine).
		r = e.grpc("shop/client", "--target", "10.96.0.30:9000", "--calls", "300", "--concurrency", "4")
		require.Equal(t, 300, r.OK, "%+v", r)
		require.Equal(t, 1, r.Connections)
		require.Len(t, r.ByHost, 3)
		for host, n := range r.ByHost {
			require.GreaterOrEqual(t, n, 10, "%s got %d of 300: %v", host, n, r.ByHost)
		}
	})

	t.Run("gRPC: bidirectional streaming and status codes pass through", func(t *testing.T) {
		r := e.grpc("shop/client", "--target", "10.96.0.30:9000", "--calls", "20", "--stream-messages", "5")
		require.Equal(t, 20, r.OK, "%+v", r)
		r = e.grpc("shop/client", "--target", "10.96.0.30:9000", "--calls", "6", "--status-code", "7", "--deadline", "3s")
		require.Equal(t, map[string]int{"PermissionDenied": 6}, r.Errors, "unary status")
		r = e.grpc("shop/client", "--target", "10.96.0.30:9000", "--calls", "6", "--stream-messages", "3", "--status-code", "7", "--deadline", "3s")
		require.Equal(t, map[string]int{"PermissionDenied": 6}, r.Errors, "stream status, not a deadline")
	})

	t.Run("a route change applies to open connections without failing a request", func(t *testing.T) {
		var res loadResult
		var wg sync.WaitGroup
		wg.Add(1)
		go func() {
			defer wg.Done()
			out, err := e.exec("shop/client", "skein-lab", "http-load", "-o", "json", "--url", "http://10.96.0.23/",
				"--requests", "4000", "--concurrency", "4", "--http2")
			if err == nil {
				_ = json.Unmarshal([]byte(out), &res)
			}
		}()
		time.Sleep(300 * time.Millisecond)
		require.NoError(t, e.lab.SetObjects(l7Routes(0, 100)))
		wg.Wait()
		require.Equal(t, 4000, res.Requests)
		require.Equal(t, 4000, res.ByStatus["200"], "no request failed across the reload: %+v %s", res.ByStatus, res.FirstError)
		// After the change every new request goes to v2, on the same connections.
		require.Eventually(t, func() bool {
			r := e.load("shop/client", "--url", "http://10.96.0.23/", "--requests", "50", "--http2")
			return r.ByPod["web-v2"] == 50
		}, 10*time.Second, 200*time.Millisecond)
	})

	t.Run("an invalid route is rejected and the last good one keeps serving", func(t *testing.T) {
		bad := strings.Replace(string(l7Routes(0, 100)), "value: /api/product}", "value: api/product}", 1)
		require.NoError(t, e.lab.SetObjects([]byte(bad)))
		require.Eventually(t, func() bool {
			for _, msg := range e.status("node-a").Config.Errors {
				if strings.Contains(msg, "HTTPRoute shop/api") && strings.Contains(msg, "spec.rules[0].matches[0].path.value") {
					return true
				}
			}
			return false
		}, 10*time.Second, 100*time.Millisecond)
		require.Equal(t, "product", parseEcho(t, e.mustCurl("shop/client", "http://10.96.0.20/api/product")).Pod)
		out, err := e.agentctl("node-a", "routes", "--service", "shop/api")
		require.NoError(t, err)
		require.Contains(t, out, "PathPrefix /api/product")
		require.Contains(t, out, "HTTPRoute shop/api rule 0")
		require.Contains(t, out, "Accepted")
	})
}

// endpointsYAML lists pods as EndpointSlice endpoints.
func endpointsYAML(e *env, pods ...string) string {
	var b strings.Builder
	for _, p := range pods {
		fmt.Fprintf(&b, "- addresses: [%q]\n  targetRef: {kind: Pod, name: %s, namespace: shop}\n  nodeName: %s\n", e.lab.Pod(p).IP, p, e.lab.Pod(p).Node)
	}
	return b.String()
}
