package maps

import (
	"fmt"
	"strings"

	"github.com/cilium/ebpf"

	"github.com/xdpstack/xdpstack/bpf"
)

// Action is the XDP verdict a packet got.
type Action uint32

// The XDP verdicts, with the kernel's values.
const (
	ActionAborted Action = iota
	ActionDrop
	ActionPass
	ActionTx
	ActionRedirect
	numActions
)

var actionNames = [numActions]string{"aborted", "drop", "pass", "tx", "redirect"}

func (a Action) String() string {
	if a < numActions {
		return actionNames[a]
	}
	return fmt.Sprintf("action(%d)", uint32(a))
}

// ParseAction reads an action by its name: pass, drop, redirect,
// aborted or tx.
func ParseAction(s string) (Action, error) {
	for a, name := range actionNames {
		if s == name {
			return Action(a), nil
		}
	}
	return 0, fmt.Errorf("unknown verdict %q (want %s)", s, strings.Join(actionNames[:], ", "))
}

// Reason says why the program chose a verdict; its values are the C enum's.
type Reason uint32

const (
	ReasonNotIP       = Reason(bpf.XdpXdpReasonREASON_NOT_IP)
	ReasonMalformed   = Reason(bpf.XdpXdpReasonREASON_MALFORMED)
	ReasonFragment    = Reason(bpf.XdpXdpReasonREASON_FRAGMENT)
	ReasonExtHdrLimit = Reason(bpf.XdpXdpReasonREASON_EXT_HDR_LIMIT)
	ReasonNoMatch     = Reason(bpf.XdpXdpReasonREASON_NO_MATCH)
	ReasonSteered     = Reason(bpf.XdpXdpReasonREASON_STEERED)
	ReasonNoSocket    = Reason(bpf.XdpXdpReasonREASON_NO_SOCKET)
	ReasonNotLocal    = Reason(bpf.XdpXdpReasonREASON_NOT_LOCAL)
	ReasonVLAN        = Reason(bpf.XdpXdpReasonREASON_VLAN)
	ReasonMartian     = Reason(bpf.XdpXdpReasonREASON_MARTIAN)
	ReasonRuleDeny    = Reason(bpf.XdpXdpReasonREASON_RULE_DENY)
	ReasonRulePass    = Reason(bpf.XdpXdpReasonREASON_RULE_PASS)
	ReasonPSPBad      = Reason(bpf.XdpXdpReasonREASON_PSP_BAD)
	ReasonPSPVersion  = Reason(bpf.XdpXdpReasonREASON_PSP_VERSION)
	ReasonPSPSPI      = Reason(bpf.XdpXdpReasonREASON_PSP_SPI)
	ReasonPSPACL      = Reason(bpf.XdpXdpReasonREASON_PSP_ACL)
	numReasons        = Reason(bpf.XdpXdpReasonREASON_MAX)
)

// ReasonStride is REASON_STRIDE in xdpstack.h: the stats map has room
// for this many reasons per action, so that adding one changes no layout.
const ReasonStride = 64

// StatsEntries is the size of the stats map.
const StatsEntries = int(numActions) * ReasonStride

// An array sized by the C enum fails to compile when a reason is added
// there and not named here.
var reasonNames = [numReasons]string{
	ReasonNotIP:       "not_ip",
	ReasonMalformed:   "malformed",
	ReasonFragment:    "fragment",
	ReasonExtHdrLimit: "ext_hdr_limit",
	ReasonNoMatch:     "no_match",
	ReasonSteered:     "steered",
	ReasonNoSocket:    "no_socket",
	ReasonNotLocal:    "not_local",
	ReasonVLAN:        "vlan",
	ReasonMartian:     "martian",
	ReasonRuleDeny:    "rule_deny",
	ReasonRulePass:    "rule_pass",
	ReasonPSPBad:      "psp_bad",
	ReasonPSPVersion:  "psp_version",
	ReasonPSPSPI:      "psp_spi",
	ReasonPSPACL:      "psp_acl",
}

