package bpf_test

import (
	"encoding/binary"
	"fmt"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/cilium/ebpf"

	"github.com/xdpstack/xdpstack/bpf"
	"github.com/xdpstack/xdpstack/internal/testing/packet"
	"github.com/xdpstack/xdpstack/maps"
)

var (
	dropRuleDeny = maps.Verdict{Action: maps.ActionDrop, Reason: maps.ReasonRuleDeny}
	passRulePass = maps.Verdict{Action: maps.ActionPass, Reason: maps.ReasonRulePass}
)

// rule builds a rule from the rules command's syntax: proto, local,
// remote ("" for absent), action and tag.
func rule(tb testing.TB, proto, local, remote, action, tag string) maps.Rule {
	tb.Helper()
	r := maps.Rule{Tag: tag}
	var err error
	if r.Protocol, err = maps.ParseRuleProtocol(proto); err != nil {
		tb.Fatal(err)
	}
	if local != "" {
		if r.Local, r.LocalPort, err = maps.ParseEndpoint(local); err != nil {
			tb.Fatal(err)
		}
	}
	if remote != "" {
		if r.Remote, r.RemotePort, err = maps.ParseEndpoint(remote); err != nil {
			tb.Fatal(err)
		}
	}
	if r.Action, err = maps.ParseRuleAction(action); err != nil {
		tb.Fatal(err)
	}
	return r
}

func replaceRules(tb testing.TB, objs *bpf.XdpObjects, rules ...maps.Rule) []maps.Rule {
	tb.Helper()
	got, err := maps.FromObjects(&objs.XdpMaps).Rules.Replace(rules)
	if err != nil {
		tb.Fatalf("Replace(%d rules): %v", len(rules), err)
	}
	return got
}

// inUse reads the rule generation in use, as the program does, from the
// sampling map's value.
func inUse(tb testing.TB, objs *bpf.XdpObjects) bpf.XdpRuleGeneration {
	tb.Helper()
	var v bpf.XdpSampleState
	if err := objs.Sampling.Lookup(uint32(0), &v); err != nil {
		tb.Fatal(err)
	}
	return v.Rules
}

// putInUse writes the rule generation in use behind the table's back,
// keeping the rest of the sampling map's value.
func putInUse(tb testing.TB, objs *bpf.XdpObjects, g bpf.XdpRuleGeneration) {
	tb.Helper()
	var v bpf.XdpSampleState
	if err := objs.Sampling.Lookup(uint32(0), &v); err != nil {
		tb.Fatal(err)
	}
	v.Rules = g
	if err := objs.Sampling.Put(uint32(0), v); err != nil {
		tb.Fatal(err)
	}
}

// tcp4 is a TCP segment from src:sport to dst:dport.
func tcp4(src, dst string, sport, dport uint16) *packet.Frame {
	return packet.Ethernet(packet.EtherTypeIPv4).IPv4(packet.IPv4{Src: netip.MustParseAddr(src), Dst: netip.MustParseAddr(dst), Protocol: packet.ProtoTCP}).TCP(sport, dport, 0)
}

func udp4(src, dst string, sport, dport uint16) *packet.Frame {
	return packet.Ethernet(packet.EtherTypeIPv4).IPv4(packet.IPv4{Src: netip.MustParseAddr(src), Dst: netip.MustParseAddr(dst), Protocol: packet.ProtoUDP}).UDP(sport, dport)
}

func tcp6(src, dst string, sport, dport uint16) *packet.Frame {
	return packet.Ethernet(packet.EtherTypeIPv6).IPv6(netip.MustParseAddr(src), netip.MustParseAddr(dst), packet.ProtoTCP).TCP(sport, dport, 0)
}

