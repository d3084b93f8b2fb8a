//go:build ignore

// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/* A packet generator for `make bench`: run with BPF_PROG_TEST_RUN and
 * BPF_F_TEST_XDP_LIVE_FRAMES, it transmits its input frame out of
 * target_ifindex once per repetition (the kernel has no pktgen here). */
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

volatile const __u32 target_ifindex = 0;

SEC("xdp")
int xdp_pktgen(struct xdp_md *ctx)
{
	return bpf_redirect(target_ifindex, 0);
}

char LICENSE[] SEC("license") = "Dual BSD/GPL";
