package deploy

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
	"sigs.k8s.io/yaml"
)

var dashboardFiles = []string{"grafana/skein-node.json", "grafana/skein-service.json"}

// testVars are plausible values for every dashboard variable.
var testVars = map[string]string{
	"node":            "node-a",
	"namespace":       "shop",
	"service":         "product.shop.svc.cluster.local",
	"reporter":        "source",
	"__rate_interval": "1m",
}

// requiredAlerts are the alerts the rules must define, each with its block in
// thresholds.yaml (under alerts:).
var requiredAlerts = map[string]string{
	"SkeinHighErrorRate":         "highErrorRate",
	"SkeinHighP99Latency":        "highP99Latency",
	"SkeinTCPRetransmitRatio":    "tcpRetransmitRatio",
	"SkeinConnectionFailureRate": "connectionFailureRate",
	"SkeinMTLSCoverageDrop":      "mtlsCoverageDrop",
	"SkeinCertificateNearExpiry": "certificateNearExpiry",
	"SkeinRingBufferLoss":        "ringBufferLoss",
	"SkeinAgentDown":             "agentDown",
	"SkeinConfigRejected":        "configRejected",
	"SkeinBPFMapNearFull":        "bpfMapNearFull",
	"SkeinCaptureFailing":        "captureFailing",
}

type dashboardJSON struct {
	UID           string `json:"uid"`
	Title         string `json:"title"`
	SchemaVersion int    `json:"schemaVersion"`
	Templating    struct {
		List []variableJSON `json:"list"`
	} `json:"templating"`
	Panels []panelJSON `json:"panels"`
}

type datasourceJSON struct {
	Type string `json:"type"`
	UID  string `json:"uid"`
}

type variableJSON struct {
	Name       string          `json:"name"`
	Type       string          `json:"type"`
	Query      json.RawMessage `json:"query"`
	Datasource *datasourceJSON `json:"datasource"`
}

// queryText is a query variable's query, stored as a string or as
// {"query": "..."} depending on the Grafana version that saved it.
func (v variableJSON) queryText() string {
	var s string
	if json.Unmarshal(v.Query, &s) == nil {
		return s
	}
	var o struct {
		Query string `json:"query"`
	}
	_ = json.Unmarshal(v.Query, &o)
	return o.Query
}

type panelJSON struct {
	ID         int             `json:"id"`
	Type       string          `json:"type"`
	Title      string          `json:"title"`
	Datasource *datasourceJSON `json:"datasource"`
	GridPos    struct {
		H int `json:"h"`
		W int `json:"w"`
		X int `json:"x"`
		Y int `json:"y"`
	} `json:"gridPos"`
	Targets []struct {
		RefID        string          `json:"refId"`
		Expr         string          `json:"expr"`
		LegendFormat string          `json:"legendFormat"`
		Datasource   *datasourceJSON `json:"datasource"`
	} `json:"targets"`
	Panels []panelJSON `json:"panels"`
}

func readDashboard(t testing.TB, path string) dashboardJSON {
	t.Helper()
	raw, err := os.ReadFile(path)
	require.NoError(t, err)
	require.True(t, json.Valid(raw), "%s is not valid JSON", path)
	var d dashboardJSON
	require.NoError(t, json.Unmarshal(raw, &d))
	return d
}

func flatten(panels []panelJSON) []panelJSON {
	var out []panelJSON
	for _, p := range panels {
		out = append(out, p)
		out = append(out, flatten(p.Panels)...)
	}
	return out
}

var (
	labelValues = regexp.MustCompile(`^label_values\((.+),\s*(\w+)\)$`)
	legendLabel = regexp.MustCompile(`\{\{\s*(\w+)\s*\}\}`)
)

// substitute replaces dashboard variables the way DashboardQueries does.
func substitute(t testing.TB, s string) string {
	t.Helper()
	return variableRef.ReplaceAllStringFunc(s, func(ref string) string {
		m := variableRef.FindStringSubmatch(ref)
		v, ok := testVars[m[1]+m[2]+m[3]]
		require.True(t, ok, "no test value for %s", ref)
		return v
	})
}