// TestRules runs the classifier on tables of rules and packets: each
// case replaces the whole table, then checks the verdicts.
func TestRules(t *testing.T) {
	objs := loadXdp(t, 0, 0)
	for _, tc := range []struct {
		name    string
		rules   [][5]string // proto, local, remote, action, tag
		packets []struct {
			frame *packet.Frame
			want  maps.Verdict
		}
	}{
		{
			name:  "longer remote prefix beats shorter",
			rules: [][5]string{{"any", "", "10.0.0.0/8", "deny", "wide"}, {"any", "", "10.1.2.0/24", "pass", "narrow"}},
			packets: cases(
				tcp4("10.1.2.3", "192.0.2.2", 1000, 80), passRulePass,
				tcp4("10.1.3.3", "192.0.2.2", 1000, 80), dropRuleDeny,
				tcp4("11.1.2.3", "192.0.2.2", 1000, 80), passNoMatch,
			),
		},
		{
			name:  "longer local prefix beats shorter",
			rules: [][5]string{{"tcp", "192.0.2.0/24", "", "deny", ""}, {"tcp", "192.0.2.128/25", "", "pass", ""}},
			packets: cases(
				tcp4("10.0.0.1", "192.0.2.200", 1000, 80), passRulePass,
				tcp4("10.0.0.1", "192.0.2.2", 1000, 80), dropRuleDeny,
			),
		},
		{
			name:  "exact port beats wildcard",
			rules: [][5]string{{"tcp", "192.0.2.2", "", "deny", ""}, {"tcp", "192.0.2.2:22", "", "pass", ""}},
			packets: cases(
				tcp4("10.0.0.1", "192.0.2.2", 1000, 22), passRulePass,
				tcp4("10.0.0.1", "192.0.2.2", 1000, 80), dropRuleDeny,
			),
		},
		{
			name:  "protocol",
			rules: [][5]string{{"udp", ":53", "", "deny", ""}},
			packets: cases(
				udp4("10.0.0.1", "192.0.2.2", 1000, 53), dropRuleDeny,
				tcp4("10.0.0.1", "192.0.2.2", 1000, 53), passNoMatch,
			),
		},
		{
			name:  "ipv6",
			rules: [][5]string{{"tcp", "[2001:db8::/32]:443", "[2001:db8:1::/48]", "deny", ""}, {"any", "", "2001:db8:1::7", "pass", ""}},
			packets: cases(
				tcp6("2001:db8:1::1", "2001:db8::2", 1000, 443), dropRuleDeny,
				tcp6("2001:db8:1::7", "2001:db8::2", 1000, 443), passRulePass,
				tcp6("2001:db8:2::1", "2001:db8::2", 1000, 443), passNoMatch,
				tcp6("2001:db8:1::1", "2001:db8::2", 1000, 80), passNoMatch,
				// An IPv4 packet never matches IPv6 rules, nor the other way.
				tcp4("10.0.0.1", "192.0.2.2", 1000, 443), passNoMatch,
			),
		},
		{
			name:  "families",
			rules: [][5]string{{"any", "", "0.0.0.0/0", "deny", "all-v4"}, {"any", "", "[::/0]:1000", "pass", ""}},
			packets: cases(
				tcp4("10.0.0.1", "192.0.2.2", 1000, 443), dropRuleDeny,
				tcp6("2001:db8::1", "2001:db8::2", 1000, 443), passRulePass,
				tcp6("2001:db8::1", "2001:db8::2", 1001, 443), passNoMatch,
				// ::/0 takes the IPv4-mapped source of an IPv6 packet; 0.0.0.0/0 does not.
				tcp6("::ffff:10.0.0.1", "2001:db8::2", 1000, 443), passRulePass,
				tcp6("::ffff:10.0.0.1", "2001:db8::2", 1001, 443), passNoMatch,
			),
		},
		{
			name:  "absent prefixes match both families",
			rules: [][5]string{{"tcp", ":7", "", "deny", ""}},
			packets: cases(
				tcp4("10.0.0.1", "192.0.2.2", 1000, 7), dropRuleDeny,
				tcp6("2001:db8::1", "2001:db8::2", 1000, 7), dropRuleDeny,
			),
		},
		{
			name: "tie-break order",
			rules: [][5]string{
				// 1. remote prefix length beats local prefix length
				{"any", "192.0.2.2", "10.0.0.0/16", "deny", "r16"}, {"any", "", "10.0.0.0/24", "pass", "r24"},
				// 2. local prefix length beats ports
				{"tcp", "198.51.100.0/24:80", "172.16.0.0/12:9", "deny", "l24"}, {"tcp", "198.51.100.9", "172.16.0.0/12", "pass", "l32"},
				// 3. exact remote port beats exact local port
				{"tcp", "203.0.113.0/24:80", "172.16.0.0/12", "deny", "lport"}, {"tcp", "203.0.113.0/24", "172.16.0.0/12:1234", "pass", "rport"},
				// 4. exact local port beats exact protocol
				{"tcp", "203.0.113.0/24", "192.168.0.0/16", "deny", "proto"}, {"any", "203.0.113.0/24:80", "192.168.0.0/16", "pass", "port"},
				// 5. exact protocol beats any
				{"any", "203.0.113.0/24", "100.64.0.0/10", "deny", "anyproto"}, {"udp", "203.0.113.0/24", "100.64.0.0/10", "pass", "udp"},
			},
			packets: cases(
				tcp4("10.0.0.1", "192.0.2.2", 1000, 80), passRulePass,
				tcp4("10.0.1.1", "192.0.2.2", 1000, 80), dropRuleDeny,
				tcp4("172.16.0.1", "198.51.100.9", 9, 80), passRulePass,
				tcp4("172.16.0.1", "198.51.100.8", 9, 80), dropRuleDeny,
				tcp4("172.16.0.1", "203.0.113.1", 1234, 80), passRulePass,
				tcp4("172.16.0.1", "203.0.113.1", 1235, 80), dropRuleDeny,
				tcp4("192.168.0.1", "203.0.113.1", 1000, 80), passRulePass,
				tcp4("192.168.0.1", "203.0.113.1", 1000, 81), dropRuleDeny,
				udp4("100.64.0.1", "203.0.113.1", 1000, 80), passRulePass,
				tcp4("100.64.0.1", "203.0.113.1", 1000, 80), dropRuleDeny,
			),
		},
		{
			name:  "rules see tcp and udp only",
			rules: [][5]string{{"any", "", "", "deny", "everything"}},
			packets: cases(
				tcp4("10.0.0.1", "192.0.2.2", 1, 2), dropRuleDeny,
				eth4(packet.ProtoICMP).ICMPEcho(false), passNoMatch,
				packet.Ethernet(packet.EtherTypeIPv4).IPv4(packet.IPv4{Src: src4, Dst: dst4, Protocol: packet.ProtoUDP, FragOffset: 8}).Payload(64), passFragment,
				packet.Ethernet(packet.EtherTypeARP).Payload(28), passNotIP,
			),
		},
		{
			name: "no rules",
			packets: cases(
				tcp4("10.0.0.1", "192.0.2.2", 1, 2), passNoMatch,
			),
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var rules []maps.Rule
			for _, r := range tc.rules {
				rules = append(rules, rule(t, r[0], r[1], r[2], r[3], r[4]))
			}
			replaceRules(t, objs, rules...)
			for _, p := range tc.packets {
				checkVerdict(t, objs, p.frame.Bytes(), p.want)
			}
		})
	}
}

