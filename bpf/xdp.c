//go:build ignore

// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/* xdpstack's ingress program: parse, steer the flows the userstack asked
 * for into AF_XDP sockets, drop the PSP packets its receive ACL refuses
 * (psp.h), pass everything else to the kernel, and count every verdict
 * with its reason. */
#include "parse.h"
#include "xdpstack.h"
#include "sample.h"
#include "psp.h"

#ifndef MAX_LISTENERS
#define MAX_LISTENERS 4096
#endif

#ifndef MAX_LOCAL_ADDRS
#define MAX_LOCAL_ADDRS 1024
#endif

/* Ports the userstack uses for its own outgoing connections (host order,
 * inclusive); 0/0 steers none. Reserved in the kernel by the userstack. */
volatile const __u16 userstack_port_min = 0;
volatile const __u16 userstack_port_max = 0;

/* action x reason (STATS_INDEX) -> packets and bytes, per CPU. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, STATS_ACTIONS * REASON_STRIDE);
	__type(key, __u32);
	__type(value, struct counter);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} stats SEC(".maps");

/* (address, port, protocol) the userstack listens on -> its listener. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, MAX_LISTENERS);
	__type(key, struct listener_key);
	__type(value, struct listener_value);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} listeners SEC(".maps");

/* Destination port (host order) -> how many listeners use it, whatever
 * their protocol or address. An array read is inlined by the verifier, so
 * traffic to ports nobody listens on skips the hash lookups. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 65536);
	__type(key, __u32);
	__type(value, __u32);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} listen_ports SEC(".maps");

/* The interface's addresses and IPv4 broadcast addresses -> their kind.
 * Only packets to an address the userstack serves are steered, and none
 * from any of these. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, MAX_LOCAL_ADDRS);
	__type(key, struct local_addr_key);
	__type(value, struct local_addr_value);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} local_addrs SEC(".maps");

/* RX queue index -> AF_XDP socket serving that queue. */
struct {
	__uint(type, BPF_MAP_TYPE_XSKMAP);
	__uint(max_entries, MAX_QUEUES);
	__type(key, __u32);
	__type(value, __u32);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} xsks SEC(".maps");

/* 0 -> when and by whom the program was attached. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct attach_info);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} info SEC(".maps");

/* The global session rules, two generations of them (rule_key.generation):
 * a replace fills the generation not in use, then flips the generation
 * word of the sampling map's value (sample_state.rules). A packet reads
 * that word once and looks only at its generation's entries, so it sees
 * one whole rule set; a generation's entries are rewritten only by the
 * replace after the one that retired it. */

/* generation << RULE_SLOT_BITS | rule_slot_of(key) -> a key of that hash
 * and its rule. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 2 << RULE_SLOT_BITS);
	__type(key, __u32);
	__type(value, struct rule_slot);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} rule_slots SEC(".maps");

/* The keys that found their slot in rule_slots taken -> their rules.
 * About one in eight of 10,000, so it allocates as it fills. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 2 * MAX_RULES);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, struct rule_key);
	__type(value, struct rule_value);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} rule_match SEC(".maps");

/* Generation -> its shapes, most specific first. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 2);
	__type(key, __u32);
	__type(value, struct rule_set);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} rule_sets SEC(".maps");

/* Rule id -> the rule as given, with its tag. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, MAX_RULES);
	__type(key, __u32);
	__type(value, struct rule_info);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} rules SEC(".maps");

/* Rule id -> packets and bytes it decided, per CPU. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, MAX_RULES);
	__type(key, __u32);
	__type(value, struct counter);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} rule_hits SEC(".maps");

/* Keep the enums in the BTF so that bpf2go can emit their constants,
 * and the samples' header, which no map names, for its Go type. */
const enum xdp_reason *const reason_btf = 0;
const enum local_addr_flags *const local_addr_flags_btf = 0;
const enum rule_action *const rule_action_btf = 0;
const enum rule_family *const rule_family_btf = 0;
const enum sample_limits *const sample_limits_btf = 0;
const struct sample_meta *const sample_meta_btf = 0;

