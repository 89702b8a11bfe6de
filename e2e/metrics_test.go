//go:build linux

package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"sigs.k8s.io/yaml"

	"github.com/skeinmesh/skein/agent/admin"
	"github.com/skeinmesh/skein/deploy"
)

// metricsTopology: a meshed client on node-a; meshed servers behind
// Services on node-b (web answers, flaky always 503, raw swallows opaque
// TCP) and on node-a (local, for a server that resets); unmeshed pods on
// node-b that the client reaches directly, for what only the kernel sees:
// a refused port (closed), a reset received (aborter), retransmits (sink).
const metricsTopology = `
nodes: [{name: node-a}, {name: node-b}]
namespaces:
  - {name: shop, labels: {skein.io/mesh: enabled}}
  - {name: legacy}
pods:
  - {name: client, namespace: shop, node: node-a, serviceAccount: client, labels: {app: client}, command: [sleep, infinity]}
  - {name: local, namespace: shop, node: node-a, labels: {app: local}, ports: [{name: http, containerPort: 8080}], command: [skein-lab, echo]}
  - {name: web, namespace: shop, node: node-b, serviceAccount: web, labels: {app: web}, ports: [{name: http, containerPort: 8080}], command: [skein-lab, echo]}
  - {name: flaky, namespace: shop, node: node-b, labels: {app: flaky}, ports: [{name: http, containerPort: 8080}], command: [skein-lab, echo, --status, "503"]}
  - {name: raw, namespace: shop, node: node-b, labels: {app: raw}, ports: [{name: tcp, containerPort: 9000}], command: [skein-lab, blackhole, --port, "9000"]}
  - {name: sink, namespace: legacy, node: node-b, labels: {app: sink}, ports: [{name: tcp, containerPort: 9000}], command: [skein-lab, blackhole, --port, "9000"]}
  - {name: aborter, namespace: legacy, node: node-b, labels: {app: aborter}, ports: [{name: http, containerPort: 8080}], command: [skein-lab, echo]}
  - {name: closed, namespace: legacy, node: node-b, labels: {app: closed}, command: [sleep, infinity]}
services:
  - {name: web, namespace: shop, clusterIP: 10.96.0.40, selector: {app: web}, ports: [{name: http, port: 80, targetPort: 8080}]}
  - {name: flaky, namespace: shop, clusterIP: 10.96.0.41, selector: {app: flaky}, ports: [{name: http, port: 80, targetPort: 8080}]}
  - {name: raw, namespace: shop, clusterIP: 10.96.0.42, selector: {app: raw}, ports: [{name: tcp, port: 9000, targetPort: 9000, appProtocol: tcp}]}
  - {name: local, namespace: shop, clusterIP: 10.96.0.43, selector: {app: local}, ports: [{name: http, port: 80, targetPort: 8080}]}
`

const (
	promNode = "node-a"
	promPort = 9090
)

