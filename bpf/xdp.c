//go:build ignore

// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/* xdpstack's ingress program: parse, steer the flows the userstack asked
 * for into AF_XDP sockets, pass everything else to the kernel, and count
 * every verdict with its reason. */
#include "parse.h"
#include "xdpstack.h"

#ifndef MAX_LISTENERS
#define MAX_LISTENERS 4096
#endif

#ifndef MAX_QUEUES
#define MAX_QUEUES 256
#endif

/* Ports the userstack uses for its own outgoing connections (host order,
 * inclusive); 0/0 steers none. Reserved in the kernel by the userstack. */
volatile const __u16 userstack_port_min = 0;
volatile const __u16 userstack_port_max = 0;

/* action x reason (STATS_INDEX) -> packets and bytes, per CPU. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, STATS_ACTIONS * REASON_MAX);
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
 * traffic to ports nobody listens on skips the two hash lookups. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 65536);
	__type(key, __u32);
	__type(value, __u32);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} listen_ports SEC(".maps");

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

/* Keeps enum xdp_reason in the BTF so that bpf2go can emit its constants. */
const enum xdp_reason *const reason_btf = 0;

static __always_inline int count(struct xdp_md *ctx, int action, enum xdp_reason reason)
{
	__u32 index = STATS_INDEX(action, reason);
	struct counter *c = bpf_map_lookup_elem(&stats, &index);

	if (c) {
		c->packets++;
		c->bytes += bpf_xdp_get_buff_len(ctx);
	}
	return action;
}

static __always_inline int listening(struct listener_key *key, __u16 port)
{
	__u32 host_port = bpf_ntohs(port);
	__u32 *claimed = bpf_map_lookup_elem(&listen_ports, &host_port);

	if (claimed && *claimed) {
		if (bpf_map_lookup_elem(&listeners, key))
			return 1;
		__builtin_memset(key->addr, 0, sizeof(key->addr));
		if (bpf_map_lookup_elem(&listeners, key))
			return 1;
	}
	return userstack_port_max && host_port >= userstack_port_min &&
	       host_port <= userstack_port_max;
}

static __always_inline int steer(struct xdp_md *ctx)
{
	int action = bpf_redirect_map(&xsks, ctx->rx_queue_index, XDP_PASS);

	return count(ctx, action, action == XDP_REDIRECT ? REASON_STEERED : REASON_NO_SOCKET);
}

SEC("xdp.frags")
int xdpstack_ingress(struct xdp_md *ctx)
{
	struct cursor c = {
		.pos = (void *)(long)ctx->data,
		.end = (void *)(long)ctx->data_end,
	};
	struct listener_key key = {};
	enum l3_result l3;
	__u8 protocol;
	__be16 port;
	int ethertype;

	ethertype = parse_ethernet(&c);
	if (ethertype < 0)
		return count(ctx, XDP_PASS, REASON_MALFORMED);

	if (ethertype == bpf_htons(ETH_P_IP)) {
		struct iphdr *ip;

		l3 = parse_ipv4(&c, &ip);
		if (l3 == L3_OK) {
			protocol = ip->protocol;
			key.addr[10] = 0xff;
			key.addr[11] = 0xff;
			__builtin_memcpy(&key.addr[12], &ip->daddr, 4);
		}
	} else if (ethertype == bpf_htons(ETH_P_IPV6)) {
		struct ipv6hdr *ip6;

		l3 = parse_ipv6(&c, &ip6, &protocol);
		if (l3 == L3_OK)
			__builtin_memcpy(key.addr, &ip6->daddr, sizeof(key.addr));
	} else {
		return count(ctx, XDP_PASS, REASON_NOT_IP);
	}

	switch (l3) {
	case L3_OK:
		break;
	case L3_FRAGMENT:
		return count(ctx, XDP_PASS, REASON_FRAGMENT);
	case L3_EXT_HDR_LIMIT:
		return count(ctx, XDP_PASS, REASON_EXT_HDR_LIMIT);
	default:
		return count(ctx, XDP_PASS, REASON_MALFORMED);
	}

	switch (protocol) {
	case IPPROTO_TCP: {
		struct tcphdr *tcp = parse_tcp(&c);

		if (!tcp)
			return count(ctx, XDP_PASS, REASON_MALFORMED);
		port = tcp->dest;
		break;
	}
	case IPPROTO_UDP: {
		struct udphdr *udp = cursor_pull(&c, sizeof(*udp));

		if (!udp)
			return count(ctx, XDP_PASS, REASON_MALFORMED);
		port = udp->dest;
		break;
	}
	case IPPROTO_ICMP:
	case IPPROTO_ICMPV6:
		if (!cursor_pull(&c, ICMP_HDR_LEN))
			return count(ctx, XDP_PASS, REASON_MALFORMED);
		return count(ctx, XDP_PASS, REASON_NO_MATCH);
	default:
		return count(ctx, XDP_PASS, REASON_NO_MATCH);
	}

	key.port = port;
	key.protocol = protocol;
	if (listening(&key, port))
		return steer(ctx);
	return count(ctx, XDP_PASS, REASON_NO_MATCH);
}

char LICENSE[] SEC("license") = "Dual BSD/GPL";
