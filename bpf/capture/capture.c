//go:build ignore

/* Skein outbound capture.
 *
 * cgroup/connect4 and cgroup/connect6 rewrite the connects of meshed pods to
 * mesh destinations (Service VIPs and meshed pod IPs, TCP only) so they reach
 * the node proxy's outbound listener; the original destination and the source
 * pod cgroup are kept in socket-local storage. sockops copies them, at
 * ACTIVE_ESTABLISHED, into orig_dst keyed by the connection's 4-tuple, which is
 * what the proxy sees on accept: one lookup gives it both. cgroup/getpeername4
 * and getpeername6 hide the rewrite from the app.
 *
 * All programs are attached through cgroup links in multi-attach mode to the
 * node's pod cgroup root, so they coexist with a CNI's programs there.
 *
 * Minimum kernel: 5.10 (sk_storage in sock_addr programs, getpeername hooks,
 * listening sockets in a SOCKMAP, bpf_get_current_ancestor_cgroup_id).
 */

#include "skein.h"
#include "events.h"

char LICENSE[] SEC("license") = "Dual BSD/GPL";

/* Verdicts of a capture decision; the Go side names them (bpf/capture). */
enum verdict {
	V_REDIRECT = 1,		/* rewritten to the proxy */
	V_NOT_MEMBER = 2,	/* the socket is not in a meshed pod */
	V_LOOPBACK = 3,		/* destination is loopback */
	V_EXCLUDED_PORT = 4,	/* destination port excluded by the pod's annotation */
	V_NOT_MESH_DST = 5,	/* destination is neither a Service VIP nor a meshed pod */
	V_FAIL_OPEN = 6,	/* proxy down: connect left to its original destination */
	V_FAIL_CLOSED = 7,	/* proxy down: connect refused (EPERM) */
	V_NO_PROXY_ADDR = 8,	/* no proxy address of this family configured */
	V_NOT_TCP = 9,		/* UDP, MPTCP and raw sockets are never captured */
	V_MAX = 10,
};

/* Pod flags in members. */
#define MEMBER_MESHED (1u << 0)
#define MEMBER_STRICT (1u << 1)	/* STRICT mode: inbound plaintext from outside the mesh is dropped */

/* Destination flags in mesh_dsts. */
#define DST_SERVICE (1u << 0)
#define DST_POD (1u << 1)

/* Config flags. */
#define CFG_FAIL_CLOSED (1u << 0)

struct capture_config {
	struct skein_addr proxy4;	/* IPv4-mapped address of the outbound listener */
	struct skein_addr proxy6;	/* IPv6 address of the outbound listener, zero if none */
	__u16 proxy_port;	/* host order */
	__u16 pad;
	__u32 flags;		/* CFG_* */
};

struct member {
	__u32 flags;		/* MEMBER_* */
	__u32 pad;
};

struct excluded_key {
	__u64 cgroup_id;
	__u16 port;		/* host order */
	__u16 pad[3];
};

struct dst_key {
	struct skein_addr addr;
	__u16 port;		/* host order; 0 matches every port of a pod IP */
	__u16 pad;
};

struct dst_info {
	__u32 flags;		/* DST_* */
};

/* origin is what the proxy learns about an accepted connection. */
struct origin {
	struct skein_addr addr;	/* the destination the app dialed */
	__u16 port;		/* host order */
	__u16 family;		/* AF_INET or AF_INET6 of the app's socket */
	__u32 pad;
	__u64 cgroup_id;	/* the pod cgroup of the connecting socket */
};

/* conn_key is a captured connection as the proxy sees it on accept. */
struct conn_key {
	struct skein_addr src;	/* the pod's address (the proxy's peer) */
	struct skein_addr dst;	/* the proxy's address */
	__u16 sport;		/* host order */
	__u16 dport;		/* host order */
	__u32 pad;
};

/* strict_args is the input and output of test_strict (unit tests only). */
struct strict_args {
	struct skein_addr src;
	__u16 dport;
	__u8 syn;		/* SYN without ACK: a new inbound connection */
	__u8 strict;		/* the receiving pod is in STRICT mode */
	__u32 verdict;		/* out: 1 pass, 0 drop */
};

