/* Types shared by the XDP program and user space. The Go side gets them
 * through bpf2go (-type), so the two never disagree about a layout.
 *
 * These layouts are a contract with pinned state: a newer build takes
 * over the maps an older one pinned, counters and all, as long as each
 * map keeps its type, key and value sizes and number of entries. Grow
 * them only where room was left for it (REASON_STRIDE, MAX_QUEUES). */
#pragma once

#include <linux/types.h>

/* Why the program chose its verdict. Every reason is counted per action
 * in the stats map; append new reasons at the end. */
enum xdp_reason {
	REASON_NOT_IP,		/* ARP, LLDP, anything not IPv4/IPv6 */
	REASON_MALFORMED,	/* a header is truncated or inconsistent */
	REASON_FRAGMENT,	/* IPv4 or IPv6 fragment: only the kernel reassembles */
	REASON_EXT_HDR_LIMIT,	/* more than MAX_IPV6_EXT_HDRS extension headers */
	REASON_NO_MATCH,	/* parsed; no listener and not in the userstack port range */
	REASON_STEERED,		/* matched and redirected into the queue's AF_XDP socket */
	REASON_NO_SOCKET,	/* matched, but the queue has no AF_XDP socket */
	REASON_NOT_LOCAL,	/* matched a wildcard listener or the port range, but is
				 * not addressed to the interface (routed through it) */
	REASON_VLAN,		/* VLAN-tagged: the kernel's VLAN devices own it */
	REASON_MARTIAN,		/* would be steered, but comes from one of our own
				 * addresses, loopback, multicast or broadcast */
#ifdef EXTRA_TEST_REASONS
	/* A build with more reasons than this one, for the upgrade test. */
	REASON_TEST_1,
	REASON_TEST_2,
	REASON_TEST_3,
#endif
	REASON_MAX,
};

/* Index of the stats map: action (XDP_ABORTED..XDP_REDIRECT) x reason.
 * The stride leaves room for reasons to come, so that the map, and with
 * it a running program's counters, never changes size when one is added. */
#define STATS_ACTIONS (XDP_REDIRECT + 1)
#define REASON_STRIDE 64
#define STATS_INDEX(action, reason) ((action) * REASON_STRIDE + (reason))
_Static_assert(REASON_MAX <= REASON_STRIDE, "more reasons than REASON_STRIDE leaves room for");

/* The most RX queues an interface can have that xdpstack serves. */
#define MAX_QUEUES 256

struct counter {
	__u64 packets;
	__u64 bytes;
};

/* A listener the userstack asked for. IPv4 addresses are stored
 * IPv4-mapped (::ffff:a.b.c.d); the all-zero address matches any of
 * the interface's own addresses. */
struct listener_key {
	__u8 addr[16];
	__be16 port;
	__u8 protocol; /* IPPROTO_TCP or IPPROTO_UDP */
	__u8 pad;
};

struct listener_value {
	__u32 listener_id; /* the session layer's id for it, for `xdpstack sessions` */
};

/* An address of the interface, kept in step with the kernel's; IPv4
 * IPv4-mapped, as in listener_key. */
struct local_addr_key {
	__u8 addr[16];
};

enum local_addr_flags {
	LOCAL_ADDR_OWN = 1 << 0,       /* one of the interface's addresses */
	LOCAL_ADDR_SERVED = 1 << 1,    /* one the userstack serves: a destination it takes */
	LOCAL_ADDR_BROADCAST = 1 << 2, /* the broadcast address of one of its IPv4 subnets */
};

struct local_addr_value {
	__u32 flags; /* enum local_addr_flags */
};

/* Written by the loader at attach; read by `xdpstack status`. The
 * loader rewrites it whole at every attach, so it may grow: a pinned
 * one of another size is replaced, not taken over. */
struct attach_info {
	__u64 attach_time_ns;	   /* CLOCK_REALTIME */
	__u32 pid;		   /* of the xdpstack process that attached */
	__u16 userstack_port_min;  /* the range the program steers to the */
	__u16 userstack_port_max;  /* userstack; 0-0 when none */
	__u64 pid_start_time;	   /* that process's start, in clock ticks after boot
				    * (/proc/PID/stat), so that a reused PID is told apart */
	__u64 xsk_queues[MAX_QUEUES / 64];   /* bit q: an AF_XDP socket of the process serves queue q */
	__u64 xsk_zerocopy[MAX_QUEUES / 64]; /* bit q: that socket runs in zero-copy mode */
};
