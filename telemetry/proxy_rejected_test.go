package telemetry

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/prometheus/common/expfmt"
	"github.com/stretchr/testify/require"
)

type fakeRejections []Rejection

func (f fakeRejections) ProxyRejections() []Rejection { return f }

// TestProxyRejectedGolden compares skein_proxy_rejected_total with its
// golden file; UPDATE_GOLDEN=1 rewrites it. It is linted by promtool when
// installed.
func TestProxyRejectedGolden(t *testing.T) {
	src := fakeRejections{
		{Listener: "outbound", Reason: "conn_limit", Count: 7},
		{Listener: "outbound", Reason: "header_too_large", Count: 0},
		{Listener: "tunnel", Reason: "tls_handshake", Count: 3},
	}
	node := NewNode(map[string]Collector{"proxy_rejected": NewProxyRejected(src)})
	golden := filepath.Join("testdata", "proxy_rejected.prom")
	if os.Getenv("UPDATE_GOLDEN") != "" {
		out, err := testutil.CollectAndFormat(node, expfmt.TypeTextPlain, "skein_proxy_rejected_total")
		require.NoError(t, err)
		require.NoError(t, os.WriteFile(golden, out, 0o644))
	}
	want, err := os.ReadFile(golden)
	require.NoError(t, err)
	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(node)
	require.NoError(t, testutil.GatherAndCompare(reg, strings.NewReader(string(want)), "skein_proxy_rejected_total"))

	promtool, err := exec.LookPath("promtool")
	if err != nil {
		t.Log("promtool not installed: lint skipped")
		return
	}
	cmd := exec.Command(promtool, "check", "metrics")
	cmd.Stdin = strings.NewReader(string(want))
	out, err := cmd.CombinedOutput()
	require.NoError(t, err, "promtool: %s", out)
}
