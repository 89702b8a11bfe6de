package balancer

import (
	"math"
	"net/netip"
	"sync/atomic"
	"time"
)

// Addr is an endpoint's identity as the balancer sees it: pod IP and port.
type Addr = netip.AddrPort

// The latency estimate's clock counts ticks of 2^tickShift ns (about 1ms),
// so that an estimate and its timestamp pack into one 64-bit word and are
// updated together by a single compare-and-swap, without a lock.
const (
	tickShift = 20
	tickNs    = 1 << tickShift
)

// tickOf converts nanoseconds on the balancer clock to EWMA ticks. The
// uint32 wraps after about 52 days; elapsed ticks are computed as a signed
// 32-bit difference, so an endpoint that went more than 26 days without a
// single completed request may briefly show a stale estimate until its next
// response (harmless: its next observation replaces it).
func tickOf(ns int64) uint32 { return uint32(ns >> tickShift) }

func packEWMA(est float64, tick uint32) uint64 {
	return uint64(math.Float32bits(float32(est)))<<32 | uint64(tick)
}

func unpackEWMA(w uint64) (est float64, tick uint32) {
	return float64(math.Float32frombits(uint32(w >> 32))), uint32(w)
}

// decayWeight is exp(-elapsed/Decay) for elapsed ticks from `from` to `to`;
// 1 when no tick (or a negative number of ticks) has passed.
func decayWeight(from, to uint32, invTau float64) float64 {
	el := int32(to - from)
	if el <= 0 {
		return 1
	}
	return math.Exp(-float64(el) * invTau)
}

// endpoint is the state of one endpoint, shared by every request of its
// service port on the node. All fields are atomics so the hot path needs
// no lock; an endpoint must not be copied (vet's copylocks checks it).
type endpoint struct {
	addr Addr

	// ewma packs the peak-EWMA latency estimate in ns (float32, high
	// half) and the tick it was last updated (low half).
	ewma atomic.Uint64
	// tried is set by the first result; a first successful answer
	// replaces the starting estimate.
	tried    atomic.Bool
	inflight atomic.Int64
	conns    atomic.Int64
	requests atomic.Uint64
	failures atomic.Uint64

	consec5xx     atomic.Int64
	consecConnect atomic.Int64
	// ejectedUntil is the balancer-clock ns the current or last ejection
	// ends; the endpoint is ejected while it is after now. 0: never ejected.
	ejectedUntil atomic.Int64
	// unreachableUntil is the balancer-clock ns until which the endpoint
	// is left alone after its connect failed (see connectBackoff).
	unreachableUntil atomic.Int64
	// ejections is the backoff multiplier (written under Balancer.mu).
	ejections      atomic.Int64
	ejectionsTotal atomic.Uint64
}

// available reports whether e is neither ejected nor backing off from a
// failed connect at now.
func (e *endpoint) available(now int64) bool {
	return e.ejectedUntil.Load() <= now && e.unreachableUntil.Load() <= now
}

func newEndpoint(a Addr, rtt float64, now int64) *endpoint {
	e := &endpoint{addr: a}
	e.ewma.Store(packEWMA(rtt, tickOf(now)))
	return e
}

// estimate returns the latency estimate in ns at tick, decayed toward zero
// since its last update. Reading never writes, so the estimate does not
// depend on how often the balancer looks at it.
func (e *endpoint) estimate(tick uint32, invTau float64) float64 {
	est, at := unpackEWMA(e.ewma.Load())
	return est * decayWeight(at, tick, invTau)
}

// cost is P2C's load metric: the estimate times the requests in flight if
// this one were added. The 1ns floor keeps in-flight counts comparable
// after an idle estimate has decayed to zero.
//
// An endpoint that has not answered yet (new, or back from an ejection) is
// costed at no more than untried, the balancer-wide estimate of its peers'
// latency: its own starting guess would otherwise make P2C shun it while
// its peers are idle, until the guess decays.
func (e *endpoint) cost(tick uint32, invTau, untried float64) float64 {
	est := e.estimate(tick, invTau)
	if !e.tried.Load() {
		est = min(est, untried)
	}
	return (est + 1) * float64(e.inflight.Load()+1)
}

