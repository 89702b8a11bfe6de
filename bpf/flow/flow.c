//go:build ignore

/* Skein kernel flow figures.
 *
 * One sockops program, attached through a cgroup link in multi-attach mode to
 * the node's pod cgroup root, follows every TCP connection of a meshed pod:
 * the connects pods make (ACTIVE, "outbound") and the connections they accept
 * (PASSIVE, "inbound"). It keeps per-socket state in socket-local storage and
 * adds what it sees, as it happens, to bounded per-CPU aggregates keyed by
 * {pod cgroup, peer, server port, direction}: connections opened, closed and
 * failed, connect latency and smoothed RTT histograms, retransmits, payload
 * bytes. Resets come from BTF tracepoints (tcp_receive_reset, tcp_send_reset),
 * or classic tracepoints when tp_btf is missing. A bpf_sk_storage_map iterator,
 * run by user space at read (scrape) time, adds the bytes that open flows moved
 * since the last report, so long-lived flows are counted while they are open.
 *
 * Minimum kernel: 5.12 (compare-and-swap on map values; sk_storage in tp_btf
 * programs is 5.11, its map iterator and bpf_skc_to_tcp_sock 5.9). The classic
 * tcp_send_reset fallback matches the record layout of 6.10 and later.
 */

#include "skein.h"
#include "events.h"
#include <bpf/bpf_core_read.h>

char LICENSE[] SEC("license") = "Dual BSD/GPL";

#ifndef EEXIST
#define EEXIST 17
#endif

/* TCP_* states and SOCK_DONE (the peer's FIN was received) come from vmlinux.h. */

/* Flow directions; the Go side names them (bpf/flow). */
#define DIR_OUTBOUND 1		/* the pod connected (ACTIVE) */
#define DIR_INBOUND 2		/* the pod accepted (PASSIVE) */

/* Reasons of SKEIN_EV_RESET events. */
#define RST_RECEIVED 1
#define RST_SENT 2

/* Pod flags in members (the capture object's map). */
#define MEMBER_MESHED (1u << 0)

/* flow_sock.flags */
#define FS_ESTABLISHED (1u << 0)
#define FS_FIN_QUEUED (1u << 1)	/* this side closed: a FIN is (about to be) queued */
#define FS_DONE (1u << 2)	/* reached TCP_CLOSE and was accounted */

/* Failure counters in flow_errors. */
enum flow_error {
	FE_STATS_FULL = 0,	/* flow_stats had no room for a new key */
	FE_LIVE_INSERT = 1,	/* flow_live refused an entry */
	FE_LIVE_LOST = 2,	/* a flow's flow_live entry was evicted before it ended */
	FE_SK_STORAGE = 3,	/* no socket storage: the flow is not followed */
	FE_MAX = 4,
};

#define HIST_BUCKETS 24		/* upper bounds 2^0 .. 2^22 us, then +Inf */
#define MAX_CGROUP_DEPTH 16

/* flow_key is what the aggregates are kept by. port is the server port: the
 * peer's for outbound flows, the pod's own for inbound ones, so that clients'
 * ephemeral ports never make keys. For connects that capture redirected to the
 * node proxy, peer and port are the destination the app dialed. */
struct flow_key {
	__u64 cgroup_id;	/* the pod cgroup */
	struct skein_addr peer;
	__u16 port;		/* host order */
	__u8 dir;		/* DIR_* */
	__u8 pad[5];
};

/* flow_hist is a log2 histogram in microseconds: buckets[i] counts values v
 * with 2^(i-1) < v <= 2^i (bucket 0: v <= 1), the last bucket everything
 * larger than 2^(HIST_BUCKETS-2). */
struct flow_hist {
	__u64 sum_us;
	__u64 buckets[HIST_BUCKETS];
};

struct flow_agg {
	__u64 opened;
	__u64 closed;
	__u64 failed;		/* connects that never got established */
	__u64 retransmits;	/* segments */
	__u64 resets_sent;
	__u64 resets_received;
	__u64 bytes_sent;	/* payload acknowledged by the peer */
	__u64 bytes_received;	/* payload received in order */
	__u64 duration_us;	/* summed lifetimes of the closed flows */
	__u64 last_ns;		/* last update, bpf_ktime_get_ns */
	struct flow_hist rtt;
	struct flow_hist connect;
};

