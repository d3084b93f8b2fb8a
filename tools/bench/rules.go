package main

import (
	"fmt"
	"net/netip"

	"github.com/xdpstack/xdpstack/maps"
	"github.com/xdpstack/xdpstack/tools/internal/attachproc"
)

// ruleFigures measures what session rules cost: the drop rate of a deny
// rule against a program that only drops, and the pass rate with
// 10,000 rules (none of which match) against none.
func (b *bench) ruleFigures(rounds int, frames uint32) (drop, pass map[setup]float64, err error) {
	fmt.Fprintln(logOut, "frames dropped by a deny rule (packets/s):")
	if drop, err = b.rxRate([]setup{minimalDrop, xdpstackDeny}, rounds, frames); err != nil {
		return nil, nil, err
	}
	fmt.Fprintf(logOut, "packets passed to the kernel with %d rules (packets/s):\n", manyRules)
	if pass, err = b.rxRate([]setup{xdpstack, xdpstackRules}, rounds, frames); err != nil {
		return nil, nil, err
	}
	return drop, pass, nil
}

// manyRules is the size of the rule table the pass-rate figure runs with.
const manyRules = 10_000

// benchRules are n distinct rules in 8 shapes (remote /16, /24, /32 and
// /32 with a port, each with a local /24 or a local /32 and port), all
// of remote addresses in 100.64.0.0/10, which the generator's frames do
// not come from: every frame tries every shape.
func benchRules(n int) []maps.Rule {
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
			r.Local, r.LocalPort = netip.PrefixFrom(netip.AddrFrom4([4]byte{10, 0, 0, 1}), 32), genPort
		}
		rules[i] = r
	}
	return rules
}

// attachWithRules runs the real binary on host A and puts rules in its
// table through the pins, as `xdpstack rules` does.
func (b *bench) attachWithRules(rules []maps.Rule) (func() error, error) {
	stop, dir, err := attachproc.StartPinned(b.pair.A, b.binary)
	if err != nil {
		return nil, err
	}
	table, err := maps.OpenPinnedRules(dir)
	if err == nil {
		_, err = table.Replace(rules)
		table.Close()
	}
	if err != nil {
		stop()
		return nil, fmt.Errorf("put %d rules: %w", len(rules), err)
	}
	return stop, nil
}
