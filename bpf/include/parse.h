/* Bounds-checked header cursor and the parsers built on it.
 *
 * Every parser takes a cursor, checks that its header fits before
 * [c->pos, c->end), advances the cursor past it and returns a pointer to
 * it, or NULL when the packet is too short. The verifier sees each check
 * next to each access, so no parser can read past data_end.
 */
#pragma once

#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/in.h>
#include <linux/ip.h>
#include <linux/ipv6.h>
#include <linux/tcp.h>
#include <linux/udp.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>

#ifndef MAX_VLAN_TAGS
#define MAX_VLAN_TAGS 2
#endif

#ifndef MAX_IPV6_EXT_HDRS
#define MAX_IPV6_EXT_HDRS 4
#endif

#define ETH_P_8021AD_ 0x88A8
#define IPV4_MF 0x2000
#define IPV4_OFFSET 0x1FFF
#define IPV6_FRAG_OFFSET 0xFFF8
#define IPV6_FRAG_MF 0x0001
#define ICMP_HDR_LEN 8

struct cursor {
	void *pos;
	void *end;
};

struct vlan_hdr {
	__be16 tci;
	__be16 encapsulated_proto;
};

struct ipv6_opt_hdr_ {
	__u8 nexthdr;
	__u8 hdrlen; /* in 8-octet units, not counting the first 8 */
};

struct ipv6_frag_hdr_ {
	__u8 nexthdr;
	__u8 reserved;
	__be16 frag_off; /* offset << 3 | M */
	__be32 identification;
};

/* cursor_pull returns the next len bytes and advances past them. */
static __always_inline void *cursor_pull(struct cursor *c, __u32 len)
{
	void *start = c->pos;

	if (start + len > c->end)
		return NULL;
	c->pos = start + len;
	return start;
}

/* No header is longer than this: an IPv6 extension header is at most
 * 2048 bytes. */
#define MAX_VAR_PULL 2048

/* cursor_skip advances past a header whose length comes from the packet.
 * The compiler may know a tighter bound on len than the verifier can see
 * (it was checked on another register), so hide len from the compiler and
 * bound it again where the verifier tracks it. */
static __always_inline int cursor_skip(struct cursor *c, __u32 len)
{
	asm volatile("" : "+r"(len));
	if (len > MAX_VAR_PULL)
		return 0;
	return cursor_pull(c, len) != NULL;
}

/* parse_ethernet skips the Ethernet header and up to MAX_VLAN_TAGS
 * 802.1Q/802.1ad tags, counting them in *tags. It returns the ethertype
 * (network order) of what follows, or -1 when the frame is too short. */
static __always_inline int parse_ethernet(struct cursor *c, int *tags)
{
	struct ethhdr *eth = cursor_pull(c, sizeof(*eth));
	__be16 proto;

	if (!eth)
		return -1;
	proto = eth->h_proto;
	*tags = 0;

#pragma unroll
	for (int i = 0; i < MAX_VLAN_TAGS; i++) {
		struct vlan_hdr *vlan;

		if (proto != bpf_htons(ETH_P_8021Q) && proto != bpf_htons(ETH_P_8021AD_))
			break;
		vlan = cursor_pull(c, sizeof(*vlan));
		if (!vlan)
			return -1;
		proto = vlan->encapsulated_proto;
		(*tags)++;
	}
	return proto;
}

enum l3_result {
	L3_OK,
	L3_MALFORMED,
	L3_FRAGMENT,
	L3_EXT_HDR_LIMIT,
};

/* parse_ipv4 skips the IPv4 header including options. */
static __always_inline enum l3_result parse_ipv4(struct cursor *c, struct iphdr **out)
{
	struct iphdr *ip = cursor_pull(c, sizeof(*ip));
	__u32 hdr_len;

	if (!ip || ip->version != 4 || ip->ihl < 5)
		return L3_MALFORMED;
	hdr_len = ip->ihl * 4;
	if (!cursor_skip(c, hdr_len - sizeof(*ip)))
		return L3_MALFORMED;
	if (bpf_ntohs(ip->tot_len) < hdr_len)
		return L3_MALFORMED;
	*out = ip;
	if (ip->frag_off & bpf_htons(IPV4_MF | IPV4_OFFSET))
		return L3_FRAGMENT;
	return L3_OK;
}

/* parse_ipv6 skips the IPv6 header and the hop-by-hop, routing,
 * destination-options and (atomic) fragment headers after it, leaving the
 * transport protocol in *nexthdr. */
static __always_inline enum l3_result parse_ipv6(struct cursor *c, struct ipv6hdr **out,
						 __u8 *nexthdr)
{
	struct ipv6hdr *ip6 = cursor_pull(c, sizeof(*ip6));
	__u8 next;

	if (!ip6 || ip6->version != 6)
		return L3_MALFORMED;
	*out = ip6;
	next = ip6->nexthdr;

#pragma unroll
	for (int i = 0; i < MAX_IPV6_EXT_HDRS; i++) {
		switch (next) {
		case IPPROTO_HOPOPTS:
		case IPPROTO_ROUTING:
		case IPPROTO_DSTOPTS: {
			struct ipv6_opt_hdr_ *opt = cursor_pull(c, sizeof(*opt));

			if (!opt)
				return L3_MALFORMED;
			/* The first 8 octets include the 2 just pulled. */
			if (!cursor_skip(c, (opt->hdrlen + 1) * 8 - sizeof(*opt)))
				return L3_MALFORMED;
			next = opt->nexthdr;
			break;
		}
		case IPPROTO_FRAGMENT: {
			struct ipv6_frag_hdr_ *frag = cursor_pull(c, sizeof(*frag));

			if (!frag)
				return L3_MALFORMED;
			if (frag->frag_off & bpf_htons(IPV6_FRAG_OFFSET | IPV6_FRAG_MF))
				return L3_FRAGMENT;
			next = frag->nexthdr;
			break;
		}
		default:
			*nexthdr = next;
			return L3_OK;
		}
	}
	switch (next) {
	case IPPROTO_HOPOPTS:
	case IPPROTO_ROUTING:
	case IPPROTO_DSTOPTS:
	case IPPROTO_FRAGMENT:
		return L3_EXT_HDR_LIMIT;
	}
	*nexthdr = next;
	return L3_OK;
}

/* parse_tcp checks the whole TCP header, options included. */
static __always_inline struct tcphdr *parse_tcp(struct cursor *c)
{
	struct tcphdr *tcp = cursor_pull(c, sizeof(*tcp));

	if (!tcp || tcp->doff < 5)
		return NULL;
	if (!cursor_skip(c, tcp->doff * 4 - sizeof(*tcp)))
		return NULL;
	return tcp;
}