// TestPrivilegedPrometheusMetrics runs a real Prometheus in node-a's network
// namespace, scraping both agents every second with the shipped rules
// (thresholds lowered through the same template), sends traffic with known
// counts and injected failures, and requires that Prometheus sees exactly
// that: request and error counts, TCP connections opened, closed and failed,
// bytes, resets by direction, retransmits, sane RTTs; that every dashboard
// query returns data; and that the error-rate alert fires.
func TestPrivilegedPrometheusMetrics(t *testing.T) {
	promBin, err := exec.LookPath("prometheus")
	if err != nil {
		t.Skip("prometheus not installed: scripts/deps.sh installs Debian's prometheus package")
	}
	e := newMeshEnv(t, metricsTopology, nil)
	require.Equal(t, "192.168.77.1", e.lab.Nodes()[0].IP, "the lab's node addresses changed")
	rules := renderTestRules(t)
	p := startPrometheus(t, e, promBin, rules)
	ip := func(pod string) string { return e.lab.Pod(pod).IP }

	// Every series below is a pair of workloads seen by one reporter on
	// one node.
	const (
		webHost   = "web.shop.svc.cluster.local"
		flakyHost = "flaky.shop.svc.cluster.local"
		rawHost   = "raw.shop.svc.cluster.local"
		localHost = "local.shop.svc.cluster.local"
	)
	src := func(dst string) string { return `node="node-a", reporter="source", source_workload="client", ` + dst }
	req := func(sel string) string { return "sum(skein_requests_total{" + sel + "})" }
	tcp := func(family, sel string) string { return "sum(skein_tcp_" + family + "{" + sel + "})" }

	require.Empty(t, p.alerts(t, "SkeinHighErrorRate"), "no alert before any error")

	t.Run("requests: counts exact at both reporters; the connections they took, exact", func(t *testing.T) {
		srcSel := src(`destination_service="` + webHost + `", response_code="200"`)
		dstSel := `node="node-b", reporter="destination", source_workload="client", destination_workload="web", response_code="200"`
		connSel := src(`destination_service="` + webHost + `", destination_workload="web", connection_security_policy="mutual_tls"`)
		base := p.values(t, req(srcSel), req(dstSel), tcp("connections_opened_total", connSel), tcp("connections_closed_total", connSel))
		r := e.load("shop/client", "--url", "http://10.96.0.40/", "--requests", "200", "--concurrency", "4")
		require.Equal(t, 200, r.ByStatus["200"], "%+v", r)
		t.Logf("200 requests over %d connections", r.Connections)
		p.requireSettles(t, req(srcSel), base[0]+200)
		p.requireSettles(t, req(dstSel), base[1]+200)
		p.requireSettles(t, tcp("connections_opened_total", connSel), base[2]+float64(r.Connections))
		p.requireSettles(t, tcp("connections_closed_total", connSel), base[3]+float64(r.Connections))

		// The kernel's RTT and connect time of these flows are sane: more
		// than nothing, less than 100ms on a lab of veths.
		for _, h := range []string{"rtt_seconds", "connect_duration_seconds"} {
			mean := p.value(t, fmt.Sprintf("sum(skein_tcp_%s_sum{%s}) / sum(skein_tcp_%[1]s_count{%[2]s})", h, connSel))
			p99 := p.value(t, fmt.Sprintf("histogram_quantile(0.99, sum by (le) (skein_tcp_%s_bucket{%s}))", h, connSel))
			t.Logf("%s: mean %.1fus, p99 below %.1fus", h, mean*1e6, p99*1e6)
			require.Greater(t, mean, 0.0, h)
			require.Less(t, mean, 0.1, h)
			require.Less(t, p99, 0.1, h)
		}
		// The web pod's side: connections from the node proxy (pooled, so
		// not one per client connection), through the tunnel.
		inSel := `node="node-b", reporter="destination", destination_workload="web", destination_service="` + webHost +
			`", source_workload="unknown", connection_security_policy="mutual_tls"`
		require.Positive(t, p.value(t, tcp("connections_opened_total", inSel)))
		require.Positive(t, p.value(t, fmt.Sprintf("sum(skein_tcp_rtt_seconds_count{%s})", inSel)))
	})

	t.Run("opaque TCP: connections and bytes exact at both ends of the tunnel", func(t *testing.T) {
		const conns, size = 5, 1000
		srcSel := src(`destination_service="` + rawHost + `", destination_workload="raw", connection_security_policy="mutual_tls"`)
		dstSel := `node="node-b", reporter="destination", source_workload="unknown", destination_service="` + rawHost +
			`", destination_workload="raw", connection_security_policy="mutual_tls"`
		var exprs []string
		for _, sel := range []string{srcSel, dstSel} {
			for _, f := range []string{"connections_opened_total", "connections_closed_total", "received_bytes_total", "sent_bytes_total"} {
				exprs = append(exprs, tcp(f, sel))
			}
		}
		base := p.values(t, exprs...)
		for range conns {
			out, err := e.exec("shop/client", "bash", "-c", fmt.Sprintf("exec 3<>/dev/tcp/10.96.0.42/9000 && head -c %d /dev/zero >&3", size))
			require.NoError(t, err, out)
		}
		want := []float64{conns, conns, conns * size, 0}
		for i, expr := range exprs {
			p.requireSettles(t, expr, base[i]+want[i%4])
		}
	})

	t.Run("a flow open for a while is counted while open and listed by agentctl flows", func(t *testing.T) {
		sel := src(`destination_service="` + rawHost + `"`)
		base := p.values(t, tcp("connections_opened_total", sel), tcp("connections_closed_total", sel), tcp("received_bytes_total", sel))
		// The flow stays open until the test has looked (a file says when),
		// 60 seconds at most.
		stop := filepath.Join(t.TempDir(), "stop")
		cmd, err := e.lab.Start("shop/client", "bash", "-c", "exec 3<>/dev/tcp/10.96.0.42/9000 && head -c 3000 /dev/zero >&3 && "+
			"for i in $(seq 600); do [ -e "+stop+" ] && exit 0; sleep 0.1; done")
		require.NoError(t, err)
		done := make(chan error, 1)
		go func() { done <- cmd.Wait() }()
		p.requireSettles(t, tcp("connections_opened_total", sel), base[0]+1)
		p.requireSettles(t, tcp("received_bytes_total", sel), base[2]+3000)
		require.Equal(t, base[1], p.value(t, tcp("connections_closed_total", sel)), "still open")

		out, err := e.agentctl("node-a", "flows", "--pod", "shop/client", "-o", "wide")
		require.NoError(t, err, out)
		t.Logf("agentctl flows:\n%s", out)
		require.Regexp(t, `shop/client\s+out\s+10\.244\.1\.\d+:\d+\s+10\.244\.1\.1:15001\s+10\.96\.0\.42:9000\s+ESTABLISHED\s+\S+\s+\d+\s+2\.9KiB\s+0B\s+\S+\s+shop/client\s+service shop/raw`, out)
		var fl admin.Flows
		out, err = e.agentctl("node-b", "flows", "--direction", "inbound", "-o", "json")
		require.NoError(t, err, out)
		require.NoError(t, json.Unmarshal([]byte(out), &fl), out)
		require.True(t, fl.Enabled)
		found := false
		for _, f := range fl.Flows {
			if f.Pod == "shop/raw" && f.State == "ESTABLISHED" && f.PeerName == "node proxy" && f.BytesReceived == 3000 {
				found = true
			}
		}
		require.True(t, found, "node-b lists the raw pod's side of the flow: %s", out)

		require.NoError(t, os.WriteFile(stop, nil, 0o644))
		select {
		case err := <-done:
			require.NoError(t, err)
		case <-time.After(20 * time.Second):
			_ = cmd.Process.Kill()
			t.Fatal("the long flow did not end")
		}
		p.requireSettles(t, tcp("connections_closed_total", sel), base[1]+1)
	})

	t.Run("503s: error counts exact at both reporters, and the error-rate alert fires", func(t *testing.T) {
		srcSel := src(`destination_service="` + flakyHost + `", response_code="503"`)
		dstSel := `node="node-b", reporter="destination", destination_workload="flaky", response_code="503"`
		base := p.values(t, req(srcSel), req(dstSel))
		// Over five seconds: a series whose first scrape holds its whole
		// count has no rate, so no alert.
		r := e.load("shop/client", "--url", "http://10.96.0.41/", "--requests", "50", "--rate", "10", "--concurrency", "2")
		require.Equal(t, 50, r.ByStatus["503"], "%+v", r)
		p.requireSettles(t, req(srcSel), base[0]+50)
		p.requireSettles(t, req(dstSel), base[1]+50)
		require.Eventually(t, func() bool {
			for _, a := range p.alerts(t, "SkeinHighErrorRate") {
				if a.Labels["destination_service"] == flakyHost && a.State == "firing" {
					return true
				}
			}
			return false
		}, 30*time.Second, 500*time.Millisecond, "SkeinHighErrorRate fires for %s: %+v", flakyHost, p.alerts(t, "SkeinHighErrorRate"))
		for _, a := range p.alerts(t, "SkeinHighErrorRate") {
			require.NotEqual(t, webHost, a.Labels["destination_service"], "web answered every request: %+v", a)
		}
	})

	t.Run("connect failures: the proxy's (UF) and the kernel's, each counted once", func(t *testing.T) {
		// A meshed pod's closed port: captured, so the client's socket
		// reaches the proxy (opened) and the proxy's connect fails (UF).
		const proxied, direct = 3, 4
		viaProxy := src(`destination_service="unknown", destination_workload="web", connection_security_policy="mutual_tls"`)
		ufSel := src(`destination_workload="web", response_code="503", response_flags="UF"`)
		// An unmeshed pod's closed port: not captured, so the kernel sees
		// the SYN refused.
		kernel := src(`destination_workload="closed", destination_namespace="legacy", connection_security_policy="none"`)
		base := p.values(t, tcp("connections_failed_total", viaProxy), tcp("connections_opened_total", viaProxy), req(ufSel),
			tcp("connections_failed_total", kernel), tcp("connections_opened_total", kernel),
			`sum(skein_tcp_resets_total{`+kernel+`, direction="received"})`)
		for range proxied {
			out, err := e.curl("shop/client", "-o", "/dev/null", "-w", "%{http_code}", "http://"+ip("web")+":9999/")
			require.NoError(t, err, out)
			require.Equal(t, "503", out)
		}
		for range direct {
			out, err := e.curl("shop/client", "http://"+ip("closed")+":9999/")
			require.Error(t, err)
			require.Contains(t, out, "Failed to connect", "refused")
		}
		p.requireSettles(t, tcp("connections_failed_total", viaProxy), base[0]+proxied)
		p.requireSettles(t, tcp("connections_opened_total", viaProxy), base[1]+proxied)
		p.requireSettles(t, req(ufSel), base[2]+proxied)
		p.requireSettles(t, tcp("connections_failed_total", kernel), base[3]+direct)
		p.requireSettles(t, tcp("connections_opened_total", kernel), base[4])
		p.requireSettles(t, `sum(skein_tcp_resets_total{`+kernel+`, direction="received"})`, base[5]+direct)
		// The destination's proxy saw the failure too; only the source
		// counts it.
		require.Zero(t, p.value(t, `sum(skein_tcp_connections_failed_total{node="node-b"})`))
	})

	t.Run("resets: received by the client from a server that aborts, sent by a meshed server that aborts", func(t *testing.T) {
		const n = 3
		direct := src(`destination_workload="aborter", destination_namespace="legacy", connection_security_policy="none"`)
		// The meshed server's side: its connections come from the proxy.
		meshed := `node="node-a", reporter="destination", destination_workload="local", destination_service="` + localHost + `"`
		rst := func(sel, dir string) string {
			return `sum(skein_tcp_resets_total{` + sel + `, direction="` + dir + `"})`
		}
		base := p.values(t, rst(direct, "received"), rst(direct, "sent"), tcp("connections_opened_total", direct),
			tcp("connections_closed_total", direct), rst(meshed, "sent"), rst(meshed, "received"), tcp("connections_opened_total", meshed))
		for range n {
			out, err := e.curl("shop/client", "http://"+ip("aborter")+":8080/?abort=1")
			require.Error(t, err)
			require.Contains(t, out, "reset")
		}
		for range n {
			// POST: the proxy does not replay it on a new connection.
			out, err := e.curl("shop/client", "-o", "/dev/null", "-w", "%{http_code}", "-X", "POST", "-d", "x", "http://10.96.0.43/?abort=1")
			require.NoError(t, err, out)
			require.Equal(t, "502", out)
		}
		p.requireSettles(t, rst(direct, "received"), base[0]+n)
		p.requireSettles(t, rst(direct, "sent"), base[1])
		p.requireSettles(t, tcp("connections_opened_total", direct), base[2]+n)
		p.requireSettles(t, tcp("connections_closed_total", direct), base[3]+n)
		p.requireSettles(t, rst(meshed, "sent"), base[4]+n)
		p.requireSettles(t, rst(meshed, "received"), base[5])
		p.requireSettles(t, tcp("connections_opened_total", meshed), base[6]+n)
	})

	t.Run("retransmits: packets dropped in the receiving pod's netns are retransmitted", func(t *testing.T) {
		sel := src(`destination_workload="sink", destination_namespace="legacy"`)
		base := p.values(t, tcp("retransmits_total", sel), tcp("received_bytes_total", sel))
		nft := func(args ...string) {
			out, err := e.exec("legacy/sink", append([]string{"nft"}, args...)...)
			require.NoError(t, err, "nft %v: %s", args, out)
		}
		nft("add", "table", "inet", "skeinretx")
		t.Cleanup(func() { _, _ = e.exec("legacy/sink", "nft", "delete", "table", "inet", "skeinretx") })
		nft("add", "chain", "inet", "skeinretx", "in", "{ type filter hook input priority 0; policy accept; }")
		nft("add", "rule", "inet", "skeinretx", "in", "ip", "saddr", ip("client"), "tcp", "dport", "9000",
			"numgen", "random", "mod", "100", "<", "10", "drop")
		const size = 2 << 20
		var (
			out string
			err error
		)
		// What an SRE runs to find the cause: agentctl trace, retransmits
		// of the client's flows, as they happen.
		events := traceWhile(t, e, "node-a", []string{"--pod", "shop/client", "--type", "retransmit"}, func() {
			out, err = e.exec("shop/client", "timeout", "25", "bash", "-c", fmt.Sprintf("exec 3<>/dev/tcp/%s/9000 && head -c %d /dev/zero >&3", ip("sink"), size))
		})
		require.NoError(t, err, out)
		nft("delete", "table", "inet", "skeinretx")
		traced := 0
		for _, ev := range events {
			if ev.Type == "retransmit" && ev.SrcPod == "shop/client" && ev.DstPod == "legacy/sink" {
				traced++
			}
		}
		t.Logf("agentctl trace --type retransmit: %d events for shop/client -> legacy/sink", traced)
		require.Positive(t, traced, "agentctl trace shows the retransmits: %+v", events)
		p.requireSettles(t, tcp("received_bytes_total", sel), base[1]+size)
		retx := p.value(t, tcp("retransmits_total", sel)) - base[0]
		t.Logf("retransmits with 10%% of the client's packets dropped: %.0f", retx)
		require.Positive(t, retx)
	})

	t.Run("agentctl trace decodes the flow events with pod names", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		cmd := exec.CommandContext(ctx, filepath.Join(binDir, "agentctl"), "--socket", e.lab.AdminSocket("node-a"),
			"trace", "--pod", "shop/client", "--type", "connect_fail,reset", "--count", "3", "--duration", "15s", "-o", "json")
		var out strings.Builder
		cmd.Stdout, cmd.Stderr = &out, &out
		require.NoError(t, cmd.Start())
		time.Sleep(time.Second) // the session subscribes
		_, err := e.curl("shop/client", "http://"+ip("closed")+":9999/")
		require.Error(t, err)
		_, err = e.curl("shop/client", "http://"+ip("aborter")+":8080/?abort=1")
		require.Error(t, err)
		require.NoError(t, cmd.Wait(), out.String())
		var evs []admin.TraceEvent
		for _, line := range strings.Split(strings.TrimSpace(out.String()), "\n") {
			var ev admin.TraceEvent
			require.NoError(t, json.Unmarshal([]byte(line), &ev), line)
			if ev.Type != "lost" {
				evs = append(evs, ev)
			}
		}
		t.Logf("trace: %+v", evs)
		// The refused connect: the RST received in SYN_SENT, then the
		// failure; the abort: a reset received on an established flow.
		want := []string{"reset received shop/client -> legacy/closed", "connect_fail connection refused (in SYN_SENT) shop/client -> legacy/closed",
			"reset received shop/client -> legacy/aborter"}
		var got []string
		for _, ev := range evs {
			require.Equal(t, "shop/client", ev.Pod)
			got = append(got, ev.Type+" "+ev.Reason+" "+ev.SrcPod+" -> "+ev.DstPod)
		}
		require.Equal(t, want, got)
	})

	t.Run("agentctl flows --summary and status show the figures and their cost", func(t *testing.T) {
		out, err := e.agentctl("node-a", "flows", "--summary")
		require.NoError(t, err, out)
		t.Logf("agentctl flows --summary:\n%s", out)
		require.Regexp(t, `source\s+shop/client\s+shop/web\s+web\.shop\.svc\.cluster\.local\s+mutual_tls\s+\d+`, out)
		out, err = e.agentctl("node-a", "status")
		require.NoError(t, err, out)
		require.Contains(t, out, "FLOWS (kernel TCP figures)")
		require.Regexp(t, `skein_flow_sockops\s+sockops\s+\d+\s+\d+\s+yes`, out)
		require.Regexp(t, `flow_stats\s+\d+\s+4096`, out)
		// The flow programs' cost, measured by the kernel while traffic
		// runs: 150 requests at 50 per second over fresh connections.
		load := make(chan loadResult, 1)
		go func() {
			out, _ := e.exec("shop/client", "skein-lab", "http-load", "-o", "json", "--url", "http://10.96.0.40/",
				"--requests", "150", "--rate", "50", "--concurrency", "2")
			var r loadResult
			_ = json.Unmarshal([]byte(out), &r)
			load <- r
		}()
		out, err = e.agentctl("node-a", "bpf", "progs", "--sample", "3s")
		require.NoError(t, err, out)
		t.Logf("agentctl bpf progs --sample 3s:\n%s", out)
		require.Regexp(t, `skein_flow_sockops\s+SockOps\s+\d+\s+\d+\s+yes\s+[1-9]\d*\s+\d+`, out, "sockops ran during the sample")
		require.Equal(t, 150, (<-load).ByStatus["200"])
		out, err = e.agentctl("node-a", "status")
		require.NoError(t, err, out)
		i := strings.Index(out, "FLOWS")
		t.Logf("agentctl status, flows:\n%s", out[i:])
		// The agent exports the flow maps' fill.
		require.Positive(t, p.value(t, `sum(skein_bpf_map_max_entries{map="flow_stats"})`))
	})

	t.Run("counters never go down across an agent restart: pinned maps and the saved carry", func(t *testing.T) {
		viaProxy := src(`destination_workload="web", destination_service="unknown"`)
		exprs := []string{
			tcp("connections_opened_total", `node="node-a"`), tcp("connections_closed_total", `node="node-a"`),
			tcp("received_bytes_total", `node="node-a"`), tcp("resets_total", `node="node-a"`),
			tcp("connections_failed_total", viaProxy), // 3 of them carried: the proxy's
			`sum(skein_tcp_rtt_seconds_count{node="node-a"})`,
		}
		before := make([]float64, len(exprs))
		for i, x := range exprs {
			before[i] = p.settled(t, x)
		}
		require.NoError(t, e.lab.StopAgent("node-a", syscall.SIGTERM))
		stopped := time.Now()
		require.NoError(t, e.lab.StartAgent("node-a"))
		e.waitReady("node-a")
		require.Eventually(t, func() bool {
			v, err := p.query(`max(timestamp(skein_tcp_connections_opened_total{node="node-a"}))`)
			return err == nil && len(v) == 1 && v[0].Value > float64(stopped.Unix()+1)
		}, 30*time.Second, 250*time.Millisecond, "the new agent was scraped")
		for i, x := range exprs {
			require.Equal(t, before[i], p.value(t, x), "%s after the restart", x)
		}
		require.Zero(t, p.value(t, `sum(resets(skein_tcp_connections_opened_total{node="node-a"}[10m]))`+
			` + sum(resets(skein_tcp_connections_failed_total{node="node-a"}[10m]))`), "Prometheus saw no counter reset")
	})

	t.Run("every dashboard query returns data", func(t *testing.T) {
		// A series whose first scrape already holds its whole count has
		// no rate: traffic to web again, over a few scrapes, gives the
		// service dashboard's series (made in the first subtest) a rate.
		sel := src(`destination_service="` + webHost + `", response_code="200"`)
		base := p.settled(t, req(sel))
		r := e.load("shop/client", "--url", "http://10.96.0.40/", "--requests", "100", "--rate", "25", "--concurrency", "2")
		require.Equal(t, 100, r.ByStatus["200"], "%+v", r)
		p.requireSettles(t, req(sel), base+100)
		vars := map[string]string{"__rate_interval": "5m"}
		service := map[string]string{"__rate_interval": "5m", "namespace": "shop", "service": webHost}
		runs := []struct {
			file string
			vars map[string]string
			// empty lists the queries that cannot return data in this
			// run, with the reason; each is run where it can.
			empty map[string]string
		}{
			{"skein-node.json", vars, nil},
			{"skein-service.json", service, map[string]string{
				"TCP connect duration by source workload": "reporter=destination: the server side of a connection never connects (the SYN is received, not sent), so the kernel has no connect time for it; run with reporter=source below",
			}},
			{"skein-service.json", withVar(service, "reporter", "source"), nil},
			{"skein-node.json", withVar(vars, "reporter", "destination"), map[string]string{
				"TCP connect duration by destination workload": "reporter=destination: see above; the node dashboard's default reporter=source returns it",
			}},
		}
		for _, run := range runs {
			qs, err := deploy.DashboardQueries(filepath.Join("..", "deploy", "grafana", run.file), run.vars)
			require.NoError(t, err)
			for _, q := range qs {
				t.Run(fmt.Sprintf("%s/%s/%s/%s", run.file, run.vars["reporter"], q.Panel, q.RefID), func(t *testing.T) {
					res, err := p.query(q.Expr)
					require.NoError(t, err, q.Expr)
					if why, ok := run.empty[q.Panel]; ok {
						t.Logf("empty: %s", why)
						require.Empty(t, res, "the reason given for no data no longer holds: %s", q.Expr)
						return
					}
					require.NotEmpty(t, res, "no data: %s", q.Expr)
					require.True(t, hasNumber(res), "only NaN: %s", q.Expr)
				})
			}
		}
	})
}

