/* Shared definitions for Skein's BPF programs.
 *
 * Addresses are kept as 16 bytes everywhere: IPv4 as IPv4-mapped IPv6
 * (::ffff:a.b.c.d), so one map key type serves both families and the Go side
 * decodes them with netip.AddrFrom16(...).Unmap(). Ports are host order.
 */
#pragma once

#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>

#ifndef AF_INET
#define AF_INET 2
#endif
#ifndef AF_INET6
#define AF_INET6 10
#endif
#ifndef SOCK_STREAM
#define SOCK_STREAM 1
#endif
#ifndef IPPROTO_TCP
#define IPPROTO_TCP 6
#endif

/* skein_addr is an IPv6 address or an IPv4-mapped IPv4 address. */
struct skein_addr {
	__u32 w[4];
};

static __always_inline void skein_addr_from4(struct skein_addr *a, __u32 ip4_be)
{
	a->w[0] = 0;
	a->w[1] = 0;
	a->w[2] = bpf_htonl(0x0000ffff);
	a->w[3] = ip4_be;
}

static __always_inline int skein_addr_is4(const struct skein_addr *a)
{
	return a->w[0] == 0 && a->w[1] == 0 && a->w[2] == bpf_htonl(0x0000ffff);
}

static __always_inline int skein_addr_is_loopback(const struct skein_addr *a)
{
	if (skein_addr_is4(a))
		return (bpf_ntohl(a->w[3]) >> 24) == 127;
	return a->w[0] == 0 && a->w[1] == 0 && a->w[2] == 0 && a->w[3] == bpf_htonl(1);
}