// TestDashboards checks what Grafana needs to import the dashboards and what
// the contract needs from their queries: names and labels that exist.
func TestDashboards(t *testing.T) {
	used := map[string]bool{}
	for _, path := range dashboardFiles {
		t.Run(filepath.Base(path), func(t *testing.T) {
			d := readDashboard(t, path)
			require.NotEmpty(t, d.UID)
			require.NotEmpty(t, d.Title)
			require.GreaterOrEqual(t, d.SchemaVersion, 39)

			vars := map[string]variableJSON{}
			for _, v := range d.Templating.List {
				vars[v.Name] = v
			}
			ds, ok := vars["datasource"]
			require.True(t, ok, "no datasource variable")
			require.Equal(t, "datasource", ds.Type)
			require.JSONEq(t, `"prometheus"`, string(ds.Query))
			for _, name := range []string{"node", "namespace", "service"} {
				v, ok := vars[name]
				require.True(t, ok, "no %s variable", name)
				require.Equal(t, "query", v.Type, name)
				require.Equal(t, &datasourceJSON{"prometheus", "${datasource}"}, v.Datasource, name)
				m := labelValues.FindStringSubmatch(v.queryText())
				require.NotNil(t, m, "variable %s: want label_values(selector, label), got %q", name, v.queryText())
				labels, problems := checkContract(substitute(t, m[1]), nil)
				require.Empty(t, problems, "variable %s", name)
				require.True(t, labels[m[2]], "variable %s: its metric has no label %s", name, m[2])
			}

			ids := map[int]bool{}
			titles := map[string]bool{}
			var boxes []panelJSON
			for _, p := range flatten(d.Panels) {
				require.False(t, ids[p.ID], "panel id %d twice", p.ID)
				ids[p.ID] = true
				require.LessOrEqual(t, p.GridPos.X+p.GridPos.W, 24, "panel %q is wider than the grid", p.Title)
				require.Positive(t, p.GridPos.W*p.GridPos.H, "panel %q has no size", p.Title)
				for _, b := range boxes {
					overlap := p.GridPos.X < b.GridPos.X+b.GridPos.W && b.GridPos.X < p.GridPos.X+p.GridPos.W &&
						p.GridPos.Y < b.GridPos.Y+b.GridPos.H && b.GridPos.Y < p.GridPos.Y+p.GridPos.H
					require.False(t, overlap, "panels %q and %q overlap", p.Title, b.Title)
				}
				boxes = append(boxes, p)
				if p.Type == "row" {
					continue
				}
				require.False(t, titles[p.Title], "panel title %q twice", p.Title)
				titles[p.Title] = true
				require.NotEmpty(t, p.Targets, "panel %q has no target", p.Title)
				require.Equal(t, &datasourceJSON{"prometheus", "${datasource}"}, p.Datasource, "panel %q", p.Title)
				for _, tg := range p.Targets {
					require.NotEmpty(t, tg.Expr, "panel %q target %s", p.Title, tg.RefID)
					require.Equal(t, &datasourceJSON{"prometheus", "${datasource}"}, tg.Datasource, "panel %q target %s", p.Title, tg.RefID)
					expr := substitute(t, tg.Expr)
					labels, problems := checkContract(expr, nil)
					require.Empty(t, problems, "panel %q target %s: %s", p.Title, tg.RefID, tg.Expr)
					for _, m := range legendLabel.FindAllStringSubmatch(tg.LegendFormat, -1) {
						require.True(t, labels[m[1]], "panel %q target %s: legend uses %s, which no series of the query has", p.Title, tg.RefID, m[1])
					}
					refs, err := scanPromQL(expr)
					require.NoError(t, err)
					for _, s := range refs.selectors {
						base, _, _ := series(s.name)
						used[base] = true
					}
				}
			}
		})
	}
	for name := range contract {
		require.True(t, used[name], "no dashboard panel shows %s", name)
	}
}

