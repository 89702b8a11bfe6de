package main

import (
	"fmt"
	"strings"
)

// sel is the inside of a PromQL label selector: `node=~"$node", reporter="source"`.
type sel string

// and returns the selector with more matchers.
func (s sel) and(matchers ...string) sel {
	all := append([]string{string(s)}, matchers...)
	if s == "" {
		all = all[1:]
	}
	return sel(strings.Join(all, ", "))
}

// rate is the per-second rate of a counter over Grafana's rate interval.
func rate(metric string, s sel) string {
	return fmt.Sprintf("rate(%s{%s}[$__rate_interval])", metric, s)
}

// increase is a counter's increase over Grafana's rate interval.
func increase(metric string, s sel) string {
	return fmt.Sprintf("increase(%s{%s}[$__rate_interval])", metric, s)
}

// sum aggregates by the given labels ("" for one series).
func sum(by, expr string) string {
	if by == "" {
		return "sum(" + expr + ")"
	}
	return "sum by (" + by + ") (" + expr + ")"
}

// orZero shows 0 instead of "No data" when a counter vector has no children yet
// (no resets, no flagged responses): the panel stays readable and the
// end-to-end test can require every query to return data.
func orZero(expr string) string {
	return expr + " or on() vector(0)"
}

// ratio is the share num/den per group; groups where num has no series show 0.
func ratio(by, num, den string) string {
	return fmt.Sprintf("(%s or %s * 0) / %s", sum(by, num), sum(by, den), sum(by, den))
}

// failureRatio is failed / (failed + opened) TCP connects per group. It stays
// within [0, 1] whether or not the exporter counts failed connects as opened
// too, and shows 0 (not "No data") for groups without failures and 1 for
// groups where every connect failed.
func failureRatio(by string, s sel) string {
	failed := rate("skein_tcp_connections_failed_total", s)
	opened := rate("skein_tcp_connections_opened_total", s)
	f := fmt.Sprintf("(%s or %s * 0)", sum(by, failed), sum(by, opened))
	o := fmt.Sprintf("(%s or %s * 0)", sum(by, opened), sum(by, failed))
	return fmt.Sprintf("%s / (%s + %s)", f, f, o)
}

// quantile is histogram_quantile over a histogram's bucket rates.
func quantile(q, histogram string, s sel, by string) string {
	le := "le"
	if by != "" {
		le += ", " + by
	}
	return fmt.Sprintf("histogram_quantile(%s, %s)", q, sum(le, rate(histogram+"_bucket", s)))
}

// quantiles is one target per quantile, each legend prefixed with it (p50 ...).
func quantiles(histogram string, s sel, by, legend string, qs ...string) []target {
	if len(qs) == 0 {
		qs = []string{"0.5", "0.95", "0.99"}
	}
	var ts []target
	for _, q := range qs {
		name := "p" + strings.TrimPrefix(q, "0.")
		if len(name) == 2 { // 0.5 -> p50
			name += "0"
		}
		ts = append(ts, target{expr: quantile(q, histogram, s, by), legend: strings.TrimSpace(name + " " + legend)})
	}
	return ts
}

// t is a range query target.
func t(expr, legend string) target { return target{expr: expr, legend: legend} }

// Label groupings and their legends, shared by both dashboards.
const (
	bySource      = "source_namespace, source_workload"
	byDestination = "destination_namespace, destination_workload"
	byPair        = bySource + ", " + byDestination

	legendSource      = "{{source_namespace}}/{{source_workload}}"
	legendDestination = "{{destination_namespace}}/{{destination_workload}}"
	legendPair        = legendSource + " → " + legendDestination
)
