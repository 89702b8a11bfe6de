//go:build linux

package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// A request crosses two nodes twice: client (node-a) -> frontend (node-b),
// whose app calls product (node-a) with the trace headers it was given.
const tracingTopology = `
nodes: [{name: node-a}, {name: node-b}]
namespaces:
  - {name: shop, labels: {skein.io/mesh: enabled}}
pods:
  - {name: client, namespace: shop, node: node-a, serviceAccount: client, labels: {app: client}, command: [sleep, infinity]}
  - {name: loader, namespace: shop, node: node-a, serviceAccount: loader, labels: {app: loader}, command: [sleep, infinity]}
  - name: frontend
    namespace: shop
    node: node-b
    serviceAccount: frontend
    labels: {app: frontend}
    ports: [{name: http, containerPort: 8080}]
    command: [skein-lab, echo, --listen, ":8080", --call, "http://10.96.0.20/"]
  - name: product
    namespace: shop
    node: node-a
    serviceAccount: product
    labels: {app: product}
    ports: [{name: http, containerPort: 8080}]
    command: [skein-lab, echo, --listen, ":8080"]
services:
  - {name: product, namespace: shop, clusterIP: 10.96.0.20, selector: {app: product}, ports: [{name: http, port: 80, targetPort: 8080}]}
  - {name: frontend, namespace: shop, clusterIP: 10.96.0.21, selector: {app: frontend}, ports: [{name: http, port: 80, targetPort: 8080}]}
`

// Jaeger runs on node-b (lab node IPs are 192.168.77.<index>); node-a's
// agent reaches it over the underlay.
const jaegerNodeIP = "192.168.77.2"

// The store's cap in the size test, and its segment size (cap/16).
const (
	storeCap     = 256 << 10
	storeSegment = storeCap / 16
)

// chainReply is the frontend's echo reply with the product's inside.
type chainReply struct {
	echoReply
	Downstream       echoReply `json:"downstream"`
	DownstreamStatus int       `json:"downstreamStatus"`
	DownstreamError  string    `json:"downstreamError"`
}

