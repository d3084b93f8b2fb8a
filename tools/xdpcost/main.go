// Command xdpcost prints what xdpstack's XDP program costs per packet
// for the session-rule and PSP figures of tools/bench, next to the
// minimal programs they are measured against: the kernel runs each
// program on the generator's frame (64 bytes of UDP, or the smallest PSP
// frame under an SPI nobody issued) many times over (BPF_PROG_TEST_RUN)
// and reports the time per run. With no veth, generator or daemon in the
// way, a change to the classifier shows here in nanoseconds before
// tools/bench confirms it in packet rates.
//
//	go run ./tools/xdpcost [-rounds 9] [-repeat 1000000]
package main

import (
	"errors"
	"flag"
	"fmt"
	"net"
	"net/netip"
	"os"
	"slices"
	"time"

	"github.com/cilium/ebpf"

	"github.com/xdpstack/xdpstack/bpf"
	"github.com/xdpstack/xdpstack/maps"
	"github.com/xdpstack/xdpstack/tools/internal/benchrules"
	"github.com/xdpstack/xdpstack/tools/internal/pktgen"
	"github.com/xdpstack/xdpstack/userstack/psp"
)

// generated is what a rule sees of the generator's frame, as tools/bench
// sends it between the hosts of a pair (10.213.N.2 to 10.213.N.1).
var generated = maps.RulePacket{
	Protocol: maps.UDP,
	Local:    netip.MustParseAddrPort("10.213.7.1:9"),
	Remote:   netip.AddrPortFrom(netip.MustParseAddr("10.213.7.2"), pktgen.SrcPort),
}

// manyRules is the size of the large rule table, as in tools/bench.
const manyRules = 10_000

func main() {
	rounds := flag.Int("rounds", 9, "interleaved rounds (the median and the fastest are reported)")
	repeat := flag.Int("repeat", 1_000_000, "runs of a program per round")
	flag.Parse()
	if *rounds < 1 || *repeat < 1 {
		fmt.Fprintln(os.Stderr, "xdpcost: -rounds and -repeat must be positive")
		os.Exit(2)
	}
	if err := run(*rounds, *repeat); err != nil {
		fmt.Fprintln(os.Stderr, "xdpcost:", err)
		os.Exit(1)
	}
}

// A program is one row: what runs on which frame, what it must answer,
// and the row it is compared with.
type program struct {
	name     string
	prog     *ebpf.Program
	frame    []byte
	want     maps.Action
	baseline int // index of the row it is compared with; -1 for none
}

// pspOn is the PSP check as the psp-acl figure of tools/bench runs it.
var pspOn = maps.PSPSettings{Enabled: true, Versions: []psp.Version{psp.V1}}

func run(rounds, repeat int) error {
	var drop bpf.DropObjects
	if err := bpf.LoadDropObjects(&drop, nil); err != nil {
		return fmt.Errorf("load the drop program: %w", err)
	}
	defer drop.Close()
	var pass bpf.PassObjects
	if err := bpf.LoadPassObjects(&pass, nil); err != nil {
		return fmt.Errorf("load the pass program: %w", err)
	}
	defer pass.Close()
	setups := []struct {
		rules []maps.Rule
		psp   maps.PSPSettings
	}{
		{rules: []maps.Rule{benchrules.Deny(generated.Local.Port())}},
		{},
		{rules: benchrules.Many(manyRules, generated)},
		{psp: pspOn},
	}
	xdpstack := make([]*ebpf.Program, len(setups))
	for i, s := range setups {
		objs, err := loadXdpstack(s.rules, s.psp)
		if err != nil {
			return err
		}
		defer objs.Close()
		xdpstack[i] = objs.XdpstackIngress
	}

	mac := net.HardwareAddr{0x02, 0, 0, 0, 0, 1}
	udp := pktgen.Frame(mac, mac, generated.Remote.Addr(), generated.Local.Addr(), generated.Local.Port())
	pspFrame, err := pktgen.PSPFrame(mac, mac, generated.Remote.Addr(), generated.Local.Addr(), unknownSPI)
	if err != nil {
		return err
	}
	programs := []program{
		{"minimal XDP_DROP", drop.XdpDrop, udp, maps.ActionDrop, -1},
		{"xdpstack, a deny rule", xdpstack[0], udp, maps.ActionDrop, 0},
		{"minimal XDP_DROP, PSP frame", drop.XdpDrop, pspFrame, maps.ActionDrop, -1},
		{"xdpstack, PSP frame of an unknown SPI", xdpstack[3], pspFrame, maps.ActionDrop, 2},
		{"minimal XDP_PASS", pass.XdpPass, udp, maps.ActionPass, -1},
		{"xdpstack, no rules", xdpstack[1], udp, maps.ActionPass, 4},
		{"xdpstack, no rules, PSP check on", xdpstack[3], udp, maps.ActionPass, 5},
		{fmt.Sprintf("xdpstack, %d rules", manyRules), xdpstack[2], udp, maps.ActionPass, 5},
	}

	samples := make([][]time.Duration, len(programs))
	for round := range rounds {
		for i, p := range programs {
			ret, perRun, err := p.prog.Benchmark(p.frame, repeat, nil)
			if err != nil {
				return fmt.Errorf("%s: %w", p.name, err)
			}
			if maps.Action(ret) != p.want {
				return fmt.Errorf("%s: the program says %v, want %v", p.name, maps.Action(ret), p.want)
			}
			samples[i] = append(samples[i], perRun)
		}
		fmt.Fprintf(os.Stderr, "round %d of %d\n", round+1, rounds)
	}

	median := func(i int) int64 { return samples[i][len(samples[i])/2].Nanoseconds() }
	fmt.Printf("| program, on the generator's 64 B UDP frame or %d B PSP frame | ns/packet, median of %d | fastest | more than |\n|---|---:|---:|---|\n", len(pspFrame), rounds)
	for i := range programs {
		slices.Sort(samples[i])
	}
	for i, p := range programs {
		more := ""
		if b := p.baseline; b >= 0 {
			more = fmt.Sprintf("%s by %d ns", programs[b].name, median(i)-median(b))
		}
		fmt.Printf("| %s | %d | %d | %s |\n", p.name, median(i), samples[i][0].Nanoseconds(), more)
	}
	return nil
}

// unknownSPI is the SPI of the PSP frame, which no grant names.
const unknownSPI = 0x12345

// loadXdpstack loads xdpstack's program unpinned, with rules in its
// table and the PSP check set as p, serving the generator's destination.
func loadXdpstack(rules []maps.Rule, p maps.PSPSettings) (*bpf.XdpObjects, error) {
	spec, err := bpf.LoadXdp()
	if err != nil {
		return nil, fmt.Errorf("read the xdpstack program: %w", err)
	}
	for _, m := range spec.Maps {
		m.Pinning = ebpf.PinNone
	}
	var objs bpf.XdpObjects
	if err := spec.LoadAndAssign(&objs, nil); err != nil {
		return nil, fmt.Errorf("load the xdpstack program: %w", err)
	}
	set := maps.FromObjects(&objs.XdpMaps)
	if _, err := set.Rules.Replace(rules); err != nil {
		return nil, errors.Join(fmt.Errorf("put %d rules: %w", len(rules), err), objs.Close())
	}
	if err := set.LocalAddrs.Put(generated.Local.Addr(), maps.AddrOwn|maps.AddrServed); err != nil {
		return nil, errors.Join(err, objs.Close())
	}
	if err := set.PSP.SetSettings(p); err != nil {
		return nil, errors.Join(err, objs.Close())
	}
	return &objs, nil
}
