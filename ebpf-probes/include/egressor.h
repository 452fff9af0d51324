/* SPDX-License-Identifier: (GPL-2.0 OR Apache-2.0) */
/*
 * egressor.h - the one definition of everything shared between the eBPF
 * probes (ebpf-probes/NAME.bpf.c) and user space (src/capture/abi.rs).
 *
 * Rules that keep the two sides in step:
 *  - every struct has fixed-size fields, explicit padding and no implicit
 *    holes, so `#[repr(C)]` in Rust has the same layout; src/capture/abi.rs
 *    asserts the sizes below at compile time (EGR_SIZEOF_*), and the probes
 *    assert them with _Static_assert;
 *  - addresses are kept in network byte order (as on the wire), ports in
 *    host byte order;
 *  - counters are cumulative since the map entry was created (first_ns);
 *    user space computes deltas between drains.
 *
 * Change a struct here and in abi.rs in the same commit.
 */
#ifndef EGRESSOR_H
#define EGRESSOR_H

#define EGR_COMM_LEN 16

/* Default map sizes; user space overrides max_entries before load. */
#define EGR_DEFAULT_MAX_SOCKETS 65536
#define EGR_DEFAULT_RING_BYTES (4 * 1024 * 1024)

/*
 * 5-tuple of a socket as seen from this host: "local" is our end, "remote"
 * the peer. Taken from the packet headers on the first packet (or from the
 * socket in sock_ops when sock_ops sees the socket first).
 */
struct egr_tuple {
	__u8 local_addr[16];  /* network order; IPv4 uses bytes 0..3 */
	__u8 remote_addr[16]; /* network order; IPv4 uses bytes 0..3 */
	__u16 local_port;     /* host order; 0 for protocols without ports */
	__u16 remote_port;    /* host order; 0 for protocols without ports */
	__u8 ip_version;      /* 4 or 6; 0 = not known yet */
	__u8 proto;           /* IPPROTO_TCP, IPPROTO_UDP or any other */
	__u8 _pad[2];
};
#define EGR_SIZEOF_TUPLE 40

/* egr_sock_stats.flags */
#define EGR_F_OPENED (1u << 0)       /* TCP established seen by sock_ops */
#define EGR_F_INIT_LOCAL (1u << 1)   /* we initiated (connect) */
#define EGR_F_INIT_REMOTE (1u << 2)  /* the peer initiated (accept) */
#define EGR_F_CLOSED (1u << 3)       /* closed, but the ring buffer was full:
                                      * user space reports it as closed and
                                      * deletes the entry */
#define EGR_F_MULTI_REMOTE (1u << 4) /* unconnected UDP socket that talked to
                                      * more than one remote; tuple holds the
                                      * first one */
#define EGR_F_LISTENER (1u << 5)     /* TCP listening socket (its entry holds
                                      * the handshake packets of accepted
                                      * connections: SYN, SYN-ACK, ACK) */

/*
 * Value of SOCK_STATS (LRU hash, key: __u64 socket cookie).
 * bytes_* are IP-layer lengths (IP header + L4 header + payload) of the
 * packets as cgroup_skb sees them: with GSO/TSO/GRO one "packet" can be a
 * super-packet of many wire segments carrying one set of headers.
 */
struct egr_sock_stats {
	struct egr_tuple tuple;
	__u64 cgroup_id; /* cgroup v2 id (inode) of the socket's cgroup; 0 = not
	                  * known yet (entry created by sock_ops) */
	__u64 bytes_out;
	__u64 bytes_in;
	__u64 packets_out;
	__u64 packets_in;
	__u64 first_ns; /* bpf_ktime_get_ns() (CLOCK_MONOTONIC) at creation */
	__u64 last_ns;  /* at creation, and at close in close events (not per packet) */
	__u32 flags;    /* EGR_F_* */
	__u32 _pad;
};
#define EGR_SIZEOF_SOCK_STATS 104

/*
 * Value of SOCK_META (LRU hash, key: __u64 socket cookie), written by
 * cgroup/connect4|6 and cgroup/sendmsg4|6: who asked for which destination.
 * The requested destination is the one the application passed to connect()
 * or sendto(), before any DNAT (e.g. a Kubernetes Service VIP).
 */
struct egr_sock_meta {
	__u8 requested_addr[16]; /* network order; IPv4 uses bytes 0..3 */
	__u16 requested_port;    /* host order */
	__u8 ip_version;         /* 4 or 6 */
	__u8 proto;              /* IPPROTO_TCP / IPPROTO_UDP / 0 */
	__u32 pid;               /* tgid of the caller */
	__u64 cgroup_id;         /* current cgroup of the caller */
	__u64 ns;                /* bpf_ktime_get_ns() of the call */
	char comm[EGR_COMM_LEN]; /* task comm of the caller */
};
#define EGR_SIZEOF_SOCK_META 56

/* egr_close_event.kind */
#define EGR_EV_TCP_CLOSE 1    /* sock_ops state callback: TCP_CLOSE */
#define EGR_EV_SOCK_RELEASE 2 /* cgroup/sock_release of a non-TCP socket */

/*
 * Record in the EVENTS ring buffer: final counters of a socket that is gone.
 * The SOCK_STATS and SOCK_META entries were deleted when it was written, so
 * the cookie will not appear again.
 */
struct egr_close_event {
	__u64 cookie;
	__u32 kind;     /* EGR_EV_* */
	__u32 has_meta; /* 1 when meta is valid */
	struct egr_sock_stats stats;
	struct egr_sock_meta meta;
};
#define EGR_SIZEOF_CLOSE_EVENT 176

/* Indices of the DROPS per-CPU array (each slot: __u64 count). */
#define EGR_DROP_STATS_INSERT 0 /* SOCK_STATS insert failed: packet not counted */
#define EGR_DROP_META_INSERT 1  /* SOCK_META insert failed: no pid/requested dst */
#define EGR_DROP_RING_FULL 2    /* close event not sent; entry kept with
                                 * EGR_F_CLOSED instead (no bytes lost) */
#define EGR_DROP_NO_COOKIE 3    /* packet without a socket cookie */
/* Not losses: SOCK_STATS entries created and deleted by the probes. With the entries
 * user space saw and deleted, they tell how many entries the LRU evicted, including
 * sockets evicted before any drain saw them. */
#define EGR_STAT_INSERTED 4
#define EGR_STAT_DELETED 5
#define EGR_DROP_SLOTS 6

#endif /* EGRESSOR_H */
