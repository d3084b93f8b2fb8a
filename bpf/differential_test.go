package bpf_test

import (
	"encoding/hex"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"os"
	"strconv"
	"testing"

	"github.com/cilium/ebpf"

	"github.com/xdpstack/xdpstack/bpf"
	"github.com/xdpstack/xdpstack/internal/testing/packet"
	"github.com/xdpstack/xdpstack/internal/testing/xdpmodel"
	"github.com/xdpstack/xdpstack/maps"
)

// Addresses the generator builds rules and packets from: the served,
// own and broadcast addresses of the model host, others nearby, and
// ones no wire may carry.
var (
	genAddrs4 = addrs("192.0.2.2", "192.0.2.3", "192.0.2.255", "198.51.100.7", "10.1.2.3", "10.1.200.9", "10.77.0.1",
		"127.0.0.1", "224.0.0.251", "255.255.255.255", "0.0.0.0")
	genAddrs6 = addrs("2001:db8::2", "2001:db8::3", "2001:db8:1::1", "2001:db8:1:2::9", "2001:db8:ff::1", "fe80::2",
		"::1", "::", "ff02::1", "::ffff:10.1.2.3", "::ffff:192.0.2.2")
	genPorts = []uint16{7, 53, 80, 443, 1000, 40000, 40050, 40100, 65535}
)

func addrs(ss ...string) []netip.Addr {
	var out []netip.Addr
	for _, s := range ss {
		out = append(out, netip.MustParseAddr(s))
	}
	return out
}

// modelHost is the state the differential test gives both the program
// and the model, rules aside.
func modelHost() *xdpmodel.State {
	return &xdpmodel.State{
		Listeners: []maps.Listener{
			{Protocol: maps.TCP, Port: 7},
			{Protocol: maps.TCP, Port: 80},
			{Protocol: maps.UDP, Addr: netip.MustParseAddr("192.0.2.2"), Port: 53},
			{Protocol: maps.TCP, Addr: netip.MustParseAddr("2001:db8::2"), Port: 443},
		},
		Ports: maps.PortRange{Min: 40000, Max: 40100},
		Local: map[netip.Addr]maps.AddrKind{
			netip.MustParseAddr("192.0.2.2"):   maps.AddrOwn | maps.AddrServed,
			netip.MustParseAddr("192.0.2.3"):   maps.AddrOwn,
			netip.MustParseAddr("192.0.2.255"): maps.AddrBroadcast,
			netip.MustParseAddr("2001:db8::2"): maps.AddrOwn | maps.AddrServed,
			netip.MustParseAddr("fe80::2"):     maps.AddrOwn,
		},
	}
}

func loadModelHost(tb testing.TB, s *xdpmodel.State) *bpf.XdpObjects {
	tb.Helper()
	objs := loadXdp(tb, s.Ports.Min, s.Ports.Max)
	set := maps.FromObjects(&objs.XdpMaps)
	for a, kind := range s.Local {
		if err := set.LocalAddrs.Put(a, kind); err != nil {
			tb.Fatal(err)
		}
	}
	for _, l := range s.Listeners {
		if err := set.Listeners.Put(l, 1); err != nil {
			tb.Fatal(err)
		}
	}
	return objs
}

// near is a from the pool, sometimes with random low bits.
func near(rng *rand.Rand, pool []netip.Addr) netip.Addr {
	a := pool[rng.IntN(len(pool))]
	if rng.IntN(3) > 0 {
		return a
	}
	b := a.As16()
	for range 1 + rng.IntN(3) {
		b[16-1-rng.IntN(4)] = byte(rng.Uint32())
	}
	if a.Is4() {
		return netip.AddrFrom16(b).Unmap()
	}
	return netip.AddrFrom16(b)
}

func genPort(rng *rand.Rand) uint16 {
	if rng.IntN(4) == 0 {
		return uint16(rng.Uint32())
	}
	return genPorts[rng.IntN(len(genPorts))]
}