/* count_sampled counts a verdict of a packet of len bytes that the
 * session rule rule_id (0: none) decided, and samples it as s says,
 * whatever the rate when always is SAMPLE_ALWAYS. A caller that has the
 * length already saves the helper call of count. */
static __always_inline int count_sampled(struct xdp_md *ctx, struct sample_state *s, int action,
					 enum xdp_reason reason, __u64 len, __u32 rule_id, __u32 always)
{
	__u32 index = STATS_INDEX(action, reason);
	struct counter *c = bpf_map_lookup_elem(&stats, &index);

	if (c) {
		c->packets++;
		c->bytes += len;
	}
	sample(ctx, s, index | always, rule_id);
	return action;
}

static __always_inline int count_rule(struct xdp_md *ctx, struct sample_state *s, int action,
				      enum xdp_reason reason, __u64 len, __u32 rule_id)
{
	return count_sampled(ctx, s, action, reason, len, rule_id, 0);
}

static __always_inline int count(struct xdp_md *ctx, struct sample_state *s, int action, enum xdp_reason reason)
{
	return count_rule(ctx, s, action, reason, bpf_xdp_get_buff_len(ctx), 0);
}

/* The addresses of a packet that steering looks at, IPv4 ones
 * IPv4-mapped. */
struct flow {
	struct listener_key dst; /* destination address, port and protocol */
	struct local_addr_key src;
	__be16 src_port;
	__u8 ipv6;
};

static __always_inline int listening(struct sample_state *s, struct flow *f)
{
	__u32 host_port = bpf_ntohs(f->dst.port);

	/* No listeners: spare the cache line of the port's count. */
	if (s->listeners) {
		__u32 *claimed = bpf_map_lookup_elem(&listen_ports, &host_port);

		if (claimed && *claimed) {
			if (bpf_map_lookup_elem(&listeners, &f->dst))
				return 1;
			struct listener_key any = { .port = f->dst.port, .protocol = f->dst.protocol };

			if (bpf_map_lookup_elem(&listeners, &any))
				return 1;
		}
	}
	return userstack_port_max && host_port >= userstack_port_min &&
	       host_port <= userstack_port_max;
}

static __always_inline int is_v4_mapped(const __u8 *a)
{
	const __u32 *w = (const __u32 *)a;

	return w[0] == 0 && w[1] == 0 && w[2] == bpf_htonl(0xffff);
}

/* served tells whether the destination is an address the userstack
 * serves; a wildcard listener or the port range match only those. */
static __always_inline int served(struct flow *f)
{
	struct local_addr_value *v;

	/* An IPv4-mapped address in an IPv6 header would otherwise pass for
	 * the IPv4 address whose key it shares. */
	if (f->ipv6 && is_v4_mapped(f->dst.addr))
		return 0;
	v = bpf_map_lookup_elem(&local_addrs, f->dst.addr);
	return v && (v->flags & LOCAL_ADDR_SERVED);
}

/* martian tells whether the source is one that no packet from the wire
 * may have, as the kernel's input path has it: one of the interface's
 * own addresses or broadcast addresses, the unspecified address,
 * loopback, multicast or limited broadcast. */
static __always_inline int martian(struct flow *f)
{
	const __u8 *a = f->src.addr;

	if (!f->ipv6) {
		__u8 first = a[12];

		if (first == 0 || first == 127 || (first & 0xf0) == 0xe0 ||
		    *(const __u32 *)&a[12] == 0xffffffff)
			return 1;
	} else {
		const __u32 *w = (const __u32 *)a;

		if (a[0] == 0xff || is_v4_mapped(a))
			return 1;
		if (w[0] == 0 && w[1] == 0 && w[2] == 0 && (w[3] == 0 || w[3] == bpf_htonl(1)))
			return 1;
	}
	return bpf_map_lookup_elem(&local_addrs, &f->src) != NULL;
}

