/* PSP's receive ACL: UDP to the PSP port of an address the userstack
 * serves is checked against the SPIs this host issued, before any CPU
 * is spent on decrypting it. The header's format is the one
 * userstack/psp/header.go encodes; the userstack checks everything
 * again once it has decrypted the packet.
 */
#pragma once

#include "parse.h"
#include "xdpstack.h"

#ifndef MAX_PSP_SPIS
#define MAX_PSP_SPIS 65536
#endif

/* 0 -> whether and how PSP is checked. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct psp_settings);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} psp SEC(".maps");

/* SPI this host issued -> what the packets under it must be. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, MAX_PSP_SPIS);
	__type(key, struct psp_spi_key);
	__type(value, struct psp_grant);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} psp_spis SEC(".maps");

/* The base PSP header. */
struct psp_hdr {
	__u8 next_header; /* 4 or 41 in tunnel mode: the inner IP version */
	__u8 ext_len;	  /* 8-byte units past the first 8 bytes: 1, or 2 with a cookie */
	__u8 crypt_off;	  /* 4-byte units after this header sent in the clear; bits 6-7 reserved */
	__u8 flags;	  /* S, D, version (4 bits), V, 1 */
	__be32 spi;
	__be64 iv;
};

#define PSP_ICV_LEN 16
#define PSP_CRYPT_OFF_MASK 0x3f
#define PSP_FLAG_SAMPLE 0x80
#define PSP_FLAG_VC 0x02
#define PSP_FLAG_ONE 0x01
/* The offsets of the source address in an IPv4 and an IPv6 header. */
#define IPV4_SADDR_OFF 12
#define IPV6_SADDR_OFF 8

/* psp_port returns the settings when port (network order) is PSP's and
 * the check is on, else NULL. UDP to other ports pays a compare with a
 * constant, and reads no settings. */
static __always_inline struct psp_settings *psp_port(__be16 port)
{
	__u32 zero = 0;
	struct psp_settings *s;

	if (port != bpf_htons(PSP_UDP_PORT))
		return NULL;
	s = bpf_map_lookup_elem(&psp, &zero);
	return s && s->enabled ? s : NULL;
}

/* psp_len_ok tells whether a datagram of psp_len bytes after the UDP
 * header holds the base header, its extensions, the ICV, and as many
 * bytes as the crypt offset leaves in the clear. */
static __always_inline int psp_len_ok(struct psp_hdr *h, __u32 psp_len)
{
	__u32 payload, ext;

	if (psp_len < sizeof(*h) + PSP_ICV_LEN)
		return 0;
	payload = psp_len - sizeof(*h) - PSP_ICV_LEN;
	ext = (h->ext_len - 1) * 8;
	return ext <= payload && (h->crypt_off & PSP_CRYPT_OFF_MASK) * 4 <= payload;
}

/* psp_inner_src_ok compares the inner source with the grant's where the
 * crypt offset leaves it in the clear; ext is the extensions' length. */
static __always_inline int psp_inner_src_ok(struct cursor *c, struct psp_hdr *h, struct psp_grant *g, __u32 ext)
{
	__u32 clear = (h->crypt_off & PSP_CRYPT_OFF_MASK) * 4;
	const __u32 *want = (const __u32 *)g->src;

	/* A cookie is one extension of 8 bytes. */
	if (ext && !cursor_pull(c, 8))
		return 1;
	if (h->next_header == IPPROTO_IPIP) {
		__u32 *src;

		if (g->family != 4)
			return 0;
		if (clear < ext + IPV4_SADDR_OFF + 4 || !cursor_pull(c, IPV4_SADDR_OFF))
			return 1;
		src = cursor_pull(c, 4);
		return !src || *src == want[3];
	}
	if (h->next_header == IPPROTO_IPV6) {
		__u32 *src;

		if (g->family != 6)
			return 0;
		if (clear < ext + IPV6_SADDR_OFF + 16 || !cursor_pull(c, IPV6_SADDR_OFF))
			return 1;
		src = cursor_pull(c, 16);
		return !src || (src[0] == want[0] && src[1] == want[1] && src[2] == want[2] && src[3] == want[3]);
	}
	/* Transport mode: no inner header to check here. */
	return 1;
}

/* The packet passed the checks. */
#define PSP_ALLOWED -1

/* psp_check checks the PSP packet after the cursor, whose UDP header
 * says it is psp_len bytes long with avail bytes left in the frame. It
 * returns PSP_ALLOWED or the reason to drop it, and sets *sampled when
 * the sender asked for the packet to be sampled (the S bit). */
static __always_inline int psp_check(struct cursor *c, struct psp_settings *s, __u32 psp_len, __u32 avail,
				     __u32 *sampled)
{
	struct psp_hdr *h = cursor_pull(c, sizeof(*h));
	struct psp_spi_key key;
	struct psp_grant *g;
	__u32 version, ext;

	if (!h || psp_len > avail)
		return REASON_PSP_BAD;
	if (h->flags & PSP_FLAG_SAMPLE)
		*sampled = 1;
	if (!(h->flags & PSP_FLAG_ONE) || h->ext_len == 0 || h->ext_len > 2 ||
	    ((h->flags & PSP_FLAG_VC) && h->ext_len < 2) || !psp_len_ok(h, psp_len))
		return REASON_PSP_BAD;
	version = h->flags >> 2 & 0x0f;
	if (!(s->versions >> version & 1))
		return REASON_PSP_VERSION;
	if (s->acl_disabled)
		return PSP_ALLOWED;

	key.spi = bpf_ntohl(h->spi);
	g = bpf_map_lookup_elem(&psp_spis, &key);
	if (!g)
		return REASON_PSP_SPI;
	if (g->version != version)
		return REASON_PSP_VERSION;
	ext = (h->ext_len - 1) * 8;
	if (!psp_inner_src_ok(c, h, g, ext))
		return REASON_PSP_ACL;
	return PSP_ALLOWED;
}
