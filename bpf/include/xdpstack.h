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
	REASON_RULE_DENY,	/* a deny rule of the global session-rule table */
	REASON_RULE_PASS,	/* a pass rule: the kernel's, even where the userstack listens */
	REASON_PSP_BAD,		/* PSP: too short, or a header the specification refuses */
	REASON_PSP_VERSION,	/* PSP: a version not accepted, or not its SPI's */
	REASON_PSP_SPI,		/* PSP: an SPI this host did not issue */
	REASON_PSP_ACL,		/* PSP: an inner packet of another family or source
				 * than the one its SPI was issued for */
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

/* Session rules: the global table, enforced before steering on TCP and
 * UDP packets. A rule matches a protocol (or any), a local (destination)
 * prefix and port and a remote (source) prefix and port; port 0 is any.
 *
 * The table is a tuple-space search: rules of one shape (which fields are
 * wildcards and how long the prefixes are) share one mask, and the
 * program tries the shapes in order of specificity, most specific first,
 * stopping at the first hit. Two rules never have the same match, so the
 * first hit is the most specific rule. A packet tries the shapes of its
 * own family and those of any address only.
 *
 * A try looks the masked packet up in rule_slots, a table indexed by a
 * hash of the key: its slot holds one key of that hash and tells whether
 * the rule_match hash map holds more, so that most tries cost an array
 * read and a compare. User space compiles rule_slots, rule_match and
 * rule_sets from the rules map, and the generation in use into the
 * sampling map (struct rule_generation); a build that lays them out
 * otherwise compiles them anew. */

/* Room for this many rules, numbered 1 to MAX_RULES - 1. */
#define MAX_RULES 16384
/* Distinct shapes the program tries per packet. */
#define MAX_RULE_SHAPES 32
#define RULE_TAG_LEN 32

enum rule_action {
	RULE_ALLOW = 1, /* go on to steering */
	RULE_DENY,	/* drop, counted as drop/rule_deny */
	RULE_PASS,	/* to the kernel, counted as pass/rule_pass */
};

enum rule_family {
	RULE_FAMILY_ANY = 0,
	RULE_FAMILY_IPV4 = 4,
	RULE_FAMILY_IPV6 = 6,
};

/* A packet masked by one shape, or a rule of that shape. Addresses are
 * IPv4-mapped for IPv4, as in listener_key. Aligned so that the program
 * masks, hashes and compares it a 64-bit word at a time. */
struct rule_key {
	__u8 local[16];
	__u8 remote[16];
	__be16 local_port;  /* 0 in a shape with any local port */
	__be16 remote_port; /* 0 in a shape with any remote port */
	__u8 protocol;	    /* 0 in a shape with any protocol */
	__u8 family;	    /* enum rule_family; ANY in a shape with any address */
	__u8 shape;	    /* index of the shape in its rule set */
	__u8 generation;    /* the rule set it belongs to: see struct rule_generation */
} __attribute__((aligned(8)));

struct rule_value {
	__u32 rule_id;
	__u32 action; /* enum rule_action */
};

/* log2 of the slots of one generation in rule_slots: twice MAX_RULES, so
 * that few keys find their slot taken. */
#define RULE_SLOT_BITS 15

/* A cache line each, so that a try reads one line, not two. */
struct rule_slot {
	struct rule_key key;
	struct rule_value value; /* rule_id 0: the slot is empty */
	__u32 overflow;		 /* 1: rule_match holds other keys of this slot */
} __attribute__((aligned(64)));

struct rule_shape {
	struct rule_key mask; /* the bits of a packet's key that its rules fix:
			       * all of an exact field, none of a wildcard, the
			       * prefix of an address; none of shape and generation */
	__u32 rules;	      /* how many rules have this shape */
	__u32 family;	      /* enum rule_family: the packets it is tried on */
};

/* One generation of the rule table: its shapes, most specific first. */
struct rule_set {
	__u32 shape_count;
	__u32 rule_count;
	struct rule_shape shapes[MAX_RULE_SHAPES];
};

/* Which rule set is in use: one 64-bit word, which a replace stores and
 * a packet reads whole, so that no packet sees one generation with
 * another's shape count. */
struct rule_generation {
	__u32 active;	   /* 0 or 1: the rule set and rule_key.generation in use */
	__u32 shape_count; /* the active set's: 0 spares a packet reading the set */
} __attribute__((aligned(8)));

/* A rule as the operator gave it, for listing and bpftool; the program
 * itself reads only rule_key/rule_value. */