/* decide_args is the input and output of test_decide (unit tests only). */
struct decide_args {
	__u64 cgroup_id;
	struct skein_addr dst;
	__u16 port;
	__u8 alive;
	__u8 v6;
	__u32 verdict;		/* out */
};

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct capture_config);
} capture_cfg SEC(".maps");

/* proxy_listener holds the outbound listening socket. The kernel removes it
 * when the socket closes, so an entry here means a proxy is accepting: this is
 * the liveness entry that fail-open and fail-closed consult. */
struct {
	__uint(type, BPF_MAP_TYPE_SOCKMAP);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u64);
} proxy_listener SEC(".maps");

/* members maps a pod cgroup id to the pod's capture flags. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 16384);
	__type(key, __u64);
	__type(value, struct member);
} members SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 16384);
	__type(key, struct excluded_key);
	__type(value, __u8);
} excluded_ports SEC(".maps");

/* mesh_dsts holds Service VIP:port and meshed pod IP (port 0) entries. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 262144);
	__type(key, struct dst_key);
	__type(value, struct dst_info);
} mesh_dsts SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_SK_STORAGE);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, int);
	__type(value, struct origin);
} sock_origin SEC(".maps");

/* orig_dst is read (and deleted) by the proxy on accept. LRU so that entries
 * of connections the proxy never accepted age out instead of filling it. */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 65536);
	__type(key, struct conn_key);
	__type(value, struct origin);
} orig_dst SEC(".maps");

/* verdicts counts capture decisions by verdict, per CPU. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, V_MAX);
	__type(key, __u32);
	__type(value, __u64);
} verdicts SEC(".maps");

/* Keep the types the Go side needs in BTF even where no map names them. */
const struct decide_args *unused_decide_args __attribute__((unused));
const struct strict_args *unused_strict_args __attribute__((unused));

/* trusted_srcs are the addresses the node proxy connects to pods from (its
 * own addresses and the node's): in STRICT mode, the only sources a meshed
 * pod accepts new TCP connections from. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 64);
	__type(key, struct skein_addr);
	__type(value, __u8);
} trusted_srcs SEC(".maps");

/* strict_stats counts, per CPU: [0] inbound connections dropped, [1] passed. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 2);
	__type(key, __u32);
	__type(value, __u64);
} strict_stats SEC(".maps");
const struct skein_event *unused_skein_event __attribute__((unused));

#define MAX_CGROUP_DEPTH 16

static __always_inline void count(__u32 v)
{
	__u64 *c = bpf_map_lookup_elem(&verdicts, &v);

	if (c)
		*c += 1;
}

/* member_cgroup finds the meshed pod cgroup that the current task belongs to,
 * walking its ancestors, since a pod's processes live in container cgroups
 * below the pod cgroup. Returns 0 if none. */
static __always_inline __u64 member_cgroup(struct member **m)
{
	for (int level = 1; level <= MAX_CGROUP_DEPTH; level++) {
		__u64 id = bpf_get_current_ancestor_cgroup_id(level);

		if (!id)
			break;
		*m = bpf_map_lookup_elem(&members, &id);
		if (*m)
			return id;
	}
	return 0;
}

static __always_inline int proxy_alive(void)
{
	__u32 k = 0;
	struct bpf_sock *sk = bpf_map_lookup_elem(&proxy_listener, &k);

	if (!sk)
		return 0;
	bpf_sk_release(sk);
	return 1;
}

/* decide is the whole capture policy, kept free of context access so that
 * test_decide can run it with BPF_PROG_TEST_RUN. */
