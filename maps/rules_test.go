package maps

import (
	"net/netip"
	"strings"
	"testing"
)

func TestParseEndpoint(t *testing.T) {
	for _, tc := range []struct {
		in     string
		prefix string // "" for any
		port   uint16
		err    string
	}{
		{in: "10.0.0.0/8:80", prefix: "10.0.0.0/8", port: 80},
		{in: "10.0.0.0/8", prefix: "10.0.0.0/8"},
		{in: "192.0.2.1", prefix: "192.0.2.1/32"},
		{in: "192.0.2.1:0", prefix: "192.0.2.1/32"},
		{in: "[2001:db8::/32]:443", prefix: "2001:db8::/32", port: 443},
		{in: "[2001:db8::1]", prefix: "2001:db8::1/128"},
		{in: "2001:db8::/32", prefix: "2001:db8::/32"},
		{in: "2001:db8::1", prefix: "2001:db8::1/128"},
		{in: ":53", port: 53},
		{in: "", err: "empty"},
		{in: "10.0.0.0/33", err: "not an address or prefix"},
		{in: "10.0.0.300", err: "not an address or prefix"},
		{in: "10.0.0.0/8:65536", err: "not 0 to 65535"},
		{in: "10.0.0.0/8:", err: "not 0 to 65535"},
		{in: "[2001:db8::/32:443", err: "no closing ]"},
		{in: "[2001:db8::/32]443", err: "want :PORT after ]"},
		{in: "2001:db8::/32:443", err: "not an address or prefix"},
		{in: "web", err: "not an address or prefix"},
	} {
		p, port, err := ParseEndpoint(tc.in)
		if tc.err != "" {
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("ParseEndpoint(%q): got %v, %d, %v; want an error with %q", tc.in, p, port, err, tc.err)
			}
			continue
		}
		var want netip.Prefix
		if tc.prefix != "" {
			want = netip.MustParsePrefix(tc.prefix)
		}
		if err != nil || p != want || port != tc.port {
			t.Errorf("ParseEndpoint(%q): got %v, %d, %v; want %v, %d", tc.in, p, port, err, want, tc.port)
		}
		// What it reads, formatEndpoint writes back.
		if p2, port2, err := ParseEndpoint(formatEndpoint(p, port)); (p.IsValid() || port != 0) && (err != nil || p2 != p || port2 != port) {
			t.Errorf("round trip of %q through %q: got %v, %d, %v", tc.in, formatEndpoint(p, port), p2, port2, err)
		}
	}
}

func TestRuleCheck(t *testing.T) {
	v4 := netip.MustParsePrefix("10.1.2.3/8")
	v6 := netip.MustParsePrefix("2001:db8::/32")
	r, err := Rule{RuleMatch: RuleMatch{Local: v4}, Action: RuleDeny}.Check()
	if err != nil || r.Local != netip.MustParsePrefix("10.0.0.0/8") || r.Remote != netip.MustParsePrefix("0.0.0.0/0") {
		t.Errorf("Check(local %v): got %v, %v; want it masked and remote 0.0.0.0/0", v4, r, err)
	}
	for _, tc := range []struct {
		rule Rule
		err  string
	}{
		{Rule{RuleMatch: RuleMatch{Local: v4, Remote: v6}, Action: RuleDeny}, "different families"},
		{Rule{RuleMatch: RuleMatch{Local: netip.MustParsePrefix("::ffff:10.0.0.0/104")}, Action: RuleDeny}, "IPv4-mapped"},
		{Rule{RuleMatch: RuleMatch{Protocol: 1}, Action: RuleDeny}, "protocol 1"},
		{Rule{Action: 9}, "action 9"},
		{Rule{Action: RuleDeny, Tag: strings.Repeat("t", 32)}, "at most 31"},
		{Rule{Action: RuleDeny, Tag: "a b"}, "letters, digits"},
	} {
		if _, err := tc.rule.Check(); err == nil || !strings.Contains(err.Error(), tc.err) {
			t.Errorf("Check(%v): got %v, want an error with %q", tc.rule, err, tc.err)
		}
	}
	rules := []Rule{{RuleMatch: RuleMatch{Local: v4}, Action: RuleDeny}, {RuleMatch: RuleMatch{Local: netip.MustParsePrefix("10.9.9.9/8"), Remote: netip.MustParsePrefix("0.0.0.0/0")}, Action: RulePass}}
	if _, err := CheckRules(rules); err == nil || !strings.Contains(err.Error(), "same match") {
		t.Errorf("CheckRules with one match twice: got %v", err)
	}
}

