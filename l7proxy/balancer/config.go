package balancer

import (
	"errors"
	"fmt"
	"math"
	"strings"
	"time"
)

// Policy names the algorithm that picks one endpoint among the selectable
// endpoints of a service port. The zero value is [P2CEWMA].
type Policy uint8

// Load-balancing policies.
const (
	// P2CEWMA is the default: power of two choices over the peak-EWMA
	// latency of each endpoint weighted by its requests in flight.
	P2CEWMA Policy = iota
	// RoundRobin cycles through the selectable endpoints in order.
	RoundRobin
	// Random picks a selectable endpoint uniformly at random.
	Random
)

// PolicyAnnotation is the Service annotation that selects the policy of all
// of the Service's ports; its values are the policies' String forms.
const PolicyAnnotation = "skein.io/lb-policy"

var policyNames = [...]string{P2CEWMA: "p2c-ewma", RoundRobin: "round-robin", Random: "random"}

// ErrUnknownPolicy is wrapped by [ParsePolicy] for a name that is not a
// policy.
var ErrUnknownPolicy = errors.New("unknown load-balancing policy")

// String returns the policy's annotation value, e.g. "round-robin".
func (p Policy) String() string {
	if int(p) < len(policyNames) {
		return policyNames[p]
	}
	return fmt.Sprintf("Policy(%d)", uint8(p))
}

// MarshalText encodes the policy as its annotation value.
func (p Policy) MarshalText() ([]byte, error) {
	if int(p) >= len(policyNames) {
		return nil, fmt.Errorf("marshal policy %d: %w", uint8(p), ErrUnknownPolicy)
	}
	return []byte(policyNames[p]), nil
}

// UnmarshalText decodes an annotation value with [ParsePolicy].
func (p *Policy) UnmarshalText(b []byte) error {
	v, err := ParsePolicy(string(b))
	if err != nil {
		return err
	}
	*p = v
	return nil
}

// ParsePolicy parses the value of the skein.io/lb-policy annotation:
// "p2c-ewma", "round-robin" or "random", ignoring case and surrounding
// space. The empty string is the default, [P2CEWMA]. Any other value is an
// error that wraps [ErrUnknownPolicy] and lists the valid values.
func ParsePolicy(s string) (Policy, error) {
	v := strings.ToLower(strings.TrimSpace(s))
	if v == "" {
		return P2CEWMA, nil
	}
	for p, name := range policyNames {
		if v == name {
			return Policy(p), nil
		}
	}
	return 0, fmt.Errorf("parse annotation %s value %q: %w: use %q, %q or %q",
		PolicyAnnotation, s, ErrUnknownPolicy, policyNames[P2CEWMA], policyNames[RoundRobin], policyNames[Random])
}

// Config configures the balancer of one service port. Every zero field
// means its documented default, so Config{} is the recommended setting.
type Config struct {
	// Policy picks among the selectable endpoints. Zero: P2CEWMA.
	Policy Policy
	// Outlier configures passive outlier detection (ejection of endpoints
	// that keep failing).
	Outlier OutlierConfig
	// Breaker configures the per-endpoint circuit breaker.
	Breaker BreakerConfig
	// DefaultRTT is the latency estimate a new endpoint starts from, so that
	// it gets traffic before it has been measured. Zero: 30ms, Linkerd's
	// value: above the few milliseconds of a warm in-cluster call, so a
	// new (maybe cold) pod is not flooded the instant it appears, yet low
	// enough that it wins as soon as the warm endpoints queue a few
	// requests, and it decays toward zero with Decay like any estimate.
	DefaultRTT time.Duration
	// Decay is the time constant of the latency EWMA: an observation's
	// weight falls by 1/e every Decay. Zero: 10s (Linkerd, Finagle). When
	// set, at least 1ms (the estimate's clock resolution).
	Decay time.Duration
}