func TestPrivilegedTracingAndAccessLogs(t *testing.T) {
	jaegerBin := jaegerBinary(t)
	logDir := t.TempDir()
	start := time.Now()
	e := newMeshEnv(t, tracingTopology, []string{
		"--tracing-endpoint", jaegerNodeIP + ":4317", "--tracing-sample-rate", "1",
		"--accesslog-dir", logDir, "--accesslog-sample-rate", "1", "--accesslog-max-size", strconv.Itoa(storeCap),
	})
	require.Equal(t, jaegerNodeIP, e.lab.Nodes()[1].IP, "the lab's node addresses changed: update jaegerNodeIP")
	j := startJaeger(t, e, jaegerBin, "node-b", "node-a")
	t.Logf("lab and jaeger up in %s", time.Since(start).Round(time.Millisecond))

	// call sends client -> frontend -> product with the given headers and
	// returns the replies of both apps.
	call := func(t *testing.T, headers ...string) chainReply {
		t.Helper()
		args := []string{}
		for _, h := range headers {
			args = append(args, "-H", h)
		}
		out := e.mustCurl("shop/client", append(args, "http://10.96.0.21/hello")...)
		var r chainReply
		require.NoError(t, json.Unmarshal([]byte(out), &r), "%s", out)
		require.Equal(t, "frontend", r.Pod, out)
		require.Equal(t, 200, r.DownstreamStatus, "frontend's call to product: %s", r.DownstreamError)
		require.Equal(t, "product", r.Downstream.Pod)
		return r
	}

	traceID, parentID := randomHex(t, 16), randomHex(t, 8)
	var spans []jaegerSpan
	t.Run("one trace across two nodes, a span per proxy hop, each the child of the one before", func(t *testing.T) {
		r := call(t, "traceparent: 00-"+traceID+"-"+parentID+"-01")
		// Each app sees the trace, with the proxy hop in front of it as
		// the parent.
		require.Contains(t, r.Headers["Traceparent"], traceID)
		require.Contains(t, r.Downstream.Headers["Traceparent"], traceID)
		require.True(t, strings.HasSuffix(r.Downstream.Headers["Traceparent"], "-01"), r.Downstream.Headers["Traceparent"])

		spans = j.waitTrace(t, traceID, 4)
		require.Len(t, spans, 4, "no more spans than hops: %+v", spans)
		aClient := hop(t, spans, "node-a", "client")
		bServer := hop(t, spans, "node-b", "server")
		bClient := hop(t, spans, "node-b", "client")
		aServer := hop(t, spans, "node-a", "server")
		require.Equal(t, parentID, aClient.parent(), "the first hop continues the client's trace")
		require.Equal(t, aClient.SpanID, bServer.parent(), "node-b's server span is the child of node-a's client span")
		require.Equal(t, bServer.SpanID, bClient.parent(), "the app propagated: node-b's client span is the child of its server span")
		require.Equal(t, bClient.SpanID, aServer.parent(), "node-a's server span is the child of node-b's client span")
		for _, s := range spans {
			require.Equal(t, traceID, s.TraceID)
		}
		// The app saw its server span as parent: the chain has no gap.
		require.Contains(t, r.Headers["Traceparent"], bServer.SpanID)
		require.Contains(t, r.Downstream.Headers["Traceparent"], aServer.SpanID)

		for _, c := range []struct {
			s               jaegerSpan
			reporter, src   string
			dst, security   string
			sourcePrincipal string
		}{
			{aClient, "source", "client", "frontend", "mutual_tls", "spiffe://cluster.local/ns/shop/sa/client"},
			{bServer, "destination", "client", "frontend", "mutual_tls", "spiffe://cluster.local/ns/shop/sa/client"},
			{bClient, "source", "frontend", "product", "mutual_tls", "spiffe://cluster.local/ns/shop/sa/frontend"},
			{aServer, "destination", "frontend", "product", "mutual_tls", "spiffe://cluster.local/ns/shop/sa/frontend"},
		} {
			require.Equal(t, c.reporter, c.s.tag("skein.reporter"), "%+v", c.s)
			require.Equal(t, c.src, c.s.tag("skein.source.workload"), "%+v", c.s)
			require.Equal(t, "shop", c.s.tag("skein.source.namespace"), "%+v", c.s)
			require.Equal(t, c.sourcePrincipal, c.s.tag("skein.source.principal"), "%+v", c.s)
			require.Equal(t, c.dst, c.s.tag("skein.destination.workload"), "%+v", c.s)
			require.Equal(t, c.security, c.s.tag("skein.connection_security_policy"), "%+v", c.s)
			require.Equal(t, "200", c.s.tag("http.response.status_code"), "%+v", c.s)
		}
	})

	t.Run("access-log lines carry the trace and the span of their hop", func(t *testing.T) {
		require.Len(t, spans, 4)
		for node, want := range map[string]map[string]jaegerSpan{
			"node-a": {"source": hop(t, spans, "node-a", "client"), "destination": hop(t, spans, "node-a", "server")},
			"node-b": {"source": hop(t, spans, "node-b", "client"), "destination": hop(t, spans, "node-b", "server")},
		} {
			logs := e.logs(node, "--trace", traceID)
			require.True(t, logs.Enabled)
			require.Equal(t, filepath.Join(logDir, node), logs.Dir)
			lines := byReporter(t, logs.Entries)
			require.Len(t, lines, 2, "%s: %+v", node, logs.Entries)
			for reporter, span := range want {
				l := lines[reporter]
				require.Equal(t, traceID, l.TraceID, "%s %s", node, reporter)
				require.Equal(t, span.SpanID, l.SpanID, "%s %s: the line names the span of its hop", node, reporter)
				require.Equal(t, 200, l.ResponseCode)
				require.Equal(t, "mutual_tls", l.ConnectionSecurityPolicy)
				require.Equal(t, "shop", l.SourceNamespace)
				require.NotEmpty(t, l.RequestID)
			}
		}
		a := byReporter(t, e.logs("node-a", "--trace", traceID).Entries)
		require.Equal(t, "client", a["source"].SourceWorkload)
		require.Equal(t, "frontend", a["source"].DestinationWorkload)
		require.Equal(t, "spiffe://cluster.local/ns/shop/sa/client", a["source"].SourcePrincipal)
		require.Equal(t, "frontend", a["destination"].SourceWorkload)
		require.Equal(t, "product", a["destination"].DestinationWorkload)
		require.Equal(t, "/", a["destination"].Path)
		require.Equal(t, a["source"].RequestID, a["destination"].RequestID, "the app propagated x-request-id")

		table, err := e.agentctl("node-a", "logs", "--trace", traceID)
		require.NoError(t, err, table)
		require.Regexp(t, `source\s+shop/client -> shop/frontend\s+GET 10\.96\.0\.21/hello\s+200\s+-\s+\S+\s+`+traceID, table)
		require.Regexp(t, `destination\s+shop/frontend -> shop/product\s+GET 10\.96\.0\.20/\s+200\s+-\s+\S+\s+`+traceID, table)
	})

	t.Run("a request with B3 headers continues that trace", func(t *testing.T) {
		b3Trace, b3Span := randomHex(t, 16), randomHex(t, 8)
		r := call(t, "X-B3-TraceId: "+b3Trace, "X-B3-SpanId: "+b3Span, "X-B3-Sampled: 1")
		require.Equal(t, b3Trace, r.Headers["X-B3-Traceid"], "B3 goes out too")
		require.Contains(t, r.Downstream.Headers["Traceparent"], b3Trace)
		got := j.waitTrace(t, b3Trace, 4)
		require.Equal(t, b3Span, hop(t, got, "node-a", "client").parent())
		b3Single, b3SingleSpan := randomHex(t, 16), randomHex(t, 8)
		call(t, "b3: "+b3Single+"-"+b3SingleSpan+"-1")
		require.Equal(t, b3SingleSpan, hop(t, j.waitTrace(t, b3Single, 4), "node-a", "client").parent(), "single-header B3")
	})

	t.Run("an unsampled parent stays unsampled", func(t *testing.T) {
		unsampled := randomHex(t, 16)
		r := call(t, "traceparent: 00-"+unsampled+"-"+randomHex(t, 8)+"-00")
		for _, tp := range []string{r.Headers["Traceparent"], r.Downstream.Headers["Traceparent"]} {
			require.Contains(t, tp, unsampled, "the trace id still flows")
			require.True(t, strings.HasSuffix(tp, "-00"), "the upstream sees -00: %s", tp)
		}
		// A sampled request after it goes through the same export queues:
		// once it is in Jaeger, the unsampled one would be too.
		marker := randomHex(t, 16)
		call(t, "traceparent: 00-"+marker+"-"+randomHex(t, 8)+"-01")
		j.waitTrace(t, marker, 4)
		spans, found, err := j.trace(unsampled)
		require.NoError(t, err)
		require.False(t, found, "no span of an unsampled trace: %+v", spans)
		// The access log still has it (sample rate 1), with its trace id.
		require.Len(t, e.logs("node-a", "--trace", unsampled).Entries, 2)
	})

	t.Run("the access log outlives the client pod and the agent", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		require.NoError(t, e.lab.DeletePod(ctx, "shop/client"))
		require.NoError(t, e.lab.StopAgent("node-a", syscall.SIGTERM))
		require.NoError(t, e.lab.StartAgent("node-a"))
		e.waitReady("node-a")

		logs := e.logs("node-a", "--trace", traceID)
		lines := byReporter(t, logs.Entries)
		require.Len(t, lines, 2, "%+v", logs.Entries)
		require.Equal(t, "client", lines["source"].SourceWorkload)
		require.Equal(t, hop(t, spans, "node-a", "client").SpanID, lines["source"].SpanID)
		byWorkload := e.logs("node-a", "--workload", "shop/client", "--since", "1h")
		require.NotEmpty(t, byWorkload.Entries)
		for _, l := range byWorkload.Entries {
			require.True(t, l.SourceWorkload == "client" || l.DestinationWorkload == "client", "%+v", l)
		}
		out, err := e.agentctl("node-a", "logs", "--trace", traceID)
		require.NoError(t, err)
		require.Contains(t, out, "shop/client -> shop/frontend")
	})

	t.Run("the store stays within its cap under sustained traffic, the oldest lines dropped first", func(t *testing.T) {
		dir := filepath.Join(logDir, "node-a")
		first := "/cap-first"
		e.mustCurl("shop/loader", "http://10.96.0.20"+first)
		const rounds, perRound = 4, 400 // about 2.5 times the cap in lines
		for i := 0; i < rounds; i++ {
			from, to := i*perRound+1, (i+1)*perRound
			out, err := e.exec("shop/loader", "sh", "-c",
				fmt.Sprintf(`curl -sS --max-time 60 -w '\n%%{http_code}\n' 'http://10.96.0.20/cap/[%d-%d]' | grep -c '^200$'`, from, to))
			require.NoError(t, err, out)
			require.Equal(t, strconv.Itoa(perRound), strings.TrimSpace(out), "every request answered")
			size := dirSize(t, dir)
			t.Logf("after %d requests: %d bytes in %s", to, size, dir)
			require.LessOrEqual(t, size, int64(storeCap+storeSegment), "within the cap and one segment's slack")
		}
		require.Eventually(t, func() bool {
			l := e.logs("node-a", "--workload", "shop/loader", "--limit", "1")
			return len(l.Entries) == 1 && l.Entries[0].Path == fmt.Sprintf("/cap/%d", rounds*perRound)
		}, 10*time.Second, 100*time.Millisecond, "the last request is in the store")
		require.LessOrEqual(t, dirSize(t, dir), int64(storeCap+storeSegment))

		logs := e.logs("node-a", "--workload", "shop/loader", "--limit", "10000")
		require.False(t, logs.Truncated)
		require.NotEmpty(t, logs.Entries)
		var nums []int
		for _, l := range logs.Entries {
			require.NotEqual(t, first, l.Path, "the oldest line went first")
			n, err := strconv.Atoi(strings.TrimPrefix(l.Path, "/cap/"))
			require.NoError(t, err, l.Path)
			nums = append(nums, n)
		}
		require.Greater(t, nums[0], 1, "the oldest requests are gone")
		require.Equal(t, rounds*perRound, nums[len(nums)-1], "the newest is kept")
		for i := 1; i < len(nums); i++ {
			require.Equal(t, nums[i-1]+1, nums[i], "what is kept has no gap: only whole old segments are dropped")
		}
		t.Logf("kept requests %d..%d (%d lines)", nums[0], nums[len(nums)-1], len(nums))
		require.Empty(t, e.logs("node-a", "--trace", traceID).Entries, "the first trace's lines were among the oldest")

		metrics, err := e.lab.ExecNode(context.Background(), "node-a", "curl", "-sf", "--max-time", "5", "http://127.0.0.1:15020/metrics")
		require.NoError(t, err)
		require.Contains(t, string(metrics), `skein_accesslog_records_dropped_total{sink="store"} 0`, "nothing dropped by the queue at this rate")
	})
	t.Logf("total %s", time.Since(start).Round(time.Millisecond))
}