/* flow_sock is the per-socket state. */
struct flow_sock {
	struct flow_key key;
	__u64 cookie;
	__u64 connect_ns;	/* TCP_CONNECT_CB; 0 for inbound flows */
	__u64 est_ns;		/* established; 0 before */
	__u64 last_sample_ns;	/* last RTT sample taken into the histogram */
	__u64 base_acked;	/* bytes_acked at establishment (the SYN) */
	__u64 base_received;	/* bytes_received at establishment */
	__u64 rep_sent;		/* payload bytes already added to flow_stats */
	__u64 rep_received;
	__u32 rep_retrans;	/* total_retrans already added to flow_stats */
	__u32 flags;		/* FS_* */
	struct skein_addr local;
	struct skein_addr remote;
	__u16 lport;
	__u16 rport;
	__u32 pad;
};

/* live_entry is one open flow in flow_live, for `agentctl flows`. */
struct live_entry {
	struct flow_key key;
	struct skein_addr local;
	struct skein_addr remote;
	__u16 lport;
	__u16 rport;
	__u8 state;		/* TCP state */
	__u8 pad[3];
	__u64 start_ns;		/* connect (outbound) or establishment (inbound) */
	__u64 bytes_sent;
	__u64 bytes_received;
	__u32 srtt_us;
	__u32 retrans;
};

/* origin mirrors struct origin of bpf/capture/capture.c, the value of its
 * sock_origin storage, which this object reads when the agent passes that map
 * in: the destination an app dialed before capture redirected it. Keep the two
 * in step; the loader checks the sizes. */
struct origin {
	struct skein_addr addr;
	__u16 port;
	__u16 family;
	__u32 pad;
	__u64 cgroup_id;
};

struct member {
	__u32 flags;
	__u32 pad;
};

/* Test-only argument blocks (BPF_PROG_TEST_RUN). */
struct bucket_args {
	__u64 us;
	__u32 bucket;		/* out */
	__u32 pad;
};

struct key_args {
	__u64 cgroup_id;
	struct skein_addr remote;
	struct skein_addr orig;
	__u16 rport;
	__u16 lport;
	__u16 orig_port;	/* 0: no origin */
	__u8 dir;
	__u8 skip;		/* out: 1 if the flow is not followed */
	struct flow_key key;	/* out */
};

struct payload_args {
	__u64 raw;		/* bytes_acked or bytes_received */
	__u64 base;
	__u64 reported;
	__u8 fin;		/* the raw count includes a FIN */
	__u8 pad[7];
	__u64 total;		/* out */
	__u64 delta;		/* out: what a report adds */
};

/* members maps a pod cgroup id to the pod's flags; the agent passes the
 * capture object's map in, so both agree on who is meshed. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 16384);
	__type(key, __u64);
	__type(value, struct member);
} members SEC(".maps");

/* sock_origin is capture's per-socket origin storage (replaced by the agent). */
struct {
	__uint(type, BPF_MAP_TYPE_SK_STORAGE);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, int);
	__type(value, struct origin);
} sock_origin SEC(".maps");

/* flow_stats: the aggregates. A plain per-CPU hash, not an LRU: evicting a key
 * would silently lose counts, while a full map is counted (FE_STATS_FULL) and
 * user space prunes idle keys. Memory is per CPU, so it is allocated on insert
 * and its size is set by the loader (Config.MaxAggregates). */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_HASH);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__uint(max_entries, 4096);
	__type(key, struct flow_key);
	__type(value, struct flow_agg);
} flow_stats SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_SK_STORAGE);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, int);
	__type(value, struct flow_sock);
} flow_sk SEC(".maps");

/* flow_live: open flows by socket cookie. Entries are deleted when their flow
 * ends; LRU so that a socket that vanished unseen cannot leak one. */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 32768);
	__type(key, __u64);
	__type(value, struct live_entry);
} flow_live SEC(".maps");

/* flow_closed keeps the live entries of just-closed flows, only when the
 * reset hooks are classic tracepoints: an abort changes the state to CLOSE
 * before it sends the reset, and those hooks find flows by cookie. */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 1024);
	__type(key, __u64);
	__type(value, struct live_entry);
} flow_closed SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, FE_MAX);
	__type(key, __u32);
	__type(value, __u64);
} flow_errors SEC(".maps");

/* rtt_sample_ns: after its first sample, a flow adds its smoothed RTT to the
 * histogram (and its bytes to the aggregate) at most once per this interval,
 * so a busy flow costs one map update per interval, not one per ACK, and the
 * histogram weighs flows by time rather than by packets. Set by the loader. */
volatile const __u64 rtt_sample_ns = 1000000000ULL;

/* keep_closed is set by the loader when the reset hooks are classic
 * tracepoints (see flow_closed). */
volatile const __u8 keep_closed = 0;

/* The value a new flow_stats entry starts from (too big for the stack). */
const struct flow_agg flow_zero = {};