static __always_inline __u32 decide(__u64 cgid, struct member *m, struct skein_addr *dst,
				    __u16 port, int v6, int alive, struct capture_config *cfg)
{
	if (!cgid || !m || !(m->flags & MEMBER_MESHED))
		return V_NOT_MEMBER;
	if (skein_addr_is_loopback(dst))
		return V_LOOPBACK;

	struct excluded_key ek = { .cgroup_id = cgid, .port = port };

	if (bpf_map_lookup_elem(&excluded_ports, &ek))
		return V_EXCLUDED_PORT;

	struct dst_key dk = { .addr = *dst, .port = port };

	if (!bpf_map_lookup_elem(&mesh_dsts, &dk)) {
		dk.port = 0;
		if (!bpf_map_lookup_elem(&mesh_dsts, &dk))
			return V_NOT_MESH_DST;
	}
	if (!alive)
		return (cfg->flags & CFG_FAIL_CLOSED) ? V_FAIL_CLOSED : V_FAIL_OPEN;
	if (v6 && !skein_addr_is4(dst)) {
		struct skein_addr *p = &cfg->proxy6;

		if (!(p->w[0] | p->w[1] | p->w[2] | p->w[3]))
			return V_NO_PROXY_ADDR;
	} else if (!cfg->proxy4.w[3]) {
		return V_NO_PROXY_ADDR;
	}
	return V_REDIRECT;
}

static __always_inline void trace_capture(__u64 cgid, __u32 v, struct skein_addr *dst, __u16 port)
{
	if (!skein_trace_wanted(SKEIN_EV_CAPTURE, cgid))
		return;
	struct skein_event ev = {};

	ev.ts_ns = bpf_ktime_get_ns();
	ev.cgroup_id = cgid;
	ev.kind = SKEIN_EV_CAPTURE;
	ev.reason = v;
	ev.orig = *dst;
	ev.orig_port = port;
	skein_trace_emit(&ev);
}

/* capture runs the policy for one connect and rewrites ctx on V_REDIRECT.
 * Returns the program's return code: 1 lets the connect proceed, 0 fails it
 * with EPERM. */
static __always_inline int capture(struct bpf_sock_addr *ctx, struct skein_addr *dst, int v6)
{
	if (ctx->type != SOCK_STREAM || ctx->protocol != IPPROTO_TCP)
		return 1;

	struct member *m = 0;
	__u64 cgid = member_cgroup(&m);

	if (!cgid)
		return 1;	/* not a pod of ours: not counted, it is the common case */

	__u32 k = 0;
	struct capture_config *cfg = bpf_map_lookup_elem(&capture_cfg, &k);

	if (!cfg)
		return 1;

	__u16 port = bpf_ntohs(ctx->user_port);
	__u32 v = decide(cgid, m, dst, port, v6, proxy_alive(), cfg);

	count(v);
	trace_capture(cgid, v, dst, port);
	if (v == V_FAIL_CLOSED)
		return 0;
	if (v != V_REDIRECT)
		return 1;

	struct origin *o = bpf_sk_storage_get(&sock_origin, ctx->sk, 0, BPF_SK_STORAGE_GET_F_CREATE);

	if (!o)
		return 1;	/* no storage: the connect goes direct, as if fail-open */
	o->addr = *dst;
	o->port = port;
	o->family = v6 ? AF_INET6 : AF_INET;
	o->cgroup_id = cgid;

	if (v6 && !skein_addr_is4(dst)) {
		ctx->user_ip6[0] = cfg->proxy6.w[0];
		ctx->user_ip6[1] = cfg->proxy6.w[1];
		ctx->user_ip6[2] = cfg->proxy6.w[2];
		ctx->user_ip6[3] = cfg->proxy6.w[3];
	} else if (v6) {
		/* An IPv4-mapped destination on a dual-stack socket. */
		ctx->user_ip6[0] = 0;
		ctx->user_ip6[1] = 0;
		ctx->user_ip6[2] = bpf_htonl(0x0000ffff);
		ctx->user_ip6[3] = cfg->proxy4.w[3];
	} else {
		ctx->user_ip4 = cfg->proxy4.w[3];
	}
	ctx->user_port = bpf_htons(cfg->proxy_port);
	return 1;
}

SEC("cgroup/connect4")
int skein_connect4(struct bpf_sock_addr *ctx)
{
	struct skein_addr dst;

	skein_addr_from4(&dst, ctx->user_ip4);
	return capture(ctx, &dst, 0);
}