func withVar(m map[string]string, k, v string) map[string]string {
	out := map[string]string{k: v}
	for mk, mv := range m {
		if mk != k {
			out[mk] = mv
		}
	}
	return out
}

func hasNumber(res []promSample) bool {
	for _, s := range res {
		if !math.IsNaN(s.Value) {
			return true
		}
	}
	return false
}

// renderTestRules renders the shipped rules template with thresholds.yaml,
// lowered for a lab that runs for a minute: alerts fire after 1s instead of
// minutes, on a tenth of the request rate.
func renderTestRules(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	tmpl, err := os.ReadFile("../deploy/prometheus/skein-rules.yaml.tmpl")
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(filepath.Join(dir, "skein-rules.yaml.tmpl"), tmpl, 0o644))
	raw, err := os.ReadFile("../deploy/prometheus/thresholds.yaml")
	require.NoError(t, err)
	var values map[string]any
	require.NoError(t, yaml.Unmarshal(raw, &values))
	alerts := values["alerts"].(map[string]any)
	for name, a := range alerts {
		if a, ok := a.(map[string]any); ok {
			a["for"] = "1s"
			if _, ok := a["minRequestRate"]; ok {
				a["minRequestRate"] = 0.01
			}
		}
		_ = name
	}
	out, err := yaml.Marshal(values)
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(filepath.Join(dir, "thresholds.yaml"), out, 0o644))
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	gen, err := exec.CommandContext(ctx, "go", "run", "../deploy/prometheus", "-dir", dir).CombinedOutput()
	require.NoError(t, err, "render the rules: %s", gen)
	rules := filepath.Join(dir, "skein-rules.yaml")
	b, err := os.ReadFile(rules)
	require.NoError(t, err)
	require.Contains(t, string(b), "for: 1s")
	return rules
}