const struct flow_agg *unused_flow_agg __attribute__((unused));
const struct live_entry *unused_live_entry __attribute__((unused));
const struct bucket_args *unused_bucket_args __attribute__((unused));
const struct key_args *unused_key_args __attribute__((unused));
const struct payload_args *unused_payload_args __attribute__((unused));
const struct skein_event *unused_skein_event __attribute__((unused));

static __always_inline void count_error(__u32 e)
{
	__u64 *c = bpf_map_lookup_elem(&flow_errors, &e);

	if (c)
		__sync_fetch_and_add(c, 1);
}

/* hist_bucket is the bucket of a value in microseconds. */
static __always_inline __u32 hist_bucket(__u64 us)
{
	if (us <= 1)
		return 0;

	__u64 v = us - 1;
	__u32 n = 1;

	if (v >> 32) {
		v >>= 32;
		n += 32;
	}
	if (v >> 16) {
		v >>= 16;
		n += 16;
	}
	if (v >> 8) {
		v >>= 8;
		n += 8;
	}
	if (v >> 4) {
		v >>= 4;
		n += 4;
	}
	if (v >> 2) {
		v >>= 2;
		n += 2;
	}
	if (v >> 1)
		n += 1;
	return n < HIST_BUCKETS - 1 ? n : HIST_BUCKETS - 1;
}

static __always_inline void hist_add(struct flow_hist *h, __u64 us)
{
	__u32 b = hist_bucket(us);

	if (b >= HIST_BUCKETS)
		return;
	__sync_fetch_and_add(&h->buckets[b], 1);
	__sync_fetch_and_add(&h->sum_us, us);
}

/* build_key fills the aggregate key of a flow and says whether the flow is
 * followed at all: flows to or from loopback stay inside a pod and are not. */
static __always_inline int build_key(struct flow_key *k, __u64 cgid, __u8 dir,
				     const struct skein_addr *remote, __u16 rport, __u16 lport,
				     const struct skein_addr *orig, __u16 orig_port)
{
	if (skein_addr_is_loopback(remote))
		return 0;
	k->cgroup_id = cgid;
	k->dir = dir;
	if (dir == DIR_OUTBOUND && orig && orig_port) {
		k->peer = *orig;
		k->port = orig_port;
	} else {
		k->peer = *remote;
		k->port = dir == DIR_OUTBOUND ? rport : lport;
	}
	return 1;
}

/* payload is the payload byte count of a sequence-space counter: raw less
 * its value at establishment (the SYN) and less a FIN it includes. */
static __always_inline __u64 payload(__u64 raw, __u64 base, int fin)
{
	__u64 skip = base + (fin ? 1 : 0);

	return raw > skip ? raw - skip : 0;
}

/* report_delta advances *reported to total and returns by how much, so that
 * each byte is reported once even when the sockops program and the iterator
 * report the same socket at the same moment (the iterator does not hold the
 * socket lock). Never backwards: a smaller total reports nothing. */
static __always_inline __u64 report_delta(__u64 *reported, __u64 total)
{
	for (int i = 0; i < 4; i++) {
		__u64 old = *reported;

		if (total <= old)
			return 0;
		if (__sync_val_compare_and_swap(reported, old, total) == old)
			return total - old;
	}
	return 0;	/* lost the race four times: the rest comes with the next report */
}

static __always_inline __u32 report_delta32(__u32 *reported, __u32 total)
{
	for (int i = 0; i < 4; i++) {
		__u32 old = *reported;

		if (total <= old)
			return 0;
		if (__sync_val_compare_and_swap(reported, old, total) == old)
			return total - old;
	}
	return 0;
}

/* agg_get returns the aggregate of k, creating it, or NULL (counted) when the
 * map is full. */
static __always_inline struct flow_agg *agg_get(const struct flow_key *k)
{
	struct flow_agg *v = bpf_map_lookup_elem(&flow_stats, k);

	if (v)
		return v;
	long err = bpf_map_update_elem(&flow_stats, k, &flow_zero, BPF_NOEXIST);

	if (err && err != -EEXIST) {
		count_error(FE_STATS_FULL);
		return 0;
	}
	return bpf_map_lookup_elem(&flow_stats, k);
}

static __always_inline void add(__u64 *c, __u64 n)
{
	if (n)
		__sync_fetch_and_add(c, n);
}

/* pod_cgroup finds the meshed pod cgroup of a socket: the socket's cgroup or
 * the nearest of its ancestors in members (a pod's processes live in container
 * cgroups below the pod cgroup). sockops has no bpf_sk_ancestor_cgroup_id, so
 * the walk follows the hierarchy through BTF, upwards: the pod is one or two
 * steps away, and plain BTF loads cost far less than bpf_probe_read_kernel of
 * the ancestors array. Pod cgroups do not nest, so this finds the same pod as
 * capture's walk from the top. Returns 0 if none. */
