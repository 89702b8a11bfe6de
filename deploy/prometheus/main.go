package main

import (
	"bytes"
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"text/template"

	"sigs.k8s.io/yaml"
)

const (
	templateFile   = "skein-rules.yaml.tmpl"
	thresholdsFile = "thresholds.yaml"
	rulesFile      = "skein-rules.yaml"
	operatorFile   = "prometheusrule.yaml"
)

func main() {
	dir := flag.String("dir", ".", "directory holding "+templateFile+" and "+thresholdsFile)
	out := flag.String("out", "", "directory to write "+rulesFile+" and "+operatorFile+" into (default: -dir)")
	flag.Parse()
	if *out == "" {
		*out = *dir
	}
	if err := generate(*dir, *out); err != nil {
		fmt.Fprintln(os.Stderr, "prometheus:", err)
		os.Exit(1)
	}
}

func generate(dir, out string) error {
	src, err := os.ReadFile(filepath.Join(dir, templateFile))
	if err != nil {
		return fmt.Errorf("read template: %w", err)
	}
	tmpl, err := template.New(templateFile).Option("missingkey=error").Parse(string(src))
	if err != nil {
		return fmt.Errorf("parse template: %w", err)
	}
	raw, err := os.ReadFile(filepath.Join(dir, thresholdsFile))
	if err != nil {
		return fmt.Errorf("read thresholds: %w", err)
	}
	var values map[string]any
	if err := yaml.Unmarshal(raw, &values); err != nil {
		return fmt.Errorf("parse %s: %w", thresholdsFile, err)
	}

	rules, err := render(tmpl, values)
	if err != nil {
		return err
	}
	if err := checkEveryKeyUsed(tmpl, values, rules); err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(out, rulesFile), rules, 0o644); err != nil {
		return fmt.Errorf("write rules: %w", err)
	}
	if err := os.WriteFile(filepath.Join(out, operatorFile), prometheusRule(rules), 0o644); err != nil {
		return fmt.Errorf("write PrometheusRule: %w", err)
	}
	return nil
}

func render(tmpl *template.Template, values map[string]any) ([]byte, error) {
	var b bytes.Buffer
	if err := tmpl.Execute(&b, map[string]any{"Values": values}); err != nil {
		return nil, fmt.Errorf("render %s with %s: %w", templateFile, thresholdsFile, err)
	}
	return b.Bytes(), nil
}

// checkEveryKeyUsed renders once per leaf of values with that leaf replaced by
// a sentinel: a leaf whose change leaves the output as it was documents a
// threshold that nothing reads.
func checkEveryKeyUsed(tmpl *template.Template, values map[string]any, want []byte) error {
	var unused []string
	for _, path := range leaves(values, nil) {
		restore := set(values, path, "SENTINEL")
		got, err := render(tmpl, values)
		restore()
		if err != nil {
			return err
		}
		if bytes.Equal(got, want) {
			unused = append(unused, strings.Join(path, "."))
		}
	}
	if len(unused) > 0 {
		return errors.New(thresholdsFile + ": not used by " + templateFile + ": " + strings.Join(unused, ", "))
	}
	return nil
}

func leaves(m map[string]any, prefix []string) [][]string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var out [][]string
	for _, k := range keys {
		path := append(append([]string(nil), prefix...), k)
		if sub, ok := m[k].(map[string]any); ok {
			out = append(out, leaves(sub, path)...)
			continue
		}
		out = append(out, path)
	}
	return out
}

// set replaces the value at path and returns a func that puts the old one back.
func set(m map[string]any, path []string, v any) (restore func()) {
	for _, k := range path[:len(path)-1] {
		m = m[k].(map[string]any)
	}
	last := path[len(path)-1]
	old := m[last]
	m[last] = v
	return func() { m[last] = old }
}

// prometheusRule wraps the rendered groups into a PrometheusRule, keeping the
// rules' text (and its comments) as it is.
func prometheusRule(rules []byte) []byte {
	body := string(rules)
	body = body[strings.Index(body, "groups:"):]
	var b strings.Builder
	b.WriteString(`# Generated from skein-rules.yaml.tmpl and thresholds.yaml by ` + "`go generate ./deploy`" + `; do not edit.
# The rules of skein-rules.yaml for the Prometheus operator. Its ruleSelector must match these
# labels: kube-prometheus-stack, for example, selects release: <its release name> by default.
apiVersion: monitoring.coreos.com/v1
kind: PrometheusRule
metadata:
  name: skein
  labels:
    app.kubernetes.io/name: skein
    app.kubernetes.io/component: alerting
spec:
`)
	for _, line := range strings.SplitAfter(body, "\n") {
		if strings.TrimSpace(line) != "" {
			b.WriteString("  ")
		}
		b.WriteString(line)
	}
	return []byte(b.String())
}
