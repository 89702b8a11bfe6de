package flow

import (
	"errors"
	"fmt"
	"net/netip"
	"time"
)

// ErrNoMembers is returned by New when Config.Members is nil: without the
// membership map the programs cannot tell meshed pods from the rest.
var ErrNoMembers = errors.New("flow config: Members is required (the capture object's members map)")

// Direction says which side of a flow the meshed pod is on.
type Direction uint8

// Directions (DIR_* in flow.c).
const (
	// Outbound flows are connects the pod made (sockops ACTIVE).
	Outbound Direction = 1
	// Inbound flows are connections the pod accepted (sockops PASSIVE).
	Inbound Direction = 2
)

func (d Direction) String() string {
	switch d {
	case Outbound:
		return "outbound"
	case Inbound:
		return "inbound"
	}
	return fmt.Sprintf("direction(%d)", uint8(d))
}

// Key is what the kernel aggregates flows by.
type Key struct {
	// CgroupID is the pod cgroup of the meshed pod's socket.
	CgroupID uint64
	// Peer is the other side and the connection's server port: for an
	// Outbound flow the address and port the pod connected to (for a
	// connect that capture redirected to the node proxy, the destination the
	// app dialed, when the agent passed capture's sock_origin map in); for an
	// Inbound flow the client's address and the pod's own listening port, as
	// a client's ephemeral port would make every connection a key of its own.
	Peer      netip.AddrPort
	Direction Direction
}

// Histogram is a fixed log2 histogram, ready for a Prometheus const
// histogram.
type Histogram struct {
	// Bounds are the bucket upper bounds in seconds, ascending, +Inf left
	// out: 2^i microseconds for i = 0..22 (1 us to 4.19 s). Every Histogram
	// shares one slice: do not modify it.
	Bounds []float64
	// Counts are cumulative: Counts[i] samples were <= Bounds[i].
	Counts []uint64
	// Count is the number of samples, including those above the last bound.
	Count uint64
	// Sum is the sum of the samples in seconds.
	Sum float64
}

// Stats are the figures of one Key, summed over CPUs at the time they were
// read. Counters only grow while the key exists (see Flows.Prune).
type Stats struct {
	// Opened counts established connections, Closed those that ended after
	// being established, Failed the connects that never got established
	// (refused, timed out, aborted): SYN sent, no connection.
	Opened, Closed, Failed uint64
	// Retransmits counts retransmitted segments, SYNs included.
	Retransmits uint64
	// ResetsSent and ResetsReceived count RST segments of the flows.
	ResetsSent, ResetsReceived uint64
	// BytesSent is payload the peer acknowledged; BytesReceived payload
	// received in order. SYN and FIN are not counted. Open flows are counted
	// up to the moment of the read.
	BytesSent, BytesReceived uint64
	// RTT samples the flows' smoothed RTT: once at the handshake, then at
	// most once per Config.RTTSampleInterval while the flow acknowledges
	// data.
	RTT Histogram
	// Connect is the time from SYN sent to established of Outbound flows.
	Connect Histogram
	// Duration is the summed lifetime (established to closed) of the Closed
	// flows; Duration / Closed is their mean.
	Duration time.Duration
	// LastUpdate is when the kernel last changed this key's figures, as
	// time since boot (CLOCK_MONOTONIC).
	LastUpdate time.Duration
}

// Open is how many flows of the key are established and not yet closed.
func (s Stats) Open() uint64 {
	if s.Opened < s.Closed {
		return 0
	}
	return s.Opened - s.Closed
}

// Live is one open flow of a meshed pod, for `agentctl flows`.
type Live struct {
	// Cookie is the socket cookie (SO_COOKIE) of the pod's socket.
	Cookie   uint64
	CgroupID uint64
	// Local and Peer are the socket's own 4-tuple.
	Local, Peer netip.AddrPort
	// Dialed is, for an Outbound flow that capture redirected, the
	// destination the app dialed (Peer is then the node proxy). Invalid
	// otherwise.
	Dialed    netip.AddrPort
	Direction Direction
	// Start is when the pod connected (Outbound) or the connection was
	// established (Inbound).
	Start time.Time
	// SRTT is the smoothed RTT; zero until the kernel has a sample.
	SRTT        time.Duration
	Retransmits uint32
	// BytesSent and BytesReceived are payload bytes, as in Stats.
	BytesSent, BytesReceived uint64
	// State is the TCP state, e.g. "ESTABLISHED", "SYN_SENT", "FIN_WAIT2".
	State string
}