// OutlierConfig configures passive outlier detection: an endpoint whose
// requests keep failing is ejected (not selectable) for a while. A zero
// field means its default; a negative threshold disables that detector.
type OutlierConfig struct {
	// Consecutive5xx is how many responses with a 5xx status (all of
	// them, as Envoy's consecutive_5xx) in a row eject an endpoint.
	// Zero: 5. Negative: never eject on 5xx.
	Consecutive5xx int
	// ConsecutiveConnectFailures is how many connect failures or timeouts
	// in a row eject an endpoint. Zero: 5. Negative: never eject on them.
	ConsecutiveConnectFailures int
	// BaseEjection is how long the first ejection lasts; the n-th ejection
	// lasts n * BaseEjection, up to MaxEjection. Every BaseEjection an
	// endpoint spends back in service forgives one past ejection. Zero: 30s
	// (Envoy).
	BaseEjection time.Duration
	// MaxEjection caps one ejection's length. Zero: 300s (Envoy's
	// max_ejection_time), or BaseEjection if that is longer.
	MaxEjection time.Duration
	// MaxEjectionPercent caps the share of a service port's endpoints that
	// may be ejected at once, rounded down, but at least one endpoint may
	// be ejected when there are two or more (as Envoy), and never all of
	// them. Zero: 50. Valid range 0..100.
	MaxEjectionPercent int
}

// BreakerConfig configures the circuit breaker of each endpoint. The limits
// are per endpoint, not per service as Envoy's: they stop one stuck endpoint
// from soaking up a service's requests rather than cap its capacity.
type BreakerConfig struct {
	// MaxPending is how many requests (or TCP connections) may be in flight
	// to one endpoint; an endpoint at the limit is not selectable, and Pick
	// fails with ErrOverflow when every endpoint is at it. Zero: 1024
	// (Envoy's max_requests default).
	MaxPending int
	// MaxConnections is how many upstream connections may be open to one
	// endpoint at once, enforced by [Handle.ReserveConn]. It does not make
	// an endpoint unselectable: an HTTP/2 request can reuse a connection.
	// Zero: 1024 (Envoy's max_connections default).
	MaxConnections int
}

// Defaults of Config; see the fields.
const (
	defaultRTT                = 30 * time.Millisecond
	defaultDecay              = 10 * time.Second
	defaultConsecutive5xx     = 5
	defaultConsecutiveConnect = 5
	defaultBaseEjection       = 30 * time.Second
	defaultMaxEjection        = 300 * time.Second
	defaultMaxEjectionPercent = 50
	defaultMaxPending         = 1024
	defaultMaxConnections     = 1024
)

// WithDefaults returns c with every zero field set to its default: the
// configuration a balancer built from c runs with. It does not validate.
func (c Config) WithDefaults() Config {
	if c.DefaultRTT == 0 {
		c.DefaultRTT = defaultRTT
	}
	if c.Decay == 0 {
		c.Decay = defaultDecay
	}
	o := &c.Outlier
	if o.Consecutive5xx == 0 {
		o.Consecutive5xx = defaultConsecutive5xx
	}
	if o.ConsecutiveConnectFailures == 0 {
		o.ConsecutiveConnectFailures = defaultConsecutiveConnect
	}
	if o.BaseEjection == 0 {
		o.BaseEjection = defaultBaseEjection
	}
	if o.MaxEjection == 0 {
		o.MaxEjection = max(defaultMaxEjection, o.BaseEjection)
	}
	if o.MaxEjectionPercent == 0 {
		o.MaxEjectionPercent = defaultMaxEjectionPercent
	}
	if c.Breaker.MaxPending == 0 {
		c.Breaker.MaxPending = defaultMaxPending
	}
	if c.Breaker.MaxConnections == 0 {
		c.Breaker.MaxConnections = defaultMaxConnections
	}
	return c
}

