/* Sampling: one packet in 2^rate of every verdict, or every packet while
 * a capture holds the lease (struct sample_lease), goes with its
 * verdict and its first snaplen bytes to the samples perf buffer.
 *
 * A perf buffer rather than a ring buffer: bpf_perf_event_output (in
 * XDP, the kernel's bpf_xdp_event_output) copies the frame straight from
 * the packet, fragments included, at the length the sample wants, where
 * bpf_ringbuf_reserve takes only a constant size (a 64 B packet would
 * take a record of the largest snap length) and a copy of its own. The
 * per-CPU buffers are the reader's: they cost nothing while no capture
 * runs (a sample then fails at once, counted as unread), and they go
 * with the reader's file descriptors, kill -9 included.
 */
#pragma once

#include <linux/errno.h>
#include "xdpstack.h"

/* 0 -> how the program samples, the running capture's lease, the
 * rule generation in use and the count of listeners: what every packet
 * reads (struct sample_state). */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__uint(map_flags, BPF_F_MMAPABLE);
	__type(key, __u32);
	__type(value, struct sample_state);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} sampling SEC(".maps");

/* CPU -> the capture's perf event there: struct sample_meta, then the
 * frame's first sample_meta.cap_len bytes. */
struct {
	__uint(type, BPF_MAP_TYPE_PERF_EVENT_ARRAY);
	__uint(key_size, sizeof(__u32));
	__uint(value_size, sizeof(__u32));
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} samples SEC(".maps");

/* action x reason (STATS_INDEX) -> what became of its samples, per CPU. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, STATS_ACTIONS * REASON_STRIDE);
	__type(key, __u32);
	__type(value, struct sample_count);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} sample_counts SEC(".maps");

/* Or'ed into a verdict: sample the packet whatever the rate (a PSP
 * packet whose sender asked for it). Above any STATS_INDEX. */
#define SAMPLE_ALWAYS (1u << 31)

/* take_sample decides whether to sample the packet, which got the
 * verdict at STATS_INDEX verdict (SAMPLE_ALWAYS aside), and if so sends
 * it. Out of line: the program calls it from every verdict, and
 * sampling is rare. */
static __noinline int take_sample(struct xdp_md *ctx, struct sample_state *s, __u32 verdict, __u32 rule_id)
{
	struct sample_settings *set = &s->settings;
	struct sample_lease *lease = &s->lease;
	__u64 now = 0, until = lease->until_ns;
	__u32 snaplen = set->snaplen, rate = set->rate, taken = verdict >> 31;

	verdict &= ~SAMPLE_ALWAYS;
	/* The draw first: it costs less than reading the clock, which a
	 * packet the draw passes over needs only for a lease of all. */
	if (!taken && rate && rate <= SAMPLE_MAX_RATE && !(bpf_get_prandom_u32() & ((1u << rate) - 1)))
		taken = 1;
	if (until && (taken || lease->all || !rate)) {
		now = bpf_ktime_get_ns();
		if (now < until) {
			snaplen = lease->snaplen;
			taken |= lease->all;
		} else {
			/* The capture is gone: stop paying for its lease. A
			 * renewal that came meanwhile stays. */
			__sync_val_compare_and_swap(&lease->until_ns, until, 0);
		}
	}
	if (!taken)
		return 0;

	__u32 len = bpf_xdp_get_buff_len(ctx);
	struct sample_meta meta = {
		.time_ns = now ? now : bpf_ktime_get_ns(),
		.ifindex = ctx->ingress_ifindex,
		.rx_queue = ctx->rx_queue_index,
		.len = len,
		.rule_id = rule_id,
		.action = verdict / REASON_STRIDE,
		.reason = verdict % REASON_STRIDE,
	};
	meta.cap_len = len < snaplen ? len : snaplen;
	if (meta.cap_len > SAMPLE_MAX_SNAPLEN)
		meta.cap_len = SAMPLE_MAX_SNAPLEN;

	long err = bpf_perf_event_output(ctx, &samples, BPF_F_CURRENT_CPU | (__u64)meta.cap_len << 32, &meta, sizeof(meta));
	struct sample_count *n = bpf_map_lookup_elem(&sample_counts, &verdict);

	if (n) {
		if (!err)
			n->taken++;
		else if (err == -ENOSPC)
			n->lost++;
		else
			n->unread++;
	}
	return 0;
}

/* sample is what a verdict pays for sampling while it is off: two loads
 * from the line of s, which the packet has read already. */
static __always_inline void sample(struct xdp_md *ctx, struct sample_state *s, __u32 verdict, __u32 rule_id)
{
	if ((verdict & SAMPLE_ALWAYS) || s->settings.rate || s->lease.until_ns)
		take_sample(ctx, s, verdict, rule_id);
}
