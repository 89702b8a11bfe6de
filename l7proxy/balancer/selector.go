package balancer

import (
	"math/rand/v2"
	"slices"
	"sync/atomic"
)

// Selector is a load-balancing algorithm: it chooses one endpoint of a
// [Candidates] set. The Balancer has already applied outlier ejection and
// circuit breaking through [Candidates.Selectable]; a Selector only ranks.
// Implementations must be safe for concurrent use and should not allocate.
type Selector interface {
	// Select returns the index of the chosen endpoint in c, or -1 when c
	// has no selectable endpoint.
	Select(c Candidates) int
}

// Interface guards.
var (
	_ Selector = (*P2CSelector)(nil)
	_ Selector = (*RoundRobinSelector)(nil)
	_ Selector = (*RandomSelector)(nil)
)

// Selector returns a new selector implementing p. Each balancer needs its
// own: a selector may keep state (a round-robin cursor).
func (p Policy) Selector() Selector {
	switch p {
	case RoundRobin:
		return new(RoundRobinSelector)
	case Random:
		return new(RandomSelector)
	default:
		return new(P2CSelector)
	}
}

// Candidates is the view of a service port's endpoints that a Selector
// chooses from during one Pick: a snapshot of the endpoint list plus the
// time of the pick. The endpoints' state keeps changing under it.
//
// An endpoint is selectable when it is below its circuit-breaker limit,
// not ejected and not backing off after a failed connect; if every
// endpoint is ejected or backing off, both are ignored (panic mode:
// outlier detection must never take a whole service down).
type Candidates struct {
	eps        []*endpoint
	now        int64 // ns on the balancer clock
	tick       uint32
	invTau     float64
	untried    float64 // cost estimate for endpoints that have not answered
	maxPending int64
	mode       uint8 // 0: not yet known; modeNormal; modePanic
	// avoid are endpoints a retry should not go back to.
	avoid []Addr
}

const (
	modeNormal = 1 // some endpoint is not ejected
	modePanic  = 2 // every endpoint is ejected or backing off: ignore both

	// fastTries is how many uniform draws Random makes before it falls back
	// to an exact O(n) scan. With at most half the endpoints ejected the
	// fallback runs for fewer than 1 pick in 256.
	fastTries = 8
)

// Len returns the number of endpoints, selectable or not.
func (c *Candidates) Len() int { return len(c.eps) }

// Addr returns the address of endpoint i.
func (c *Candidates) Addr(i int) Addr { return c.eps[i].addr }

// InFlight returns the number of requests in flight to endpoint i.
func (c *Candidates) InFlight(i int) int { return int(c.eps[i].inflight.Load()) }

// Cost returns endpoint i's P2C load: its peak-EWMA latency estimate in
// nanoseconds times its requests in flight plus one.
func (c *Candidates) Cost(i int) float64 { return c.eps[i].cost(c.tick, c.invTau, c.untried) }

// Selectable reports whether endpoint i may be picked now.
func (c *Candidates) Selectable(i int) bool {
	e := c.eps[i]
	if e.inflight.Load() >= c.maxPending {
		return false
	}
	if len(c.avoid) > 0 && slices.Contains(c.avoid, e.addr) {
		return false
	}
	return e.available(c.now) || c.panicMode()
}

// panicMode reports whether every endpoint is ejected. It is only asked
// about once an ejected endpoint shows up, and answered once per Pick.
func (c *Candidates) panicMode() bool {
	if c.mode == 0 {
		c.mode = modePanic
		for _, e := range c.eps {
			if e.available(c.now) {
				c.mode = modeNormal
				break
			}
		}
	}
	return c.mode == modePanic
}

// Random returns a selectable endpoint chosen uniformly at random, or -1.
func (c *Candidates) Random() int { return c.randomExcept(-1) }

// RandomOther returns a selectable endpoint other than i chosen uniformly
// at random, or -1 when there is none.
func (c *Candidates) RandomOther(i int) int { return c.randomExcept(i) }

// randomExcept draws uniformly among the selectable endpoints other than x
// (x < 0: none excluded): first by rejection sampling, which is O(1) while
// most endpoints are selectable, then by an exact scan.
func (c *Candidates) randomExcept(x int) int {
	n := len(c.eps)
	pool := n
	if x >= 0 {
		pool--
	}
	if pool <= 0 {
		return -1
	}
	for range fastTries {
		i := rand.IntN(pool)
		if x >= 0 && i >= x {
			i++
		}
		if c.Selectable(i) {
			return i
		}
	}
	m := 0
	for i := range n {
		if i != x && c.Selectable(i) {
			m++
		}
	}
	if m == 0 {
		return -1
	}
	k, last := rand.IntN(m), -1
	for i := range n {
		if i != x && c.Selectable(i) {
			if k == 0 {
				return i
			}
			k--
			last = i
		}
	}
	return last // the set changed while we counted
}

// NextFrom returns the first selectable endpoint at or after index start,
// wrapping around, or -1.
func (c *Candidates) NextFrom(start int) int {
	n := len(c.eps)
	for k := range n {
		i := start + k
		if i >= n {
			i -= n
		}
		if c.Selectable(i) {
			return i
		}
	}
	return -1
}

// P2CSelector implements [P2CEWMA]: it draws two distinct selectable
// endpoints at random and takes the one with the lower [Candidates.Cost]
// (the first drawn on a tie), or the only one.
type P2CSelector struct{}

// Select implements [Selector].
func (*P2CSelector) Select(c Candidates) int {
	i := c.Random()
	if i < 0 {
		return -1
	}
	j := c.RandomOther(i)
	if j < 0 {
		return i
	}
	if c.Cost(j) < c.Cost(i) {
		return j
	}
	return i
}

// RoundRobinSelector implements [RoundRobin] with an atomic cursor over
// the endpoint list; unselectable endpoints are skipped and the cursor moves
// past them, so the others keep equal shares. Its zero value is ready to use.
type RoundRobinSelector struct {
	next atomic.Uint64
}

// Select implements [Selector].
func (s *RoundRobinSelector) Select(c Candidates) int {
	n := uint64(c.Len())
	if n == 0 {
		return -1
	}
	start := (s.next.Add(1) - 1) % n
	i := c.NextFrom(int(start))
	if i < 0 {
		return -1
	}
	if skipped := (uint64(i) + n - start) % n; skipped > 0 {
		s.next.Add(skipped)
	}
	return i
}

// RandomSelector implements [Random]: uniform over the selectable
// endpoints.
type RandomSelector struct{}

// Select implements [Selector].
func (*RandomSelector) Select(c Candidates) int { return c.Random() }