/* No rule decided: on to steering. */
#define RULES_GO_ON -1

union rule_words {
	struct rule_key key;
	__u64 w[5];
};

/* rule_slot_of hashes a key to its slot; ruleSlotOf in maps/rulesmap.go
 * is the same. The products are independent of each other, which keeps
 * the hash short in time. */
static __always_inline __u32 rule_slot_of(const union rule_words *k)
{
	__u64 h = k->w[0] * 0x9e3779b97f4a7c15ULL + k->w[1] * 0xc2b2ae3d27d4eb4fULL +
		  k->w[2] * 0x165667b19e3779f9ULL + k->w[3] * 0xd6e8feb86659fd93ULL +
		  k->w[4] * 0xff51afd7ed558ccdULL;

	return h >> (64 - RULE_SLOT_BITS);
}

static __always_inline struct rule_value *find_rule(const union rule_words *k, __u32 gen)
{
	__u32 index = gen << RULE_SLOT_BITS | rule_slot_of(k);
	struct rule_slot *slot = bpf_map_lookup_elem(&rule_slots, &index);
	const __u64 *s;

	if (!slot)
		return NULL;
	s = (const __u64 *)&slot->key;
	if (s[0] == k->w[0] && s[1] == k->w[1] && s[2] == k->w[2] && s[3] == k->w[3] &&
	    s[4] == k->w[4] && slot->value.rule_id)
		return &slot->value;
	if (slot->overflow)
		return bpf_map_lookup_elem(&rule_match, &k->key);
	return NULL;
}

/* most_specific returns the rule of the first shape, in order of
 * specificity, whose rules hold the packet's key p masked by the shape,
 * or NULL. ipv6 is a constant: the copy for IPv4 packets leaves out the
 * words of their IPv4-mapped addresses that are zero. */
static __always_inline struct rule_value *most_specific(struct rule_set *set, const union rule_words *p,
							__u32 gen, const int ipv6)
{
	__u32 family = ipv6 ? RULE_FAMILY_IPV6 : RULE_FAMILY_IPV4;
	/* The generation and shape bytes of the last word (bpfel). */
	__u64 tail = (__u64)gen << 56;

	for (__u32 i = 0; i < MAX_RULE_SHAPES; i++, tail += 1ULL << 48) {
		struct rule_shape *shape;
		struct rule_value *v;
		union rule_words k;
		const __u64 *m;

		if (i >= set->shape_count)
			break;
		shape = &set->shapes[i];
		if (shape->family != RULE_FAMILY_ANY && shape->family != family)
			continue;
		m = (const __u64 *)&shape->mask;
		k.w[0] = ipv6 ? p->w[0] & m[0] : 0;
		k.w[1] = p->w[1] & m[1];
		k.w[2] = ipv6 ? p->w[2] & m[2] : 0;
		k.w[3] = p->w[3] & m[3];
		k.w[4] = (p->w[4] & m[4]) | tail;
		v = find_rule(&k, gen);
		if (v)
			return v;
	}
	return NULL;
}

/* rules_in_use reads the generation word of s once, whole: the
 * generation and the shape count of one flip. */
static __always_inline struct rule_generation rules_in_use(struct sample_state *s)
{
	union {
		__u64 word;
		struct rule_generation g;
	} r = { .word = *(volatile __u64 *)&s->rules };

	return r.g;
}

/* apply_rules looks the packet up in the global rule table and returns
 * the counted verdict of a deny or pass rule, or RULES_GO_ON. */
