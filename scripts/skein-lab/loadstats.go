package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"math"
	"net"
	"slices"
	"strings"
	"sync/atomic"
	"time"
)

// Bounds shared by the load clients (grpc-client, http-load), so that a
// mistyped flag cannot make a test pod run for hours or exhaust memory.
const (
	maxLoadCalls       = 100000
	maxLoadConcurrency = 256
)

// latencySummary is the "latencyMs" object of the load clients' JSON output:
// nearest-rank percentiles of the per-call latencies, in milliseconds with
// microsecond precision. All fields are 0 when no call completed.
type latencySummary struct {
	P50 float64 `json:"p50"`
	P90 float64 `json:"p90"`
	P99 float64 `json:"p99"`
	Max float64 `json:"max"`
}

// summarizeLatency computes the percentiles of ds, which it sorts in place.
func summarizeLatency(ds []time.Duration) latencySummary {
	if len(ds) == 0 {
		return latencySummary{}
	}
	slices.Sort(ds)
	rank := func(p float64) float64 {
		i := int(math.Ceil(p/100*float64(len(ds)))) - 1
		i = max(0, min(i, len(ds)-1))
		return millis(ds[i])
	}
	return latencySummary{P50: rank(50), P90: rank(90), P99: rank(99), Max: millis(ds[len(ds)-1])}
}

func millis(d time.Duration) float64 {
	return math.Round(float64(d)/float64(time.Microsecond)) / 1000
}

// newTCPDialer returns a dialer of plain TCP: never MPTCP, which the mesh's
// SOCKMAP refuses.
func newTCPDialer(timeout time.Duration) *net.Dialer {
	d := &net.Dialer{Timeout: timeout, KeepAlive: 30 * time.Second}
	d.SetMultipathTCP(false)
	return d
}

// countingDialer dials plain TCP and counts the connections it established,
// so the load clients can show how many connections their calls shared.
type countingDialer struct {
	dialer *net.Dialer
	dials  atomic.Int64
}

func newCountingDialer(timeout time.Duration) *countingDialer {
	return &countingDialer{dialer: newTCPDialer(timeout)}
}

func (d *countingDialer) DialContext(ctx context.Context, network, addr string) (net.Conn, error) {
	c, err := d.dialer.DialContext(ctx, network, addr)
	if err == nil {
		d.dials.Add(1)
	}
	return c, err
}

// checkOutputFormat validates the -o flag of the load clients.
func checkOutputFormat(format string) error {
	switch format {
	case "text", "json":
		return nil
	}
	return fmt.Errorf("-o %q: want text or json", format)
}

// writeJSON writes v as one line of JSON.
func writeJSON(w io.Writer, v any) error {
	return json.NewEncoder(w).Encode(v)
}

// formatCounts renders a count map as "a=1 b=2", sorted by key, for text output.
func formatCounts(m map[string]int) string { return formatMap(m, "%s=%d") }

// formatStrings renders a string map as "a=x b=y", sorted by key, for text output.
func formatStrings(m map[string]string) string { return formatMap(m, "%s=%s") }

func formatMap[V any](m map[string]V, format string) string {
	if len(m) == 0 {
		return "-"
	}
	keys := slices.Sorted(maps.Keys(m))
	parts := make([]string, 0, len(keys))
	for _, k := range keys {
		parts = append(parts, fmt.Sprintf(format, k, m[k]))
	}
	return strings.Join(parts, " ")
}

// checkLoadBounds validates a load client's call count and concurrency.
func checkLoadBounds(callsFlag string, calls int, concurrency int) error {
	if calls < 1 || calls > maxLoadCalls {
		return fmt.Errorf("--%s %d: want 1 to %d", callsFlag, calls, maxLoadCalls)
	}
	if concurrency < 1 || concurrency > maxLoadConcurrency {
		return fmt.Errorf("--concurrency %d: want 1 to %d", concurrency, maxLoadConcurrency)
	}
	return nil
}
