package balancer

import (
	"errors"
	"sync"
	"sync/atomic"
	"time"
)

// Expected outcomes of Pick and ReserveConn, checked with errors.Is.
var (
	// ErrNoEndpoints means the service port has no endpoints (the proxy
	// answers 503 with response flag UH).
	ErrNoEndpoints = errors.New("no endpoints")
	// ErrOverflow means every selectable endpoint is at its circuit-breaker
	// limit, or, from ReserveConn, that the endpoint has MaxConnections
	// open (the proxy answers 503 with response flag UO).
	ErrOverflow = errors.New("every endpoint at its circuit-breaker limit")
)

// pickAttempts bounds how often Pick selects again when a concurrent pick
// took the chosen endpoint's last circuit-breaker slot.
const pickAttempts = 3

// Balancer picks endpoints for one service port. Its endpoint set changes
// with Update while per-endpoint state (latency estimate, requests in
// flight, outlier state) survives for the endpoints that stay. It is safe
// for concurrent use; Pick and Done take no lock and do not allocate.
type Balancer struct {
	now   func() time.Time
	epoch time.Time

	st  atomic.Pointer[settings]
	set atomic.Pointer[endpointSet]

	// mu serializes writers: Update, Reconfigure and ejection decisions
	// (which must count the ejected endpoints consistently). Readers never
	// take it.
	mu sync.Mutex

	handles sync.Pool // of *Handle

	// peer is the balancer-wide latency estimate over every endpoint's
	// answers: what an endpoint that has not answered yet is costed at.
	peer endpoint
}

// endpointSet is an immutable endpoint list, replaced whole by Update.
type endpointSet struct {
	eps   []*endpoint
	index map[Addr]int // position in eps
}

// New returns a balancer with no endpoints, configured by cfg, which is
// validated (every problem reported, joined). now is the clock, nil for
// time.Now; tests inject a fake one.
func New(cfg Config, now func() time.Time) (*Balancer, error) {
	st, err := newSettings(cfg)
	if err != nil {
		return nil, err
	}
	if now == nil {
		now = time.Now
	}
	b := &Balancer{now: now, epoch: now()}
	b.peer.ewma.Store(packEWMA(float64(st.defaultRTT), 0))
	b.handles.New = func() any { return new(Handle) }
	b.st.Store(st)
	b.set.Store(&endpointSet{})
	return b, nil
}

// nowNs is the time on the balancer clock: ns since the balancer was made.
func (b *Balancer) nowNs() int64 {
	return max(int64(b.now().Sub(b.epoch)), 0)
}

// Config returns the configuration in force, with defaults filled in.
func (b *Balancer) Config() Config { return b.st.Load().cfg }