func cases(args ...any) []struct {
	frame *packet.Frame
	want  maps.Verdict
} {
	var out []struct {
		frame *packet.Frame
		want  maps.Verdict
	}
	for i := 0; i < len(args); i += 2 {
		out = append(out, struct {
			frame *packet.Frame
			want  maps.Verdict
		}{args[i].(*packet.Frame), args[i+1].(maps.Verdict)})
	}
	return out
}

// TestRulesAndSteering checks how rules and listeners meet: pass takes
// a listener's packet to the kernel, allow leaves it to steering, and a
// deny drops what no one listens for too.
func TestRulesAndSteering(t *testing.T) {
	objs := loadXdp(t, 0, 0)
	serve(t, objs, dst4)
	if err := maps.FromObjects(&objs.XdpMaps).Listeners.Put(maps.Listener{Protocol: maps.TCP, Port: 80}, 1); err != nil {
		t.Fatal(err)
	}
	replaceRules(t, objs,
		rule(t, "tcp", ":80", "10.0.0.0/8", "pass", "to-kernel"),
		rule(t, "tcp", ":80", "10.1.0.0/16", "allow", "to-userstack"),
		rule(t, "tcp", ":22", "", "deny", "no-ssh"),
	)
	for _, tc := range []struct {
		name  string
		frame *packet.Frame
		want  maps.Verdict
	}{
		{"no rule: steered", tcp4("192.0.2.1", "192.0.2.2", 1000, 80), passNoSocket},
		{"pass beats a listener", tcp4("10.2.0.1", "192.0.2.2", 1000, 80), passRulePass},
		{"allow goes on to steering", tcp4("10.1.0.1", "192.0.2.2", 1000, 80), passNoSocket},
		{"deny without a listener", tcp4("10.2.0.1", "192.0.2.2", 1000, 22), dropRuleDeny},
		{"a rule comes before the martian check", tcp4("192.0.2.2", "192.0.2.2", 1000, 22), dropRuleDeny},
	} {
		t.Run(tc.name, func(t *testing.T) {
			checkVerdict(t, objs, tc.frame.Bytes(), tc.want)
		})
	}
}

