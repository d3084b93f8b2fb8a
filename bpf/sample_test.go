package bpf_test

import (
	"bytes"
	"errors"
	"math"
	"os"
	"testing"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/perf"

	"github.com/xdpstack/xdpstack/bpf"
	"github.com/xdpstack/xdpstack/internal/testing/packet"
	"github.com/xdpstack/xdpstack/maps"
)

// sampling is the sampling maps of unpinned objects.
func sampling(objs *bpf.XdpObjects) maps.Sampling { return maps.FromObjects(&objs.XdpMaps).Sampling }

func setSampling(tb testing.TB, objs *bpf.XdpObjects, set maps.SampleSettings, lease maps.Lease) {
	tb.Helper()
	if err := sampling(objs).SetSettings(set); err != nil {
		tb.Fatal(err)
	}
	if err := sampling(objs).SetLease(lease); err != nil {
		tb.Fatal(err)
	}
}

// sampled sums the sample counters over every verdict.
func sampled(tb testing.TB, objs *bpf.XdpObjects) maps.SampleCount {
	tb.Helper()
	counts, err := sampling(objs).Counts()
	if err != nil {
		tb.Fatal(err)
	}
	var sum maps.SampleCount
	for _, c := range counts {
		sum.Taken += c.Taken
		sum.Lost += c.Lost
		sum.Unread += c.Unread
	}
	return sum
}

// runRepeat runs the program on frame n times in one BPF_PROG_TEST_RUN.
func runRepeat(tb testing.TB, objs *bpf.XdpObjects, frame []byte, n uint32) {
	tb.Helper()
	if _, err := objs.XdpstackIngress.Run(&ebpf.RunOptions{Data: frame, Repeat: n}); err != nil {
		tb.Fatalf("Run(repeat %d): %v", n, err)
	}
}

// TestSampleRate runs frames through the program at sampling rates 1
// and 4: the share sampled must be within five standard deviations of
// 1/2^N. With no capture reading, every sample counts as unread.
func TestSampleRate(t *testing.T) {
	objs := loadXdp(t, 0, 0)
	frame := udp4("192.0.2.1", "192.0.2.2", 1000, 53).Bytes()
	for _, tc := range []struct {
		rate uint32
		n    uint32
	}{{1, 20_000}, {4, 200_000}} {
		before := sampled(t, objs)
		setSampling(t, objs, maps.SampleSettings{Rate: tc.rate, Snaplen: 64}, maps.Lease{})
		runRepeat(t, objs, frame, tc.n)
		got := sampled(t, objs).Unread - before.Unread
		p := 1 / float64(uint32(1)<<tc.rate)
		mean, sd := float64(tc.n)*p, math.Sqrt(float64(tc.n)*p*(1-p))
		if math.Abs(float64(got)-mean) > 5*sd {
			t.Errorf("rate %d over %d packets: %d sampled, want %.0f ± %.0f (5σ)", tc.rate, tc.n, got, mean, 5*sd)
		}
		t.Logf("rate %d: %d of %d sampled (expected %.0f, σ %.1f)", tc.rate, got, tc.n, mean, sd)
	}

	// Off, nothing is sampled.
	before := sampled(t, objs)
	setSampling(t, objs, maps.SampleSettings{Rate: 0, Snaplen: 64}, maps.Lease{})
	runRepeat(t, objs, frame, 10_000)
	if got := sampled(t, objs); got != before {
		t.Errorf("rate 0: sample counters went from %+v to %+v", before, got)
	}
}

// readSample reads the one sample a run left in r.
func readSample(tb testing.TB, r *perf.Reader) maps.Sample {
	tb.Helper()
	r.SetDeadline(time.Now().Add(time.Second))
	rec, err := r.Read()
	if err != nil {
		tb.Fatalf("read sample: %v", err)
	}
	if rec.LostSamples != 0 {
		tb.Fatalf("read sample: %d lost", rec.LostSamples)
	}
	s, err := maps.DecodeSample(rec.RawSample)
	if err != nil {
		tb.Fatal(err)
	}
	s.Data = bytes.Clone(s.Data)
	return s
}

func noSample(tb testing.TB, r *perf.Reader) {
	tb.Helper()
	r.SetDeadline(time.Now().Add(20 * time.Millisecond))
	if rec, err := r.Read(); !errors.Is(err, os.ErrDeadlineExceeded) {
		tb.Errorf("read: got a sample (%d bytes) or an error (%v), want none", len(rec.RawSample), err)
	}
}

