package maps

import (
	"net/netip"
	"sync"
	"testing"
	"time"

	"github.com/cilium/ebpf"

	"github.com/xdpstack/xdpstack/bpf"
	"github.com/xdpstack/xdpstack/internal/testing/testutil"
)

// newMaps makes this build's maps of the given names, unpinned.
func newMaps(t *testing.T, names ...string) []*ebpf.Map {
	t.Helper()
	testutil.RequireBPF(t)
	spec, err := bpf.LoadXdp()
	if err != nil {
		t.Fatal(err)
	}
	var made []*ebpf.Map
	for _, name := range names {
		ms := spec.Maps[name].Copy()
		ms.Pinning = ebpf.PinNone
		m, err := ebpf.NewMap(ms)
		if err != nil {
			t.Fatalf("make the %s map: %v", name, err)
		}
		t.Cleanup(func() { m.Close() })
		made = append(made, m)
	}
	return made
}

// TestWritersShareTheSampleValue runs the writers of the sampling map's
// value at once, many times over, as the daemon, a capture and a rules
// command may: the rule table flipping generations, the sampling
// settings and a capture's lease. None may undo another's write, and a
// reader must never see a word half written: each writer writes pairs
// that belong together (a generation and its shape count, a rate and a
// snap length), which the reader checks, as it checks that a lease's
// end, stored after its snap length, never comes with an older one.
func TestWritersShareTheSampleValue(t *testing.T) {
	m := newMaps(t, RuleMatchName, RuleSetsName, RulesName, RuleHitsName, RuleSlotsName, SamplingName)
	rules := Rules{match: m[0], sets: m[1], info: m[2], hits: m[3], slots: m[4], inUse: m[5]}
	sampling := Sampling{state: m[5]}

	// One rule of one shape, three rules of two shapes: generation 1
	// always holds the first set, generation 0 the second.
	deny := Rule{RuleMatch: RuleMatch{Protocol: TCP, LocalPort: 22}, Action: RuleDeny}
	sets := [][]Rule{{deny}, {
		deny,
		{RuleMatch: RuleMatch{Protocol: UDP, LocalPort: 53}, Action: RulePass},
		{RuleMatch: RuleMatch{Protocol: TCP, Remote: netip.MustParsePrefix("10.0.0.0/8")}, Action: RuleDeny},
	}}
	shapesOf := map[uint32]uint32{1: 1, 0: 2}
	const flips, writes = 20, 4000

	var writers, reader sync.WaitGroup
	done := make(chan struct{})
	writers.Go(func() {
		for i := range flips {
			if _, err := rules.Replace(sets[i%2]); err != nil {
				t.Errorf("Replace %d: %v", i, err)
				return
			}
			want := uint32(i+1) % 2
			if g, err := rules.inForce(); err != nil || g.Active != want || g.ShapeCount != shapesOf[want] {
				t.Errorf("after Replace %d: generation %+v, %v; want %d with its %d shapes", i, g, err, want, shapesOf[want])
				return
			}
		}
	})
	var last SampleSettings
	writers.Go(func() {
		for i := range writes {
			set := SampleSettings{Rate: uint32(i) % (MaxSampleRate + 1)}
			set.Snaplen = 100 + set.Rate
			lease := Lease{Until: time.Duration(1000 + i), Snaplen: 1000 + uint32(i), All: i%2 == 0}
			if err := sampling.SetSettings(set); err != nil {
				t.Errorf("SetSettings %d: %v", i, err)
				return
			}
			if err := sampling.SetLease(lease); err != nil {
				t.Errorf("SetLease %d: %v", i, err)
				return
			}
			if got, err := sampling.Settings(); err != nil || got != set {
				t.Errorf("Settings after write %d: got %+v, %v; want %+v", i, got, err, set)
				return
			}
			if got, err := sampling.Lease(); err != nil || got != lease {
				t.Errorf("Lease after write %d: got %+v, %v; want %+v", i, got, err, lease)
				return
			}
			last = set
		}
	})
	reader.Go(func() {
		for reads := 0; ; reads++ {
			select {
			case <-done:
				return
			default:
			}
			g, err := rules.inForce()
			if err != nil || g != (bpf.XdpRuleGeneration{}) && g.ShapeCount != shapesOf[g.Active] {
				t.Errorf("read %d: generation %+v, %v: a shape count of the other generation", reads, g, err)
				return
			}
			if set, err := sampling.Settings(); err != nil || set != (SampleSettings{}) && set.Snaplen != 100+set.Rate {
				t.Errorf("read %d: settings %+v, %v: a snap length of other settings", reads, set, err)
				return
			}
			// The lease is two words: its end may come with the snap
			// length of the lease after it, never of one before.
			if l, err := sampling.Lease(); err != nil || l.Until != 0 && uint64(l.Snaplen) < uint64(l.Until) {
				t.Errorf("read %d: lease %+v, %v: the snap length of an earlier lease", reads, l, err)
				return
			}
		}
	})
	writers.Wait()
	close(done)
	reader.Wait()

	// Each writer's last write stands.
	if g, err := rules.inForce(); err != nil || g.Active != flips%2 || g.ShapeCount != shapesOf[flips%2] {
		t.Errorf("generation after both: got %+v, %v; want %d with %d shapes", g, err, flips%2, shapesOf[flips%2])
	}
	if got, err := sampling.Settings(); err != nil || got != last {
		t.Errorf("settings after both: got %+v, %v; want %+v", got, err, last)
	}
}
