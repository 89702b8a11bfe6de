//go:build linux

package e2e

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/skeinmesh/skein/agent/admin"
)

// jaegerBinary builds Jaeger with scripts/jaeger.sh (about 9 minutes the
// first time on 2 cores, then cached outside the repository).
func jaegerBinary(t *testing.T) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 25*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "../scripts/jaeger.sh")
	var stderr strings.Builder
	cmd.Stderr = &stderr
	start := time.Now()
	out, err := cmd.Output()
	require.NoError(t, err, "scripts/jaeger.sh: %s", tail(stderr.String(), 20))
	bin := strings.TrimSpace(string(out))
	t.Logf("jaeger: %s (%s)", bin, time.Since(start).Round(time.Millisecond))
	return bin
}

// jaegerConfig is a Jaeger v2 (OpenTelemetry collector) configuration:
// OTLP in, memory storage, the query API. It binds 0.0.0.0, which inside a
// lab node's network namespace means the node's underlay address.
const jaegerConfig = `
service:
  extensions: [jaeger_storage, jaeger_query, healthcheckv2]
  pipelines:
    traces:
      receivers: [otlp]
      processors: [batch]
      exporters: [jaeger_storage_exporter]
  telemetry:
    metrics:
      level: none
    logs:
      level: info
extensions:
  healthcheckv2:
    use_v2: true
    http:
      endpoint: 0.0.0.0:13133
  jaeger_query:
    storage:
      traces: memstore
    http:
      endpoint: 0.0.0.0:16686
    grpc:
      endpoint: 0.0.0.0:16685
  jaeger_storage:
    backends:
      memstore:
        memory:
          max_traces: 10000
receivers:
  otlp:
    protocols:
      grpc:
        endpoint: 0.0.0.0:4317
      http:
        endpoint: 0.0.0.0:4318
processors:
  batch:
    timeout: 100ms
exporters:
  jaeger_storage_exporter:
    trace_storage: memstore
`

// jaeger is a Jaeger running in a lab node's network namespace.
type jaeger struct {
	e *env
	// node runs Jaeger; from is where queries are sent from (another node,
	// so they cross the underlay as the agents' spans do).
	node, from string
	addr       string // node IP
}

// startJaeger runs Jaeger on node (in its network namespace, in the node's
// host cgroup, as lab.ExecNode runs commands) until the test ends, and
// waits until its query API answers from node from.
func startJaeger(t *testing.T, e *env, bin, node, from string) *jaeger {
	t.Helper()
	cfg := filepath.Join(t.TempDir(), "jaeger.yaml")
	require.NoError(t, os.WriteFile(cfg, []byte(jaegerConfig), 0o644))
	var ip string
	for _, n := range e.lab.Nodes() {
		if n.Name == node {
			ip = n.IP
		}
	}
	require.NotEmpty(t, ip, "node %s", node)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Minute)
	done := make(chan struct{})
	var out []byte
	go func() {
		defer close(done)
		out, _ = e.lab.ExecNode(ctx, node, bin, "--config", cfg)
	}()
	// Registered after the lab's: runs before the lab is torn down.
	t.Cleanup(func() {
		cancel()
		<-done
		if t.Failed() {
			t.Logf("jaeger log:\n%s", tail(string(out), 40))
		}
	})
	j := &jaeger{e: e, node: node, from: from, addr: ip}
	require.Eventually(t, func() bool {
		code, _, err := j.get("/api/services")
		return err == nil && code == 200
	}, 30*time.Second, 200*time.Millisecond, "jaeger's query API on %s:16686", ip)
	return j
}

// get queries Jaeger's HTTP API with curl from inside a lab node: lab
// addresses are never dialed from the host's network namespace.
func (j *jaeger) get(path string) (int, []byte, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	out, err := j.e.lab.ExecNode(ctx, j.from, "curl", "-sS", "--max-time", "5", "-w", "\n%{http_code}",
		fmt.Sprintf("http://%s:16686%s", j.addr, path))
	if err != nil {
		return 0, out, err
	}
	body, codeText, _ := cutLast(string(out), "\n")
	code, err := strconv.Atoi(strings.TrimSpace(codeText))
	return code, []byte(body), err
}

func cutLast(s, sep string) (string, string, bool) {
	i := strings.LastIndex(s, sep)
	if i < 0 {
		return "", s, false
	}
	return s[:i], s[i+len(sep):], true
}

