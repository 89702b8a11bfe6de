package main

import (
	"fmt"
	"strings"
)

// dashboard is the part of Grafana's dashboard model that Skein uses.
type dashboard struct {
	uid, title, description string
	vars                    []variable
	rows                    []row
}

// row is a titled group of panels laid out left to right, wrapping at 24 columns.
type row struct {
	title  string
	panels []panel
}

type panelKind string

const (
	timeseries panelKind = "timeseries"
	stat       panelKind = "stat"
	table      panelKind = "table"
)

// panel is one visualisation. width is in grid columns (24 per line); zero means 12.
type panel struct {
	kind        panelKind
	title       string
	description string
	unit        string
	width       int
	max         float64 // axis maximum; 0 leaves it automatic
	signed      bool    // values can be negative (no 0 floor on the axis)
	stacked     bool
	targets     []target
}

// target is one query of a panel. instant queries feed tables and stats.
type target struct {
	expr, legend string
	instant      bool
}

// variable is a templating variable. Query variables use Grafana's
// label_values(selector, label) syntax; custom variables list their options.
type variable struct {
	name, label string
	query       string   // label_values(...) for query variables
	options     []string // for custom variables; the first is the default
	multi       bool     // multi-select with an "All" entry matching every value (.*)
}

var datasource = map[string]any{"type": "prometheus", "uid": "${datasource}"}

// json renders the dashboard in Grafana's schema 39 (Grafana 10.3 and later).
func (d dashboard) json() map[string]any {
	templating := []any{map[string]any{
		"name":    "datasource",
		"label":   "Data source",
		"type":    "datasource",
		"query":   "prometheus",
		"current": map[string]any{},
		"hide":    0,
		"refresh": 1,
		"regex":   "",
	}}
	for _, v := range d.vars {
		templating = append(templating, v.json())
	}

	var panels []any
	id, y := 1, 0
	for _, r := range d.rows {
		panels = append(panels, map[string]any{
			"id":        id,
			"type":      "row",
			"title":     r.title,
			"collapsed": false,
			"gridPos":   map[string]any{"h": 1, "w": 24, "x": 0, "y": y},
			"panels":    []any{},
		})
		id++
		y++
		x, h := 0, 8
		for _, p := range r.panels {
			w := p.width
			if w == 0 {
				w = 12
			}
			if x+w > 24 {
				x, y = 0, y+h
			}
			panels = append(panels, p.json(id, x, y, w, h))
			id++
			x += w
		}
		y += h
	}

	return map[string]any{
		"uid":           d.uid,
		"title":         d.title,
		"description":   d.description,
		"tags":          []string{"skein", "service-mesh"},
		"editable":      true,
		"graphTooltip":  1,
		"id":            nil,
		"refresh":       "30s",
		"schemaVersion": 39,
		"version":       1,
		"timezone":      "browser",
		"time":          map[string]any{"from": "now-1h", "to": "now"},
		"annotations": map[string]any{"list": []any{map[string]any{
			"builtIn":    1,
			"datasource": map[string]any{"type": "grafana", "uid": "-- Grafana --"},
			"enable":     true,
			"hide":       true,
			"iconColor":  "rgba(0, 211, 255, 1)",
			"name":       "Annotations & Alerts",
			"type":       "dashboard",
		}}},
		"links": []any{map[string]any{
			"title":       "Skein dashboards",
			"type":        "dashboards",
			"tags":        []string{"skein"},
			"asDropdown":  false,
			"includeVars": true,
			"keepTime":    true,
		}},
		"templating": map[string]any{"list": templating},
		"panels":     panels,
	}
}