// randomRules makes up to n distinct rules in a few random shapes.
func randomRules(rng *rand.Rand, n int) []maps.Rule {
	type shape struct {
		family             int // 0 any, 4, 6
		localBits, remBits int
		proto              maps.Protocol
		localPort, remPort bool
	}
	bits4 := []int{0, 8, 16, 24, 30, 32}
	bits6 := []int{0, 16, 32, 48, 64, 127, 128}
	var shapes []shape
	for range 1 + rng.IntN(maps.MaxRuleShapes) {
		s := shape{family: []int{0, 4, 4, 6}[rng.IntN(4)], proto: []maps.Protocol{0, maps.TCP, maps.UDP}[rng.IntN(3)],
			localPort: rng.IntN(2) == 0, remPort: rng.IntN(3) == 0}
		bits := bits4
		if s.family == 6 {
			bits = bits6
		}
		s.localBits, s.remBits = bits[rng.IntN(len(bits))], bits[rng.IntN(len(bits))]
		shapes = append(shapes, s)
	}
	var rules []maps.Rule
	seen := map[maps.RuleMatch]bool{}
	for range n {
		s := shapes[rng.IntN(len(shapes))]
		r := maps.Rule{Action: []maps.RuleAction{maps.RuleAllow, maps.RuleDeny, maps.RulePass}[rng.IntN(3)],
			RuleMatch: maps.RuleMatch{Protocol: s.proto}}
		if s.localPort {
			r.LocalPort = genPorts[rng.IntN(len(genPorts))]
		}
		if s.remPort {
			r.RemotePort = genPorts[rng.IntN(len(genPorts))]
		}
		if s.family != 0 {
			pool := genAddrs4
			if s.family == 6 {
				pool = genAddrs6[:6] // no IPv4-mapped prefixes: rules refuse them
			}
			r.Local = netip.PrefixFrom(near(rng, pool), s.localBits)
			r.Remote = netip.PrefixFrom(near(rng, pool), s.remBits)
		}
		c, err := r.Check()
		if err != nil || seen[c.RuleMatch] {
			continue
		}
		seen[c.RuleMatch] = true
		rules = append(rules, c)
	}
	return rules
}

// randomFrame builds a frame the program may meet: mostly TCP and UDP
// between the pool's addresses, with now and then VLAN tags, options,
// extension headers, fragments, and then maybe broken at random.
func randomFrame(rng *rand.Rand) []byte {
	v6 := rng.IntN(5) < 2
	proto := []uint8{packet.ProtoTCP, packet.ProtoTCP, packet.ProtoUDP, packet.ProtoUDP, packet.ProtoICMP, 47}[rng.IntN(6)]
	var f *packet.Frame
	eth := packet.EtherTypeIPv4
	if v6 {
		eth = packet.EtherTypeIPv6
	}
	if rng.IntN(30) == 0 {
		f = packet.Ethernet(packet.EtherTypeVLAN).VLAN(uint16(rng.IntN(4096)), uint16(eth))
	} else {
		f = packet.Ethernet(uint16(eth))
	}
	if v6 {
		if proto == packet.ProtoICMP {
			proto = packet.ProtoICMPv6
		}
		next := proto
		if rng.IntN(8) == 0 {
			next = packet.ProtoHopByHop
		}
		f.IPv6(near(rng, genAddrs6), near(rng, genAddrs6), next)
		if next != proto {
			if rng.IntN(3) == 0 {
				f.IPv6Options(packet.ProtoFragment, uint8(rng.IntN(2)))
				f.IPv6Fragment(proto, uint16(rng.IntN(2)), rng.IntN(2) == 0)
			} else {
				f.IPv6Options(proto, uint8(rng.IntN(3)))
			}
		}
	} else {
		h := packet.IPv4{Src: near(rng, genAddrs4), Dst: near(rng, genAddrs4), Protocol: proto}
		if rng.IntN(10) == 0 {
			h.Options = make([]byte, 4*rng.IntN(11))
		}
		if rng.IntN(30) == 0 {
			h.MoreFragments = true
		}
		f.IPv4(h)
	}
	switch proto {
	case packet.ProtoTCP:
		f.TCP(genPort(rng), genPort(rng), uint8(5+rng.IntN(2)*rng.IntN(11)))
	case packet.ProtoUDP:
		f.UDP(genPort(rng), genPort(rng))
	case packet.ProtoICMP, packet.ProtoICMPv6:
		f.ICMPEcho(v6)
	}
	b := f.Payload(rng.IntN(64)).Bytes()
	if rng.IntN(4) == 0 {
		b = mutate(rng, b)
	}
	return b
}

// mutate flips bytes, cuts or lengthens a frame, keeping it a size
// BPF_PROG_TEST_RUN takes.
func mutate(rng *rand.Rand, b []byte) []byte {
	for range 1 + rng.IntN(3) {
		switch rng.IntN(3) {
		case 0:
			b[rng.IntN(len(b))] ^= byte(1 + rng.IntN(255))
		case 1:
			b = b[:14+rng.IntN(len(b)-13)]
		case 2:
			b = append(b, make([]byte, rng.IntN(16))...)
		}
	}
	return b
}

// differentialPackets is how many packets TestDifferential runs;
// XDPSTACK_DIFF_PACKETS overrides it.
func differentialPackets(t *testing.T) int {
	n := 1_000_000
	if s := os.Getenv("XDPSTACK_DIFF_PACKETS"); s != "" {
		var err error
		if n, err = strconv.Atoi(s); err != nil {
			t.Fatalf("XDPSTACK_DIFF_PACKETS=%q: %v", s, err)
		}
	} else if testing.Short() {
		n = 50_000
	}
	return n
}