// observe feeds one request's latency (ns) into the peak-EWMA estimate:
// a latency above the decayed estimate replaces it at once (the "peak");
// a lower one is blended in with weight 1-exp(-elapsed/Decay), elapsed
// being the time since the last update (a time-weighted EWMA for unevenly
// spaced samples). A failed request may raise the estimate but never lower
// it: a refusing endpoint answers fastest, and must not attract traffic
// for it.
func (e *endpoint) observe(rtt float64, tick uint32, invTau float64, failed bool) {
	for {
		old := e.ewma.Load()
		est, at := unpackEWMA(old)
		w := decayWeight(at, tick, invTau)
		cur := est * w
		var next float64
		switch {
		case rtt > cur:
			next = rtt
		case failed:
			return
		default:
			next = cur + rtt*(1-w)
		}
		if int32(tick-at) < 0 {
			tick = at // never move the stamp backwards
		}
		nw := packEWMA(next, tick)
		if nw == old || e.ewma.CompareAndSwap(old, nw) {
			return
		}
	}
}

// EndpointStatus is a point-in-time view of one endpoint, for agentctl and
// metrics.
type EndpointStatus struct {
	// Addr is the endpoint's address.
	Addr Addr `json:"addr"`
	// Ejected says whether outlier detection has taken the endpoint out of
	// rotation now, and EjectedUntil when it returns (zero if not ejected).
	Ejected      bool      `json:"ejected"`
	EjectedUntil time.Time `json:"ejected_until,omitzero"`
	// Ejections is the backoff multiplier: the next ejection lasts
	// (Ejections+1) * BaseEjection, minus what time in service forgave.
	Ejections int `json:"ejections"`
	// EjectionsTotal counts every ejection of the endpoint.
	EjectionsTotal uint64 `json:"ejections_total"`
	// UnreachableUntil, when set, is when the endpoint, whose last
	// connects failed, is next tried (zero: not backing off).
	UnreachableUntil time.Time `json:"unreachable_until,omitzero"`
	// Consecutive5xx and ConsecutiveConnectFailures are the failures in a
	// row that outlier detection has counted so far.
	Consecutive5xx             int `json:"consecutive_5xx"`
	ConsecutiveConnectFailures int `json:"consecutive_connect_failures"`
	// InFlight is the number of picks not yet Done.
	InFlight int `json:"in_flight"`
	// Connections is the number of reserved connection slots.
	Connections int `json:"connections"`
	// EWMA is the current peak-EWMA latency estimate.
	EWMA time.Duration `json:"ewma"`
	// Requests counts finished requests, Failures those that were a 5xx,
	// a connect failure or a timeout.
	Requests uint64 `json:"requests"`
	Failures uint64 `json:"failures"`
}

func (e *endpoint) status(epoch time.Time, now int64, invTau float64) EndpointStatus {
	s := EndpointStatus{
		Addr:                       e.addr,
		Ejections:                  int(e.ejections.Load()),
		EjectionsTotal:             e.ejectionsTotal.Load(),
		Consecutive5xx:             int(e.consec5xx.Load()),
		ConsecutiveConnectFailures: int(e.consecConnect.Load()),
		InFlight:                   int(e.inflight.Load()),
		Connections:                int(e.conns.Load()),
		EWMA:                       time.Duration(e.estimate(tickOf(now), invTau)),
		Requests:                   e.requests.Load(),
		Failures:                   e.failures.Load(),
	}
	if until := e.ejectedUntil.Load(); until > now {
		s.Ejected = true
		s.EjectedUntil = epoch.Add(time.Duration(until))
	}
	if until := e.unreachableUntil.Load(); until > now {
		s.UnreachableUntil = epoch.Add(time.Duration(until))
	}
	return s
}
