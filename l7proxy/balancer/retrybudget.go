package balancer

import (
	"errors"
	"fmt"
	"math"
	"sync/atomic"
	"time"
)

// Linkerd's (and Finagle's) retry budget defaults.
const (
	// DefaultRetryRatio lets retries add at most 20% to the request load.
	DefaultRetryRatio = 0.2
	// DefaultMinRetriesPerSecond keeps retries possible at low request rates.
	DefaultMinRetriesPerSecond = 10
	// DefaultRetryTTL is how long a request counts toward the budget.
	DefaultRetryTTL = 10 * time.Second
)

const (
	budgetSlots = 10 // the TTL window is kept in this many buckets
	// budgetScale makes fractional ratios exact in integer tokens: a
	// withdrawal costs budgetScale tokens, a deposit earns ratio*budgetScale.
	budgetScale = 1000
)

// RetryBudget caps retries so they cannot amplify an outage: within any
// TTL window, at most MinRetriesPerSecond*TTL retries plus Ratio times the
// requests deposited in that window may be withdrawn (Finagle's and
// Linkerd's budget). The window slides in ten buckets. Deposit and
// Withdraw take no lock and do not allocate; it is safe for concurrent use.
type RetryBudget struct {
	now    func() time.Time
	epoch  time.Time
	slotNs int64

	deposit  int64 // tokens a Deposit earns
	withdraw int64 // tokens a Withdraw costs
	reserve  int64 // tokens always available in a window: the minimum rate

	// slots are the window's buckets, indexed by bucket number mod
	// budgetSlots; each packs its bucket number (high half) and its token
	// balance as an int32 (low half), so a stale bucket resets itself with
	// the same compare-and-swap that writes it.
	slots [budgetSlots]atomic.Uint64
}

// NewRetryBudget returns a budget that allows minPerSec retries per second
// over the ttl window plus ratio retries per request seen in it. ratio is
// between 0 and 1000 (0.2: retries may add 20% load), minPerSec is not
// negative, ttl is between 1s and 60s or 0 for the default 10s. now is the
// clock, nil for time.Now. Linkerd's defaults are
// NewRetryBudget(DefaultRetryRatio, DefaultMinRetriesPerSecond, DefaultRetryTTL, nil).
func NewRetryBudget(ratio float64, minPerSec int, ttl time.Duration, now func() time.Time) (*RetryBudget, error) {
	if ttl == 0 {
		ttl = DefaultRetryTTL
	}
	var errs []error
	if math.IsNaN(ratio) || ratio < 0 || ratio > 1000 {
		errs = append(errs, fmt.Errorf("ratio %v: must be between 0 and 1000", ratio))
	}
	if minPerSec < 0 || minPerSec > math.MaxInt32 {
		errs = append(errs, fmt.Errorf("min retries per second %d: must be between 0 and 2^31-1", minPerSec))
	}
	if ttl < time.Second || ttl > time.Minute {
		errs = append(errs, fmt.Errorf("ttl %v: must be between 1s and 60s", ttl))
	}
	if len(errs) > 0 {
		return nil, fmt.Errorf("validate retry budget: %w", errors.Join(errs...))
	}
	if now == nil {
		now = time.Now
	}
	b := &RetryBudget{now: now, epoch: now(), slotNs: int64(ttl) / budgetSlots}
	if ratio <= 1 {
		b.deposit, b.withdraw = int64(math.Round(ratio*budgetScale)), budgetScale
	} else {
		b.deposit, b.withdraw = budgetScale, max(int64(math.Round(budgetScale/ratio)), 1)
	}
	b.reserve = int64(float64(minPerSec) * ttl.Seconds() * float64(b.withdraw))
	return b, nil
}

// bucket is the number of the current bucket.
func (b *RetryBudget) bucket() uint32 {
	return uint32(max(int64(b.now().Sub(b.epoch)), 0) / b.slotNs)
}

// Deposit records one original (not retried) request.
func (b *RetryBudget) Deposit() {
	if b.deposit > 0 {
		b.add(b.bucket(), b.deposit)
	}
}

// Withdraw asks to send one retry and reports whether the budget allows
// it; a true answer spends the budget. Concurrent withdrawals at the edge
// of the budget may all be refused, never all granted beyond it.
func (b *RetryBudget) Withdraw() bool {
	now := b.bucket()
	b.add(now, -b.withdraw)
	if b.balance(now) >= 0 {
		return true
	}
	b.add(now, b.withdraw) // refund
	return false
}

// Available returns how many retries the budget allows right now.
func (b *RetryBudget) Available() int {
	return int(max(b.balance(b.bucket()), 0) / b.withdraw)
}

// add adds delta tokens to bucket n, resetting its slot if it still holds
// an older bucket. A write for a bucket older than the slot's is dropped.
func (b *RetryBudget) add(n uint32, delta int64) {
	s := &b.slots[n%budgetSlots]
	for {
		old := s.Load()
		var v int64
		switch at := uint32(old >> 32); {
		case at == n:
			v = int64(int32(uint32(old)))
		case int32(at-n) > 0:
			return // the window moved on while we were computing
		}
		v = min(max(v+delta, math.MinInt32), math.MaxInt32)
		nw := uint64(n)<<32 | uint64(uint32(int32(v)))
		if nw == old || s.CompareAndSwap(old, nw) {
			return
		}
	}
}

// balance is the reserve plus the tokens of the buckets in the window
// ending with bucket n.
func (b *RetryBudget) balance(n uint32) int64 {
	sum := b.reserve
	for i := range b.slots {
		w := b.slots[i].Load()
		if age := n - uint32(w>>32); age < budgetSlots {
			sum += int64(int32(uint32(w)))
		}
	}
	return sum
}