// Reconfigure replaces the configuration in place, keeping every endpoint's
// state (and a round-robin cursor if the policy stays). A new DefaultRTT
// applies to endpoints added from now on. On an invalid cfg the balancer
// keeps its configuration and Reconfigure returns the validation error.
func (b *Balancer) Reconfigure(cfg Config) error {
	if cfg.WithDefaults() == b.st.Load().cfg {
		return nil // unchanged, and so valid: the common case
	}
	st, err := newSettings(cfg)
	if err != nil {
		return err
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	old := b.st.Load()
	if old.cfg == st.cfg {
		return nil
	}
	if old.cfg.Policy == st.cfg.Policy {
		st.selector = old.selector
	}
	b.st.Store(st)
	return nil
}

// Update replaces the endpoint set with endpoints, in their order (which
// round robin follows), without duplicates or invalid addresses. Endpoints
// that stay keep their state; new ones start from DefaultRTT; removed ones
// are never picked again, but their outstanding Handles stay valid. An
// address that is removed and later added again starts afresh.
func (b *Balancer) Update(endpoints []Addr) {
	if b.set.Load().equal(endpoints) {
		return // the common case: a table swap that did not touch this port
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	old := b.set.Load()
	if old.equal(endpoints) {
		return
	}
	st := b.st.Load()
	now := b.nowNs()
	next := &endpointSet{
		eps:   make([]*endpoint, 0, len(endpoints)),
		index: make(map[Addr]int, len(endpoints)),
	}
	for _, a := range endpoints {
		if !a.IsValid() {
			continue
		}
		if _, dup := next.index[a]; dup {
			continue
		}
		var e *endpoint
		if i, ok := old.index[a]; ok {
			e = old.eps[i]
		} else {
			e = newEndpoint(a, st.defaultRTT, now)
		}
		next.index[a] = len(next.eps)
		next.eps = append(next.eps, e)
	}
	b.set.Store(next)
}

// equal reports whether s is what Update(addrs) would make of it: addrs
// in order without invalid and repeated addresses. It does not allocate.
func (s *endpointSet) equal(addrs []Addr) bool {
	j := 0
	for _, a := range addrs {
		if !a.IsValid() {
			continue
		}
		if j < len(s.eps) && s.eps[j].addr == a {
			j++
			continue
		}
		if k, ok := s.index[a]; ok && k < j {
			continue // a repeat of an address already matched
		}
		return false
	}
	return j == len(s.eps)
}

// Endpoints returns the status of every endpoint in the current set, in
// set order.
func (b *Balancer) Endpoints() []EndpointStatus {
	set := b.set.Load()
	st := b.st.Load()
	now := b.nowNs()
	out := make([]EndpointStatus, 0, len(set.eps))
	for _, e := range set.eps {
		out = append(out, e.status(b.epoch, now, st.invTau))
	}
	return out
}

// Pick chooses an endpoint for one request (or TCP connection) with the
// configured policy, skipping ejected endpoints (unless all are ejected)
// and endpoints at their MaxPending limit. It returns ErrNoEndpoints when
// the set is empty and ErrOverflow when no endpoint has room. The caller
// must call Done on the returned Handle exactly once.
func (b *Balancer) Pick() (*Handle, error) { return b.pick(nil) }

// PickAvoiding is Pick for a retry: it does not go back to the endpoints
// the request already tried (Envoy's previous_hosts retry predicate, which
// Istio sets by default) unless no other endpoint is selectable. Without
// it, P2C would send the retry of a fast-failing endpoint straight back to
// it: failing fast keeps its latency estimate low.
func (b *Balancer) PickAvoiding(tried []Addr) (*Handle, error) { return b.pick(tried) }

func (b *Balancer) pick(avoid []Addr) (*Handle, error) {
	set := b.set.Load()
	if len(set.eps) == 0 {
		return nil, ErrNoEndpoints
	}
	st := b.st.Load()
	now := b.nowNs()
	tick := tickOf(now)
	c := Candidates{eps: set.eps, now: now, tick: tick, invTau: st.invTau, maxPending: st.maxPending,
		untried: b.peer.estimate(tick, st.invTau), avoid: avoid}
	for range pickAttempts {
		i := st.selector.Select(c)
		if uint(i) >= uint(len(set.eps)) {
			if c.avoid != nil {
				// Only endpoints already tried are left: try one again.
				c.avoid, c.mode = nil, 0
				continue
			}
			break
		}
		e := set.eps[i]
		// Take the slot, and give it back if a concurrent pick got the
		// last one first: the limit is never exceeded.
		if e.inflight.Add(1) <= st.maxPending {
			return b.lease(e, now), nil
		}
		e.inflight.Add(-1)
	}
	return nil, ErrOverflow
}

// lease wraps a taken in-flight slot of e in a Handle.
func (b *Balancer) lease(e *endpoint, now int64) *Handle {
	h := b.handles.Get().(*Handle)
	h.b, h.ep, h.start = b, e, now
	return h
}

// Handle is one request's lease on an endpoint, from Pick to Done. Handles
// are recycled: after Done the Handle belongs to the balancer again and
// must not be used.
type Handle struct {
	b     *Balancer
	ep    *endpoint
	start int64 // balancer-clock ns of the Pick
}

// Addr returns the endpoint to send the request to.
func (h *Handle) Addr() Addr { return h.ep.addr }

// Result is the outcome of one request, given to Done.
type Result struct {
	// Status is the HTTP response status, 0 for TCP. All 5xx count as
	// failures for outlier detection (Envoy's consecutive_5xx); for gRPC,
	// map an error grpc-status onto its HTTP equivalent (UNAVAILABLE 503,
	// DEADLINE_EXCEEDED 504, INTERNAL and UNKNOWN 500).
	Status int
	// ConnectFailed says the connection to the endpoint could not be made.
	ConnectFailed bool
	// TimedOut says the endpoint did not answer in time.
	TimedOut bool
	// Latency overrides the latency recorded into the EWMA, which is
	// otherwise the time since Pick. Set it to the time to response headers
	// for streams, and to the connect time for TCP, so that a long-lived
	// stream is not mistaken for a slow endpoint.
	Latency time.Duration
}

func (r Result) failed() bool {
	return r.ConnectFailed || r.TimedOut || r.Status >= 500 && r.Status < 600
}

// Done ends the lease: it records the request's latency into the
// endpoint's EWMA (never lowering it on a failure), releases its in-flight
// slot and feeds outlier detection. Call it exactly once per Pick; it also
// works after the endpoint was removed by Update.
func (h *Handle) Done(r Result) {
	e, b := h.ep, h.b
	if e == nil {
		return // a second Done on a Handle not yet reused
	}
	h.ep, h.b = nil, nil
	st := b.st.Load()
	now := b.nowNs()
	lat := int64(r.Latency)
	if lat <= 0 {
		lat = max(now-h.start, 0)
	}
	failed := r.failed()
	// Results that arrive while the endpoint is ejected (requests sent
	// before) leave it untried, so it comes back costed like a new one; so
	// does a failed connect (a pod listed before it listens), which the
	// connect backoff handles: counting it as tried would leave the
	// starting guess in place for a Decay period and P2C would shun the
	// endpoint once it serves.
	first := !r.ConnectFailed && !e.tried.Load() && e.ejectedUntil.Load() <= now && e.tried.CompareAndSwap(false, true)
	if first && !failed {
		// The first answer replaces the starting estimate outright: it
		// was a guess, and blending would keep it for a Decay period.
		e.ewma.Store(packEWMA(float64(lat), tickOf(now)))
	} else {
		e.observe(float64(lat), tickOf(now), st.invTau, failed)
	}
	if !failed {
		if !b.peer.tried.Load() && b.peer.tried.CompareAndSwap(false, true) {
			b.peer.ewma.Store(packEWMA(float64(lat), tickOf(now)))
		} else {
			b.peer.observe(float64(lat), tickOf(now), st.invTau, false)
		}
	}
	e.inflight.Add(-1)
	e.requests.Add(1)
	if failed {
		e.failures.Add(1)
	}
	b.detect(e, r, now, st)
	b.handles.Put(h)
}

// detect is passive outlier detection: it counts consecutive failures of
// e and ejects it at each multiple of a threshold. Results that arrive
// while e is ejected (requests sent before) do not count.
func (b *Balancer) detect(e *endpoint, r Result, now int64, st *settings) {
	if e.ejectedUntil.Load() > now {
		return
	}
	if r.ConnectFailed || r.TimedOut {
		n := e.consecConnect.Add(1)
		if r.ConnectFailed {
			e.unreachableUntil.Store(now + int64(connectBackoff(n)))
		}
		if t := st.consecConnect; t > 0 && n%t == 0 {
			b.eject(e, now)
		}
		return
	}
	// A response came, so connecting works; checked before storing to
	// keep the cache line shared on the common path.
	if e.consecConnect.Load() != 0 {
		e.consecConnect.Store(0)
	}
	if r.Status >= 500 && r.Status < 600 {
		if t := st.consec5xx; t > 0 && e.consec5xx.Add(1)%t == 0 {
			b.eject(e, now)
		}
		return
	}
	if e.consec5xx.Load() != 0 {
		e.consec5xx.Store(0)
	}
}

// Connect backoff: an endpoint whose connect failed is not picked again
// for connectBackoffMin, doubling with each failure in a row up to
// connectBackoffMax; the first pick after that is the probe. This is
// Linkerd's reconnect backoff, not outlier ejection: it needs no
// threshold and no ejection budget, so a dead endpoint stops costing
// every request a failed connect at once, even when MaxEjectionPercent
// keeps it in rotation, and a restarted one is back within the backoff.
const (
	connectBackoffMin = 100 * time.Millisecond
	connectBackoffMax = 5 * time.Second
)

// connectBackoff is the pause after the n-th connect failure in a row.
func connectBackoff(n int64) time.Duration {
	if n < 1 {
		n = 1
	}
	d := connectBackoffMin << min(n-1, 16)
	return min(d, connectBackoffMax)
}

// eject takes e out of rotation for BaseEjection times its (healed)
// ejection count, capped at MaxEjection, unless that would exceed the
// MaxEjectionPercent cap. Rare, so it takes the writer lock to count the
// ejected endpoints consistently.
func (b *Balancer) eject(e *endpoint, now int64) {
	b.mu.Lock()
	defer b.mu.Unlock()
	// An endpoint Update removed may still be ejected: it is in no set, so
	// that changes nothing.
	if e.ejectedUntil.Load() > now {
		return
	}
	st := b.st.Load()
	set := b.set.Load()
	ejected := 0
	for _, o := range set.eps {
		if o.ejectedUntil.Load() > now {
			ejected++
		}
	}
	if ejected >= maxEjected(len(set.eps), st.ejectPercent) {
		return
	}
	times := e.ejections.Load()
	if last := e.ejectedUntil.Load(); last > 0 && now > last {
		times -= (now - last) / st.baseEjection // forgiven while back in service
	}
	times = min(max(times, 0)+1, st.maxTimes)
	e.ejections.Store(times)
	e.ejectedUntil.Store(now + min(st.baseEjection*times, st.maxEjection))
	e.ejectionsTotal.Add(1)
	e.consec5xx.Store(0)
	e.consecConnect.Store(0)
	// Back from the ejection it is costed like a new endpoint until it
	// answers, rather than shunned for its failures' peak latency.
	e.tried.Store(false)
}

// ConnSlot is a reserved upstream connection slot on an endpoint, from
// [Handle.ReserveConn] until Release.
type ConnSlot struct {
	ep       *endpoint
	released atomic.Bool
}

// ReserveConn reserves a slot for a new upstream connection to h's
// endpoint; call it between Pick and Done, before dialing. It returns
// ErrOverflow when the endpoint already has MaxConnections open: reuse a
// pooled connection or fail the request (503, flag UO). Release the slot
// when the connection closes; it may outlive the Handle.
func (h *Handle) ReserveConn() (*ConnSlot, error) {
	e := h.ep
	if e.conns.Add(1) > h.b.st.Load().maxConns {
		e.conns.Add(-1)
		return nil, ErrOverflow
	}
	return &ConnSlot{ep: e}, nil
}

// Release frees the connection slot. Calling it again does nothing.
func (s *ConnSlot) Release() {
	if s.released.CompareAndSwap(false, true) {
		s.ep.conns.Add(-1)
	}
}
