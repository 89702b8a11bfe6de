package trace

import (
	"fmt"
	"net/netip"
	"time"
)

// Kind is an event kind (enum skein_event_kind in events.h).
type Kind uint8

// Event kinds.
const (
	KindCapture     Kind = 1 // a connect was redirected or bypassed; Reason is the verdict
	KindConnectFail Kind = 2 // an outgoing connect failed; Reason is the TCP state, Value the errno
	KindReset       Kind = 3 // a reset was received (Reason 1) or sent (Reason 2): bpf/flow's ResetReceived, ResetSent
	KindRetransmit  Kind = 4 // segments were retransmitted; Value counts them
	KindStrictDrop  Kind = 5 // STRICT mode dropped a plaintext connection
	KindPolicyDeny  Kind = 6 // authorization denied (from the proxy)
	KindState       Kind = 7 // a tracked flow changed TCP state; Reason is the new state, Value the old
	kindMax         Kind = 8
)

var kindNames = [...]string{
	KindCapture: "capture", KindConnectFail: "connect_fail", KindReset: "reset",
	KindRetransmit: "retransmit", KindStrictDrop: "strict_drop", KindPolicyDeny: "policy_deny", KindState: "state",
}

func (k Kind) String() string {
	if k > 0 && k < kindMax {
		return kindNames[k]
	}
	return fmt.Sprintf("kind(%d)", uint8(k))
}

// ParseKind parses a kind name.
func ParseKind(s string) (Kind, error) {
	for k := KindCapture; k < kindMax; k++ {
		if kindNames[k] == s {
			return k, nil
		}
	}
	return 0, fmt.Errorf("unknown event type %q: want capture, connect_fail, reset, retransmit, strict_drop, policy_deny or state", s)
}

// AllKinds is every kind, as a filter mask.
const AllKinds uint32 = (1<<kindMax - 1) &^ 1

// Event is one decoded trace event.
type Event struct {
	// Time is when it happened, on the monotonic clock the kernel uses
	// (bpf_ktime_get_ns): time since boot.
	Time     time.Duration
	CgroupID uint64
	Kind     Kind
	Reason   uint8
	Value    uint32
	Src, Dst netip.AddrPort
	// Orig is the address the app dialed (capture events).
	Orig netip.AddrPort
}