// jaegerSpan is a span as Jaeger's query API returns it.
type jaegerSpan struct {
	TraceID       string `json:"traceID"`
	SpanID        string `json:"spanID"`
	OperationName string `json:"operationName"`
	References    []struct {
		RefType string `json:"refType"`
		TraceID string `json:"traceID"`
		SpanID  string `json:"spanID"`
	} `json:"references"`
	Tags      []jaegerTag `json:"tags"`
	ProcessID string      `json:"processID"`
	// Node is the node of the proxy that recorded it (from the process).
	Node string `json:"-"`
}

type jaegerTag struct {
	Key   string `json:"key"`
	Value any    `json:"value"`
}

func (s jaegerSpan) tag(key string) string {
	for _, t := range s.Tags {
		if t.Key == key {
			return fmt.Sprint(t.Value)
		}
	}
	return ""
}

// parent is the span's CHILD_OF reference, "" for a root.
func (s jaegerSpan) parent() string {
	for _, r := range s.References {
		if r.RefType == "CHILD_OF" {
			return r.SpanID
		}
	}
	return ""
}

// trace returns the spans of a trace; found is false for Jaeger's 404.
func (j *jaeger) trace(traceID string) (spans []jaegerSpan, found bool, err error) {
	code, body, err := j.get("/api/traces/" + traceID)
	if err != nil {
		return nil, false, err
	}
	if code == 404 {
		return nil, false, nil
	}
	if code != 200 {
		return nil, false, fmt.Errorf("GET /api/traces/%s: %d %s", traceID, code, body)
	}
	var resp struct {
		Data []struct {
			TraceID   string       `json:"traceID"`
			Spans     []jaegerSpan `json:"spans"`
			Processes map[string]struct {
				ServiceName string      `json:"serviceName"`
				Tags        []jaegerTag `json:"tags"`
			} `json:"processes"`
		} `json:"data"`
	}
	if err := json.Unmarshal(body, &resp); err != nil {
		return nil, false, fmt.Errorf("decode trace %s: %w: %s", traceID, err, body)
	}
	for _, d := range resp.Data {
		for _, s := range d.Spans {
			for _, t := range d.Processes[s.ProcessID].Tags {
				if t.Key == "k8s.node.name" {
					s.Node = fmt.Sprint(t.Value)
				}
			}
			spans = append(spans, s)
		}
	}
	return spans, len(resp.Data) > 0, nil
}

// waitTrace waits until Jaeger holds at least n spans of a trace.
func (j *jaeger) waitTrace(t *testing.T, traceID string, n int) []jaegerSpan {
	t.Helper()
	var spans []jaegerSpan
	var last error
	require.Eventually(t, func() bool {
		spans, _, last = j.trace(traceID)
		return last == nil && len(spans) >= n
	}, 30*time.Second, 250*time.Millisecond, "trace %s in jaeger: %d spans, want %d (last error: %v)", traceID, len(spans), n, last)
	return spans
}

// hop finds the span a node's proxy recorded as kind (client or server).
func hop(t *testing.T, spans []jaegerSpan, node, kind string) jaegerSpan {
	t.Helper()
	var found []jaegerSpan
	for _, s := range spans {
		if s.Node == node && s.tag("span.kind") == kind {
			found = append(found, s)
		}
	}
	require.Len(t, found, 1, "one %s span of %s among %+v", kind, node, spans)
	return found[0]
}

// randomHex returns n random bytes in hex.
func randomHex(t *testing.T, n int) string {
	t.Helper()
	b := make([]byte, n)
	_, err := rand.Read(b)
	require.NoError(t, err)
	return hex.EncodeToString(b)
}

// logs asks a node's agent for access-log lines with agentctl -o json.
func (e *env) logs(node string, args ...string) admin.Logs {
	e.t.Helper()
	out, err := e.agentctl(node, append([]string{"logs", "-o", "json"}, args...)...)
	require.NoError(e.t, err, "agentctl logs %v: %s", args, out)
	var logs admin.Logs
	require.NoError(e.t, json.Unmarshal([]byte(out), &logs), "%s", out)
	return logs
}

// byReporter indexes access-log lines by reporter; each must be unique.
func byReporter(t *testing.T, entries []admin.LogEntry) map[string]admin.LogEntry {
	t.Helper()
	out := map[string]admin.LogEntry{}
	for _, e := range entries {
		_, dup := out[e.Reporter]
		require.False(t, dup, "two %s lines: %+v", e.Reporter, entries)
		out[e.Reporter] = e
	}
	return out
}

// dirSize sums the sizes of the files in dir.
func dirSize(t *testing.T, dir string) int64 {
	t.Helper()
	des, err := os.ReadDir(dir)
	require.NoError(t, err)
	var total int64
	for _, de := range des {
		fi, err := de.Info()
		require.NoError(t, err)
		total += fi.Size()
	}
	return total
}
