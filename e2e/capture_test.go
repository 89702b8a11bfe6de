//go:build linux

package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/cilium/ebpf/link"
	"github.com/stretchr/testify/require"

	"github.com/skeinmesh/skein/scripts/lab"
)

const captureTopology = `
nodes: [{name: node-a}, {name: node-b}]
namespaces:
  - {name: shop, labels: {skein.io/mesh: enabled}}
  - {name: legacy}
pods:
  - name: client
    namespace: shop
    node: node-a
    labels: {app: client}
    serviceAccount: client
    annotations: {skein.io/exclude-outbound-ports: "9090"}
    command: [sleep, infinity]
  - name: product-v1
    namespace: shop
    node: node-a
    labels: {app: product}
    ports: [{name: http, containerPort: 8080}]
    command: [skein-lab, echo, --listen, ":8080"]
  - name: product-v2
    namespace: shop
    node: node-b
    labels: {app: product}
    ports: [{name: http, containerPort: 8080}]
    command: [skein-lab, echo, --listen, ":8080"]
  - name: db
    namespace: shop
    node: node-a
    labels: {app: db}
    ports: [{name: db, containerPort: 9090}]
    command: [skein-lab, echo, --listen, ":9090"]
  - name: optout
    namespace: shop
    node: node-a
    labels: {app: optout}
    annotations: {skein.io/mesh: disabled}
    command: [sleep, infinity]
  - name: outsider
    namespace: legacy
    node: node-a
    labels: {app: outsider}
    command: [sleep, infinity]
services:
  - name: product
    namespace: shop
    clusterIP: 10.96.0.10
    selector: {app: product}
    ports: [{name: http, port: 80, targetPort: 8080}]
`

// echoReply is what skein-lab echo answers.
type echoReply struct {
	Pod       string            `json:"pod"`
	Namespace string            `json:"namespace"`
	Method    string            `json:"method"`
	Host      string            `json:"host"`
	Path      string            `json:"path"`
	Headers   map[string]string `json:"headers"`
	Remote    string            `json:"remote"`
}

func parseEcho(t *testing.T, out string) echoReply {
	t.Helper()
	var r echoReply
	require.NoError(t, json.Unmarshal([]byte(out), &r), "not an echo reply: %q", out)
	return r
}

