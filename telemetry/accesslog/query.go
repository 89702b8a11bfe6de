package accesslog

import (
	"errors"
	"fmt"
	"strings"
	"time"
)

// Query bounds of a store query.
const (
	DefaultQueryLimit = 100
	MaxQueryLimit     = 10000
)

// Query selects entries. Every set field must match.
type Query struct {
	// Workload is "namespace/name" or "name" (any namespace); it matches
	// the source or the destination, by workload or by pod name.
	Workload string
	// TraceID is a trace id (32 hex digits, any case).
	TraceID string
	// Status is a status class, 1xx to 5xx, or "failed": 5xx or any
	// response flag (which includes failed TCP connections).
	Status string
	// Since and Until bound the start time; zero: unbounded.
	Since, Until time.Time
	// Limit is the most entries returned, the newest. Zero:
	// DefaultQueryLimit; at most MaxQueryLimit.
	Limit int
}

// Result is the answer to a query.
type Result struct {
	// Entries are the newest matches, oldest first.
	Entries []Entry
	// Truncated says that more entries matched than the limit.
	Truncated bool
	// Scanned counts the lines read; Corrupt those skipped because they
	// could not be decoded.
	Scanned, Corrupt int
}

// StatusFailed is the status "class" of failures.
const StatusFailed = "failed"

// Validate checks the query, naming the field that is wrong.
func (q *Query) Validate() error {
	var errs []error
	if q.Status != "" && q.Status != StatusFailed && statusClass(q.Status) == 0 {
		errs = append(errs, fmt.Errorf("status %q: want 1xx, 2xx, 3xx, 4xx, 5xx or failed", q.Status))
	}
	if q.TraceID != "" && !isHex(q.TraceID) {
		errs = append(errs, fmt.Errorf("trace id %q: want hex digits", q.TraceID))
	}
	if q.Limit < 0 || q.Limit > MaxQueryLimit {
		errs = append(errs, fmt.Errorf("limit %d: want 0 to %d", q.Limit, MaxQueryLimit))
	}
	if !q.Since.IsZero() && !q.Until.IsZero() && q.Until.Before(q.Since) {
		errs = append(errs, fmt.Errorf("until %s is before since %s", q.Until.Format(time.RFC3339), q.Since.Format(time.RFC3339)))
	}
	if ns, name, ok := strings.Cut(q.Workload, "/"); ok && (ns == "" || name == "" || strings.Contains(name, "/")) {
		errs = append(errs, fmt.Errorf("workload %q: want namespace/name or name", q.Workload))
	}
	return errors.Join(errs...)
}

func (q *Query) limit() int {
	if q.Limit == 0 {
		return DefaultQueryLimit
	}
	return q.Limit
}

// statusClass returns 1 to 5 for "1xx" to "5xx", else 0.
func statusClass(s string) int {
	s = strings.ToLower(s)
	if len(s) == 3 && s[0] >= '1' && s[0] <= '5' && s[1:] == "xx" {
		return int(s[0] - '0')
	}
	return 0
}

func isHex(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i] | 0x20
		if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f') {
			return false
		}
	}
	return s != ""
}

// Match says whether e matches the query (the limit aside).
func (q *Query) Match(e *Entry) bool {
	if !q.Since.IsZero() && e.Start.Before(q.Since) {
		return false
	}
	if !q.Until.IsZero() && e.Start.After(q.Until) {
		return false
	}
	if q.TraceID != "" && !strings.EqualFold(e.TraceID, q.TraceID) {
		return false
	}
	switch {
	case q.Status == "":
	case q.Status == StatusFailed:
		if !e.Failed() {
			return false
		}
	default:
		if e.ResponseCode/100 != statusClass(q.Status) {
			return false
		}
	}
	if q.Workload != "" {
		ns, name, ok := strings.Cut(q.Workload, "/")
		if !ok {
			ns, name = "", q.Workload
		}
		is := func(wns, workload, pod string) bool {
			return (ns == "" || wns == ns) && (workload == name || pod == name)
		}
		if !is(e.SourceNamespace, e.SourceWorkload, e.SourcePod) &&
			!is(e.DestinationNamespace, e.DestinationWorkload, e.DestinationPod) {
			return false
		}
	}
	return true
}