// prom is a Prometheus running in a lab node's network namespace; queries
// are sent with curl from inside that node.
type prom struct {
	e    *env
	node string
	base string
}

// startPrometheus runs Prometheus on node-a's address, scraping both agents'
// :15020 every second as job skein-agent, each series labelled with its
// node as the dashboards and rules expect, until the test ends.
func startPrometheus(t *testing.T, e *env, bin, rules string) *prom {
	t.Helper()
	dir := t.TempDir()
	var targets strings.Builder
	for _, n := range e.lab.Nodes() {
		fmt.Fprintf(&targets, "      - targets: [\"%s:15020\"]\n        labels: {node: %s}\n", n.IP, n.Name)
	}
	cfg := fmt.Sprintf(`global:
  scrape_interval: 1s
  scrape_timeout: 900ms
  evaluation_interval: 1s
rule_files: [%q]
scrape_configs:
  - job_name: skein-agent
    static_configs:
%s`, rules, targets.String())
	require.NoError(t, os.WriteFile(filepath.Join(dir, "prometheus.yml"), []byte(cfg), 0o644))
	addr := fmt.Sprintf("%s:%d", e.lab.Nodes()[0].IP, promPort)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Minute)
	done := make(chan struct{})
	var out []byte
	go func() {
		defer close(done)
		out, _ = e.lab.ExecNode(ctx, promNode, bin,
			"--config.file="+filepath.Join(dir, "prometheus.yml"),
			"--storage.tsdb.path="+filepath.Join(dir, "data"),
			"--web.listen-address="+addr,
			"--log.level=warn")
	}()
	// Registered after the lab's cleanup: runs before the lab is torn down.
	t.Cleanup(func() {
		cancel()
		<-done
		if t.Failed() {
			t.Logf("prometheus log:\n%s", tail(string(out), 40))
		}
	})
	p := &prom{e: e, node: promNode, base: "http://" + addr}
	require.Eventually(t, func() bool {
		code, _, err := p.get("/-/ready")
		return err == nil && code == 200
	}, 30*time.Second, 200*time.Millisecond, "prometheus ready on %s", addr)
	// Both agents scraped a few times, so rates have samples.
	require.Eventually(t, func() bool {
		res, err := p.query(`count_over_time(up{job="skein-agent"}[1m]) >= 3 and up == 1`)
		return err == nil && len(res) == 2
	}, 30*time.Second, 250*time.Millisecond, "both agents scraped")
	return p
}