func (v variable) json() map[string]any {
	m := map[string]any{
		"name":    v.name,
		"label":   v.label,
		"hide":    0,
		"multi":   v.multi,
		"current": map[string]any{},
	}
	if v.multi {
		m["includeAll"] = true
		m["allValue"] = ".*"
		m["current"] = map[string]any{"selected": true, "text": []string{"All"}, "value": []string{"$__all"}}
	} else {
		m["includeAll"] = false
	}
	if v.query != "" {
		m["type"] = "query"
		m["datasource"] = datasource
		m["query"] = map[string]any{"query": v.query, "refId": "PrometheusVariableQueryEditor-VariableQuery"}
		m["definition"] = v.query
		m["refresh"] = 2 // on time range change, so new nodes and services appear
		m["sort"] = 1
		m["regex"] = ""
		m["options"] = []any{}
		return m
	}
	m["type"] = "custom"
	m["query"] = strings.Join(v.options, ",")
	var opts []any
	for i, o := range v.options {
		opts = append(opts, map[string]any{"selected": i == 0, "text": o, "value": o})
	}
	m["options"] = opts
	m["current"] = map[string]any{"selected": true, "text": v.options[0], "value": v.options[0]}
	return m
}

func (p panel) json(id, x, y, w, h int) map[string]any {
	var targets []any
	for i, t := range p.targets {
		tm := map[string]any{
			"refId":        string(rune('A' + i)),
			"datasource":   datasource,
			"expr":         t.expr,
			"legendFormat": t.legend,
			"editorMode":   "code",
			"range":        !t.instant,
			"instant":      t.instant,
		}
		if p.kind == table {
			tm["format"] = "table"
		}
		if t.legend == "" {
			tm["legendFormat"] = "__auto"
		}
		targets = append(targets, tm)
	}
	defaults := map[string]any{
		"unit":       p.unit,
		"thresholds": map[string]any{"mode": "absolute", "steps": []any{map[string]any{"color": "green", "value": nil}}},
	}
	if !p.signed {
		defaults["min"] = 0
	}
	if p.max != 0 {
		defaults["max"] = p.max
	}
	m := map[string]any{
		"id":          id,
		"type":        string(p.kind),
		"title":       p.title,
		"description": p.description,
		"datasource":  datasource,
		"gridPos":     map[string]any{"h": h, "w": w, "x": x, "y": y},
		"targets":     targets,
	}
	switch p.kind {
	case timeseries:
		stacking := "none"
		if p.stacked {
			stacking = "normal"
		}
		defaults["custom"] = map[string]any{
			"drawStyle":   "line",
			"lineWidth":   1,
			"fillOpacity": 10,
			"showPoints":  "never",
			"spanNulls":   false,
			"stacking":    map[string]any{"mode": stacking, "group": "A"},
		}
		m["options"] = map[string]any{
			"legend":  map[string]any{"showLegend": true, "displayMode": "table", "placement": "bottom", "calcs": []string{"mean", "max", "lastNotNull"}},
			"tooltip": map[string]any{"mode": "multi", "sort": "desc"},
		}
	case stat: // only "Agent up" so far: show 0 and 1 as DOWN and UP
		defaults["mappings"] = []any{map[string]any{
			"type": "value",
			"options": map[string]any{
				"0": map[string]any{"text": "DOWN", "color": "red", "index": 0},
				"1": map[string]any{"text": "UP", "color": "green", "index": 1},
			},
		}}
		m["options"] = map[string]any{
			"reduceOptions": map[string]any{"calcs": []string{"lastNotNull"}, "fields": "", "values": false},
			"colorMode":     "background",
			"graphMode":     "none",
			"textMode":      "value_and_name",
			"justifyMode":   "auto",
			"orientation":   "auto",
		}
	case table:
		m["options"] = map[string]any{"showHeader": true, "cellHeight": "sm"}
		m["transformations"] = []any{map[string]any{
			"id":      "organize",
			"options": map[string]any{"excludeByName": map[string]any{"Time": true, "Value": true}},
		}}
	default:
		panic(fmt.Sprintf("panel %q: unknown kind %q", p.title, p.kind))
	}
	m["fieldConfig"] = map[string]any{"defaults": defaults, "overrides": []any{}}
	return m
}
