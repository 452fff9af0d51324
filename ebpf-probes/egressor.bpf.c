// SPDX-License-Identifier: GPL-2.0
/*
 * egressor.bpf.c - per-socket byte and packet counters, aggregated in the
 * kernel, plus the socket life cycle that makes sure no short flow is lost.
 *
 * Programs (all attached to one cgroup v2 directory, for its whole subtree):
 *   cgroup_skb/egress, cgroup_skb/ingress  count IP-layer bytes and packets per
 *                                          socket cookie in SOCK_STATS
 *   sockops                                TCP connect/established/close: marks
 *                                          who initiated, and on TCP_CLOSE pushes
 *                                          the final counters to EVENTS and
 *                                          deletes the entry
 *   cgroup/connect4|6, cgroup/sendmsg4|6   the destination the application asked
 *                                          for (before DNAT), pid and comm
 *   cgroup/post_bind4|6                    pid and comm of whoever binds a socket:
 *                                          a listener's process is what its
 *                                          accepted sockets (created in softirq,
 *                                          with no process) are attributed to
 *   cgroup/sock_release                    final counters of UDP and other
 *                                          non-TCP sockets when they are released
 *
 * Headers only: the cgroup_skb programs read at most the IP and L4 headers
 * (bpf_skb_load_bytes of 40 + 4 bytes), never payload. Nothing is sent to
 * user space per packet.
 *
 * Only stable UAPI context structs (__sk_buff, bpf_sock_ops, bpf_sock_addr,
 * bpf_sock) are used, so no vmlinux.h and no CO-RE relocations are needed:
 * the uapi headers from linux-libc-dev and bpf_helpers.h from libbpf-dev are
 * enough, and the object loads on any kernel with these program types.
 */
#include <linux/types.h>
#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/in.h>
#include <linux/in6.h>
#include <linux/ip.h>
#include <linux/ipv6.h>
#include <linux/socket.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>

#include "egressor.h"

_Static_assert(sizeof(struct egr_tuple) == EGR_SIZEOF_TUPLE, "egr_tuple size");
_Static_assert(sizeof(struct egr_sock_stats) == EGR_SIZEOF_SOCK_STATS, "egr_sock_stats size");
_Static_assert(sizeof(struct egr_sock_meta) == EGR_SIZEOF_SOCK_META, "egr_sock_meta size");
_Static_assert(sizeof(struct egr_close_event) == EGR_SIZEOF_CLOSE_EVENT, "egr_close_event size");

#ifndef AF_INET
#define AF_INET 2
#endif
#ifndef AF_INET6
#define AF_INET6 10
#endif
#define EGR_SOCK_STREAM 1
/* Context fields must be read 4 bytes at a time: keep clang from merging two
 * adjacent u32 reads into one u64 load, which the verifier rejects. */
#define CTX_U32(field) (*(volatile __u32 *)&(field))
#define EGR_IP_MF 0x2000
#define EGR_IP_OFFSET 0x1FFF

char LICENSE[] SEC("license") = "GPL";

/* Per-socket counters. max_entries is overridden from user space. */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, EGR_DEFAULT_MAX_SOCKETS);
	__type(key, __u64);
	__type(value, struct egr_sock_stats);
} SOCK_STATS SEC(".maps");

/* Per-socket connect/sendmsg metadata. Same max_entries as SOCK_STATS. */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, EGR_DEFAULT_MAX_SOCKETS);
	__type(key, __u64);
	__type(value, struct egr_sock_meta);
} SOCK_META SEC(".maps");

/* Close events (struct egr_close_event). Size overridden from user space. */
struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, EGR_DEFAULT_RING_BYTES);
} EVENTS SEC(".maps");

/* Loss counters, EGR_DROP_* slots; user space sums the CPUs. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, EGR_DROP_SLOTS);
	__type(key, __u32);
	__type(value, __u64);
} DROPS SEC(".maps");

static __always_inline void count_drop(__u32 slot)
{
	__u64 *n = bpf_map_lookup_elem(&DROPS, &slot);
	if (n)
		*n += 1; /* per-CPU slot: no atomic needed */
}

/* --------------------------------------------------------------------- */
/* cgroup_skb: counting                                                   */
/* --------------------------------------------------------------------- */

/*
 * Parse the IP and L4 headers into a tuple. In cgroup_skb programs the skb
 * data starts at the network header. Returns 0 on success.
 */