// TestCheckContract makes sure the contract check catches the mistakes it is
// there for, so that the dashboard and rule tests cannot pass vacuously.
func TestCheckContract(t *testing.T) {
	recorded := map[string]bool{"destination_service:skein_requests:rate5m": true}
	tests := []struct {
		name    string
		expr    string
		problem string // "" when the expression is fine
	}{
		{"counter with labels", `sum by (destination_service) (rate(skein_requests_total{node=~".*", response_code=~"5.."}[1m]))`, ""},
		{"histogram buckets", `histogram_quantile(0.99, sum by (le, source_workload) (rate(skein_tcp_rtt_seconds_bucket{reporter="source"}[5m])))`, ""},
		{"set operators and vector()", `sum by (direction) (rate(skein_tcp_resets_total[1m])) or on() vector(0)`, ""},
		{"strings are not names", `label_replace(up{job="skein-agent"}, "x", "$1", "node", "(.*)")`, ""},
		{"recorded series", `destination_service:skein_requests:rate5m > 0.1`, ""},
		{"typo in a metric", `rate(skein_request_total[1m])`, "metric skein_request_total is not in the telemetry contract"},
		{"histogram without suffix", `skein_tcp_rtt_seconds`, "metric skein_tcp_rtt_seconds is not in the telemetry contract"},
		{"label of another metric", `rate(skein_tcp_retransmits_total{response_code="503"}[1m])`, "skein_tcp_retransmits_total has no label response_code"},
		{"le outside buckets", `skein_request_duration_seconds_count{le="1"}`, "skein_request_duration_seconds_count has no label le"},
		{"grouping by a missing label", `sum by (destination_svc) (rate(skein_requests_total[1m]))`, "grouping label destination_svc is on none of the expression's metrics"},
		{"no metric at all", `vector(1)`, "expression reads no metric"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, problems := checkContract(tt.expr, recorded)
			if tt.problem == "" {
				require.Empty(t, problems)
				return
			}
			require.Contains(t, problems, tt.problem)
		})
	}
}

// TestDashboardQueriesParse runs every panel query and variable selector
// through promtool's parser, as recording rules of a throwaway rules file.
func TestDashboardQueriesParse(t *testing.T) {
	type record struct {
		Record string `json:"record"`
		Expr   string `json:"expr"`
	}
	var rules []record
	var where []string
	for _, path := range dashboardFiles {
		qs, err := DashboardQueries(path, testVars)
		require.NoError(t, err)
		require.NotEmpty(t, qs)
		for _, q := range qs {
			rules = append(rules, record{fmt.Sprintf("dashboard_check:q%03d", len(rules)), q.Expr})
			where = append(where, fmt.Sprintf("%s %q %s", path, q.Panel, q.RefID))
		}
		for _, v := range readDashboard(t, path).Templating.List {
			if m := labelValues.FindStringSubmatch(v.queryText()); m != nil {
				rules = append(rules, record{fmt.Sprintf("dashboard_check:q%03d", len(rules)), substitute(t, m[1])})
				where = append(where, fmt.Sprintf("%s variable %s", path, v.Name))
			}
		}
	}
	out, err := yaml.Marshal(map[string]any{"groups": []any{map[string]any{"name": "dashboards", "rules": rules}}})
	require.NoError(t, err)
	file := filepath.Join(t.TempDir(), "dashboards.rules.yaml")
	require.NoError(t, os.WriteFile(file, out, 0o600))
	res, err := promtool(t, "check", "rules", file)
	if err != nil {
		var legend strings.Builder
		for i, w := range where {
			fmt.Fprintf(&legend, "  dashboard_check:q%03d = %s\n", i, w)
		}
		t.Fatalf("promtool rejects a dashboard query: %v\n%s\nrules:\n%s", err, res, legend.String())
	}
	require.Contains(t, res, fmt.Sprintf("SUCCESS: %d rules found", len(rules)))
}