func (p *prom) get(path string) (int, []byte, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	out, err := p.e.lab.ExecNode(ctx, p.node, "curl", "-sS", "--max-time", "5", "-w", "\n%{http_code}", p.base+path)
	if err != nil {
		return 0, out, err
	}
	body, codeText, _ := cutLast(string(out), "\n")
	code, err := strconv.Atoi(strings.TrimSpace(codeText))
	return code, []byte(body), err
}

// promSample is one element of an instant vector.
type promSample struct {
	Labels map[string]string
	Value  float64
}

// query runs an instant query.
func (p *prom) query(expr string) ([]promSample, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	out, err := p.e.lab.ExecNode(ctx, p.node, "curl", "-sS", "--max-time", "5", "-G", p.base+"/api/v1/query",
		"--data-urlencode", "query="+expr)
	if err != nil {
		return nil, fmt.Errorf("query %s: %w: %s", expr, err, out)
	}
	var res struct {
		Status string `json:"status"`
		Error  string `json:"error"`
		Data   struct {
			ResultType string `json:"resultType"`
			Result     []struct {
				Metric map[string]string `json:"metric"`
				Value  [2]any            `json:"value"`
			} `json:"result"`
		} `json:"data"`
	}
	if err := json.Unmarshal(out, &res); err != nil {
		return nil, fmt.Errorf("query %s: %w: %s", expr, err, out)
	}
	if res.Status != "success" {
		return nil, fmt.Errorf("query %s: %s", expr, res.Error)
	}
	if res.Data.ResultType != "vector" {
		return nil, fmt.Errorf("query %s: result type %s, want vector", expr, res.Data.ResultType)
	}
	var samples []promSample
	for _, r := range res.Data.Result {
		s, _ := r.Value[1].(string)
		v, err := strconv.ParseFloat(s, 64)
		if err != nil {
			return nil, fmt.Errorf("query %s: value %q: %w", expr, s, err)
		}
		samples = append(samples, promSample{Labels: r.Metric, Value: v})
	}
	return samples, nil
}

