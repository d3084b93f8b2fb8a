package main

import (
	"fmt"
	"net/netip"

	"github.com/xdpstack/xdpstack/maps"
	"github.com/xdpstack/xdpstack/tools/internal/attachproc"
	"github.com/xdpstack/xdpstack/tools/internal/pktgen"
)

// ruleFigures measures what session rules cost: the drop rate of a deny
// rule against a program that only drops, and the pass rate with
// 10,000 rules (none of which match, see benchrules.Many) against none.
func (b *bench) ruleFigures(rounds int, frames uint32) (drop, pass measured, err error) {
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

// generated is what a rule sees of the generator's frames.
func (b *bench) generated() maps.RulePacket {
	return maps.RulePacket{
		Protocol: maps.UDP,
		Local:    netip.AddrPortFrom(b.pair.A.Addr, genPort),
		Remote:   netip.AddrPortFrom(b.pair.B.Addr, pktgen.SrcPort),
	}
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