func TestDashboardQueries(t *testing.T) {
	tests := []struct {
		name    string
		path    string
		vars    map[string]string
		panel   string
		want    []string // substrings of the panel's first query
		wantErr error
	}{
		{
			name:  "node dashboard defaults to all nodes and the source reporter",
			path:  "grafana/skein-node.json",
			panel: "Request rate by destination service",
			want:  []string{`node=~".*"`, `reporter="source"`, `[1m]`},
		},
		{
			name:  "vars override defaults and Grafana globals",
			path:  "grafana/skein-node.json",
			vars:  map[string]string{"node": "node-a|node-b", "reporter": "destination", "__rate_interval": "10s"},
			panel: "Request rate by destination service",
			want:  []string{`node=~"node-a|node-b"`, `reporter="destination"`, `[10s]`},
		},
		{
			name:  "service dashboard with its service",
			path:  "grafana/skein-service.json",
			vars:  map[string]string{"namespace": "shop", "service": "product.shop.svc.cluster.local"},
			panel: "Request rate by response code",
			want:  []string{`destination_service="product.shop.svc.cluster.local"`, `reporter="destination"`},
		},
		{
			name:    "service dashboard without a service",
			path:    "grafana/skein-service.json",
			wantErr: ErrUnresolvedVariable,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			qs, err := DashboardQueries(tt.path, tt.vars)
			if tt.wantErr != nil {
				require.ErrorIs(t, err, tt.wantErr)
				return
			}
			require.NoError(t, err)
			for _, q := range qs {
				require.NotContains(t, q.Expr, "$", "panel %q", q.Panel)
				require.NotEmpty(t, q.RefID)
			}
			i := slices.IndexFunc(qs, func(q Query) bool { return q.Panel == tt.panel })
			require.GreaterOrEqual(t, i, 0, "no panel %q", tt.panel)
			for _, w := range tt.want {
				require.Contains(t, qs[i].Expr, w)
			}
		})
	}
	_, err := DashboardQueries("grafana/missing.json", nil)
	require.Error(t, err)
}

// TestConfigMapInSync checks that the ConfigMap carries exactly the dashboard
// files, byte for byte, and stays applicable with kubectl apply.
func TestConfigMapInSync(t *testing.T) {
	raw, err := os.ReadFile("grafana/configmap.yaml")
	require.NoError(t, err)
	// kubectl apply keeps the object in an annotation limited to 256 KiB.
	require.Less(t, len(raw), 256*1024, "configmap.yaml is too large for kubectl apply")
	var cm struct {
		APIVersion string `json:"apiVersion"`
		Kind       string `json:"kind"`
		Metadata   struct {
			Name        string            `json:"name"`
			Labels      map[string]string `json:"labels"`
			Annotations map[string]string `json:"annotations"`
		} `json:"metadata"`
		Data map[string]string `json:"data"`
	}
	require.NoError(t, yaml.UnmarshalStrict(raw, &cm))
	require.Equal(t, "v1", cm.APIVersion)
	require.Equal(t, "ConfigMap", cm.Kind)
	require.NotEmpty(t, cm.Metadata.Name)
	require.Equal(t, "1", cm.Metadata.Labels["grafana_dashboard"])
	require.Len(t, cm.Data, len(dashboardFiles))
	for _, path := range dashboardFiles {
		want, err := os.ReadFile(path)
		require.NoError(t, err)
		require.Equal(t, string(want), cm.Data[filepath.Base(path)], "configmap.yaml is out of date with %s: run go generate ./deploy", path)
	}
}