// MapHealth is the fill and the losses of one BPF map.
type MapHealth struct {
	// Entries is how many entries the map holds; for the per-socket storage,
	// how many sockets are followed (-1 when that cannot be counted).
	Entries int
	// Max is the map's capacity; 0 for the per-socket storage, which grows
	// and shrinks with the sockets.
	Max int
	// InsertFailures counts entries the programs could not add: flows or
	// keys that went uncounted.
	InsertFailures uint64
	// Evicted counts, for the LRU map of live flows, flows that were pushed
	// out before they ended.
	Evicted uint64
}

// Health says how full the maps are and what was lost.
type Health struct {
	// Maps by map name: flow_stats, flow_live, flow_sk.
	Maps map[string]MapHealth
	// Lost counts trace events that found the ring buffer full. With a
	// shared Config.TraceLost it is the count of every object that shares it.
	Lost uint64
}

// ProgramInfo describes one program of the package and where it is attached.
type ProgramInfo struct {
	// Name is the program's name in flow.c.
	Name string
	// Hook is where it runs, e.g. "sockops", "tp_btf/tcp_receive_reset".
	Hook string
	// ID is the kernel's program id, LinkID the link's (0 when the program
	// has no link of its own, like the iterator, which is run on demand).
	ID     uint32
	LinkID uint32
	// Pinned is true when the link is pinned under Config.PinPath.
	Pinned bool
	// Missing, when set, says why this hook is not in use; the figures it
	// would give are then not collected.
	Missing string
}

// ProgramStats are a program's run count and run time as the kernel's BPF
// statistics recorded them; both stay zero unless statistics are enabled
// (kernel.bpf_stats_enabled, or ebpf.EnableStats while held).
type ProgramStats struct {
	RunCount uint64
	RunTime  time.Duration
	// NsPerRun is RunTime / RunCount in nanoseconds, 0 without runs.
	NsPerRun float64
}

// Reasons of the SKEIN_EV_RESET trace events this package emits (the event's
// reason field).
const (
	ResetReceived uint8 = 1
	ResetSent     uint8 = 2
)

// In the package's trace events: SKEIN_EV_STATE carries the new TCP state in
// reason and the old one in value; SKEIN_EV_CONNECT_FAIL the state the
// connect failed in and the socket error (an errno) in value;
// SKEIN_EV_RETRANSMIT the number of segments in value. saddr/sport and
// daddr/dport are the socket's 4-tuple, orig/orig_port the key's peer.

// tcpStates names the TCP states (include/net/tcp_states.h).
var tcpStates = [...]string{
	1:  "ESTABLISHED",
	2:  "SYN_SENT",
	3:  "SYN_RECV",
	4:  "FIN_WAIT1",
	5:  "FIN_WAIT2",
	6:  "TIME_WAIT",
	7:  "CLOSE",
	8:  "CLOSE_WAIT",
	9:  "LAST_ACK",
	10: "LISTEN",
	11: "CLOSING",
	12: "NEW_SYN_RECV",
}

// StateName names a TCP state as the kernel numbers it.
func StateName(s uint8) string {
	if int(s) < len(tcpStates) && tcpStates[s] != "" {
		return tcpStates[s]
	}
	return fmt.Sprintf("state(%d)", s)
}

// histBuckets is HIST_BUCKETS in flow.c: 23 bounded buckets and +Inf.
const histBuckets = 24

// histBounds are the histogram bounds in seconds.
var histBounds = func() []float64 {
	b := make([]float64, histBuckets-1)
	for i := range b {
		b[i] = float64(uint64(1)<<i) / 1e6
	}
	return b
}()

// histogram converts per-bucket counts (flow.c's layout) and a sum in
// microseconds.
func histogram(buckets [histBuckets]uint64, sumUs uint64) Histogram {
	h := Histogram{
		Bounds: histBounds,
		Counts: make([]uint64, histBuckets-1),
		Sum:    float64(sumUs) / 1e6,
	}
	var cum uint64
	for i, n := range buckets {
		cum += n
		if i < histBuckets-1 {
			h.Counts[i] = cum
		}
	}
	h.Count = cum
	return h
}
