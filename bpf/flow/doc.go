// Package flow collects kernel figures about the TCP flows of meshed pods:
// connections opened, closed and failed, connect latency, smoothed RTT,
// retransmits, resets sent and received, payload bytes and lifetimes, for the
// connects pods make (Outbound) and the connections they accept (Inbound).
//
// A sockops program on the node's pod cgroup root (next to capture's) follows
// every TCP socket of a meshed pod, with state in socket-local storage, and
// adds what happens to bounded per-CPU aggregates keyed by pod cgroup, peer,
// server port and direction. The telemetry collectors read them with
// [Flows.Aggregates] at scrape time; a storage iterator run by that call
// first adds what open flows moved since their last report, so long-lived
// flows are counted while they are open. [Flows.Live] lists open flows for
// `agentctl flows`; [Flows.Health] reports map fill and every loss (full
// maps, evicted live entries, trace events that found the ring full).
//
// Membership comes from the capture object's members map, passed in, so
// capture and telemetry agree on which pods are meshed; passing capture's
// sock_origin storage too keys redirected connects by the destination the app
// dialed rather than by the node proxy.
//
// # Hooks and fallbacks
//
// sockops is required. Resets come from the BTF tracepoints tcp_receive_reset
// and tcp_send_reset; where tp_btf programs cannot load, from the classic
// tracepoints of the same name (they need tracefs mounted, and count resets
// only of flows still in the live map); without either, the reset counters
// stay zero and [Flows.Programs] says why. Without the storage iterator (it
// needs BPF tracing programs of type iter), open flows are counted up to their
// last RTT sample, and flows that only receive, up to their end. fentry and
// kprobes are never used.
//
// # Pin policy
//
// With a pin path (the agent uses /sys/fs/bpf/skein/<node>/flow), maps are
// pinned under maps/ and links under links/:
//
//   - links/skein_flow_sockops: the cgroup link. Pinned so that flows are
//     followed while the agent restarts; a new agent swaps its program into
//     the link atomically (link update): no callback missed, none doubled.
//   - links/skein_flow_rst_rcv, skein_flow_rst_sent (or their _tp
//     fallbacks): the reset hooks, pinned for the same reason. Tracing links
//     cannot be updated, so a new agent detaches the old ones before
//     attaching its own: a reset in that gap of microseconds is not counted,
//     rather than counted twice. (An old agent still running holds its own
//     links until it exits; until then resets count twice.)
//   - maps/flow_stats: the aggregates. Prometheus counters must not restart
//     because the agent did.
//   - maps/flow_sk: per-socket state (baselines, what was already reported).
//     Without it, flows open across a restart could never be closed or
//     brought up to date.
//   - maps/flow_live, flow_errors: open flows and loss counters, for the same
//     reasons.
//
// Not pinned here: members and sock_origin belong to capture (which pins
// them), the trace maps to their owner; the iterator link is the agent's own
// and made anew by each. A new version that changes a map's layout or size
// drops the old pins and starts from zero. [Cleanup] removes the whole tree,
// which detaches the programs.
package flow