static __always_inline __u64 pod_cgroup(struct tcp_sock *tp)
{
	struct cgroup *cg = tp->inet_conn.icsk_inet.sk.sk_cgrp_data.cgroup;

	for (int i = 0; i < MAX_CGROUP_DEPTH && cg; i++) {
		__u64 id = cg->kn->id;
		struct member *m = bpf_map_lookup_elem(&members, &id);

		if (m)
			return (m->flags & MEMBER_MESHED) ? id : 0;
		struct cgroup_subsys_state *parent = cg->self.parent;

		if (!parent)
			return 0;
		cg = parent->cgroup;
	}
	return 0;
}

/* ops_addrs reads the addresses of a connection. barrier_var (bpf_helpers.h)
 * keeps each loaded value in a register where it is, so that clang does not
 * merge the IPv4 and IPv6 loads into one load through a selected context
 * pointer, which the verifier refuses. */
static __always_inline void ops_addrs(struct bpf_sock_ops *ops, struct skein_addr *local,
				      struct skein_addr *remote)
{
	if (ops->family == AF_INET) {
		__u32 l = ops->local_ip4, r = ops->remote_ip4;

		barrier_var(l);
		barrier_var(r);
		skein_addr_from4(local, l);
		skein_addr_from4(remote, r);
		return;
	}
	__u32 l0 = ops->local_ip6[0], l1 = ops->local_ip6[1], l2 = ops->local_ip6[2], l3 = ops->local_ip6[3];
	__u32 r0 = ops->remote_ip6[0], r1 = ops->remote_ip6[1], r2 = ops->remote_ip6[2], r3 = ops->remote_ip6[3];

	barrier_var(l0);
	barrier_var(l1);
	barrier_var(l2);
	barrier_var(l3);
	barrier_var(r0);
	barrier_var(r1);
	barrier_var(r2);
	barrier_var(r3);
	local->w[0] = l0;
	local->w[1] = l1;
	local->w[2] = l2;
	local->w[3] = l3;
	remote->w[0] = r0;
	remote->w[1] = r1;
	remote->w[2] = r2;
	remote->w[3] = r3;
}

static __always_inline void trace_flow(const struct flow_sock *st, __u8 kind, __u8 reason, __u32 value)
{
	if (!skein_trace_wanted(kind, st->key.cgroup_id))
		return;
	struct skein_event ev = {};

	ev.ts_ns = bpf_ktime_get_ns();
	ev.cgroup_id = st->key.cgroup_id;
	ev.kind = kind;
	ev.reason = reason;
	ev.value = value;
	ev.saddr = st->local;
	ev.daddr = st->remote;
	ev.sport = st->lport;
	ev.dport = st->rport;
	ev.orig = st->key.peer;
	ev.orig_port = st->key.port;
	skein_trace_emit(&ev);
}

static __always_inline void live_put(const struct flow_sock *st, __u8 state, __u64 start_ns)
{
	struct live_entry l = {};

	l.key = st->key;
	l.local = st->local;
	l.remote = st->remote;
	l.lport = st->lport;
	l.rport = st->rport;
	l.state = state;
	l.start_ns = start_ns;
	if (bpf_map_update_elem(&flow_live, &st->cookie, &l, BPF_ANY))
		count_error(FE_LIVE_INSERT);
}

/* track starts following a socket: returns its fresh state, or NULL if the
 * socket is not a meshed pod's or has no storage. */
static __always_inline struct flow_sock *track(struct bpf_sock_ops *ops, struct bpf_sock *sk,
					       __u8 dir)
{
	struct tcp_sock *tp = bpf_skc_to_tcp_sock(sk);

	if (!tp)
		return 0;
	__u64 cgid = pod_cgroup(tp);

	if (!cgid)
		return 0;

	struct skein_addr local = {}, remote = {};

	ops_addrs(ops, &local, &remote);
	__u16 lport = (__u16)ops->local_port;
	__u16 rport = (__u16)bpf_ntohl(ops->remote_port);
	struct skein_addr *orig = 0;
	__u16 orig_port = 0;
	struct origin *o = 0;

	if (dir == DIR_OUTBOUND)
		o = bpf_sk_storage_get(&sock_origin, sk, 0, 0);
	if (o) {
		orig = &o->addr;
		orig_port = o->port;
	}
	struct flow_key key = {};

	if (!build_key(&key, cgid, dir, &remote, rport, lport, orig, orig_port))
		return 0;

	struct flow_sock *st = bpf_sk_storage_get(&flow_sk, sk, 0, BPF_SK_STORAGE_GET_F_CREATE);

	if (!st) {
		count_error(FE_SK_STORAGE);
		return 0;
	}
	/* The storage may hold an earlier connect of the same socket. */
	__builtin_memset(st, 0, sizeof(*st));
	st->key = key;
	st->cookie = bpf_get_socket_cookie(ops);
	st->local = local;
	st->remote = remote;
	st->lport = lport;
	st->rport = rport;
	st->rep_retrans = dir == DIR_OUTBOUND ? ops->total_retrans : 0;
	return st;
}