static __always_inline int apply_rules(struct xdp_md *ctx, struct sample_state *s, struct flow *f)
{
	struct rule_generation g = rules_in_use(s);
	__u32 gen = g.active & 1;
	struct rule_value *v;
	struct rule_set *set;
	union rule_words p;

	if (!g.shape_count)
		return RULES_GO_ON;
	set = bpf_map_lookup_elem(&rule_sets, &gen);
	if (!set || !set->shape_count)
		return RULES_GO_ON;

	/* The packet's own key, every field exact. */
	__builtin_memcpy(p.key.local, f->dst.addr, sizeof(p.key.local));
	__builtin_memcpy(p.key.remote, f->src.addr, sizeof(p.key.remote));
	p.key.local_port = f->dst.port;
	p.key.remote_port = f->src_port;
	p.key.protocol = f->dst.protocol;
	p.key.family = f->ipv6 ? RULE_FAMILY_IPV6 : RULE_FAMILY_IPV4;
	p.key.shape = 0;
	p.key.generation = 0;
	v = f->ipv6 ? most_specific(set, &p, gen, 1) : most_specific(set, &p, gen, 0);
	if (!v)
		return RULES_GO_ON;

	__u32 id = v->rule_id;
	struct counter *hits = bpf_map_lookup_elem(&rule_hits, &id);
	__u64 len = bpf_xdp_get_buff_len(ctx);

	if (hits) {
		hits->packets++;
		hits->bytes += len;
	}
	switch (v->action) {
	case RULE_DENY:
		return count_rule(ctx, s, XDP_DROP, REASON_RULE_DENY, len, id);
	case RULE_PASS:
		return count_rule(ctx, s, XDP_PASS, REASON_RULE_PASS, len, id);
	}
	return RULES_GO_ON;
}

static __always_inline int steer(struct xdp_md *ctx, struct sample_state *s, __u64 len, __u32 always)
{
	int action = bpf_redirect_map(&xsks, ctx->rx_queue_index, XDP_PASS);

	return count_sampled(ctx, s, action, action == XDP_REDIRECT ? REASON_STEERED : REASON_NO_SOCKET, len, 0, always);
}

/* psp_ingress decides the fate of UDP to the PSP port (psp's): PSP to an
 * address the userstack serves is dropped unless it passes the checks of
 * psp_check, and steered if it does. c is past the UDP header, whose
 * length is udp_len. */
static __always_inline int psp_ingress(struct xdp_md *ctx, struct sample_state *s, struct cursor *c,
				       struct flow *f, struct psp_settings *psp, __u32 udp_len)
{
	__u64 len = bpf_xdp_get_buff_len(ctx);
	__u64 off = c->pos - (void *)(long)ctx->data;
	__u32 always = 0;
	int ret;

	/* The verifier takes a packet pointer from a packet pointer, not
	 * one from a number, which the compiler would otherwise make of
	 * len - off. */
	asm volatile("" : "+r"(off));

	if (!served(f))
		return count_rule(ctx, s, XDP_PASS, REASON_NOT_LOCAL, len, 0);
	if (udp_len < sizeof(struct udphdr))
		return count_rule(ctx, s, XDP_DROP, REASON_PSP_BAD, len, 0);
	/* Bytes from the PSP header to the end of the frame, fragments
	 * included: the UDP length may not claim more. */
	ret = psp_check(c, psp, udp_len - sizeof(struct udphdr), len - off, &always);
	if (always)
		always = SAMPLE_ALWAYS;
	if (ret != PSP_ALLOWED)
		return count_sampled(ctx, s, XDP_DROP, ret, len, 0, always);
	if (martian(f))
		return count_sampled(ctx, s, XDP_DROP, REASON_MARTIAN, len, 0, always);
	return steer(ctx, s, len, always);
}

