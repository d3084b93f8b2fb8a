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

// Many is n distinct UDP rules in 8 shapes (remote /32, /24, /16 with
// a port and /32 with a port, each with a local /8, or a local /32 with
// a port), none of which matches the packet p, but all of which come
// as close to it as the shape lets them: the local prefixes are the
// packet's /8 and its destination with its port, the remote prefixes
// lie in the /8 of its source. No filter on a shape's first address
// byte or local port can pass over the shapes, so every packet looks
// each of them up.
func Many(n int, p maps.RulePacket) []maps.Rule {
	local8 := netip.PrefixFrom(p.Local.Addr(), 8).Masked()
	first := p.Remote.Addr().As4()[0]
	rules := make([]maps.Rule, 0, n)
	for i := 0; len(rules) < n; i++ {
		r := maps.Rule{Action: maps.RuleDeny, RuleMatch: maps.RuleMatch{Protocol: maps.UDP, Local: local8}}
		if i%8 >= 4 {
			r.Local, r.LocalPort = netip.PrefixFrom(p.Local.Addr(), 32), p.Local.Port()
		}
		host := netip.AddrFrom4([4]byte{first, byte(i >> 8), byte(i), byte(i>>16) + 1})
		switch i % 4 {
		case 0:
			r.Remote = netip.PrefixFrom(host, 32)
		case 1:
			r.Remote = netip.PrefixFrom(host, 24).Masked()
		case 2:
			r.Remote = netip.PrefixFrom(netip.AddrFrom4([4]byte{first, byte(i)}), 16)
			r.RemotePort = uint16(1 + i/4)
		case 3:
			r.Remote, r.RemotePort = netip.PrefixFrom(host, 32), 53
		}
		if !r.Matches(p) {
			rules = append(rules, r)
		}
	}
	return rules
}
