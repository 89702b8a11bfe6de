package accesslog

import (
	"errors"
	"fmt"
	"math"
	"strings"
)

// Redaction says how much of the request path an entry keeps.
type Redaction string

// Redactions of the path.
const (
	// RedactNone keeps the path as the proxy recorded it.
	RedactNone Redaction = "none"
	// RedactQuery drops the query string (tokens and personal data often
	// travel there).
	RedactQuery Redaction = "query"
	// RedactRoute replaces the path with the route rule that matched, or
	// leaves it out when none did: nothing the client chose is kept.
	RedactRoute Redaction = "route"
)

// FilterConfig chooses which records are logged. The zero value logs
// failures only (5xx and response flags).
type FilterConfig struct {
	// StatusClasses are HTTP status classes always logged, such as "4xx"
	// and "5xx". Failures (a 5xx, or any response flag, also for TCP) are
	// always logged whatever this says.
	StatusClasses []string
	// SampleRate is the share of the other records logged, 0 to 1. The
	// decision is a hash of the trace id (else the request id), so every
	// proxy hop of one request decides alike.
	SampleRate float64
	// SampledTraces logs every record whose trace is sampled for tracing,
	// so every trace in the tracing backend has its access-log lines.
	SampledTraces bool
	// Redaction of the path. Empty: RedactQuery.
	Redaction Redaction
}

// Filter decides which records are logged and redacts what they keep. It
// is immutable and safe for concurrent use.
type Filter struct {
	classes   [10]bool // by code / 100
	threshold uint64   // keep when hash < threshold
	all       bool     // SampleRate >= 1
	traces    bool
	redaction Redaction
}

// NewFilter validates cfg and returns its filter.
func NewFilter(cfg FilterConfig) (*Filter, error) {
	var errs []error
	f := &Filter{traces: cfg.SampledTraces, redaction: cfg.Redaction}
	for _, c := range cfg.StatusClasses {
		c = strings.ToLower(strings.TrimSpace(c))
		if len(c) != 3 || c[0] < '1' || c[0] > '5' || c[1:] != "xx" {
			errs = append(errs, fmt.Errorf("status class %q: want 1xx, 2xx, 3xx, 4xx or 5xx", c))
			continue
		}
		f.classes[c[0]-'0'] = true
	}
	switch r := cfg.SampleRate; {
	case math.IsNaN(r) || r < 0 || r > 1:
		errs = append(errs, fmt.Errorf("sample rate %v: want a share from 0 to 1", r))
	case r == 1:
		f.all = true
	default:
		f.threshold = uint64(r * math.MaxUint64)
	}
	switch f.redaction {
	case "":
		f.redaction = RedactQuery
	case RedactNone, RedactQuery, RedactRoute:
	default:
		errs = append(errs, fmt.Errorf("path redaction %q: want none, query or route", f.redaction))
	}
	if err := errors.Join(errs...); err != nil {
		return nil, fmt.Errorf("access log filter: %w", err)
	}
	return f, nil
}

// Keep says whether a record is logged. code is the HTTP status (0 for
// TCP), flagged whether it carries a response flag, sampled whether its
// trace is sampled, and key the trace id, else the request id, else empty
// (which samples nothing but failures and classes, unless the rate is 1).
// It never allocates.
func (f *Filter) Keep(code int, flagged, sampled bool, key string) bool {
	switch {
	case code >= 500 || flagged:
		return true
	case code > 0 && code < 600 && f.classes[code/100]:
		return true
	case f.all:
		return true
	case sampled && f.traces:
		return true
	case key == "" || f.threshold == 0:
		return false
	}
	return hashKey(key) < f.threshold
}

// hashKey is FNV-1a with a final avalanche (splitmix64's), so that the
// high bits, which the threshold compares, depend on every byte.
func hashKey(key string) uint64 {
	h := uint64(14695981039346656037)
	for i := 0; i < len(key); i++ {
		h ^= uint64(key[i])
		h *= 1099511628211
	}
	h ^= h >> 30
	h *= 0xbf58476d1ce4e5b9
	h ^= h >> 27
	h *= 0x94d049bb133111eb
	h ^= h >> 31
	return h
}

// Redact applies the configured redaction to a path; route is the route
// rule that matched, empty for none.
func (f *Filter) Redact(path, route string) string {
	switch f.redaction {
	case RedactNone:
		return path
	case RedactRoute:
		return route
	}
	if i := strings.IndexByte(path, '?'); i >= 0 {
		return path[:i]
	}
	return path
}