struct rule_info {
	char tag[RULE_TAG_LEN];
	__u8 local[16];
	__u8 remote[16];
	__be16 local_port;
	__be16 remote_port;
	__u8 local_prefix_len;	/* in bits of the family's own address */
	__u8 remote_prefix_len;
	__u8 protocol;		/* 0: any */
	__u8 family;		/* enum rule_family */
	__u32 action;		/* enum rule_action */
};

/* Sampling (sample.h): one packet in 2^rate of every verdict, or every
 * packet while a capture asks for it, goes with its verdict to the
 * samples perf buffer, where `xdpstack capture` reads it. */
enum sample_limits {
	SAMPLE_MAX_RATE = 16,	     /* 1 in 65536, as DOCA's --sample-rate */
	SAMPLE_DEFAULT_SNAPLEN = 256,
	/* A perf record's size is 16 bits: room for its headers and the
	 * metadata, rounded down to 256. */
	SAMPLE_MAX_SNAPLEN = 65280,
};

/* How the program samples: attach's settings, which the operator may
 * change while it runs. The loader rewrites them at every attach, so
 * they may grow. */
struct sample_settings {
	__u32 rate;    /* sample 1 in 2^rate packets of every verdict; 0: none */
	__u32 snaplen; /* bytes of each sample to copy, at most SAMPLE_MAX_SNAPLEN */
};

/* What a running capture asks for. The capture renews until_ns every
 * fraction of a second; once that time is past, the program goes back
 * to the settings by itself, even when the capture was killed. */
struct sample_lease {
	__u64 until_ns; /* bpf_ktime_get_ns (CLOCK_MONOTONIC); 0: no capture */
	__u32 snaplen;	/* the bytes it wants of each sample */
	__u32 all;	/* 1: sample every packet, not 1 in 2^rate */
};

/* The sampling map's one value: what every packet reads, in one cache
 * line. The sampling settings and a capture's lease are what a verdict
 * reads for sampling while it is off; the rule generation in use and the
 * count of listeners ride along, so that a packet on an interface without
 * rules or listeners reads no other line for them. The map is
 * memory-mapped, and each writer (the daemon's settings, a capture's
 * lease, the rule table's flip, the listener table) stores only its own
 * 64-bit words, each whole, so that none overwrites another's. */
struct sample_state {
	struct sample_settings settings;
	struct sample_lease lease;
	struct rule_generation rules;
	__u64 listeners; /* at least the entries of the listeners map: raised
			  * before one is added, lowered after one is deleted;
			  * 0 spares a packet the listener lookups */
};
_Static_assert(sizeof(struct sample_state) <= 64, "what every packet reads takes more than one cache line");

/* What precedes a sample's bytes in the perf buffer. */
struct sample_meta {
	__u64 time_ns;	/* bpf_ktime_get_ns (CLOCK_MONOTONIC) */
	__u32 ifindex;
	__u32 rx_queue;
	__u32 len;	/* the whole frame's length, fragments included */
	__u32 cap_len;	/* how many of its first bytes follow */
	__u32 rule_id;	/* the session rule that decided the verdict; 0: none */
	__u8 action;	/* the verdict (XDP_*) */
	__u8 reason;	/* enum xdp_reason */
	__u16 pad;
};

/* Per verdict, what became of its samples. */
struct sample_count {
	__u64 taken;  /* written to the perf buffer */
	__u64 lost;   /* the capture's buffer was full */
	__u64 unread; /* no capture was reading */
};

/* PSP (psp.h): UDP to the PSP port of an address the userstack serves
 * is checked against the SPIs this host issued before any CPU is spent
 * on decrypting it, and steered to the userstack if it passes. The
 * daemon that attached fills both maps; every attach makes them anew. */

/* PSP arrives on the UDP port its specification assigns. */
#define PSP_UDP_PORT 1000

struct psp_settings {
	__u32 enabled;	     /* 1: check and steer UDP to PSP_UDP_PORT */
	__u8 versions;	     /* bit v: PSP version v is accepted */
	__u8 acl_disabled;   /* 1: no SPI and source checks (--disable-ingress-acl) */
	__u16 pad;
};

struct psp_spi_key {
	__u32 spi; /* host order */
};

/* An SPI this host issued: the packets under it must be of this version
 * and, in tunnel mode, carry an inner packet of this family from this
 * source. */
struct psp_grant {
	__u8 version;
	__u8 family;  /* 4 or 6: the inner IP version */
	__u16 pad;
	__u8 src[16]; /* the inner source; IPv4 IPv4-mapped, as in listener_key */
};
