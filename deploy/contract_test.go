package deploy

import (
	"fmt"
	"slices"
	"strings"
	"unicode"
)

// The telemetry contract (DESIGN.md, "Telemetry contracts"): every metric the
// dashboards and rules may use, with its type and labels. A query that names
// anything else is a typo or a metric the exporter does not have.

type metricKind int

const (
	counter metricKind = iota
	gauge
	histogram
)

type metricSpec struct {
	kind   metricKind
	labels []string
}

// scrapeLabels are added to every series by the scrape: job and instance by
// Prometheus, node by a relabel rule.
var scrapeLabels = []string{"job", "instance", "node"}

var (
	l7Labels = []string{
		"reporter", "source_workload", "source_namespace", "source_principal",
		"destination_service", "destination_workload", "destination_namespace",
		"request_protocol", "response_code", "grpc_status", "response_flags", "connection_security_policy",
	}
	l7HistogramLabels = slices.DeleteFunc(slices.Clone(l7Labels), func(l string) bool { return l == "response_flags" })
	l4Labels          = []string{
		"reporter", "source_workload", "source_namespace",
		"destination_workload", "destination_namespace", "destination_service", "connection_security_policy",
	}
)

var contract = map[string]metricSpec{
	"skein_requests_total":               {counter, l7Labels},
	"skein_request_duration_seconds":     {histogram, l7HistogramLabels},
	"skein_request_bytes":                {histogram, l7HistogramLabels},
	"skein_response_bytes":               {histogram, l7HistogramLabels},
	"skein_tcp_connections_opened_total": {counter, l4Labels},
	"skein_tcp_connections_closed_total": {counter, l4Labels},
	"skein_tcp_connections_failed_total": {counter, l4Labels},
	"skein_tcp_sent_bytes_total":         {counter, l4Labels},
	"skein_tcp_received_bytes_total":     {counter, l4Labels},
	"skein_tcp_rtt_seconds":              {histogram, l4Labels},
	"skein_tcp_connect_duration_seconds": {histogram, l4Labels},
	"skein_tcp_retransmits_total":        {counter, l4Labels},
	"skein_tcp_resets_total":             {counter, append(slices.Clone(l4Labels), "direction")},

	"skein_build_info":                           {gauge, []string{"version", "commit", "go_version"}},
	"skein_bpf_map_entries":                      {gauge, []string{"map"}},
	"skein_bpf_map_max_entries":                  {gauge, []string{"map"}},
	"skein_bpf_map_lost_entries_total":           {counter, []string{"map", "reason"}},
	"skein_ringbuf_lost_events_total":            {counter, nil},
	"skein_config_generation":                    {gauge, nil},
	"skein_config_rejected_objects":              {gauge, nil},
	"skein_config_updates_total":                 {counter, []string{"result"}},
	"skein_config_applied_timestamp_seconds":     {gauge, nil},
	"skein_certificate_expiry_timestamp_seconds": {gauge, []string{"identity"}},
	"skein_capture_connects_total":               {counter, []string{"verdict"}},
	"skein_strict_drops_total":                   {counter, nil},
	"skein_authz_decisions_total":                {counter, []string{"action"}},
	"skein_trace_spans_dropped_total":            {counter, nil},
	"up":                                         {gauge, nil},
}

// series resolves a series name to its contract metric and labels: a
// histogram is only queried through its _bucket, _sum and _count series.
func series(name string) (base string, labels []string, ok bool) {
	if spec, found := contract[name]; found && spec.kind != histogram {
		return name, append(slices.Clone(spec.labels), scrapeLabels...), true
	}
	for _, suffix := range []string{"_bucket", "_sum", "_count"} {
		b, cut := strings.CutSuffix(name, suffix)
		if spec, found := contract[b]; cut && found && spec.kind == histogram {
			labels := append(slices.Clone(spec.labels), scrapeLabels...)
			if suffix == "_bucket" {
				labels = append(labels, "le")
			}
			return b, labels, true
		}
	}
	return "", nil, false
}

// selectorRef is one series selector of an expression: name{label op "v", ...}.
type selectorRef struct {
	name     string
	matchers []string // label names
}

// promqlRefs is what an expression names: its selectors, and the labels of its
// by, without, on, ignoring, group_left and group_right clauses.
type promqlRefs struct {
	selectors []selectorRef
	grouping  []string
}

var (
	promqlAggregations = map[string]bool{
		"sum": true, "min": true, "max": true, "avg": true, "group": true, "stddev": true, "stdvar": true,
		"count": true, "count_values": true, "bottomk": true, "topk": true, "quantile": true,
	}
	promqlGrouping = map[string]bool{"by": true, "without": true, "on": true, "ignoring": true, "group_left": true, "group_right": true}
	promqlKeywords = map[string]bool{"and": true, "or": true, "unless": true, "bool": true, "offset": true, "atan2": true, "Inf": true, "NaN": true, "inf": true, "nan": true}
)

