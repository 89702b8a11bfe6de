package deploy

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"regexp"
	"slices"
	"strings"
)

// Query is one target of a dashboard panel, ready to send to Prometheus.
type Query struct {
	Panel string // the panel's title
	RefID string // the target's refId: "A", "B", ...
	Expr  string // PromQL with every template variable substituted
}

// Defaults of Grafana's global variables, used when vars does not set them.
// $__rate_interval must cover at least two scrapes: pass a smaller one (for
// example "10s") when Prometheus scrapes every second.
var grafanaGlobals = map[string]string{
	"__rate_interval": "1m",
	"__interval":      "1m",
	"__range":         "1h",
	"__range_s":       "3600",
}

// variableRef matches $var, ${var}, ${var:format} and [[var]].
var variableRef = regexp.MustCompile(`\$\{(\w+)(?::[^}]*)?\}|\$(\w+)|\[\[(\w+)(?::[^\]]*)?\]\]`)

// ErrUnresolvedVariable is returned when a query uses a variable that neither
// vars nor the dashboard gives a value.
var ErrUnresolvedVariable = errors.New("unresolved dashboard variable")

// DashboardQueries reads a Grafana dashboard and returns every panel target's
// expression with its variables substituted, in panel order (panels inside
// rows included).
//
// A variable takes its value from vars first; otherwise a Grafana global
// ($__rate_interval and friends) takes its default above, a multi-value
// variable its "All" value (.*), and a custom variable its current value. A
// single-value query variable (the service dashboard's namespace and service)
// has no default: pass it in vars. Values are substituted verbatim, so a
// caller that wants several values of a regex-matched variable passes "a|b".
func DashboardQueries(path string, vars map[string]string) ([]Query, error) {
	raw, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read dashboard: %w", err)
	}
	var d struct {
		Templating struct {
			List []grafanaVariable `json:"list"`
		} `json:"templating"`
		Panels []grafanaPanel `json:"panels"`
	}
	if err := json.Unmarshal(raw, &d); err != nil {
		return nil, fmt.Errorf("parse dashboard %s: %w", path, err)
	}

	values := make(map[string]string, len(grafanaGlobals)+len(d.Templating.List)+len(vars))
	for k, v := range grafanaGlobals {
		values[k] = v
	}
	for _, v := range d.Templating.List {
		if def, ok := v.defaultValue(); ok {
			values[v.Name] = def
		}
	}
	for k, v := range vars {
		values[k] = v
	}

	var queries []Query
	var unresolved []string
	var walk func([]grafanaPanel)
	walk = func(panels []grafanaPanel) {
		for _, p := range panels {
			walk(p.Panels)
			for _, t := range p.Targets {
				if t.Expr == "" {
					continue
				}
				expr := variableRef.ReplaceAllStringFunc(t.Expr, func(ref string) string {
					m := variableRef.FindStringSubmatch(ref)
					name := m[1] + m[2] + m[3]
					v, ok := values[name]
					if !ok {
						unresolved = append(unresolved, fmt.Sprintf("$%s (panel %q)", name, p.Title))
						return ref
					}
					return v
				})
				queries = append(queries, Query{Panel: p.Title, RefID: t.RefID, Expr: expr})
			}
		}
	}
	walk(d.Panels)
	if len(unresolved) > 0 {
		slices.Sort(unresolved)
		return nil, fmt.Errorf("%w in %s: %s: pass a value in vars", ErrUnresolvedVariable, path, strings.Join(slices.Compact(unresolved), ", "))
	}
	return queries, nil
}

type grafanaPanel struct {
	Title   string         `json:"title"`
	Panels  []grafanaPanel `json:"panels"`
	Targets []struct {
		RefID string `json:"refId"`
		Expr  string `json:"expr"`
	} `json:"targets"`
}

type grafanaVariable struct {
	Name       string `json:"name"`
	Type       string `json:"type"`
	IncludeAll bool   `json:"includeAll"`
	AllValue   string `json:"allValue"`
	Current    struct {
		Value json.RawMessage `json:"value"`
	} `json:"current"`
}

// defaultValue is what the dashboard shows on first load, where that does not
// depend on the data: "All" of a multi-value variable, or a custom variable's
// current option.
func (v grafanaVariable) defaultValue() (string, bool) {
	if v.IncludeAll && v.AllValue != "" {
		return v.AllValue, true
	}
	if v.Type != "custom" {
		return "", false
	}
	var s string
	if json.Unmarshal(v.Current.Value, &s) == nil && s != "" {
		return s, true
	}
	return "", false
}