static __always_inline int parse_tuple(struct __sk_buff *skb, int egress, struct egr_tuple *t)
{
	__u8 *src, *dst;
	__u32 l4_off;
	__u16 ports[2] = {0, 0};
	int has_ports = 0;

	if (skb->protocol == bpf_htons(ETH_P_IP)) {
		struct iphdr ip;
		if (bpf_skb_load_bytes(skb, 0, &ip, sizeof(ip)) < 0)
			return -1;
		t->ip_version = 4;
		t->proto = ip.protocol;
		__builtin_memcpy(egress ? t->local_addr : t->remote_addr, &ip.saddr, 4);
		__builtin_memcpy(egress ? t->remote_addr : t->local_addr, &ip.daddr, 4);
		l4_off = ip.ihl * 4;
		/* Only the first fragment carries the L4 header. */
		has_ports = !(ip.frag_off & bpf_htons(EGR_IP_OFFSET));
	} else if (skb->protocol == bpf_htons(ETH_P_IPV6)) {
		struct ipv6hdr ip6;
		if (bpf_skb_load_bytes(skb, 0, &ip6, sizeof(ip6)) < 0)
			return -1;
		t->ip_version = 6;
		/* Extension headers are not walked: their packets count as
		 * "other" protocol with the next-header value. */
		t->proto = ip6.nexthdr;
		src = (__u8 *)&ip6.saddr;
		dst = (__u8 *)&ip6.daddr;
		__builtin_memcpy(egress ? t->local_addr : t->remote_addr, src, 16);
		__builtin_memcpy(egress ? t->remote_addr : t->local_addr, dst, 16);
		l4_off = sizeof(ip6);
		has_ports = 1;
	} else {
		return -1;
	}

	if (has_ports && (t->proto == IPPROTO_TCP || t->proto == IPPROTO_UDP)) {
		/* TCP and UDP both start with source port, destination port. */
		if (bpf_skb_load_bytes(skb, l4_off & 0xff, ports, sizeof(ports)) == 0) {
			t->local_port = bpf_ntohs(egress ? ports[0] : ports[1]);
			t->remote_port = bpf_ntohs(egress ? ports[1] : ports[0]);
		}
	}
	return 0;
}

static __always_inline int same_remote(const struct egr_tuple *a, const struct egr_tuple *b)
{
	if (a->remote_port != b->remote_port)
		return 0;
	const __u64 *x = (const __u64 *)a->remote_addr;
	const __u64 *y = (const __u64 *)b->remote_addr;
	return x[0] == y[0] && x[1] == y[1];
}

static __always_inline int count_skb(struct __sk_buff *skb, int egress)
{
	__u64 cookie = bpf_get_socket_cookie(skb);
	__u64 len = skb->len; /* IP header + L4 header + payload */
	struct egr_sock_stats *v;

	if (!cookie) {
		count_drop(EGR_DROP_NO_COOKIE);
		return 1;
	}

	v = bpf_map_lookup_elem(&SOCK_STATS, &cookie);
	if (!v) {
		struct egr_sock_stats init = {};
		/* The clock is read only here: a read per packet cost ~10% of
		 * the probe and nothing downstream needs the last packet's time. */
		__u64 now = bpf_ktime_get_ns();
		if (parse_tuple(skb, egress, &init.tuple) < 0)
			init.tuple.ip_version = 0;
		/* The socket's cgroup (sk_cgrp_data), right for both directions:
		 * on ingress the current task is unrelated (softirq). */
		init.cgroup_id = bpf_skb_cgroup_id(skb);
		init.first_ns = now;
		init.last_ns = now;
		if (egress) {
			init.bytes_out = len;
			init.packets_out = 1;
		} else {
			init.bytes_in = len;
			init.packets_in = 1;
		}
		if (bpf_map_update_elem(&SOCK_STATS, &cookie, &init, BPF_NOEXIST) == 0) {
			count_drop(EGR_STAT_INSERTED);
			return 1;
		}
		/* Lost a race with another CPU (or sock_ops): count into the
		 * entry it created. */
		v = bpf_map_lookup_elem(&SOCK_STATS, &cookie);
		if (!v) {
			count_drop(EGR_DROP_STATS_INSERT);
			return 1;
		}
	}

	if (egress) {
		__sync_fetch_and_add(&v->bytes_out, len);
		__sync_fetch_and_add(&v->packets_out, 1);
	} else {
		__sync_fetch_and_add(&v->bytes_in, len);
		__sync_fetch_and_add(&v->packets_in, 1);
	}
	if (!v->cgroup_id)
		v->cgroup_id = bpf_skb_cgroup_id(skb);
	if (!v->tuple.ip_version) {
		struct egr_tuple t = {};
		if (parse_tuple(skb, egress, &t) == 0)
			v->tuple = t;
	} else if (egress && v->tuple.proto == IPPROTO_UDP && !(v->flags & EGR_F_MULTI_REMOTE)) {
		/* An unconnected UDP socket can talk to many peers under one
		 * cookie; flag it so user space knows the tuple is the first.
		 * Egress only: replies of a DNATed flow arrive un-NATed. */
		struct egr_tuple t = {};
		if (parse_tuple(skb, egress, &t) == 0 && !same_remote(&t, &v->tuple))
			__sync_fetch_and_or(&v->flags, EGR_F_MULTI_REMOTE);
	}
	return 1;
}

