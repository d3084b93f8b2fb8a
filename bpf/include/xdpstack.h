/* Types shared by the XDP program and user space. The Go side gets them
 * through bpf2go (-type), so the two never disagree about a layout. */
#pragma once

#include <linux/types.h>

/* Why the program chose its verdict. Every reason is counted per action
 * in the stats map; append new reasons at the end. */
enum xdp_reason {
	REASON_NOT_IP,		/* ARP, LLDP, more than MAX_VLAN_TAGS tags, ... */
	REASON_MALFORMED,	/* a header is truncated or inconsistent */
	REASON_FRAGMENT,	/* IPv4 or IPv6 fragment: only the kernel reassembles */
	REASON_EXT_HDR_LIMIT,	/* more than MAX_IPV6_EXT_HDRS extension headers */
	REASON_NO_MATCH,	/* parsed; no listener and not in the userstack port range */
	REASON_STEERED,		/* matched and redirected into the queue's AF_XDP socket */
	REASON_NO_SOCKET,	/* matched, but the queue has no AF_XDP socket */
	REASON_MAX,
};

/* Index of the stats map: action (XDP_ABORTED..XDP_REDIRECT) x reason. */
#define STATS_ACTIONS (XDP_REDIRECT + 1)
#define STATS_INDEX(action, reason) ((action) * REASON_MAX + (reason))

struct counter {
	__u64 packets;
	__u64 bytes;
};

/* A listener the userstack asked for. IPv4 addresses are stored
 * IPv4-mapped (::ffff:a.b.c.d); the all-zero address matches any. */
struct listener_key {
	__u8 addr[16];
	__be16 port;
	__u8 protocol; /* IPPROTO_TCP or IPPROTO_UDP */
	__u8 pad;
};

struct listener_value {
	__u32 listener_id; /* the session layer's id for it, for `xdpstack sessions` */
};

/* Written by the loader at attach; read by `xdpstack status`. */
struct attach_info {
	__u64 attach_time_ns; /* CLOCK_REALTIME */
	__u32 pid;	      /* of the xdpstack process that attached */
	__u32 pad;
	__u64 xsk_queues;   /* bit q: the process serves queue q with an AF_XDP socket */
	__u64 xsk_zerocopy; /* bit q: that socket runs in zero-copy mode */
};