SEC("cgroup/connect6")
int skein_connect6(struct bpf_sock_addr *ctx)
{
	struct skein_addr dst;

	dst.w[0] = ctx->user_ip6[0];
	dst.w[1] = ctx->user_ip6[1];
	dst.w[2] = ctx->user_ip6[2];
	dst.w[3] = ctx->user_ip6[3];
	return capture(ctx, &dst, 1);
}

/* getpeername shows the app the address it dialed, not the proxy's. */
static __always_inline void restore_peer(struct bpf_sock_addr *ctx, int v6)
{
	struct origin *o = bpf_sk_storage_get(&sock_origin, ctx->sk, 0, 0);

	if (!o)
		return;
	if (v6) {
		ctx->user_ip6[0] = o->addr.w[0];
		ctx->user_ip6[1] = o->addr.w[1];
		ctx->user_ip6[2] = o->addr.w[2];
		ctx->user_ip6[3] = o->addr.w[3];
	} else {
		ctx->user_ip4 = o->addr.w[3];
	}
	ctx->user_port = bpf_htons(o->port);
}

SEC("cgroup/getpeername4")
int skein_getpeername4(struct bpf_sock_addr *ctx)
{
	restore_peer(ctx, 0);
	return 1;
}

SEC("cgroup/getpeername6")
int skein_getpeername6(struct bpf_sock_addr *ctx)
{
	restore_peer(ctx, 1);
	return 1;
}

/* skein_sockops publishes the origin of a redirected connection under the
 * 4-tuple the proxy will see, once the connection is established. */
SEC("sockops")
int skein_sockops(struct bpf_sock_ops *ops)
{
	if (ops->op != BPF_SOCK_OPS_ACTIVE_ESTABLISHED_CB)
		return 1;

	struct bpf_sock *sk = ops->sk;

	if (!sk)
		return 1;

	struct origin *o = bpf_sk_storage_get(&sock_origin, sk, 0, 0);

	if (!o)
		return 1;

	struct conn_key key = {};

	if (ops->family == AF_INET) {
		skein_addr_from4(&key.src, ops->local_ip4);
		skein_addr_from4(&key.dst, ops->remote_ip4);
	} else {
		key.src.w[0] = ops->local_ip6[0];
		key.src.w[1] = ops->local_ip6[1];
		key.src.w[2] = ops->local_ip6[2];
		key.src.w[3] = ops->local_ip6[3];
		key.dst.w[0] = ops->remote_ip6[0];
		key.dst.w[1] = ops->remote_ip6[1];
		key.dst.w[2] = ops->remote_ip6[2];
		key.dst.w[3] = ops->remote_ip6[3];
	}
	key.sport = (__u16)ops->local_port;
	key.dport = (__u16)bpf_ntohl(ops->remote_port);
	bpf_map_update_elem(&orig_dst, &key, o, BPF_ANY);
	return 1;
}

/* strict_decide says whether an inbound packet may pass: in STRICT mode a
 * new TCP connection (SYN without ACK) must come from the node proxy, so
 * plaintext from outside the mesh never reaches the pod; replies to the
 * pod's own connections and established flows pass. */
static __always_inline int strict_decide(struct skein_addr *src, int syn, int strict)
{
	if (!strict || !syn)
		return 1;
	if (skein_addr_is_loopback(src))
		return 1;
	if (bpf_map_lookup_elem(&trusted_srcs, src))
		return 1;
	return 0;
}

static __always_inline void count_strict(__u32 i)
{
	__u64 *c = bpf_map_lookup_elem(&strict_stats, &i);

	if (c)
		*c += 1;
}

#define ETH_P_IP_BE 0x0008	/* htons(ETH_P_IP) */
#define ETH_P_IPV6_BE 0xDD86	/* htons(ETH_P_IPV6) */
#define TCP_FLAG_SYN 0x02
#define TCP_FLAG_ACK 0x10

/* skein_ingress enforces STRICT mode on the node's pods. It hooks
 * cgroup_skb/ingress on the pod cgroup root, so it sees every packet
 * delivered to a pod's sockets, and finds the pod by the receiving socket's
 * cgroup. Minimum kernel: 5.10 (bpf_skb_ancestor_cgroup_id). */