SEC("cgroup_skb/egress")
int egr_egress(struct __sk_buff *skb)
{
	return count_skb(skb, 1); /* 1 = allow */
}

SEC("cgroup_skb/ingress")
int egr_ingress(struct __sk_buff *skb)
{
	return count_skb(skb, 0);
}

/* --------------------------------------------------------------------- */
/* Final counters: push through the ring buffer and delete the entries    */
/* --------------------------------------------------------------------- */

static __always_inline void finish_socket(__u64 cookie, __u32 kind)
{
	struct egr_sock_stats *v = bpf_map_lookup_elem(&SOCK_STATS, &cookie);
	struct egr_sock_meta *m = bpf_map_lookup_elem(&SOCK_META, &cookie);
	struct egr_close_event *ev;
	__u64 flags;

	if (!v) {
		/* Keeps clang from testing (v | m) == 0: the verifier refuses
		 * arithmetic on pointers. */
		barrier_var(m);
		if (!m)
			return;
	}
	ev = bpf_ringbuf_reserve(&EVENTS, sizeof(*ev), 0);
	if (!ev) {
		/* Keep the counters in the map, marked closed: user space will
		 * report and delete them at its next drain. */
		count_drop(EGR_DROP_RING_FULL);
		if (v)
			__sync_fetch_and_or(&v->flags, EGR_F_CLOSED);
		return;
	}
	ev->cookie = cookie;
	ev->kind = kind;
	if (v) {
		ev->stats = *v;
		ev->stats.last_ns = bpf_ktime_get_ns();
	} else {
		__builtin_memset(&ev->stats, 0, sizeof(ev->stats));
	}
	if (m) {
		ev->meta = *m;
		ev->has_meta = 1;
	} else {
		__builtin_memset(&ev->meta, 0, sizeof(ev->meta));
		ev->has_meta = 0;
	}
	/* Wake a poller only when the ring is getting full; user space drains
	 * it on its own schedule otherwise (saves a wakeup per close). */
	flags = bpf_ringbuf_query(&EVENTS, BPF_RB_AVAIL_DATA) >
			    bpf_ringbuf_query(&EVENTS, BPF_RB_RING_SIZE) / 4
		    ? BPF_RB_FORCE_WAKEUP
		    : BPF_RB_NO_WAKEUP;
	bpf_ringbuf_submit(ev, flags);
	if (bpf_map_delete_elem(&SOCK_STATS, &cookie) == 0)
		count_drop(EGR_STAT_DELETED);
	bpf_map_delete_elem(&SOCK_META, &cookie);
}

/* --------------------------------------------------------------------- */
/* sock_ops: TCP life cycle                                               */
/* --------------------------------------------------------------------- */

