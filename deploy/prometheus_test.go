package deploy

import (
	"context"
	"encoding/json"
	"fmt"
	"math"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// TestDashboardQueriesReturnData runs every dashboard query, and the rules,
// on a real Prometheus that scrapes a synthetic exporter serving every metric
// of the contract with plausible labels. It catches what parsing cannot:
// vector matching errors, groupings that select nothing, quantiles that are
// NaN, and rules that fail at evaluation.
func TestDashboardQueriesReturnData(t *testing.T) {
	if testing.Short() {
		t.Skip("starts Prometheus and waits for scrapes (about 10 s)")
	}
	bin, err := exec.LookPath("prometheus")
	if err != nil {
		t.Skip("prometheus not installed: scripts/deps.sh installs it (Debian package prometheus)")
	}
	prom := startPrometheus(t, bin, newSyntheticExporter(t))

	// Wait for enough scrapes that a 10 s rate has samples.
	require.Eventually(t, func() bool {
		v, err := prom.query(`count_over_time(up{job="skein-agent"}[1m])`)
		return err == nil && len(v) == 1 && v[0] >= 6
	}, 30*time.Second, 250*time.Millisecond, "Prometheus did not scrape the synthetic exporter")

	vars := map[string]string{"__rate_interval": "10s"}
	for k, v := range testVars {
		if k != "__rate_interval" {
			vars[k] = v
		}
	}
	for _, path := range dashboardFiles {
		qs, err := DashboardQueries(path, vars)
		require.NoError(t, err)
		for _, q := range qs {
			t.Run(fmt.Sprintf("%s/%s/%s", filepath.Base(path), q.Panel, q.RefID), func(t *testing.T) {
				values, err := prom.query(q.Expr)
				require.NoError(t, err, q.Expr)
				require.NotEmpty(t, values, "no data: %s", q.Expr)
				require.True(t, slices.ContainsFunc(values, func(v float64) bool { return !math.IsNaN(v) }), "only NaN: %s", q.Expr)
			})
		}
	}

	// Every rule has evaluated without error, and every recording rule has data.
	rules := readRules(t)
	require.Eventually(t, func() bool {
		health, err := prom.ruleHealth()
		if err != nil || len(health) == 0 {
			return false
		}
		for _, g := range rules.Groups {
			for _, r := range g.Rules {
				if health[r.Record+r.Alert] != "ok" {
					return false
				}
			}
		}
		return true
	}, 20*time.Second, 250*time.Millisecond, "rules did not all evaluate cleanly")
	health, err := prom.ruleHealth()
	require.NoError(t, err)
	for _, g := range rules.Groups {
		for _, r := range g.Rules {
			require.Equal(t, "ok", health[r.Record+r.Alert], "rule %s%s", r.Record, r.Alert)
			if r.Record != "" {
				values, err := prom.query(r.Record)
				require.NoError(t, err)
				require.NotEmpty(t, values, "recording rule %s has no data", r.Record)
			}
		}
	}
}

// syntheticValues are the values the synthetic exporter gives each label; the
// exporter serves every combination of the labels with more than one.
var syntheticValues = map[string][]string{
	"reporter":                   {"source", "destination"},
	"source_workload":            {"frontend"},
	"source_namespace":           {"shop"},
	"source_principal":           {"spiffe://cluster.local/ns/shop/sa/frontend"},
	"destination_service":        {"product.shop.svc.cluster.local"},
	"destination_workload":       {"product"},
	"destination_namespace":      {"shop"},
	"request_protocol":           {"http", "grpc"},
	"response_code":              {"200", "503"},
	"grpc_status":                {"0"},
	"response_flags":             {"-", "UH"},
	"connection_security_policy": {"mutual_tls", "none"},
	"direction":                  {"sent", "received"},
	"version":                    {"0.1.0-test"},
	"commit":                     {"abc1234"},
	"go_version":                 {"go1.26.8"},
	"map":                        {"sock_origdst", "services"},
	"reason":                     {"insert_failed", "evicted"},
	"result":                     {"applied", "rejected"},
	"identity":                   {"spiffe://cluster.local/ns/shop/sa/product"},
	"verdict":                    {"redirected", "not_member"},
	"action":                     {"allow", "deny"},
}

var syntheticBuckets = []struct {
	le    string
	share float64
}{{"0.005", 0.1}, {"0.05", 0.5}, {"0.5", 0.9}, {"5", 1}, {"+Inf", 1}}

// newSyntheticExporter serves every metric of the contract (except up, which
// Prometheus makes) in the text exposition format. Counters grow with every
// scrape, so rates are positive.
func newSyntheticExporter(t testing.TB) *httptest.Server {
	t.Helper()
	var scrapes atomic.Int64
	names := make([]string, 0, len(contract))
	for name := range contract {
		names = append(names, name)
	}
	slices.Sort(names)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		n := float64(scrapes.Add(1))
		var b strings.Builder
		for _, name := range names {
			spec := contract[name]
			if name == "up" {
				continue
			}
			kinds := map[metricKind]string{counter: "counter", gauge: "gauge", histogram: "histogram"}
			fmt.Fprintf(&b, "# TYPE %s %s\n", name, kinds[spec.kind])
			for i, labels := range labelCombinations(spec.labels) {
				k := n * float64(i+1)
				switch spec.kind {
				case counter:
					fmt.Fprintf(&b, "%s{%s} %g\n", name, labels, k)
				case gauge:
					fmt.Fprintf(&b, "%s{%s} %g\n", name, labels, gaugeValue(name))
				case histogram:
					count := 10 * k
					for _, bk := range syntheticBuckets {
						fmt.Fprintf(&b, "%s_bucket{%s} %g\n", name, join(labels, `le="`+bk.le+`"`), math.Round(count*bk.share))
					}
					fmt.Fprintf(&b, "%s_sum{%s} %g\n%s_count{%s} %g\n", name, labels, count*0.1, name, labels, count)
				}
			}
		}
		w.Header().Set("Content-Type", "text/plain; version=0.0.4")
		_, _ = w.Write([]byte(b.String()))
	}))
	t.Cleanup(srv.Close)
	return srv
}