// TestRulesFollowTheGenerationWord checks that the program takes the
// rule set in force from the generation word of the sampling map's
// value alone: a word that says no shapes keeps a packet away from the
// rule sets, where it would find a deny (so that, on an interface
// without rules, a packet reads the word and no rule set), and a word
// that names the other generation takes the packet to that one's rules.
// The sampling settings and lease, whose words share the value, and the
// rules leave each other as they are.
func TestRulesFollowTheGenerationWord(t *testing.T) {
	objs := loadXdp(t, 0, 0)
	denied := tcp4("192.0.2.1", "192.0.2.2", 40000, 22).Bytes()
	if g := inUse(t, objs); g != (bpf.XdpRuleGeneration{}) {
		t.Fatalf("generation before any rule: got %+v, want none", g)
	}
	checkVerdict(t, objs, denied, passNoMatch)

	set := maps.SampleSettings{Rate: 5, Snaplen: 99}
	lease := maps.Lease{Until: maps.MonotonicNow() + time.Hour, Snaplen: 77}
	setSampling(t, objs, set, lease)
	replaceRules(t, objs, rule(t, "tcp", ":22", "", "deny", "no-ssh"))
	g := inUse(t, objs)
	if g.ShapeCount != 1 {
		t.Fatalf("generation after a rule: got %+v, want 1 shape", g)
	}
	checkVerdict(t, objs, denied, dropRuleDeny)
	if got, err := sampling(objs).Settings(); err != nil || got != set {
		t.Errorf("sampling settings after a rule flip: got %+v, %v; want %+v", got, err, set)
	}
	if got, err := sampling(objs).Lease(); err != nil || got != lease {
		t.Errorf("lease after a rule flip: got %+v, %v; want %+v", got, err, lease)
	}
	setSampling(t, objs, maps.DefaultSampleSettings, maps.Lease{})
	if got := inUse(t, objs); got != g {
		t.Errorf("generation after a sampling change: got %+v, want %+v", got, g)
	}
	checkVerdict(t, objs, denied, dropRuleDeny)

	for _, tc := range []struct {
		name string
		word bpf.XdpRuleGeneration
		want maps.Verdict
	}{
		{"no shapes: no rule set read", bpf.XdpRuleGeneration{Active: g.Active}, passNoMatch},
		{"the other generation, empty", bpf.XdpRuleGeneration{Active: g.Active ^ 1, ShapeCount: 1}, passNoMatch},
		{"back to the deny's", g, dropRuleDeny},
	} {
		t.Run(tc.name, func(t *testing.T) {
			putInUse(t, objs, tc.word)
			checkVerdict(t, objs, denied, tc.want)
		})
	}
}

// TestRuleHits checks that each rule's counters move by what it
// decided, that a replace keeps the counters of the rules it keeps, and
// that a new rule starts from zero.
func TestRuleHits(t *testing.T) {
	objs := loadXdp(t, 0, 0)
	table := maps.FromObjects(&objs.XdpMaps).Rules
	deny := rule(t, "tcp", ":22", "", "deny", "no-ssh")
	pass := rule(t, "udp", "", "10.0.0.0/8", "pass", "")
	got := replaceRules(t, objs, deny, pass)
	denied := tcp4("10.0.0.1", "192.0.2.2", 1000, 22).Payload(100).Bytes()
	for range 3 {
		checkVerdict(t, objs, denied, dropRuleDeny)
	}
	checkVerdict(t, objs, udp4("10.0.0.1", "192.0.2.2", 1000, 53).Bytes(), passRulePass)
	hits, err := table.Hits(got)
	if err != nil {
		t.Fatal(err)
	}
	if want := (maps.Counter{Packets: 3, Bytes: 3 * uint64(len(denied))}); hits[got[0].ID] != want {
		t.Errorf("hits of %v: got %+v, want %+v", got[0], hits[got[0].ID], want)
	}
	if hits[got[1].ID].Packets != 1 {
		t.Errorf("hits of %v: got %+v, want 1 packet", got[1], hits[got[1].ID])
	}

	// Keep deny, drop pass, add a rule: deny keeps its id and hits, the
	// new rule gets an id no rule had.
	added := rule(t, "udp", ":53", "", "deny", "dns")
	again := replaceRules(t, objs, deny, added)
	if again[0].ID != got[0].ID {
		t.Errorf("kept rule: got id %d, want %d", again[0].ID, got[0].ID)
	}
	if again[1].ID == got[0].ID || again[1].ID == got[1].ID {
		t.Errorf("new rule got id %d, one of the old rules' (%d, %d)", again[1].ID, got[0].ID, got[1].ID)
	}
	hits, err = table.Hits(again)
	if err != nil {
		t.Fatal(err)
	}
	if hits[again[0].ID].Packets != 3 || hits[again[1].ID].Packets != 0 {
		t.Errorf("hits after replace: got %v, want 3 for the kept rule and 0 for the new one", hits)
	}
	all, err := table.All()
	if err != nil {
		t.Fatal(err)
	}
	if fmt.Sprint(all) != fmt.Sprint(again) {
		t.Errorf("All(): got %v, want %v", all, again)
	}
	checkVerdict(t, objs, udp4("10.0.0.1", "192.0.2.2", 1000, 53).Bytes(), dropRuleDeny)
	checkVerdict(t, objs, udp4("10.0.0.1", "192.0.2.2", 1000, 54).Bytes(), passNoMatch)

	// A refused set changes nothing.
	if _, err := table.Replace([]maps.Rule{deny, deny}); err == nil || !strings.Contains(err.Error(), "same match") {
		t.Errorf("Replace with a match twice: got %v", err)
	}
	if all, _ := table.All(); fmt.Sprint(all) != fmt.Sprint(again) {
		t.Errorf("after a refused Replace: got %v, want %v", all, again)
	}
	checkVerdict(t, objs, udp4("10.0.0.1", "192.0.2.2", 1000, 53).Bytes(), dropRuleDeny)
}

