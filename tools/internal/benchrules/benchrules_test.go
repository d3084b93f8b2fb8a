package benchrules

import (
	"net/netip"
	"testing"

	"github.com/xdpstack/xdpstack/maps"
)

// Many's table must be what the bench says it is: n rules the table
// takes, in 8 shapes, near the packet and none of them matching it.
func TestMany(t *testing.T) {
	p := maps.RulePacket{Protocol: maps.UDP, Local: netip.MustParseAddrPort("10.213.7.1:9"), Remote: netip.MustParseAddrPort("10.213.7.2:9999")}
	const n = 10_000
	rules, err := maps.CheckRules(Many(n, p))
	if err != nil || len(rules) != n {
		t.Fatalf("CheckRules(Many(%d)): %d rules, %v", n, len(rules), err)
	}
	shapes := map[maps.Specificity]bool{}
	near := netip.MustParsePrefix("10.0.0.0/8")
	for _, r := range rules {
		shapes[r.Specificity()] = true
		if r.Matches(p) {
			t.Errorf("rule %v matches the packet", r)
		}
		if !r.Local.Contains(p.Local.Addr()) || r.LocalPort != 0 && r.LocalPort != p.Local.Port() || !near.Overlaps(r.Remote) {
			t.Errorf("rule %v: not as near the packet as its shape lets it", r)
		}
	}
	if len(shapes) != 8 {
		t.Errorf("%d shapes, want 8", len(shapes))
	}
}
