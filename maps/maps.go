// Package maps is the one place that knows the layout of xdpstack's BPF
// maps: their names, where they are pinned, and how their keys and values
// are encoded. Everything else reads and writes them through the typed
// accessors here.
package maps

import (
	"errors"
	"fmt"
	"path/filepath"
	"slices"

	"github.com/cilium/ebpf"

	"github.com/xdpstack/xdpstack/bpf"
)

// DefaultPinRoot is where every attached interface gets a folder of pins.
const DefaultPinRoot = "/sys/fs/bpf/xdpstack"

// Names of the pinned maps, as bpftool shows them.
const (
	StatsName        = bpf.XdpMapStats
	ListenersName    = bpf.XdpMapListeners
	ListenPortsName  = bpf.XdpMapListenPorts
	XSKsName         = bpf.XdpMapXsks
	InfoName         = bpf.XdpMapInfo
	LocalAddrsName   = bpf.XdpMapLocalAddrs
	RuleMatchName    = bpf.XdpMapRuleMatch
	RuleSetsName     = bpf.XdpMapRuleSets
	RulesName        = bpf.XdpMapRules
	RuleHitsName     = bpf.XdpMapRuleHits
	RuleSlotsName    = bpf.XdpMapRuleSlots
	SamplingName     = bpf.XdpMapSampling
	SamplesName      = bpf.XdpMapSamples
	SampleCountsName = bpf.XdpMapSampleCounts
	PSPName          = bpf.XdpMapPsp
	PSPSPIsName      = bpf.XdpMapPspSpis
)

// RetiredNames are maps that earlier builds pinned and this one does
// not: attach removes them, and detach counts them as xdpstack's.
var RetiredNames = []string{
	"capture_lease", // now the lease half of the sampling map
	"rule_active",   // now the rules word of the sampling map
}

// coreNames are the maps every xdpstack build pinned; OpenPinned opens
// these, so that status and stats read the pins of older builds too.
var coreNames = []string{InfoName, ListenPortsName, ListenersName, LocalAddrsName, StatsName, XSKsName}

// RuleMapNames are the maps of the global session rules, in the order
// OpenPinnedRules opens them; the generation in use is in the sampling
// map.
var RuleMapNames = []string{RuleMatchName, RuleSetsName, RulesName, RuleHitsName, RuleSlotsName}

// PinnedNames lists every map the XDP program pins, in a stable order.
var PinnedNames = slices.Concat(coreNames, RuleMapNames, SampleMapNames, PSPMapNames)

// ErrNotFound is returned by lookups of a key that is not in a map.
var ErrNotFound = errors.New("not found")

// Set is the program's maps of one interface.
type Set struct {
	Stats      Stats
	Listeners  Listeners
	LocalAddrs LocalAddrs
	Info       Info
	XSKs       XSKs
	// Rules is the global rule table; OpenPinned leaves it zero (see
	// OpenPinnedRules).
	Rules Rules
	// Sampling is the sampling maps; OpenPinned leaves them zero (see
	// OpenPinnedSampling).
	Sampling Sampling
	// PSP is the PSP check's maps; OpenPinned leaves them zero (see
	// OpenPinnedPSP).
	PSP PSP
}

// FromObjects wraps the maps of a loaded collection; the collection keeps
// owning them.
func FromObjects(m *bpf.XdpMaps) *Set {
	return &Set{
		Stats:      Stats{m.Stats},
		Listeners:  Listeners{m.Listeners, m.ListenPorts, m.Sampling},
		LocalAddrs: LocalAddrs{m.LocalAddrs},
		Info:       Info{m.Info},
		XSKs:       XSKs{m.Xsks},
		Rules:      Rules{match: m.RuleMatch, sets: m.RuleSets, info: m.Rules, hits: m.RuleHits, slots: m.RuleSlots, inUse: m.Sampling},
		Sampling:   Sampling{m.Sampling, m.Samples, m.SampleCounts},
		PSP:        PSP{m.Psp, PSPSPIs{m.PspSpis}},
	}
}

// OpenPinned opens the maps pinned in dir, as left by an attached
// program, its Listeners for reading only. The caller closes the Set.
func OpenPinned(dir string) (*Set, error) {
	if !IsPinDir(dir) {
		return nil, fmt.Errorf("open pins in %s: none of xdpstack's there", dir)
	}
	opened := make(map[string]*ebpf.Map, len(coreNames))
	for _, name := range coreNames {
		path := filepath.Join(dir, name)
		m, err := ebpf.LoadPinnedMap(path, nil)
		if err != nil {
			for _, m := range opened {
				m.Close()
			}
			return nil, fmt.Errorf("open pinned map %s: %w", path, err)
		}
		opened[name] = m
	}
	return &Set{
		Stats:      Stats{opened[StatsName]},
		Listeners:  Listeners{m: opened[ListenersName], ports: opened[ListenPortsName]},
		LocalAddrs: LocalAddrs{opened[LocalAddrsName]},
		Info:       Info{opened[InfoName]},
		XSKs:       XSKs{opened[XSKsName]},
	}, nil
}

// Close closes the maps of a Set from OpenPinned.
func (s *Set) Close() error {
	return errors.Join(s.Stats.m.Close(), s.Listeners.m.Close(), s.Listeners.ports.Close(), s.LocalAddrs.m.Close(), s.Info.m.Close(), s.XSKs.m.Close())
}

func notFound(err error) error {
	if errors.Is(err, ebpf.ErrKeyNotExist) {
		return ErrNotFound
	}
	return err
}