// TestGeneratedFilesAreCurrent re-runs the generators and compares their
// output with the committed files.
func TestGeneratedFilesAreCurrent(t *testing.T) {
	gobin, err := exec.LookPath("go")
	if err != nil {
		t.Skip("go command not in PATH: cannot run the generators")
	}
	out := t.TempDir()
	for _, args := range [][]string{
		{"run", "./grafana", "-out", out},
		{"run", "./prometheus", "-dir", "prometheus", "-out", out},
	} {
		res, err := exec.Command(gobin, args...).CombinedOutput()
		require.NoError(t, err, "go %s:\n%s", strings.Join(args, " "), res)
	}
	for _, f := range []string{
		"grafana/skein-node.json", "grafana/skein-service.json", "grafana/configmap.yaml",
		"prometheus/skein-rules.yaml", "prometheus/prometheusrule.yaml",
	} {
		want, err := os.ReadFile(filepath.Join(out, filepath.Base(f)))
		require.NoError(t, err)
		got, err := os.ReadFile(f)
		require.NoError(t, err)
		if d := firstDifference(string(want), string(got)); d != "" {
			t.Errorf("%s is stale: run go generate ./deploy and commit\n%s", f, d)
		}
	}
}

// firstDifference describes the first line where two texts differ, or returns
// "" when they are equal: generated files are too long to print whole.
func firstDifference(want, got string) string {
	if want == got {
		return ""
	}
	w, g := strings.Split(want, "\n"), strings.Split(got, "\n")
	for i := 0; ; i++ {
		var wl, gl string
		if i < len(w) {
			wl = w[i]
		}
		if i < len(g) {
			gl = g[i]
		}
		if wl != gl || i >= len(w) || i >= len(g) {
			return fmt.Sprintf("line %d:\n  generated: %q\n  committed: %q", i+1, wl, gl)
		}
	}
}

type ruleFile struct {
	Groups []ruleGroup `json:"groups"`
}

type ruleGroup struct {
	Name     string `json:"name"`
	Interval string `json:"interval,omitempty"`
	Rules    []rule `json:"rules"`
}

type rule struct {
	Record      string            `json:"record,omitempty"`
	Alert       string            `json:"alert,omitempty"`
	Expr        string            `json:"expr"`
	For         string            `json:"for,omitempty"`
	Labels      map[string]string `json:"labels,omitempty"`
	Annotations map[string]string `json:"annotations,omitempty"`
}

func readRules(t testing.TB) ruleFile {
	t.Helper()
	raw, err := os.ReadFile("prometheus/skein-rules.yaml")
	require.NoError(t, err)
	var f ruleFile
	require.NoError(t, yaml.UnmarshalStrict(raw, &f))
	require.NotEmpty(t, f.Groups)
	return f
}

// TestRules checks the alerts against the brief (names, severity, what to do),
// thresholds.yaml, and the telemetry contract.
func TestRules(t *testing.T) {
	f := readRules(t)
	raw, err := os.ReadFile("prometheus/thresholds.yaml")
	require.NoError(t, err)
	var thresholds struct {
		Alerts map[string]any `json:"alerts"`
	}
	require.NoError(t, yaml.Unmarshal(raw, &thresholds))

	recorded := map[string]bool{}
	var exprs []string
	for _, g := range f.Groups {
		for _, r := range g.Rules {
			if r.Record != "" {
				require.False(t, recorded[r.Record], "%s recorded twice", r.Record)
				require.Equal(t, 2, strings.Count(r.Record, ":"), "%s: name recording rules level:metric:operations", r.Record)
				recorded[r.Record] = true
			}
			exprs = append(exprs, r.Expr)
		}
	}

	alerts := map[string]bool{}
	for _, g := range f.Groups {
		for _, r := range g.Rules {
			_, problems := checkContract(r.Expr, recorded)
			require.Empty(t, problems, "rule %s%s", r.Record, r.Alert)
			if r.Record != "" {
				uses := slices.ContainsFunc(exprs, func(e string) bool {
					return regexp.MustCompile(`\b` + regexp.QuoteMeta(r.Record) + `\b`).MatchString(e)
				})
				require.True(t, uses, "recording rule %s is used by no other rule", r.Record)
				continue
			}
			key, ok := requiredAlerts[r.Alert]
			require.True(t, ok, "alert %s is not in requiredAlerts: add it there, to thresholds.yaml and to tests/", r.Alert)
			alerts[r.Alert] = true
			block, ok := thresholds.Alerts[key].(map[string]any)
			require.True(t, ok, "thresholds.yaml has no alerts.%s for %s", key, r.Alert)
			require.Contains(t, []string{"critical", "warning"}, r.Labels["severity"], r.Alert)
			require.Equal(t, block["severity"], r.Labels["severity"], "%s severity", r.Alert)
			require.Equal(t, block["for"], r.For, "%s for", r.Alert)
			require.NotEmpty(t, r.Annotations["summary"], r.Alert)
			require.Contains(t, r.Annotations["description"], "`agentctl ", "%s: the description must say which agentctl command to run", r.Alert)
		}
	}
	for name := range requiredAlerts {
		require.True(t, alerts[name], "alert %s is missing", name)
	}
}