func TestPrivilegedCapture(t *testing.T) {
	e := newEnv(t, captureTopology, nil, false)
	podIP := func(name string) string { return e.lab.Pod(name).IP }

	t.Run("meshed pod reaches a service VIP through the node proxy", func(t *testing.T) {
		before := e.status("node-a")
		seen := map[string]int{}
		const n = 20
		for i := 0; i < n; i++ {
			r := parseEcho(t, e.mustCurl("shop/client", "http://10.96.0.10/hello"))
			seen[r.Pod]++
			require.Equal(t, "/hello", r.Path)
		}
		require.Len(t, seen, 2, "both endpoints, on both nodes, serve: %v", seen)
		after := e.status("node-a")
		require.Equal(t, before.Capture["redirected"]+n, after.Capture["redirected"],
			"exactly the client's connects are redirected: the proxy's own upstream connects are not captured")
		require.GreaterOrEqual(t, after.Proxy.Accepted-before.Proxy.Accepted, int64(n))
		log := e.lab.AgentLog("node-a")
		require.Contains(t, log, `"orig_dst":"10.96.0.10:80"`, "the proxy logs the original destination")
		require.Contains(t, log, `"src_pod":"shop/client"`, "the proxy logs the source pod, from the socket's cgroup")
	})

	t.Run("the app sees the address it dialed", func(t *testing.T) {
		// curl prints the peer address it got from getpeername.
		out := e.mustCurl("shop/client", "-o", "/dev/null", "-w", "%{remote_ip}:%{remote_port}", "http://10.96.0.10/")
		require.Equal(t, "10.96.0.10:80", out)
	})

	t.Run("meshed pod to a pod IP goes through the proxy", func(t *testing.T) {
		before := e.status("node-a").Capture["redirected"]
		r := parseEcho(t, e.mustCurl("shop/client", fmt.Sprintf("http://%s:8080/", podIP("product-v2"))))
		require.Equal(t, "product-v2", r.Pod)
		require.Equal(t, before+1, e.status("node-a").Capture["redirected"])
	})

	t.Run("unmeshed and opted-out pods bypass the proxy", func(t *testing.T) {
		before := e.status("node-a")
		for _, pod := range []string{"legacy/outsider", "shop/optout"} {
			r := parseEcho(t, e.mustCurl(pod, fmt.Sprintf("http://%s:8080/", podIP("product-v1"))))
			require.Equal(t, "product-v1", r.Pod)
			_, err := e.curl(pod, "--connect-timeout", "1", "http://10.96.0.10/")
			require.Error(t, err, "%s: a VIP is not captured for an unmeshed pod and has no route in the lab", pod)
		}
		after := e.status("node-a")
		require.Equal(t, before.Proxy.Accepted, after.Proxy.Accepted, "the proxy saw none of it")
		require.Equal(t, before.Capture["redirected"], after.Capture["redirected"])
	})

	t.Run("an excluded port bypasses the proxy", func(t *testing.T) {
		before := e.status("node-a")
		r := parseEcho(t, e.mustCurl("shop/client", fmt.Sprintf("http://%s:9090/", podIP("db"))))
		require.Equal(t, "db", r.Pod)
		after := e.status("node-a")
		require.Equal(t, before.Capture["excluded_port"]+1, after.Capture["excluded_port"])
		require.Equal(t, before.Proxy.Accepted, after.Proxy.Accepted)
	})

	t.Run("loopback is not captured", func(t *testing.T) {
		before := e.status("node-a")
		_, err := e.curl("shop/client", "--connect-timeout", "1", "http://127.0.0.1:8080/")
		require.Error(t, err, "nothing listens on the client's loopback")
		after := e.status("node-a")
		require.Equal(t, before.Capture["redirected"], after.Capture["redirected"])
	})

	t.Run("a new endpoint takes traffic without an agent restart", func(t *testing.T) {
		pid := e.lab.AgentPid("node-a")
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		require.NoError(t, e.lab.AddPod(ctx, lab.PodSpec{
			Name: "product-v3", Namespace: "shop", Node: "node-b", Labels: map[string]string{"app": "product"},
			Ports:   []lab.ContainerPort{{Name: "http", ContainerPort: 8080}},
			Command: []string{"skein-lab", "echo", "--listen", ":8080"},
		}))
		require.NoError(t, e.lab.WaitTCP(ctx, "shop/product-v3", 8080))
		seen := map[string]int{}
		require.Eventually(t, func() bool {
			for i := 0; i < 6; i++ {
				out, err := e.curl("shop/client", "http://10.96.0.10/")
				var r echoReply
				if err != nil || json.Unmarshal([]byte(out), &r) != nil {
					seen["error: "+out]++
					continue
				}
				seen[r.Pod]++
				if r.Pod == "product-v3" {
					return true
				}
			}
			return false
		}, 20*time.Second, 200*time.Millisecond, "answers: %v", seen)
		t.Logf("answers until product-v3 answered: %v", seen)
		require.Equal(t, pid, e.lab.AgentPid("node-a"), "same agent process")
	})

	extra := func(clusterIP string) []byte {
		return []byte(fmt.Sprintf(`apiVersion: v1
kind: Service
metadata: {name: extra, namespace: shop}
spec:
  clusterIP: %s
  ports: [{name: http, port: 80}]
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {name: extra-1, namespace: shop, labels: {kubernetes.io/service-name: extra}}
addressType: IPv4
ports: [{name: http, port: 8080}]
endpoints: [{addresses: [%q]}]
`, clusterIP, podIP("product-v1")))
	}

	t.Run("an added service is captured, an invalid edit is rejected and the old one keeps serving", func(t *testing.T) {
		require.NoError(t, e.lab.SetObjects(extra("10.96.0.50")))
		require.Eventually(t, func() bool {
			out, err := e.curl("shop/client", "http://10.96.0.50/")
			var r echoReply
			return err == nil && json.Unmarshal([]byte(out), &r) == nil && r.Pod == "product-v1"
		}, 10*time.Second, 100*time.Millisecond)

		require.NoError(t, e.lab.SetObjects(extra("10.96.0.500")))
		require.Eventually(t, func() bool {
			for _, msg := range e.status("node-a").Config.Errors {
				if strings.Contains(msg, `Service shop/extra: spec.clusterIP: Invalid value: "10.96.0.500": must be an IPv4 or IPv6 address`) {
					return true
				}
			}
			return false
		}, 10*time.Second, 100*time.Millisecond, "agentctl status names the object, the field and the reason")
		out, err := e.agentctl("node-a", "status")
		require.NoError(t, err, out)
		require.Contains(t, out, `spec.clusterIP: Invalid value: "10.96.0.500"`)
		r := parseEcho(t, e.mustCurl("shop/client", "http://10.96.0.50/"))
		require.Equal(t, "product-v1", r.Pod, "the last good version keeps serving")
	})

	t.Run("a removed service stops being captured", func(t *testing.T) {
		require.NoError(t, e.lab.SetObjects())
		require.Eventually(t, func() bool {
			_, err := e.curl("shop/client", "--connect-timeout", "1", "http://10.96.0.50/")
			return err != nil
		}, 10*time.Second, 100*time.Millisecond)
	})

	t.Run("with the proxy stopped, capture fails open", func(t *testing.T) {
		links := e.status("node-a").Programs
		require.NoError(t, e.lab.StopAgent("node-a", syscall.SIGTERM))
		r := parseEcho(t, e.mustCurl("shop/client", fmt.Sprintf("http://%s:8080/", podIP("product-v2"))))
		require.Equal(t, "product-v2", r.Pod, "pod IPs are reached directly")
		_, err := e.curl("shop/client", "--connect-timeout", "1", "http://10.96.0.10/")
		require.Error(t, err, "a VIP is kube-proxy's job when the mesh is down; the lab has none")

		require.NoError(t, e.lab.StartAgent("node-a"))
		e.waitReady("node-a")
		st := e.status("node-a")
		require.GreaterOrEqual(t, st.Capture["fail_open"], uint64(2), "counted while no proxy listened")
		require.Len(t, st.Programs, len(links))
		for i := range links {
			require.Equal(t, links[i].LinkID, st.Programs[i].LinkID, "the new agent adopts the pinned links")
		}
		parseEcho(t, e.mustCurl("shop/client", "http://10.96.0.10/"))
	})

	t.Run("fail-closed refuses captured connects visibly", func(t *testing.T) {
		require.NoError(t, e.lab.StopAgent("node-a", syscall.SIGTERM))
		require.NoError(t, e.lab.StartAgent("node-a", "--fail-closed"))
		e.waitReady("node-a")
		require.Equal(t, "closed", e.status("node-a").FailMode)
		require.NoError(t, e.lab.StopAgent("node-a", syscall.SIGKILL))

		out, err := e.curl("shop/client", "-v", "--connect-timeout", "1", fmt.Sprintf("http://%s:8080/", podIP("product-v2")))
		require.Error(t, err)
		require.Contains(t, out, "Operation not permitted", "the app gets EPERM")
		// Unmeshed pods are unaffected.
		parseEcho(t, e.mustCurl("legacy/outsider", fmt.Sprintf("http://%s:8080/", podIP("product-v2"))))

		require.NoError(t, e.lab.StartAgent("node-a"))
		e.waitReady("node-a")
		require.GreaterOrEqual(t, e.status("node-a").Capture["fail_closed"], uint64(1))
		parseEcho(t, e.mustCurl("shop/client", "http://10.96.0.10/"))
	})
}