static __always_inline void set_cb_flags(struct bpf_sock_ops *ops, __u32 want)
{
	/* OR in: other programs on this cgroup may have asked for callbacks too. */
	__u32 have = ops->bpf_sock_ops_cb_flags;

	if ((have & want) != want)
		bpf_sock_ops_cb_flags_set(ops, have | want);
}

/* fin_acked says, under the socket lock, whether bytes_acked counts our FIN. */
static __always_inline int fin_acked(const struct flow_sock *st, struct tcp_sock *tp, __u32 snd_una)
{
	if (!(st->flags & FS_FIN_QUEUED) || !tp)
		return 0;
	return snd_una == tp->write_seq;
}

/* fin_received says whether bytes_received counts the peer's FIN. */
static __always_inline int fin_received(struct tcp_sock *tp)
{
	if (!tp)
		return 0;
	unsigned long flags = tp->inet_conn.icsk_inet.sk.__sk_common.skc_flags;

	return (flags >> SOCK_DONE) & 1;
}

/* flush_ops adds to the aggregate what a flow did since its last report, from
 * the sockops context (the socket lock is held, so the counters and the FIN
 * state agree). */
static __always_inline void flush_ops(struct bpf_sock_ops *ops, struct bpf_sock *sk,
				      struct flow_sock *st, struct flow_agg *agg)
{
	struct tcp_sock *tp = bpf_skc_to_tcp_sock(sk);

	add(&agg->retransmits, report_delta32(&st->rep_retrans, ops->total_retrans));
	if (!(st->flags & FS_ESTABLISHED))
		return;
	__u64 sent = payload(ops->bytes_acked, st->base_acked, fin_acked(st, tp, ops->snd_una));
	__u64 received = payload(ops->bytes_received, st->base_received, fin_received(tp));

	add(&agg->bytes_sent, report_delta(&st->rep_sent, sent));
	add(&agg->bytes_received, report_delta(&st->rep_received, received));
}

static __always_inline void live_progress(struct flow_sock *st, __u32 srtt_us, __u32 retrans)
{
	struct live_entry *l = bpf_map_lookup_elem(&flow_live, &st->cookie);

	if (!l)
		return;
	l->srtt_us = srtt_us;
	l->retrans = retrans;
	l->bytes_sent = st->rep_sent;
	l->bytes_received = st->rep_received;
}

static __always_inline void on_connect(struct bpf_sock_ops *ops, struct bpf_sock *sk)
{
	struct flow_sock *st = track(ops, sk, DIR_OUTBOUND);

	if (!st)
		return;
	st->connect_ns = bpf_ktime_get_ns();
	live_put(st, TCP_SYN_SENT, st->connect_ns);
	set_cb_flags(ops, BPF_SOCK_OPS_STATE_CB_FLAG | BPF_SOCK_OPS_RETRANS_CB_FLAG);
}

static __always_inline void on_established(struct bpf_sock_ops *ops, struct bpf_sock *sk, __u8 dir)
{
	struct flow_sock *st = bpf_sk_storage_get(&flow_sk, sk, 0, 0);

	if (!st || (st->flags & (FS_ESTABLISHED | FS_DONE))) {
		/* Inbound, or a connect made before the program was attached. */
		st = track(ops, sk, dir);
		if (!st)
			return;
	}
	__u64 now = bpf_ktime_get_ns();

	st->est_ns = now;
	st->base_acked = ops->bytes_acked;
	st->base_received = ops->bytes_received;
	st->flags |= FS_ESTABLISHED;
	/* With no handshake sample, the first RTT callback takes one. */
	st->last_sample_ns = ops->srtt_us ? now : 0;
	set_cb_flags(ops, BPF_SOCK_OPS_STATE_CB_FLAG | BPF_SOCK_OPS_RETRANS_CB_FLAG |
		     BPF_SOCK_OPS_RTT_CB_FLAG);

	if (st->connect_ns) {
		struct live_entry *l = bpf_map_lookup_elem(&flow_live, &st->cookie);

		if (l)
			l->state = TCP_ESTABLISHED;
		else
			live_put(st, TCP_ESTABLISHED, st->connect_ns);
	} else {
		live_put(st, TCP_ESTABLISHED, now);
		/* STATE_CB was off during the handshake of an accepted flow. */
		trace_flow(st, SKEIN_EV_STATE, TCP_ESTABLISHED, TCP_SYN_RECV);
	}

	struct flow_agg *agg = agg_get(&st->key);

	if (!agg)
		return;
	add(&agg->opened, 1);
	agg->last_ns = now;
	if (st->connect_ns)
		hist_add(&agg->connect, (now - st->connect_ns) / 1000);
	/* The handshake gave the first RTT sample; short flows may give no other. */
	if (ops->srtt_us)
		hist_add(&agg->rtt, ops->srtt_us >> 3);
	flush_ops(ops, sk, st, agg);
	live_progress(st, ops->srtt_us >> 3, ops->total_retrans);
}