func TestPrometheusRuleInSync(t *testing.T) {
	raw, err := os.ReadFile("prometheus/prometheusrule.yaml")
	require.NoError(t, err)
	var pr struct {
		APIVersion string `json:"apiVersion"`
		Kind       string `json:"kind"`
		Metadata   struct {
			Name   string            `json:"name"`
			Labels map[string]string `json:"labels"`
		} `json:"metadata"`
		Spec ruleFile `json:"spec"`
	}
	require.NoError(t, yaml.UnmarshalStrict(raw, &pr))
	require.Equal(t, "monitoring.coreos.com/v1", pr.APIVersion)
	require.Equal(t, "PrometheusRule", pr.Kind)
	require.NotEmpty(t, pr.Metadata.Name)
	require.Equal(t, readRules(t), pr.Spec, "prometheusrule.yaml differs from skein-rules.yaml: run go generate ./deploy")
}

// TestPromtool runs promtool's rules check and the rule unit tests in
// prometheus/tests, and checks that every alert has a case where it fires and
// one where it stays quiet.
func TestPromtool(t *testing.T) {
	out, err := promtool(t, "check", "rules", "prometheus/skein-rules.yaml")
	require.NoError(t, err, out)

	files, err := filepath.Glob("prometheus/tests/*.yaml")
	require.NoError(t, err)
	require.NotEmpty(t, files)
	out, err = promtool(t, append([]string{"test", "rules"}, files...)...)
	require.NoError(t, err, out)

	fires, quiet := map[string]bool{}, map[string]bool{}
	for _, file := range files {
		raw, err := os.ReadFile(file)
		require.NoError(t, err)
		var unit struct {
			Tests []struct {
				AlertRuleTest []struct {
					Alertname string `json:"alertname"`
					ExpAlerts []any  `json:"exp_alerts"`
				} `json:"alert_rule_test"`
			} `json:"tests"`
		}
		require.NoError(t, yaml.Unmarshal(raw, &unit), file)
		for _, tc := range unit.Tests {
			for _, a := range tc.AlertRuleTest {
				if len(a.ExpAlerts) > 0 {
					fires[a.Alertname] = true
				} else {
					quiet[a.Alertname] = true
				}
			}
		}
	}
	for name := range requiredAlerts {
		require.True(t, fires[name], "no promtool test where %s fires", name)
		require.True(t, quiet[name], "no promtool test where %s stays quiet (exp_alerts: [])", name)
	}
}

// promtool runs promtool and skips the test when it is not installed.
func promtool(t testing.TB, args ...string) (string, error) {
	t.Helper()
	bin, err := exec.LookPath("promtool")
	if errors.Is(err, exec.ErrNotFound) {
		t.Skip("promtool not installed: scripts/deps.sh installs it (Debian package prometheus)")
	}
	require.NoError(t, err)
	out, err := exec.Command(bin, args...).CombinedOutput()
	return string(out), err
}