type token struct {
	kind byte // 'i' identifier, 's' string, 'n' number or duration, 'p' punctuation
	text string
}

func lexPromQL(expr string) ([]token, error) {
	var toks []token
	r := []rune(expr)
	for i := 0; i < len(r); {
		c := r[i]
		switch {
		case unicode.IsSpace(c):
			i++
		case c == '"' || c == '\'' || c == '`':
			j := i + 1
			for ; j < len(r) && r[j] != c; j++ {
				if r[j] == '\\' && c != '`' {
					j++
				}
			}
			if j >= len(r) {
				return nil, fmt.Errorf("unterminated string at %d in %q", i, expr)
			}
			toks = append(toks, token{'s', string(r[i+1 : j])})
			i = j + 1
		case c == '_' || c == ':' || unicode.IsLetter(c):
			j := i
			for j < len(r) && (r[j] == '_' || r[j] == ':' || unicode.IsLetter(r[j]) || unicode.IsDigit(r[j])) {
				j++
			}
			toks = append(toks, token{'i', string(r[i:j])})
			i = j
		case unicode.IsDigit(c) || c == '.':
			j := i
			for j < len(r) && (r[j] == '.' || unicode.IsLetter(r[j]) || unicode.IsDigit(r[j])) {
				j++
			}
			toks = append(toks, token{'n', string(r[i:j])})
			i = j
		case c == '$':
			return nil, fmt.Errorf("unsubstituted variable at %d in %q", i, expr)
		default:
			toks = append(toks, token{'p', string(c)})
			i++
		}
	}
	return toks, nil
}

// scanPromQL finds the selectors and grouping labels of an expression. It is
// not a parser (promtool parses every expression in the tests); it only has to
// find names reliably in expressions that parse.
func scanPromQL(expr string) (promqlRefs, error) {
	toks, err := lexPromQL(expr)
	if err != nil {
		return promqlRefs{}, err
	}
	var refs promqlRefs
	next := func(i int) token {
		if i+1 < len(toks) {
			return toks[i+1]
		}
		return token{}
	}
	for i := 0; i < len(toks); i++ {
		tk := toks[i]
		switch {
		case tk.kind == 'p' && tk.text == "[": // range or subquery duration
			for i < len(toks) && toks[i].text != "]" {
				i++
			}
		case tk.kind == 'p' && tk.text == "{":
			return refs, fmt.Errorf("selector without a metric name in %q", expr)
		case tk.kind != 'i':
		case promqlGrouping[tk.text]:
			if next(i).text != "(" {
				continue // group_left without labels
			}
			for i += 2; i < len(toks) && toks[i].text != ")"; i++ {
				if toks[i].kind == 'i' {
					refs.grouping = append(refs.grouping, toks[i].text)
				}
			}
		case promqlKeywords[tk.text], promqlAggregations[tk.text], next(i).text == "(":
			// operator, aggregation or function
		default:
			sel := selectorRef{name: tk.text}
			if next(i).text == "{" {
				for i += 2; i < len(toks) && toks[i].text != "}"; i++ {
					if toks[i].kind == 'i' {
						sel.matchers = append(sel.matchers, toks[i].text)
					}
				}
			}
			refs.selectors = append(refs.selectors, sel)
		}
	}
	return refs, nil
}

// checkContract reports every name in expr outside the contract: unknown
// series, labels a selector's metric does not have, and grouping labels that
// no metric of the expression has. Series named in recorded (recording rules
// of the same file) are accepted as they are. It returns the union of the
// labels the expression's series can carry.
func checkContract(expr string, recorded map[string]bool) (labels map[string]bool, problems []string) {
	refs, err := scanPromQL(expr)
	if err != nil {
		return nil, []string{err.Error()}
	}
	labels = map[string]bool{}
	anyRecorded := false
	for _, s := range refs.selectors {
		if recorded[s.name] {
			anyRecorded = true
			continue
		}
		_, ls, ok := series(s.name)
		if !ok {
			problems = append(problems, fmt.Sprintf("metric %s is not in the telemetry contract", s.name))
			continue
		}
		for _, m := range s.matchers {
			if !slices.Contains(ls, m) {
				problems = append(problems, fmt.Sprintf("%s has no label %s", s.name, m))
			}
		}
		for _, l := range ls {
			labels[l] = true
		}
	}
	if len(refs.selectors) == 0 {
		problems = append(problems, "expression reads no metric")
	}
	if !anyRecorded {
		for _, g := range refs.grouping {
			if !labels[g] {
				problems = append(problems, fmt.Sprintf("grouping label %s is on none of the expression's metrics", g))
			}
		}
	}
	return labels, problems
}
