// Package benchrules holds the session-rule tables the benchmarks run
// the generator's frames against, so that tools/bench (over a veth) and
// tools/xdpcost (under BPF_PROG_TEST_RUN) measure the same work.
package benchrules

import (
	"net/netip"

	"github.com/xdpstack/xdpstack/maps"
)

// Deny is a rule that drops every UDP frame to port.
func Deny(port uint16) maps.Rule {
	return maps.Rule{RuleMatch: maps.RuleMatch{Protocol: maps.UDP, LocalPort: port}, Action: maps.RuleDeny}
}

// Many is n distinct rules in 8 shapes (remote /16, /24, /32 and
// /32 with a port, each with a local /24 or a local /32 and port), all
// of remote addresses in 100.64.0.0/10, which the generator's frames do
// not come from: every frame tries every shape.
func Many(n int, port uint16) []maps.Rule {
	rules := make([]maps.Rule, n)
	for i := range rules {
		r := maps.Rule{Action: maps.RuleDeny, RuleMatch: maps.RuleMatch{Protocol: maps.UDP}}
		a := netip.AddrFrom4([4]byte{100, 64 + byte(i>>16&63), byte(i >> 8), byte(i)})
		switch i % 4 {
		case 0:
			r.Remote = netip.PrefixFrom(a, 32)
		case 1:
			r.Remote = netip.PrefixFrom(netip.AddrFrom4([4]byte{100, 64 + byte(i>>8&63), byte(i), 0}), 24)
		case 2:
			r.Remote = netip.PrefixFrom(netip.AddrFrom4([4]byte{100, 64 + byte(i&63), 0, 0}), 16)
			r.RemotePort = uint16(1 + i/4)
		case 3:
			r.Remote, r.RemotePort = netip.PrefixFrom(a, 32), 53
		}
		r.Local = netip.PrefixFrom(netip.AddrFrom4([4]byte{10, 0, 0, 0}), 8)
		if i%8 >= 4 {
			r.Local, r.LocalPort = netip.PrefixFrom(netip.AddrFrom4([4]byte{10, 0, 0, 1}), 32), port
		}
		rules[i] = r
	}
	return rules
}