func TestPrivilegedTeardownLeavesNothing(t *testing.T) {
	e := newEnv(t, captureTopology, nil, false)
	st := e.status("node-a")
	require.NotEmpty(t, st.Programs)
	prefix, pins := e.lab.Prefix(), e.lab.PinDir()
	cgroups := []string{}
	for _, n := range e.lab.Nodes() {
		cgroups = append(cgroups, n.Cgroup)
	}

	require.NoError(t, e.lab.Down())

	names, err := filepath.Glob("/var/run/netns/" + prefix + "-*")
	require.NoError(t, err)
	require.Empty(t, names, "no network namespace left")
	for _, cg := range cgroups {
		_, err := os.Stat(cg)
		require.ErrorIs(t, err, os.ErrNotExist, "no cgroup left: %s", cg)
	}
	_, err = os.Stat(pins)
	require.ErrorIs(t, err, os.ErrNotExist, "no pinned object left")
	for _, p := range st.Programs {
		require.Eventually(t, func() bool {
			l, err := link.NewFromID(link.ID(p.LinkID))
			if err == nil {
				l.Close()
				return false
			}
			return true
		}, 5*time.Second, 50*time.Millisecond, "link %d of %s is gone", p.LinkID, p.Name)
	}
	// The root network namespace was never touched: no interface of the lab.
	ifs, err := net.Interfaces()
	require.NoError(t, err)
	for _, i := range ifs {
		require.False(t, strings.HasPrefix(i.Name, "sk"), "interface %s in the root namespace", i.Name)
	}
}