func gaugeValue(name string) float64 {
	switch name {
	case "skein_bpf_map_entries":
		return 10
	case "skein_bpf_map_max_entries":
		return 100
	case "skein_config_generation":
		return 3
	case "skein_config_rejected_objects":
		return 0
	case "skein_certificate_expiry_timestamp_seconds":
		return float64(time.Now().Add(12 * time.Hour).Unix())
	}
	return 1
}

// labelCombinations renders every combination of syntheticValues for labels.
func labelCombinations(labels []string) []string {
	combos := []string{""}
	for _, l := range labels {
		var next []string
		for _, c := range combos {
			for _, v := range syntheticValues[l] {
				next = append(next, join(c, l+`="`+v+`"`))
			}
		}
		combos = next
	}
	return combos
}

func join(a, b string) string {
	if a == "" {
		return b
	}
	return a + "," + b
}

type prometheus struct {
	base string
}

// startPrometheus runs Prometheus on loopback with the shipped rules, scraping
// the exporter every second as job skein-agent on node node-a.
func startPrometheus(t testing.TB, bin string, exporter *httptest.Server) prometheus {
	t.Helper()
	dir := t.TempDir()
	rules, err := filepath.Abs("prometheus/skein-rules.yaml")
	require.NoError(t, err)
	config := fmt.Sprintf(`global:
  scrape_interval: 1s
  evaluation_interval: 1s
rule_files: [%q]
scrape_configs:
  - job_name: skein-agent
    static_configs:
      - targets: [%q]
        labels: {node: node-a}
`, rules, strings.TrimPrefix(exporter.URL, "http://"))
	require.NoError(t, os.WriteFile(filepath.Join(dir, "prometheus.yml"), []byte(config), 0o600))

	addr := freeLoopbackAddr(t)
	ctx, cancel := context.WithCancel(context.Background())
	cmd := exec.CommandContext(ctx, bin,
		"--config.file="+filepath.Join(dir, "prometheus.yml"),
		"--storage.tsdb.path="+filepath.Join(dir, "data"),
		"--web.listen-address="+addr,
		"--log.level=warn",
	)
	var logs strings.Builder
	cmd.Stdout, cmd.Stderr = &logs, &logs
	require.NoError(t, cmd.Start())
	t.Cleanup(func() {
		cancel()
		_ = cmd.Wait()
		if t.Failed() {
			t.Logf("prometheus output:\n%s", logs.String())
		}
	})
	p := prometheus{base: "http://" + addr}
	require.Eventually(t, func() bool {
		resp, err := http.Get(p.base + "/-/ready")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	}, 20*time.Second, 100*time.Millisecond, "prometheus did not become ready")
	return p
}

func freeLoopbackAddr(t testing.TB) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	addr := l.Addr().String()
	require.NoError(t, l.Close())
	return addr
}

// query runs an instant query and returns the sample values.
func (p prometheus) query(expr string) ([]float64, error) {
	var res struct {
		Status string `json:"status"`
		Error  string `json:"error"`
		Data   struct {
			ResultType string `json:"resultType"`
			Result     []struct {
				Value [2]any `json:"value"`
			} `json:"result"`
		} `json:"data"`
	}
	if err := p.get("/api/v1/query?query="+url.QueryEscape(expr), &res); err != nil {
		return nil, err
	}
	if res.Status != "success" {
		return nil, fmt.Errorf("query %s: %s", expr, res.Error)
	}
	var values []float64
	for _, r := range res.Data.Result {
		s, _ := r.Value[1].(string)
		v, err := strconv.ParseFloat(s, 64)
		if err != nil {
			return nil, fmt.Errorf("query %s: value %q: %w", expr, s, err)
		}
		values = append(values, v)
	}
	return values, nil
}

// ruleHealth maps each rule's name (record or alert) to its health.
func (p prometheus) ruleHealth() (map[string]string, error) {
	var res struct {
		Data struct {
			Groups []struct {
				Rules []struct {
					Name      string `json:"name"`
					Health    string `json:"health"`
					LastError string `json:"lastError"`
				} `json:"rules"`
			} `json:"groups"`
		} `json:"data"`
	}
	if err := p.get("/api/v1/rules", &res); err != nil {
		return nil, err
	}
	health := map[string]string{}
	for _, g := range res.Data.Groups {
		for _, r := range g.Rules {
			health[r.Name] = r.Health
			if r.LastError != "" {
				health[r.Name] = r.Health + ": " + r.LastError
			}
		}
	}
	return health, nil
}

func (p prometheus) get(path string, v any) error {
	resp, err := http.Get(p.base + path)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	return json.NewDecoder(resp.Body).Decode(v)
}