// TestMatchRule checks the specificity order of the definition itself.
func TestMatchRule(t *testing.T) {
	pkt := RulePacket{Protocol: TCP, Local: netip.MustParseAddrPort("192.0.2.2:80"), Remote: netip.MustParseAddrPort("10.0.0.1:1234")}
	rule := func(id uint32, local, remote string, lport, rport uint16, proto Protocol) Rule {
		r := Rule{ID: id, RuleMatch: RuleMatch{Protocol: proto, LocalPort: lport, RemotePort: rport}, Action: RuleDeny}
		if local != "" {
			r.Local = netip.MustParsePrefix(local)
		}
		if remote != "" {
			r.Remote = netip.MustParsePrefix(remote)
		}
		r, err := r.Check()
		if err != nil {
			t.Fatal(err)
		}
		r.ID = id
		return r
	}
	// Each rule beats the one after it, by one step of the order.
	ordered := []Rule{
		rule(1, "", "10.0.0.0/16", 0, 0, 0),
		rule(2, "192.0.2.2/32", "10.0.0.0/8", 80, 1234, TCP),
		rule(3, "192.0.2.0/24", "10.0.0.0/8", 80, 1234, TCP),
		rule(4, "192.0.2.0/24", "10.0.0.0/8", 0, 1234, TCP),
		rule(5, "192.0.2.0/24", "10.0.0.0/8", 80, 0, TCP),
		rule(6, "192.0.2.0/24", "10.0.0.0/8", 80, 0, 0),
		rule(7, "192.0.2.0/24", "10.0.0.0/8", 0, 0, 0),
		rule(8, "", "", 0, 0, 0),
	}
	for i := range ordered {
		got, ok := MatchRule(ordered[i:], pkt)
		if !ok || got.ID != ordered[i].ID {
			t.Errorf("MatchRule(rules %d and after): got rule %d (%v), want %d", i+1, got.ID, ok, ordered[i].ID)
		}
	}
	if got, ok := MatchRule(ordered[1:], RulePacket{Protocol: UDP, Local: pkt.Local, Remote: netip.MustParseAddrPort("[2001:db8::1]:1")}); !ok || got.ID != 8 {
		t.Errorf("MatchRule(IPv6 packet): got %v, %v; want the rule of any address", got, ok)
	}
}

// TestCompileRules checks the layout compileRules gives the program:
// shapes most specific first, each tried by the packets of its family,
// and every rule's key in the slot it hashes to or, that slot taken, in
// the overflow with the slot saying so.
func TestCompileRules(t *testing.T) {
	var rules []Rule
	for i := range 3000 {
		r := Rule{ID: uint32(i + 1), Action: RuleDeny}
		switch i % 3 {
		case 0:
			r.Remote = netip.PrefixFrom(netip.AddrFrom4([4]byte{10, byte(i >> 8), byte(i), 1}), 32)
		case 1:
			r.Local = netip.PrefixFrom(netip.AddrFrom16([16]byte{0x20, 0x01, 0x0d, 0xb8, byte(i >> 8), byte(i)}), 48)
			r.Protocol = TCP
		case 2:
			r.LocalPort = uint16(i)
		}
		c, err := r.Check()
		if err != nil {
			t.Fatal(err)
		}
		rules = append(rules, c)
	}
	c := compileRules(rules, 1)
	if c.set.ShapeCount != 3 || c.set.RuleCount != 3000 {
		t.Fatalf("got %d shapes and %d rules, want 3 and 3000", c.set.ShapeCount, c.set.RuleCount)
	}
	wantFamilies := []uint32{4, 6, 0} // remote /32, then local /48, then neither
	for i, s := range c.set.Shapes[:c.set.ShapeCount] {
		if s.Family != wantFamilies[i] || s.Rules != 1000 {
			t.Errorf("shape %d: family %d with %d rules, want family %d with 1000", i, s.Family, s.Rules, wantFamilies[i])
		}
	}

	found := map[uint32]int{}
	for i, s := range c.slots {
		if s.Value.RuleId == 0 {
			continue
		}
		found[s.Value.RuleId]++
		if got := ruleSlotOf(s.Key); got != uint32(i) || s.Key.Generation != 1 {
			t.Errorf("slot %d holds a key of slot %d, generation %d", i, got, s.Key.Generation)
		}
	}
	if len(c.overflowKeys) == 0 {
		t.Fatal("no key overflowed: make the table larger for the test to mean something")
	}
	for i, k := range c.overflowKeys {
		found[c.overflow[i].RuleId]++
		if slot := c.slots[ruleSlotOf(k)]; slot.Overflow != 1 || slot.Value.RuleId == 0 {
			t.Errorf("overflowed key of rule %d: its slot %+v does not say so", c.overflow[i].RuleId, slot)
		}
	}
	for _, r := range rules {
		if found[r.ID] != 1 {
			t.Errorf("rule %v: %d keys, want 1", r, found[r.ID])
		}
	}
}
