package route

import (
	"cmp"
	"fmt"
	"slices"
	"strings"
)

// Entry is one match of the effective route table of a Service port, in
// precedence order, for agentctl: the first entry whose match holds is the
// one a request takes.
type Entry struct {
	// Clients says who the entry applies to: "all" (producer routes) or
	// "namespace <ns>" (consumer routes of that namespace).
	Clients string `json:"clients"`
	// Match describes the conditions, e.g. `PathPrefix /api method=GET header[x-version]=v2`.
	Match string `json:"match"`
	// Rule is the route rule the entry comes from.
	Rule *Rule `json:"-"`
}

// Describe lists the entries of the routes attached to svc, in precedence
// order per client group (producer first). Nil when none are attached.
func (t *Table) Describe(svc ServiceRef) []Entry {
	if t == nil || t.ports[svc] == nil {
		return nil
	}
	pr := t.ports[svc]
	var out []Entry
	if pr.producer != nil {
		out = append(out, pr.producer.describe("all")...)
	}
	nss := make([]string, 0, len(pr.consumers))
	for ns := range pr.consumers {
		nss = append(nss, ns)
	}
	slices.Sort(nss)
	for _, ns := range nss {
		out = append(out, pr.consumers[ns].describe("namespace "+ns)...)
	}
	return out
}

func (rs *ruleSet) describe(clients string) []Entry {
	var entries []*entry
	if rs.kind == KindGRPCRoute {
		entries = rs.grpc
	} else {
		// Exact, then prefixes from the longest, then expressions: the
		// order Match searches in.
		for _, es := range rs.exact {
			entries = append(entries, es...)
		}
		var prefixes []*entry
		for _, es := range rs.prefix {
			prefixes = append(prefixes, es...)
		}
		slices.SortStableFunc(entries, compareHTTP)
		slices.SortStableFunc(prefixes, compareHTTP)
		entries = append(entries, prefixes...)
		entries = append(entries, rs.regex...)
	}
	out := make([]Entry, 0, len(entries))
	for _, e := range entries {
		out = append(out, Entry{Clients: clients, Match: e.String(), Rule: e.rule})
	}
	return out
}

// String describes a match's conditions.
func (e *entry) String() string {
	var parts []string
	if e.grpcService != nil || e.grpcMethod != nil || e.src.id.Kind == KindGRPCRoute {
		svc, meth := "*", "*"
		if e.grpcService != nil {
			svc = e.grpcService.String()
		}
		if e.grpcMethod != nil {
			meth = e.grpcMethod.String()
		}
		parts = append(parts, fmt.Sprintf("gRPC %s/%s", svc, meth))
	} else {
		switch e.kind {
		case pathExact:
			parts = append(parts, "Exact "+e.path)
		case pathPrefix:
			parts = append(parts, "PathPrefix "+e.path)
		case pathRegex:
			parts = append(parts, "RegularExpression "+e.path)
		}
	}
	if e.method != "" {
		parts = append(parts, "method="+e.method)
	}
	for _, h := range e.headers {
		name := strings.ToLower(h.key)
		if h.host {
			name = "host"
		}
		parts = append(parts, fmt.Sprintf("header[%s]%s", name, h.op()))
	}
	for _, q := range e.query {
		parts = append(parts, fmt.Sprintf("query[%s]%s", q.name, q.op()))
	}
	return strings.Join(parts, " ")
}

// String shows an Exact value as is and an expression as ~"expr".
func (m *stringMatch) String() string {
	if m.re != nil {
		// Compile wrapped the user's expression for a full match.
		expr := strings.TrimSuffix(strings.TrimPrefix(m.re.String(), "^(?:"), ")$")
		return fmt.Sprintf("~%q", expr)
	}
	return m.exact
}

// op shows the condition after a name: =value or ~"expr".
func (m *stringMatch) op() string {
	if m.re != nil {
		return m.String()
	}
	return "=" + m.exact
}

// BackendString describes a rule's backends with their weights.
func (r *Rule) BackendString() string {
	if len(r.Backends) == 0 {
		return "(none: 500)"
	}
	parts := make([]string, len(r.Backends))
	total := int32(0)
	for _, b := range r.Backends {
		total += b.Weight
	}
	for i, b := range r.Backends {
		s := b.Service.String()
		if len(r.Backends) > 1 || b.Weight != 1 {
			s += fmt.Sprintf(" w=%d", b.Weight)
		}
		if !b.Valid {
			s += " (invalid: " + cmp.Or(b.Reason, "unusable") + ")"
		}
		parts[i] = s
	}
	return strings.Join(parts, ", ")
}

// Filters describes a rule's filters, timeouts and retries in a few words.
func (r *Rule) Filters() string {
	var parts []string
	if r.Redirect != nil {
		parts = append(parts, fmt.Sprintf("redirect(%d)", r.Redirect.StatusCode))
	}
	if r.Rewrite != nil {
		parts = append(parts, "rewrite")
	}
	if r.RequestHeaders != nil {
		parts = append(parts, "request-headers")
	}
	if r.ResponseHeaders != nil {
		parts = append(parts, "response-headers")
	}
	for _, m := range r.Mirrors {
		parts = append(parts, fmt.Sprintf("mirror(%s %.0f%%)", m.Backend, m.Percent))
	}
	if r.Timeouts.Request > 0 {
		parts = append(parts, "timeout="+r.Timeouts.Request.String())
	}
	if r.Timeouts.BackendRequest > 0 {
		parts = append(parts, "backend-timeout="+r.Timeouts.BackendRequest.String())
	}
	if r.Retry != nil {
		parts = append(parts, fmt.Sprintf("retry(%d on %v)", r.Retry.Attempts, r.Retry.Codes))
	}
	return strings.Join(parts, " ")
}