static __always_inline void upsert_from_sock(struct bpf_sock_ops *skops, __u64 cookie, __u32 flags)
{
	struct egr_sock_stats *v = bpf_map_lookup_elem(&SOCK_STATS, &cookie);
	if (v) {
		__sync_fetch_and_or(&v->flags, flags);
		return;
	}
	/* A passively opened socket has seen no packet of its own yet (the
	 * handshake is counted on the listener), nor has a new listener:
	 * create the entry from the socket. cgroup_id is filled in by the
	 * first packet. */
	struct egr_sock_stats init = {};
	__u64 now = bpf_ktime_get_ns();
	init.first_ns = now;
	init.last_ns = now;
	init.flags = flags;
	init.tuple.proto = IPPROTO_TCP;
	init.tuple.local_port = (__u16)skops->local_port;             /* host order */
	init.tuple.remote_port = bpf_ntohl(skops->remote_port) & 0xffff; /* network order */
	if (skops->family == AF_INET) {
		__u32 l = skops->local_ip4, r = skops->remote_ip4;
		init.tuple.ip_version = 4;
		__builtin_memcpy(init.tuple.local_addr, &l, 4);
		__builtin_memcpy(init.tuple.remote_addr, &r, 4);
	} else if (skops->family == AF_INET6) {
		__u32 a[4];
		init.tuple.ip_version = 6;
		a[0] = CTX_U32(skops->local_ip6[0]);
		a[1] = CTX_U32(skops->local_ip6[1]);
		a[2] = CTX_U32(skops->local_ip6[2]);
		a[3] = CTX_U32(skops->local_ip6[3]);
		__builtin_memcpy(init.tuple.local_addr, a, 16);
		a[0] = CTX_U32(skops->remote_ip6[0]);
		a[1] = CTX_U32(skops->remote_ip6[1]);
		a[2] = CTX_U32(skops->remote_ip6[2]);
		a[3] = CTX_U32(skops->remote_ip6[3]);
		__builtin_memcpy(init.tuple.remote_addr, a, 16);
	}
	if (bpf_map_update_elem(&SOCK_STATS, &cookie, &init, BPF_NOEXIST) != 0) {
		v = bpf_map_lookup_elem(&SOCK_STATS, &cookie);
		if (v)
			__sync_fetch_and_or(&v->flags, flags);
		else
			count_drop(EGR_DROP_STATS_INSERT);
	} else {
		count_drop(EGR_STAT_INSERTED);
	}
}

SEC("sockops")
int egr_sockops(struct bpf_sock_ops *skops)
{
	__u64 cookie = bpf_get_socket_cookie(skops);

	switch (skops->op) {
	case BPF_SOCK_OPS_TCP_CONNECT_CB:
	case BPF_SOCK_OPS_TCP_LISTEN_CB:
		/* Ask for state callbacks early so a failed connect or a closed
		 * listener still produces its close event. */
		bpf_sock_ops_cb_flags_set(skops, skops->bpf_sock_ops_cb_flags | BPF_SOCK_OPS_STATE_CB_FLAG);
		if (skops->op == BPF_SOCK_OPS_TCP_LISTEN_CB)
			/* Entry with the local address only: the handshakes of
			 * accepted connections are counted on the listener. */
			upsert_from_sock(skops, cookie, EGR_F_LISTENER);
		break;
	case BPF_SOCK_OPS_ACTIVE_ESTABLISHED_CB:
		bpf_sock_ops_cb_flags_set(skops, skops->bpf_sock_ops_cb_flags | BPF_SOCK_OPS_STATE_CB_FLAG);
		upsert_from_sock(skops, cookie, EGR_F_OPENED | EGR_F_INIT_LOCAL);
		break;
	case BPF_SOCK_OPS_PASSIVE_ESTABLISHED_CB:
		bpf_sock_ops_cb_flags_set(skops, skops->bpf_sock_ops_cb_flags | BPF_SOCK_OPS_STATE_CB_FLAG);
		upsert_from_sock(skops, cookie, EGR_F_OPENED | EGR_F_INIT_REMOTE);
		break;
	case BPF_SOCK_OPS_STATE_CB:
		/* args[0] = old state, args[1] = new state. TCP_CLOSE is set in
		 * tcp_done(), after the last packet of the full socket. */
		if (skops->args[1] == BPF_TCP_CLOSE)
			finish_socket(cookie, EGR_EV_TCP_CLOSE);
		break;
	}
	return 1;
}

/* --------------------------------------------------------------------- */
/* cgroup/sock_release: UDP and other non-TCP sockets                     */
/* --------------------------------------------------------------------- */

SEC("cgroup/sock_release")
int egr_sock_release(struct bpf_sock *sk)
{
	/* TCP keeps sending after close() (queued data, FIN): its final
	 * counters come from the sock_ops TCP_CLOSE callback instead. */
	if (sk->type == EGR_SOCK_STREAM && sk->protocol == IPPROTO_TCP)
		return 1;
	finish_socket(bpf_get_socket_cookie(sk), EGR_EV_SOCK_RELEASE);
	return 1;
}