// TestManyRules fills the table past 10,000 rules in many shapes and
// checks that a rule of each still decides, and that shapes past the
// limit are refused.
func TestManyRules(t *testing.T) {
	objs := loadXdp(t, 0, 0)
	rules := manyRules(10_000)
	got := replaceRules(t, objs, rules...)
	for _, i := range []int{0, 1, 2, 3, 4, 5, 6, 7, 4321, 9999} {
		frame, p := packetFor(got[i])
		r, ok := maps.MatchRule(got, p)
		if !ok {
			t.Fatalf("MatchRule(%v): no rule matches the packet made for rule %v", p, got[i])
		}
		want := map[maps.RuleAction]maps.Verdict{maps.RuleDeny: dropRuleDeny, maps.RulePass: passRulePass}[r.Action]
		checkVerdict(t, objs, frame.Bytes(), want)
	}
	// And replacing the whole table at once, twice, goes through both generations.
	replaceRules(t, objs, manyRules(10_000)[5000:]...)
	replaceRules(t, objs, rules...)

	var shapes []maps.Rule
	for bits := range maps.MaxRuleShapes + 1 {
		shapes = append(shapes, maps.Rule{RuleMatch: maps.RuleMatch{Remote: netip.PrefixFrom(netip.AddrFrom4([4]byte{10}), bits)}, Action: maps.RuleDeny})
	}
	if _, err := maps.FromObjects(&objs.XdpMaps).Rules.Replace(shapes); err == nil || !strings.Contains(err.Error(), "shapes") {
		t.Errorf("Replace with %d shapes: got %v, want a refusal", len(shapes), err)
	}
}

// TestEveryRuleDecides runs a packet for each rule of a table large
// enough that some keys find their slot in rule_slots taken and go to
// rule_match: in both generations, every packet must be decided by the
// rule MatchRule picks, as the hit counters show.
func TestEveryRuleDecides(t *testing.T) {
	objs := loadXdp(t, 0, 0)
	table := maps.FromObjects(&objs.XdpMaps).Rules
	rules := manyRules(2000)
	for range 2 {
		got := replaceRules(t, objs, rules...)
		active := inUse(t, objs)
		var (
			k          bpf.XdpRuleKey
			v          bpf.XdpRuleValue
			overflowed int
		)
		for entries := objs.RuleMatch.Iterate(); entries.Next(&k, &v); {
			if uint32(k.Generation) == active.Active {
				overflowed++
			}
		}
		if overflowed == 0 {
			t.Fatalf("generation %d: no key in %s, so its path goes untested (make the table larger)", active.Active, maps.RuleMatchName)
		}
		before, err := table.Hits(got)
		if err != nil {
			t.Fatal(err)
		}
		want := map[uint32]uint64{}
		for _, r := range got {
			frame, p := packetFor(r)
			decides, ok := maps.MatchRule(got, p)
			if !ok {
				t.Fatalf("MatchRule(%v): no rule matches the packet made for rule %v", p, r)
			}
			want[decides.ID]++
			ret, err := objs.XdpstackIngress.Run(&ebpf.RunOptions{Data: frame.Bytes()})
			if err != nil {
				t.Fatal(err)
			}
			if wantAction := map[maps.RuleAction]maps.Action{maps.RuleDeny: maps.ActionDrop, maps.RulePass: maps.ActionPass}[decides.Action]; maps.Action(ret) != wantAction {
				t.Fatalf("generation %d: packet for rule %v: program says %v, want %v by rule %v", active.Active, r, maps.Action(ret), wantAction, decides)
			}
		}
		after, err := table.Hits(got)
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range got {
			if n := after[r.ID].Packets - before[r.ID].Packets; n != want[r.ID] {
				t.Errorf("generation %d: rule %v hit %d times, want %d", active.Active, r, n, want[r.ID])
			}
		}
	}
}