static __always_inline void on_rtt(struct bpf_sock_ops *ops, struct bpf_sock *sk)
{
	struct flow_sock *st = bpf_sk_storage_get(&flow_sk, sk, 0, 0);

	if (!st || !(st->flags & FS_ESTABLISHED) || (st->flags & FS_DONE))
		return;
	__u64 now = bpf_ktime_get_ns();

	if (now - st->last_sample_ns < rtt_sample_ns)
		return;		/* the common case: one compare per ACK */
	st->last_sample_ns = now;

	struct flow_agg *agg = agg_get(&st->key);

	if (!agg)
		return;
	agg->last_ns = now;
	hist_add(&agg->rtt, ops->srtt_us >> 3);
	flush_ops(ops, sk, st, agg);
	live_progress(st, ops->srtt_us >> 3, ops->total_retrans);
}

static __always_inline void on_retrans(struct bpf_sock_ops *ops, struct bpf_sock *sk)
{
	if (ops->args[2] != 0)
		return;		/* args: seq, segments, error */
	struct flow_sock *st = bpf_sk_storage_get(&flow_sk, sk, 0, 0);

	if (!st || (st->flags & FS_DONE))
		return;
	struct flow_agg *agg = agg_get(&st->key);

	if (agg) {
		add(&agg->retransmits, report_delta32(&st->rep_retrans, ops->total_retrans));
		agg->last_ns = bpf_ktime_get_ns();
	}
	trace_flow(st, SKEIN_EV_RETRANSMIT, 0, ops->args[1]);
}

static __always_inline void on_state(struct bpf_sock_ops *ops, struct bpf_sock *sk)
{
	struct flow_sock *st = bpf_sk_storage_get(&flow_sk, sk, 0, 0);

	if (!st || (st->flags & FS_DONE))
		return;
	__u32 old = ops->args[0], new = ops->args[1];

	trace_flow(st, SKEIN_EV_STATE, new, old);
	if (new != TCP_CLOSE) {
		/* tcp_set_state runs this before the FIN is queued; the flag is
		 * read only by later callbacks. */
		if (new == TCP_FIN_WAIT1 || new == TCP_LAST_ACK)
			st->flags |= FS_FIN_QUEUED;
		struct live_entry *l = bpf_map_lookup_elem(&flow_live, &st->cookie);

		if (l)
			l->state = new;
		return;
	}

	/* The flow ended. */
	__u64 now = bpf_ktime_get_ns();
	struct flow_agg *agg = agg_get(&st->key);

	if (agg) {
		flush_ops(ops, sk, st, agg);
		agg->last_ns = now;
		if (st->flags & FS_ESTABLISHED) {
			add(&agg->closed, 1);
			add(&agg->duration_us, (now - st->est_ns) / 1000);
		} else {
			add(&agg->failed, 1);
		}
	}
	if (!(st->flags & FS_ESTABLISHED)) {
		struct tcp_sock *tp = bpf_skc_to_tcp_sock(sk);
		__u32 err = tp ? tp->inet_conn.icsk_inet.sk.sk_err : 0;

		trace_flow(st, SKEIN_EV_CONNECT_FAIL, old, err);
	}
	st->flags |= FS_DONE;
	if (keep_closed) {
		struct live_entry *l = bpf_map_lookup_elem(&flow_live, &st->cookie);

		if (l)
			bpf_map_update_elem(&flow_closed, &st->cookie, l, BPF_ANY);
	}
	if (bpf_map_delete_elem(&flow_live, &st->cookie))
		count_error(FE_LIVE_LOST);
}

/* skein_flow_sockops follows the TCP connections of meshed pods. It hooks
 * sockops on the pod cgroup root (a cgroup link, multi-attach, next to
 * capture's own sockops program) and asks for STATE, RETRANS and RTT callbacks
 * on the connections it follows. Minimum kernel: 5.10. */