/* --------------------------------------------------------------------- */
/* cgroup/connect*, cgroup/sendmsg*: requested destination, pid, comm     */
/* --------------------------------------------------------------------- */

static __always_inline void record_meta(struct bpf_sock_addr *ctx, int v6)
{
	__u64 cookie = bpf_get_socket_cookie(ctx);
	struct egr_sock_meta m = {};
	struct egr_sock_meta *old;

	m.ip_version = v6 ? 6 : 4;
	m.proto = (__u8)ctx->protocol;
	/* user_port: network order in the low 16 bits */
	m.requested_port = bpf_ntohs((__u16)ctx->user_port);
	if (v6) {
		__u32 a[4];
		a[0] = CTX_U32(ctx->user_ip6[0]);
		a[1] = CTX_U32(ctx->user_ip6[1]);
		a[2] = CTX_U32(ctx->user_ip6[2]);
		a[3] = CTX_U32(ctx->user_ip6[3]);
		__builtin_memcpy(m.requested_addr, a, 16);
	} else {
		__u32 a = ctx->user_ip4;
		__builtin_memcpy(m.requested_addr, &a, 4);
	}

	/* sendmsg on an unconnected UDP socket runs for every datagram: do not
	 * rewrite the entry when nothing changed. */
	old = bpf_map_lookup_elem(&SOCK_META, &cookie);
	if (old && old->requested_port == m.requested_port &&
	    ((__u64 *)old->requested_addr)[0] == ((__u64 *)m.requested_addr)[0] &&
	    ((__u64 *)old->requested_addr)[1] == ((__u64 *)m.requested_addr)[1])
		return;

	m.pid = bpf_get_current_pid_tgid() >> 32;
	m.cgroup_id = bpf_get_current_cgroup_id();
	m.ns = bpf_ktime_get_ns();
	bpf_get_current_comm(m.comm, sizeof(m.comm));
	if (bpf_map_update_elem(&SOCK_META, &cookie, &m, BPF_ANY) != 0)
		count_drop(EGR_DROP_META_INSERT);
}

SEC("cgroup/connect4")
int egr_connect4(struct bpf_sock_addr *ctx)
{
	record_meta(ctx, 0);
	return 1; /* allow */
}

SEC("cgroup/connect6")
int egr_connect6(struct bpf_sock_addr *ctx)
{
	record_meta(ctx, 1);
	return 1;
}

SEC("cgroup/sendmsg4")
int egr_sendmsg4(struct bpf_sock_addr *ctx)
{
	record_meta(ctx, 0);
	return 1;
}

SEC("cgroup/sendmsg6")
int egr_sendmsg6(struct bpf_sock_addr *ctx)
{
	record_meta(ctx, 1);
	return 1;
}

/* --------------------------------------------------------------------- */
/* cgroup/post_bind*: who owns a bound socket (listeners, UDP servers)    */
/* --------------------------------------------------------------------- */

/* Runs in the bind() caller's context. Only the owner is recorded (ip_version
 * 0: no requested destination); a later connect() or sendmsg() on the same
 * socket replaces the entry with its destination. */
static __always_inline void record_owner(struct bpf_sock *sk)
{
	__u64 cookie = bpf_get_socket_cookie(sk);
	struct egr_sock_meta m = {};

	if (bpf_map_lookup_elem(&SOCK_META, &cookie))
		return;
	m.proto = (__u8)sk->protocol;
	m.pid = bpf_get_current_pid_tgid() >> 32;
	m.cgroup_id = bpf_get_current_cgroup_id();
	m.ns = bpf_ktime_get_ns();
	bpf_get_current_comm(m.comm, sizeof(m.comm));
	if (bpf_map_update_elem(&SOCK_META, &cookie, &m, BPF_NOEXIST) != 0)
		count_drop(EGR_DROP_META_INSERT);
}

SEC("cgroup/post_bind4")
int egr_post_bind4(struct bpf_sock *sk)
{
	record_owner(sk);
	return 1;
}

SEC("cgroup/post_bind6")
int egr_post_bind6(struct bpf_sock *sk)
{
	record_owner(sk);
	return 1;
}