// TestDifferential runs the program and the Go model on the same
// generated and mutated frames against random rule sets (fixed seed):
// they must agree on every verdict, and batch by batch on how many of
// each reason and each rule's hits.
func TestDifferential(t *testing.T) {
	host := modelHost()
	objs := loadModelHost(t, host)
	set := maps.FromObjects(&objs.XdpMaps)
	rng := rand.New(rand.NewPCG(20, 1))
	const (
		batch        = 2000
		perRuleSet   = 50_000
		maxRuleCount = 400
	)
	total := differentialPackets(t)
	frames := make([][]byte, batch)
	want := make([]xdpmodel.Result, batch)
	for done := 0; done < total; done += batch {
		if done%perRuleSet == 0 {
			rules, err := set.Rules.Replace(randomRules(rng, 1+rng.IntN(maxRuleCount)))
			if err != nil {
				t.Fatalf("Replace: %v", err)
			}
			host.Rules = rules
		}
		statsBefore, hitsBefore := readCounters(t, set, host.Rules)
		wantStats := map[maps.Verdict]uint64{}
		wantHits := map[uint32]uint64{}
		for i := range frames {
			frames[i] = randomFrame(rng)
			want[i] = host.Classify(frames[i])
			wantStats[want[i].Verdict]++
			if want[i].Rule != 0 {
				wantHits[want[i].Rule]++
			}
			ret, err := objs.XdpstackIngress.Run(&ebpf.RunOptions{Data: frames[i]})
			if err != nil {
				t.Fatalf("Run(%x): %v", frames[i], err)
			}
			if maps.Action(ret) != want[i].Action {
				t.Fatalf("packet %d: program says %v, model says %v\nframe %s\nrules %v", done+i, maps.Action(ret), want[i], hex.EncodeToString(frames[i]), host.Rules)
			}
		}
		statsAfter, hitsAfter := readCounters(t, set, host.Rules)
		if diff := counterDiff(statsBefore, statsAfter, wantStats); diff != "" {
			t.Fatalf("packets %d to %d: reasons differ (program - model): %s\n%s", done, done+batch, diff, firstDisagreement(t, objs, set, frames, want))
		}
		for _, r := range host.Rules {
			if got := hitsAfter[r.ID].Packets - hitsBefore[r.ID].Packets; got != wantHits[r.ID] {
				t.Fatalf("packets %d to %d: rule %d (%v) hit %d times, model says %d", done, done+batch, r.ID, r, got, wantHits[r.ID])
			}
		}
	}
	t.Logf("%d packets agree", total)
}

func readCounters(t *testing.T, set *maps.Set, rules []maps.Rule) (map[maps.Verdict]maps.Counter, map[uint32]maps.Counter) {
	t.Helper()
	stats, err := set.Stats.Sum()
	if err != nil {
		t.Fatal(err)
	}
	hits, err := set.Rules.Hits(rules)
	if err != nil {
		t.Fatal(err)
	}
	return stats, hits
}

func counterDiff(before, after map[maps.Verdict]maps.Counter, want map[maps.Verdict]uint64) string {
	diff := ""
	seen := map[maps.Verdict]bool{}
	for v := range after {
		seen[v] = true
	}
	for v := range want {
		seen[v] = true
	}
	for v := range seen {
		if got := after[v].Packets - before[v].Packets; got != want[v] {
			diff += fmt.Sprintf(" %v/%v: %+d", v.Action, v.Reason, int64(got)-int64(want[v]))
		}
	}
	return diff
}

// firstDisagreement runs a batch again one frame at a time to name the
// first frame whose reason differs.
func firstDisagreement(t *testing.T, objs *bpf.XdpObjects, set *maps.Set, frames [][]byte, want []xdpmodel.Result) string {
	for i, f := range frames {
		_, moved := runFrame(t, objs, f)
		if _, ok := moved[want[i].Verdict]; !ok || len(moved) != 1 {
			return fmt.Sprintf("frame %s: program counted %v, model says %v", hex.EncodeToString(f), moved, want[i].Verdict)
		}
	}
	return "no single frame differs when run alone"
}

// FuzzDifferential compares the program and the model on arbitrary
// frames against one fixed rule set.
func FuzzDifferential(f *testing.F) {
	rng := rand.New(rand.NewPCG(20, 2))
	for range 64 {
		f.Add(randomFrame(rng))
	}
	host := modelHost()
	objs := loadModelHost(f, host)
	rules, err := maps.FromObjects(&objs.XdpMaps).Rules.Replace(randomRules(rng, 300))
	if err != nil {
		f.Fatal(err)
	}
	host.Rules = rules
	f.Fuzz(func(t *testing.T, frame []byte) {
		if len(frame) < 14 || len(frame) > 4000 {
			t.Skip("outside what BPF_PROG_TEST_RUN takes")
		}
		want := host.Classify(frame)
		got, moved := runFrame(t, objs, frame)
		if got != want.Action || len(moved) != 1 || moved[want.Verdict].Packets != 1 {
			t.Fatalf("frame %x: program %v counted %v, model says %v", frame, got, moved, want)
		}
	})
}