SEC("cgroup_skb/ingress")
int skein_ingress(struct __sk_buff *skb)
{
	struct skein_addr src = {};
	__u8 flags = 0;
	__u16 sport = 0, dport = 0;
	struct skein_addr dst = {};

	if (skb->protocol == ETH_P_IP_BE) {
		struct iphdr ip;

		if (bpf_skb_load_bytes(skb, 0, &ip, sizeof(ip)) < 0 || ip.protocol != IPPROTO_TCP)
			return 1;
		skein_addr_from4(&src, ip.saddr);
		skein_addr_from4(&dst, ip.daddr);
		__u32 off = (ip.ihl & 0xf) * 4;
		struct tcphdr tcp;

		if (bpf_skb_load_bytes(skb, off, &tcp, sizeof(tcp)) < 0)
			return 1;
		flags = ((__u8 *)&tcp)[13];
		sport = bpf_ntohs(tcp.source);
		dport = bpf_ntohs(tcp.dest);
	} else if (skb->protocol == ETH_P_IPV6_BE) {
		struct ipv6hdr ip6;

		if (bpf_skb_load_bytes(skb, 0, &ip6, sizeof(ip6)) < 0 || ip6.nexthdr != IPPROTO_TCP)
			return 1; /* extension headers: not a plain TCP packet, let the stack judge */
		__builtin_memcpy(&src, &ip6.saddr, sizeof(src));
		__builtin_memcpy(&dst, &ip6.daddr, sizeof(dst));
		struct tcphdr tcp;

		if (bpf_skb_load_bytes(skb, sizeof(ip6), &tcp, sizeof(tcp)) < 0)
			return 1;
		flags = ((__u8 *)&tcp)[13];
		sport = bpf_ntohs(tcp.source);
		dport = bpf_ntohs(tcp.dest);
	} else {
		return 1;
	}
	int syn = (flags & TCP_FLAG_SYN) && !(flags & TCP_FLAG_ACK);

	if (!syn)
		return 1;	/* the common case, decided before any map lookup */

	__u64 cgid = 0;
	struct member *m = 0;

	for (int level = 1; level <= MAX_CGROUP_DEPTH; level++) {
		__u64 id = bpf_skb_ancestor_cgroup_id(skb, level);

		if (!id)
			break;
		m = bpf_map_lookup_elem(&members, &id);
		if (m) {
			cgid = id;
			break;
		}
	}
	int strict = m && (m->flags & MEMBER_STRICT);

	if (strict_decide(&src, syn, strict)) {
		if (strict)
			count_strict(1);
		return 1;
	}
	count_strict(0);
	if (skein_trace_wanted(SKEIN_EV_STRICT_DROP, cgid)) {
		struct skein_event ev = {};

		ev.ts_ns = bpf_ktime_get_ns();
		ev.cgroup_id = cgid;
		ev.kind = SKEIN_EV_STRICT_DROP;
		ev.saddr = src;
		ev.daddr = dst;
		ev.sport = sport;
		ev.dport = dport;
		skein_trace_emit(&ev);
	}
	return 0;
}

/* test_strict runs strict_decide() for the unit tests. */
SEC("syscall")
int test_strict(struct strict_args *args)
{
	struct skein_addr src = args->src;

	args->verdict = strict_decide(&src, args->syn, args->strict);
	return 0;
}

/* test_decide runs decide() on the arguments it is given; it is never
 * attached. Loaded only by the unit tests through BPF_PROG_TEST_RUN. */
SEC("syscall")
int test_decide(struct decide_args *args)
{
	__u32 k = 0;
	struct capture_config *cfg = bpf_map_lookup_elem(&capture_cfg, &k);
	struct skein_addr dst = args->dst;

	if (!cfg)
		return 1;
	__u64 cgid = args->cgroup_id;
	struct member *m = bpf_map_lookup_elem(&members, &cgid);

	args->verdict = decide(cgid, m, &dst, args->port, args->v6, args->alive, cfg);
	return 0;
}