// validate reports every invalid field of c, joined.
func (c Config) validate() error {
	var errs []error
	bad := func(field string, v any, why string) {
		errs = append(errs, fmt.Errorf("%s %v: %s", field, v, why))
	}
	if int(c.Policy) >= len(policyNames) {
		bad("Policy", uint8(c.Policy), "unknown, use P2CEWMA, RoundRobin or Random")
	}
	if c.DefaultRTT < 0 {
		bad("DefaultRTT", c.DefaultRTT, "must not be negative")
	}
	if c.Decay < 0 || (c.Decay > 0 && c.Decay < time.Millisecond) {
		bad("Decay", c.Decay, "must be 0 (default) or at least 1ms")
	}
	o := c.Outlier
	if o.BaseEjection < 0 {
		bad("Outlier.BaseEjection", o.BaseEjection, "must not be negative")
	}
	if o.MaxEjection < 0 {
		bad("Outlier.MaxEjection", o.MaxEjection, "must not be negative")
	}
	if o.MaxEjection > 0 && o.BaseEjection > 0 && o.MaxEjection < o.BaseEjection {
		bad("Outlier.MaxEjection", o.MaxEjection, fmt.Sprintf("must not be below Outlier.BaseEjection %v", o.BaseEjection))
	}
	if o.MaxEjection > 0 && o.BaseEjection == 0 && o.MaxEjection < defaultBaseEjection {
		bad("Outlier.MaxEjection", o.MaxEjection, fmt.Sprintf("must not be below the default Outlier.BaseEjection %v", defaultBaseEjection))
	}
	if o.MaxEjectionPercent < 0 || o.MaxEjectionPercent > 100 {
		bad("Outlier.MaxEjectionPercent", o.MaxEjectionPercent, "must be between 0 and 100")
	}
	if c.Breaker.MaxPending < 0 || c.Breaker.MaxPending > math.MaxInt32 {
		bad("Breaker.MaxPending", c.Breaker.MaxPending, "must be between 0 (default) and 2^31-1")
	}
	if c.Breaker.MaxConnections < 0 || c.Breaker.MaxConnections > math.MaxInt32 {
		bad("Breaker.MaxConnections", c.Breaker.MaxConnections, "must be between 0 (default) and 2^31-1")
	}
	if len(errs) == 0 {
		return nil
	}
	return fmt.Errorf("validate balancer config: %w", errors.Join(errs...))
}

// settings is a validated Config in the form the hot path wants. A
// Balancer swaps its settings atomically on Reconfigure.
type settings struct {
	cfg        Config // with defaults
	selector   Selector
	invTau     float64 // EWMA ticks per Decay, inverted: exp(-ticks*invTau) is the decay
	defaultRTT float64 // ns
	maxPending int64
	maxConns   int64

	consec5xx     int64 // <= 0: disabled
	consecConnect int64 // <= 0: disabled
	baseEjection  int64 // ns
	maxEjection   int64 // ns
	maxTimes      int64 // backoff multiplier cap: ceil(maxEjection/baseEjection)
	ejectPercent  int
}

func newSettings(cfg Config) (*settings, error) {
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	cfg = cfg.WithDefaults()
	o := cfg.Outlier
	s := &settings{
		cfg:           cfg,
		invTau:        float64(tickNs) / float64(cfg.Decay),
		defaultRTT:    float64(cfg.DefaultRTT),
		maxPending:    int64(cfg.Breaker.MaxPending),
		maxConns:      int64(cfg.Breaker.MaxConnections),
		consec5xx:     int64(o.Consecutive5xx),
		consecConnect: int64(o.ConsecutiveConnectFailures),
		baseEjection:  int64(o.BaseEjection),
		maxEjection:   int64(o.MaxEjection),
		ejectPercent:  o.MaxEjectionPercent,
	}
	s.maxTimes = (s.maxEjection + s.baseEjection - 1) / s.baseEjection
	s.selector = cfg.Policy.Selector()
	return s, nil
}

// maxEjected is how many of n endpoints may be ejected at once:
// floor(n*percent/100), at least 1 when n >= 2, at most n-1.
func maxEjected(n, percent int) int {
	if n < 2 {
		return 0
	}
	m := n * percent / 100
	return min(max(m, 1), n-1)
}