SEC("xdp.frags")
int xdpstack_ingress(struct xdp_md *ctx)
{
	struct cursor c = {
		.pos = (void *)(long)ctx->data,
		.end = (void *)(long)ctx->data_end,
	};
	__u32 zero = 0;
	struct sample_state *s = bpf_map_lookup_elem(&sampling, &zero);
	struct flow f = {};
	struct psp_settings *psp = NULL;
	enum l3_result l3;
	__u32 udp_len = 0;
	__u8 protocol;
	int ethertype, tags, ret;

	if (!s) /* never: the map has its one entry */
		return XDP_PASS;
	ethertype = parse_ethernet(&c, &tags);
	if (ethertype < 0)
		return count(ctx, s, XDP_PASS, REASON_MALFORMED);
	/* The userstack serves the interface's own addresses, untagged: a
	 * tagged frame is for a VLAN device of the kernel's. */
	if (tags)
		return count(ctx, s, XDP_PASS, REASON_VLAN);

	if (ethertype == bpf_htons(ETH_P_IP)) {
		struct iphdr *ip;

		l3 = parse_ipv4(&c, &ip);
		if (l3 == L3_OK) {
			protocol = ip->protocol;
			f.dst.addr[10] = 0xff;
			f.dst.addr[11] = 0xff;
			__builtin_memcpy(&f.dst.addr[12], &ip->daddr, 4);
			f.src.addr[10] = 0xff;
			f.src.addr[11] = 0xff;
			__builtin_memcpy(&f.src.addr[12], &ip->saddr, 4);
		}
	} else if (ethertype == bpf_htons(ETH_P_IPV6)) {
		struct ipv6hdr *ip6;

		l3 = parse_ipv6(&c, &ip6, &protocol);
		if (l3 == L3_OK) {
			__builtin_memcpy(f.dst.addr, &ip6->daddr, sizeof(f.dst.addr));
			__builtin_memcpy(f.src.addr, &ip6->saddr, sizeof(f.src.addr));
			f.ipv6 = 1;
		}
	} else {
		return count(ctx, s, XDP_PASS, REASON_NOT_IP);
	}

	switch (l3) {
	case L3_OK:
		break;
	case L3_FRAGMENT:
		return count(ctx, s, XDP_PASS, REASON_FRAGMENT);
	case L3_EXT_HDR_LIMIT:
		return count(ctx, s, XDP_PASS, REASON_EXT_HDR_LIMIT);
	default:
		return count(ctx, s, XDP_PASS, REASON_MALFORMED);
	}

	switch (protocol) {
	case IPPROTO_TCP: {
		struct tcphdr *tcp = parse_tcp(&c);

		if (!tcp)
			return count(ctx, s, XDP_PASS, REASON_MALFORMED);
		f.dst.port = tcp->dest;
		f.src_port = tcp->source;
		break;
	}
	case IPPROTO_UDP: {
		struct udphdr *udp = cursor_pull(&c, sizeof(*udp));

		if (!udp)
			return count(ctx, s, XDP_PASS, REASON_MALFORMED);
		f.dst.port = udp->dest;
		f.src_port = udp->source;
		udp_len = bpf_ntohs(udp->len);
		psp = psp_port(udp->dest);
		break;
	}
	case IPPROTO_ICMP:
	case IPPROTO_ICMPV6:
		if (!cursor_pull(&c, ICMP_HDR_LEN))
			return count(ctx, s, XDP_PASS, REASON_MALFORMED);
		return count(ctx, s, XDP_PASS, REASON_NO_MATCH);
	default:
		return count(ctx, s, XDP_PASS, REASON_NO_MATCH);
	}

	f.dst.protocol = protocol;
	ret = apply_rules(ctx, s, &f);
	if (ret != RULES_GO_ON)
		return ret;
	if (psp)
		return psp_ingress(ctx, s, &c, &f, psp, udp_len);
	if (!listening(s, &f))
		return count(ctx, s, XDP_PASS, REASON_NO_MATCH);
	/* Routed through this host (ip_forward) or sent to a broadcast or
	 * multicast address: the kernel's. */
	if (!served(&f))
		return count(ctx, s, XDP_PASS, REASON_NOT_LOCAL);
	if (martian(&f))
		return count(ctx, s, XDP_DROP, REASON_MARTIAN);
	return steer(ctx, s, bpf_xdp_get_buff_len(ctx), 0);
}

char LICENSE[] SEC("license") = "Dual BSD/GPL";