// manyRules makes n distinct rules in 8 shapes: remote /16 or /24 or
// /32, local /24 or /32, with and without ports.
func manyRules(n int) []maps.Rule {
	rules := make([]maps.Rule, n)
	for i := range rules {
		a := [4]byte{10, byte(i >> 8), byte(i), 1}
		shape := i % 8
		r := maps.Rule{Action: maps.RuleDeny, RuleMatch: maps.RuleMatch{Protocol: maps.TCP}}
		if i%3 == 0 {
			r.Action = maps.RulePass
		}
		remoteBits := []int{32, 24, 16, 32}[shape%4]
		r.Remote = netip.PrefixFrom(netip.AddrFrom4(a), remoteBits).Masked()
		if remoteBits == 16 {
			r.Remote = netip.PrefixFrom(netip.AddrFrom4([4]byte{byte(i >> 8), byte(i), 0, 0}), 16)
		}
		r.Local = netip.PrefixFrom(netip.AddrFrom4([4]byte{192, 0, 2, 0}), 24)
		if shape >= 4 {
			r.Local = netip.PrefixFrom(netip.AddrFrom4([4]byte{192, 0, 2, 2}), 32)
			r.LocalPort = 80
		}
		if shape == 3 || shape == 7 {
			r.RemotePort = uint16(1000 + i)
			r.Remote = netip.PrefixFrom(netip.AddrFrom4([4]byte{10, 200, 0, 1}), 32)
		}
		rules[i] = r
	}
	return rules
}

// packetFor is a TCP packet that rule r of manyRules matches.
func packetFor(r maps.Rule) (*packet.Frame, maps.RulePacket) {
	remote := r.Remote.Addr().As4()
	if r.Remote.Bits() < 32 {
		remote[3] = 1
	}
	sport := r.RemotePort
	if sport == 0 {
		sport = 9
	}
	src, dst := netip.AddrFrom4(remote), netip.MustParseAddr("192.0.2.2")
	return tcp4(src.String(), dst.String(), sport, 80), maps.RulePacket{Protocol: maps.TCP, Local: netip.AddrPortFrom(dst, 80), Remote: netip.AddrPortFrom(src, sport)}
}

// TestRuleLayouts checks that the Go views of the rule maps, and of the
// sampling map that holds the generation in use, have the sizes of the
// C structs, as the program's BTF has them.
func TestRuleLayouts(t *testing.T) {
	spec, err := bpf.LoadXdp()
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name       string
		key, value any
		entries    int
	}{
		{maps.RuleMatchName, bpf.XdpRuleKey{}, bpf.XdpRuleValue{}, 2 * (maps.MaxRules + 1)},
		{maps.RuleSetsName, uint32(0), bpf.XdpRuleSet{}, 2},
		{maps.SamplingName, uint32(0), bpf.XdpSampleState{}, 1},
		{maps.RulesName, uint32(0), bpf.XdpRuleInfo{}, maps.MaxRules + 1},
		{maps.RuleHitsName, uint32(0), bpf.XdpCounter{}, maps.MaxRules + 1},
		{maps.RuleSlotsName, uint32(0), bpf.XdpRuleSlot{}, 4 * (maps.MaxRules + 1)},
	} {
		ms := spec.Maps[tc.name]
		if ms == nil {
			t.Errorf("no %s map", tc.name)
			continue
		}
		if k, v := binary.Size(tc.key), binary.Size(tc.value); uint32(k) != ms.KeySize || uint32(v) != ms.ValueSize {
			t.Errorf("%s: Go key/value %d/%d bytes, C %d/%d", tc.name, k, v, ms.KeySize, ms.ValueSize)
		}
		if ms.MaxEntries != uint32(tc.entries) {
			t.Errorf("%s: %d entries, want %d", tc.name, ms.MaxEntries, tc.entries)
		}
	}
}