// TestSampleCarriesVerdict captures every packet through a lease and
// checks what each sample says: the verdict, the rule that decided it,
// the queue, the lengths and the bytes, up to the snap length, of
// frames in one buffer and of multi-buffer frames.
func TestSampleCarriesVerdict(t *testing.T) {
	objs := loadXdp(t, 0, 0)
	r, err := perf.NewReader(objs.Samples, 1<<20)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	rules := replaceRules(t, objs, rule(t, "tcp", ":22", "", "deny", "no-ssh"), rule(t, "udp", ":53", "", "pass", "dns"))
	lease := func(snaplen uint32) maps.Lease {
		return maps.Lease{Until: maps.MonotonicNow() + time.Minute, Snaplen: snaplen, All: true}
	}

	for _, tc := range []struct {
		name    string
		frame   []byte
		snaplen uint32
		want    maps.Verdict
		rule    uint32
	}{
		{"deny rule", tcp4("192.0.2.1", "192.0.2.2", 40000, 22).Bytes(), 256, dropRuleDeny, rules[0].ID},
		{"pass rule", udp4("192.0.2.1", "192.0.2.2", 40000, 53).Bytes(), 256, passRulePass, rules[1].ID},
		{"no rule", udp4("192.0.2.1", "192.0.2.2", 40000, 54).Bytes(), 256, passNoMatch, 0},
		{"malformed, cut to the snap length", eth4(packet.ProtoUDP).Bytes()[:20], 8, passMalformed, 0},
		{"cut to the snap length", udp4("192.0.2.1", "192.0.2.2", 1, 2).Payload(1000).Bytes(), 100, passNoMatch, 0},
		// Past a page, BPF_PROG_TEST_RUN hands an xdp.frags program the
		// rest of the frame in fragments.
		{"jumbo frame whole", udp4("192.0.2.1", "192.0.2.2", 1, 2).Payload(8958).Bytes(), 9100, passNoMatch, 0},
		{"jumbo frame cut", udp4("192.0.2.1", "192.0.2.2", 1, 2).Payload(8958).Bytes(), 5000, passNoMatch, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			setSampling(t, objs, maps.DefaultSampleSettings, lease(tc.snaplen))
			before := sampled(t, objs)
			checkVerdict(t, objs, tc.frame, tc.want)
			s := readSample(t, r)
			wantData := tc.frame[:min(len(tc.frame), int(tc.snaplen))]
			if s.Verdict != tc.want || s.RuleID != tc.rule || s.Queue != 0 || s.Len != len(tc.frame) || !bytes.Equal(s.Data, wantData) {
				t.Errorf("sample: got %v rule %d queue %d len %d with %d bytes; want %v rule %d queue 0 len %d with its first %d bytes",
					s.Verdict, s.RuleID, s.Queue, s.Len, len(s.Data), tc.want, tc.rule, len(tc.frame), len(wantData))
			}
			if now := maps.MonotonicNow(); s.Time > now || s.Time < now-time.Second {
				t.Errorf("sample time %v, want within the second before %v", s.Time, now)
			}
			if got := sampled(t, objs); got.Taken != before.Taken+1 || got.Lost != before.Lost || got.Unread != before.Unread {
				t.Errorf("sample counters: got %+v, want one more taken than %+v", got, before)
			}
		})
	}
}

// TestLeaseLapses checks that a lease holds only until its time: past
// it, the program samples by the settings again and ends the lease
// itself, so that a capture killed with -9 stops costing.
func TestLeaseLapses(t *testing.T) {
	objs := loadXdp(t, 0, 0)
	r, err := perf.NewReader(objs.Samples, 1<<20)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	frame := udp4("192.0.2.1", "192.0.2.2", 1, 2).Bytes()

	setSampling(t, objs, maps.DefaultSampleSettings, maps.Lease{Until: maps.MonotonicNow() + 100*time.Millisecond, Snaplen: 64, All: true})
	checkVerdict(t, objs, frame, passNoMatch)
	readSample(t, r)
	time.Sleep(150 * time.Millisecond)
	checkVerdict(t, objs, frame, passNoMatch)
	noSample(t, r)
	if l, err := sampling(objs).Lease(); err != nil || l.Until != 0 {
		t.Errorf("lease after its time: got %+v, %v; want it ended (Until 0)", l, err)
	}

	// A lease that asks for no more than the settings, which sample
	// nothing, ends all the same.
	setSampling(t, objs, maps.DefaultSampleSettings, maps.Lease{Until: maps.MonotonicNow() - 1, Snaplen: 64})
	checkVerdict(t, objs, frame, passNoMatch)
	noSample(t, r)
	if l, err := sampling(objs).Lease(); err != nil || l.Until != 0 {
		t.Errorf("lease of samples only after its time: got %+v, %v; want it ended", l, err)
	}

	// A lapsed lease's snap length gives way to the settings'.
	setSampling(t, objs, maps.SampleSettings{Rate: 1, Snaplen: 20}, maps.Lease{Until: maps.MonotonicNow() - 1, Snaplen: 64, All: true})
	for range 64 { // at rate 1, a sample comes within 64 runs but one time in 2^64
		checkVerdict(t, objs, frame, passNoMatch)
	}
	if s := readSample(t, r); len(s.Data) != 20 {
		t.Errorf("sample after the lease: %d bytes, want the settings' 20", len(s.Data))
	}
}