// value runs a query that yields at most one sample and returns it, 0 when
// it yields none (no series yet).
func (p *prom) value(t *testing.T, expr string) float64 {
	t.Helper()
	res, err := p.query(expr)
	require.NoError(t, err)
	require.LessOrEqual(t, len(res), 1, "%s: one sample at most: %+v", expr, res)
	if len(res) == 0 {
		return 0
	}
	return res[0].Value
}

func (p *prom) values(t *testing.T, exprs ...string) []float64 {
	t.Helper()
	out := make([]float64, len(exprs))
	for i, e := range exprs {
		out[i] = p.value(t, e)
	}
	return out
}

// requireSettles waits until expr equals want and stays equal for three more
// scrapes: a count that overshoots, or gets there only to move on, fails.
func (p *prom) requireSettles(t *testing.T, expr string, want float64) {
	t.Helper()
	const hold = 3500 * time.Millisecond
	deadline := time.Now().Add(30 * time.Second)
	var since time.Time
	var got float64
	for time.Now().Before(deadline) {
		got = p.value(t, expr)
		switch {
		case got != want:
			since = time.Time{}
		case since.IsZero():
			since = time.Now()
		case time.Since(since) >= hold:
			return
		}
		time.Sleep(250 * time.Millisecond)
	}
	t.Fatalf("%s = %v, want %v (for %s)", expr, got, want, hold)
}

