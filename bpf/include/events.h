/* The trace event stream shared by every Skein BPF object.
 *
 * One ring buffer carries every kind of event; `agentctl trace` reads it
 * through the agent. Emitting is gated by trace_filter, written by the agent
 * when a trace session starts, so an idle node pays one array lookup per hook.
 * Filters that the kernel can apply (event kinds, source cgroup) are applied
 * here, so an uninteresting event never reaches the ring buffer. Events that do
 * not fit are counted in trace_lost, never dropped silently.
 */
#pragma once

#include "skein.h"

enum skein_event_kind {
	SKEIN_EV_CAPTURE = 1,	/* a connect was redirected or bypassed */
	SKEIN_EV_CONNECT_FAIL = 2,	/* an outgoing connect failed */
	SKEIN_EV_RESET = 3,	/* a reset was sent or received */
	SKEIN_EV_RETRANSMIT = 4,	/* a segment was retransmitted */
	SKEIN_EV_STRICT_DROP = 5,	/* plaintext dropped by STRICT mode */
	SKEIN_EV_POLICY_DENY = 6,	/* written from user space by the proxy */
	SKEIN_EV_STATE = 7,	/* a TCP state change of a tracked flow */
};

struct skein_event {
	__u64 ts_ns;
	__u64 cgroup_id;	/* the pod cgroup the event belongs to, 0 if unknown */
	struct skein_addr saddr;
	struct skein_addr daddr;
	struct skein_addr orig;	/* the address the app dialed (capture events) */
	__u16 sport;
	__u16 dport;
	__u16 orig_port;
	__u8 kind;		/* enum skein_event_kind */
	__u8 reason;		/* per kind: a capture verdict, a reset direction, a TCP state */
	__u32 value;		/* per kind: an errno, a retransmit count, a byte count */
	__u32 pad;
};

/* trace_filter is written by the agent. kinds == 0 means tracing is off. */
struct trace_filter {
	__u32 kinds;		/* bit (1 << kind) set: emit that kind */
	__u32 pad;
	__u64 cgroup_id;	/* 0: any; else only events of this pod cgroup */
};

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 1 << 20);
} events SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct trace_filter);
} trace_cfg SEC(".maps");

/* trace_lost counts events that matched the filter but found the ring full. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u64);
} trace_lost SEC(".maps");

static __always_inline int skein_trace_wanted(__u8 kind, __u64 cgroup_id)
{
	__u32 k = 0;
	struct trace_filter *f = bpf_map_lookup_elem(&trace_cfg, &k);

	if (!f || !(f->kinds & (1u << kind)))
		return 0;
	if (f->cgroup_id && f->cgroup_id != cgroup_id)
		return 0;
	return 1;
}

/* skein_trace_emit copies ev into the ring buffer, counting a loss if full. */
static __always_inline void skein_trace_emit(const struct skein_event *ev)
{
	if (bpf_ringbuf_output(&events, (void *)ev, sizeof(*ev), 0) != 0) {
		__u32 k = 0;
		__u64 *lost = bpf_map_lookup_elem(&trace_lost, &k);

		if (lost)
			*lost += 1;
	}
}