func (r Reason) String() string {
	if r < numReasons {
		return reasonNames[r]
	}
	return fmt.Sprintf("reason(%d)", uint32(r))
}

// ParseReason reads a reason by its name: no_match, steered, ...
func ParseReason(s string) (Reason, error) {
	for r, name := range reasonNames {
		if s == name {
			return Reason(r), nil
		}
	}
	return 0, fmt.Errorf("unknown reason %q (want %s)", s, strings.Join(reasonNames[:], ", "))
}

// Verdict is one cell of the stats map.
type Verdict struct {
	Action Action
	Reason Reason
}

// verdictAt reads a stats map index, action * REASON_STRIDE + reason
// (STATS_INDEX in xdpstack.h). A reason this build has no name for, left
// by a newer one, keeps its number.
func verdictAt(index uint32) Verdict {
	return Verdict{Action(index / ReasonStride), Reason(index % ReasonStride)}
}

// Counter is what the program counts for each verdict.
type Counter struct {
	Packets uint64
	Bytes   uint64
}

// Add returns the sum of two counters.
func (c Counter) Add(o Counter) Counter {
	return Counter{c.Packets + o.Packets, c.Bytes + o.Bytes}
}

// Stats is the per-CPU counter map.
type Stats struct{ m *ebpf.Map }

// Sum reads every verdict's counters and sums them over the CPUs.
// Verdicts that never happened are left out.
func (s Stats) Sum() (map[Verdict]Counter, error) {
	return sumVerdicts(s.m, StatsName, addCounter)
}

// Lookup reads one verdict's counters, summed over the CPUs.
func (s Stats) Lookup(v Verdict) (Counter, error) {
	index := uint32(v.Action)*ReasonStride + uint32(v.Reason)
	var perCPU []bpf.XdpCounter
	if err := s.m.Lookup(&index, &perCPU); err != nil {
		return Counter{}, fmt.Errorf("read %s map at %v: %w", StatsName, v, err)
	}
	var sum Counter
	for _, c := range perCPU {
		sum = addCounter(sum, c)
	}
	return sum, nil
}

// addCounter adds one CPU's counter to a sum.
func addCounter(sum Counter, c bpf.XdpCounter) Counter { return sum.Add(Counter{c.Packets, c.Bytes}) }

// sumVerdicts reads a per-CPU map indexed by verdict, with add summing
// each entry over the CPUs; verdicts whose sum is zero are left out.
func sumVerdicts[V any, S comparable](m *ebpf.Map, name string, add func(S, V) S) (map[Verdict]S, error) {
	sums := make(map[Verdict]S)
	var (
		index  uint32
		perCPU []V
		zero   S
	)
	entries := m.Iterate()
	for entries.Next(&index, &perCPU) {
		var sum S
		for _, c := range perCPU {
			sum = add(sum, c)
		}
		if sum != zero {
			sums[verdictAt(index)] = sum
		}
	}
	if err := entries.Err(); err != nil {
		return nil, fmt.Errorf("read %s map: %w", name, err)
	}
	return sums, nil
}

// Rate is how fast a counter moved between two samples.
type Rate struct {
	PacketsPerSecond float64
	BitsPerSecond    float64
}

// Rates turns two samples taken seconds apart into per-second rates, for
// every verdict in cur; one that first appears in cur started from zero.
func Rates(prev, cur map[Verdict]Counter, seconds float64) map[Verdict]Rate {
	rates := make(map[Verdict]Rate, len(cur))
	for v, c := range cur {
		p := prev[v]
		rates[v] = Rate{
			PacketsPerSecond: float64(c.Packets-p.Packets) / seconds,
			BitsPerSecond:    float64(c.Bytes-p.Bytes) * 8 / seconds,
		}
	}
	return rates
}