SEC("sockops")
int skein_flow_sockops(struct bpf_sock_ops *ops)
{
	__u32 op = ops->op;

	if (op != BPF_SOCK_OPS_RTT_CB && op != BPF_SOCK_OPS_STATE_CB &&
	    op != BPF_SOCK_OPS_RETRANS_CB && op != BPF_SOCK_OPS_TCP_CONNECT_CB &&
	    op != BPF_SOCK_OPS_ACTIVE_ESTABLISHED_CB && op != BPF_SOCK_OPS_PASSIVE_ESTABLISHED_CB)
		return 1;

	struct bpf_sock *sk = ops->sk;	/* read once: the verifier tracks this copy's NULL check */

	if (!sk)
		return 1;
	switch (op) {
	case BPF_SOCK_OPS_RTT_CB:
		on_rtt(ops, sk);
		break;
	case BPF_SOCK_OPS_STATE_CB:
		on_state(ops, sk);
		break;
	case BPF_SOCK_OPS_RETRANS_CB:
		on_retrans(ops, sk);
		break;
	case BPF_SOCK_OPS_TCP_CONNECT_CB:
		on_connect(ops, sk);
		break;
	case BPF_SOCK_OPS_ACTIVE_ESTABLISHED_CB:
		on_established(ops, sk, DIR_OUTBOUND);
		break;
	case BPF_SOCK_OPS_PASSIVE_ESTABLISHED_CB:
		on_established(ops, sk, DIR_INBOUND);
		break;
	}
	return 1;
}

/* count_reset adds a reset to a followed flow's aggregate. */
static __always_inline void count_reset(struct flow_sock *st, __u8 why)
{
	struct flow_agg *agg = agg_get(&st->key);

	if (agg) {
		if (why == RST_RECEIVED)
			add(&agg->resets_received, 1);
		else
			add(&agg->resets_sent, 1);
		agg->last_ns = bpf_ktime_get_ns();
	}
	trace_flow(st, SKEIN_EV_RESET, why, 0);
}

static __always_inline int reset_btf(struct sock *sk, __u8 why)
{
	if (!sk)
		return 0;	/* a reset sent for no socket (closed port) */
	/* Only full sockets have storage, so resets of request and timewait
	 * sockets, and of sockets sockops never followed, stop here. */
	struct flow_sock *st = bpf_sk_storage_get(&flow_sk, sk, 0, 0);

	if (st)
		count_reset(st, why);
	return 0;
}

/* skein_flow_rst_rcv counts resets a followed flow receives. It hooks the
 * tcp_receive_reset BTF tracepoint, which is not cgroup-scoped: the socket
 * storage lookup is the filter. Minimum kernel: 5.10. */
SEC("tp_btf/tcp_receive_reset")
int skein_flow_rst_rcv(__u64 *ctx)
{
	return reset_btf((struct sock *)ctx[0], RST_RECEIVED);
}

/* skein_flow_rst_sent counts resets a followed flow sends (an abort, a close
 * with unread data). BTF tracepoint tcp_send_reset. Minimum kernel: 5.10. */
SEC("tp_btf/tcp_send_reset")
int skein_flow_rst_sent(__u64 *ctx)
{
	return reset_btf((struct sock *)ctx[0], RST_SENT);
}

/* reset_cookie is the fallback when tp_btf is missing: classic tracepoints
 * give no socket pointer the helpers accept, but the flow's socket cookie,
 * which keys flow_live (and flow_closed). Flows evicted from those maps are
 * not counted. */
static __always_inline int reset_cookie(__u64 cookie, __u8 why)
{
	if (!cookie)
		return 0;
	struct live_entry *l = bpf_map_lookup_elem(&flow_live, &cookie);

	if (!l)
		l = bpf_map_lookup_elem(&flow_closed, &cookie);
	if (!l)
		return 0;
	struct flow_sock st = {};

	st.key = l->key;
	st.local = l->local;
	st.remote = l->remote;
	st.lport = l->lport;
	st.rport = l->rport;
	count_reset(&st, why);
	return 0;
}

/* skein_flow_rst_rcv_tp: the classic tracepoint tcp/tcp_receive_reset (needs
 * tracefs), used when tp_btf programs cannot load. Minimum kernel: 5.10. */
SEC("tracepoint/tcp/tcp_receive_reset")
int skein_flow_rst_rcv_tp(struct trace_event_raw_tcp_event_sk *ctx)
{
	__u64 cookie = 0;

	bpf_probe_read_kernel(&cookie, sizeof(cookie), &ctx->sock_cookie);
	return reset_cookie(cookie, RST_RECEIVED);
}