// settled waits until expr stops changing for three scrapes and returns its
// value: a base to count from while earlier traffic may still be on its way.
func (p *prom) settled(t *testing.T, expr string) float64 {
	t.Helper()
	const hold = 3500 * time.Millisecond
	deadline := time.Now().Add(30 * time.Second)
	last, since := p.value(t, expr), time.Now()
	for time.Now().Before(deadline) {
		time.Sleep(250 * time.Millisecond)
		if v := p.value(t, expr); v != last {
			last, since = v, time.Now()
		} else if time.Since(since) >= hold {
			return v
		}
	}
	t.Fatalf("%s never settled (last %v)", expr, last)
	return 0
}

// promAlert is one alert of /api/v1/alerts.
type promAlert struct {
	Labels map[string]string `json:"labels"`
	State  string            `json:"state"`
}

func (p *prom) alerts(t *testing.T, name string) []promAlert {
	t.Helper()
	code, body, err := p.get("/api/v1/alerts")
	require.NoError(t, err)
	require.Equal(t, 200, code, "%s", body)
	var res struct {
		Data struct {
			Alerts []promAlert `json:"alerts"`
		} `json:"data"`
	}
	require.NoError(t, json.Unmarshal(body, &res), "%s", body)
	var out []promAlert
	for _, a := range res.Data.Alerts {
		if a.Labels["alertname"] == name {
			out = append(out, a)
		}
	}
	return out
}