/* skein_flow_rst_sent_tp: the classic tracepoint tcp/tcp_send_reset. Its
 * record has no cookie, so read the socket's. Minimum kernel: 5.10. */
SEC("tracepoint/tcp/tcp_send_reset")
int skein_flow_rst_sent_tp(struct trace_event_raw_tcp_send_reset *ctx)
{
	const void *skaddr = 0;

	bpf_probe_read_kernel(&skaddr, sizeof(skaddr), &ctx->skaddr);
	if (!skaddr)
		return 0;
	__u64 cookie = BPF_CORE_READ((struct sock *)skaddr, __sk_common.skc_cookie.counter);

	return reset_cookie(cookie, RST_SENT);
}

/* skein_flow_refresh brings the aggregates and flow_live up to date with the
 * open flows, without a packet having to trigger it: user space runs it at
 * read (scrape) time. Flows that only receive get no RTT callback, so this is
 * what reports their bytes while they are open. It writes one byte per
 * followed open socket, so user space also learns how many there are.
 *
 * It does not hold the socket lock: it reads the counters before the FIN
 * state, leaves the sent side to sockops once this side has closed, and
 * report_delta keeps a concurrent report from counting twice. A scrape that
 * races with the arrival of the peer's FIN may count that FIN as one byte.
 * Minimum kernel: 5.10 (bpf_sk_storage_map iterator). */
SEC("iter/bpf_sk_storage_map")
int skein_flow_refresh(struct bpf_iter__bpf_sk_storage_map *ctx)
{
	struct sock *sk = ctx->sk;

	if (!sk || !ctx->value)
		return 0;
	struct flow_sock *st = bpf_sk_storage_get(&flow_sk, sk, 0, 0);

	/* TCP sockets are SLAB_TYPESAFE_BY_RCU: if this one was freed and reused
	 * since the iterator found it, the storage is another one's; skip it. */
	if (!st || (void *)st != ctx->value || (st->flags & FS_DONE))
		return 0;
	char one = 1;

	bpf_seq_write(ctx->meta->seq, &one, sizeof(one));
	if (!(st->flags & FS_ESTABLISHED))
		return 0;
	struct tcp_sock *tp = bpf_skc_to_tcp_sock(sk);

	if (!tp)
		return 0;
	__u64 acked = tp->bytes_acked;
	__u64 received = tp->bytes_received;
	__u32 retrans = tp->total_retrans;
	__u32 srtt = tp->srtt_us >> 3;

	asm volatile("" ::: "memory");
	int fin_in = (tp->inet_conn.icsk_inet.sk.__sk_common.skc_flags >> SOCK_DONE) & 1;
	int closing = st->flags & FS_FIN_QUEUED;

	struct flow_agg *agg = agg_get(&st->key);

	if (!agg)
		return 0;
	add(&agg->retransmits, report_delta32(&st->rep_retrans, retrans));
	if (!closing)
		add(&agg->bytes_sent, report_delta(&st->rep_sent, payload(acked, st->base_acked, 0)));
	add(&agg->bytes_received,
	    report_delta(&st->rep_received, payload(received, st->base_received, fin_in)));
	agg->last_ns = bpf_ktime_get_ns();
	live_progress(st, srtt, retrans);
	return 0;
}

/* test_bucket runs hist_bucket for the unit tests (BPF_PROG_TEST_RUN). */
SEC("syscall")
int test_bucket(struct bucket_args *args)
{
	args->bucket = hist_bucket(args->us);
	return 0;
}

/* test_key runs build_key for the unit tests. */
SEC("syscall")
int test_key(struct key_args *args)
{
	struct skein_addr remote = args->remote, orig = args->orig;
	struct flow_key k = {};

	args->skip = !build_key(&k, args->cgroup_id, args->dir, &remote, args->rport, args->lport,
				&orig, args->orig_port);
	args->key = k;
	return 0;
}

/* test_payload runs payload and report_delta for the unit tests. */
SEC("syscall")
int test_payload(struct payload_args *args)
{
	__u64 reported = args->reported;

	args->total = payload(args->raw, args->base, args->fin);
	args->delta = report_delta(&reported, args->total);
	return 0;
}

/* test_agg creates (or finds) the aggregate of a key and counts one opened
 * connection on it, so the tests can fill flow_stats and see failures
 * counted. */
SEC("syscall")
int test_agg(struct flow_key *k)
{
	struct flow_key key = *k;
	struct flow_agg *agg = agg_get(&key);

	if (!agg)
		return 1;
	add(&agg->opened, 1);
	return 0;
}
