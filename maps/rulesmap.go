package maps

import (
	"cmp"
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"unsafe"

	"github.com/cilium/ebpf"
	"golang.org/x/sys/unix"

	"github.com/xdpstack/xdpstack/bpf"
)

// Rules is the global session-rule table of one interface: the maps the
// program looks rules up in (rule_slots, rule_match, rule_sets, and the
// generation in use, a word of the sampling map's value), compiled from
// the rules as given (rules), and their hit counters (rule_hits).
type Rules struct {
	match, sets, info, hits, slots *ebpf.Map
	// inUse is the sampling map: Rules writes only its rules word.
	inUse *ebpf.Map
}

// ruleShape is what the rules of one shape share: how specific they
// are and their family, which together fix which bits of a packet they
// look at.
type ruleShape struct {
	spec   Specificity
	family uint8
}

func shapeOf(m RuleMatch) ruleShape {
	return ruleShape{spec: m.Specificity(), family: familyOf(m.Local)}
}

// shapeMask is rule_shape.mask of the shape of m: the bits of a
// packet's key that m fixes.
func shapeMask(m RuleMatch) bpf.XdpRuleKey {
	k := bpf.XdpRuleKey{Local: mask(m.Local), Remote: mask(m.Remote)}
	if m.LocalPort != 0 {
		k.LocalPort = 0xffff
	}
	if m.RemotePort != 0 {
		k.RemotePort = 0xffff
	}
	if m.Protocol != 0 {
		k.Protocol = 0xff
	}
	if m.Local.IsValid() {
		k.Family = 0xff
	}
	return k
}

func familyOf(p netip.Prefix) uint8 {
	switch {
	case !p.IsValid():
		return uint8(bpf.XdpRuleFamilyRULE_FAMILY_ANY)
	case p.Addr().Is4():
		return uint8(bpf.XdpRuleFamilyRULE_FAMILY_IPV4)
	}
	return uint8(bpf.XdpRuleFamilyRULE_FAMILY_IPV6)
}

// mask is a prefix length as a mask over the IPv4-mapped form the
// program keeps addresses in.
func mask(p netip.Prefix) [16]byte {
	var m [16]byte
	if !p.IsValid() {
		return m
	}
	bits := p.Bits()
	if p.Addr().Is4() {
		bits += 96
	}
	for i := range m {
		switch {
		case bits >= 8:
			m[i] = 0xff
		case bits > 0:
			m[i] = byte(0xff << (8 - bits))
		}
		bits -= 8
	}
	return m
}

func addr16(p netip.Prefix) [16]byte {
	if !p.IsValid() {
		return [16]byte{}
	}
	return p.Addr().As16()
}

// ErrRuleMapsMissing says that the pins are an older build's, from
// before session rules or before the rule maps of this build.
var ErrRuleMapsMissing = errors.New("no rule maps of this build pinned (attached by an older xdpstack; attach again with this one)")

// OpenPinnedRules opens the rule maps pinned in dir, and the sampling
// map for the generation in use. The caller closes them.
func OpenPinnedRules(dir string) (Rules, error) {
	var opened []*ebpf.Map
	fail := func(err error) (Rules, error) {
		for _, m := range opened {
			m.Close()
		}
		return Rules{}, err
	}
	for _, name := range slices.Concat(RuleMapNames, []string{SamplingName}) {
		m, err := ebpf.LoadPinnedMap(filepath.Join(dir, name), nil)
		if errors.Is(err, os.ErrNotExist) {
			return fail(fmt.Errorf("open rules in %s: %w", dir, ErrRuleMapsMissing))
		}
		if err != nil {
			return fail(fmt.Errorf("open pinned map %s: %w", filepath.Join(dir, name), err))
		}
		opened = append(opened, m)
	}
	// A build from before the generation moved there pinned a sampling
	// map without its rules word, and reads the generation elsewhere.
	if int(opened[5].ValueSize()) < (rulesWord+1)*8 {
		return fail(fmt.Errorf("open rules in %s: %w", dir, ErrRuleMapsMissing))
	}
	return Rules{match: opened[0], sets: opened[1], info: opened[2], hits: opened[3], slots: opened[4], inUse: opened[5]}, nil
}

// Close closes maps opened by OpenPinnedRules.
func (t Rules) Close() error {
	return errors.Join(t.match.Close(), t.sets.Close(), t.info.Close(), t.hits.Close(), t.slots.Close(), t.inUse.Close())
}

// rulesWord is the word of the sampling map's value that holds the
// generation in use (see shared_unsafe.go).
var rulesWord = wordOf(unsafe.Offsetof(bpf.XdpSampleState{}.Rules))

// inForce reads the generation in use.
func (t Rules) inForce() (bpf.XdpRuleGeneration, error) {
	var g bpf.XdpRuleGeneration
	w, err := loadWords(t.inUse, rulesWord)
	if err != nil {
		return g, fmt.Errorf("read the rule generation in the %s map: %w", SamplingName, err)
	}
	unpack(w[0], &g)
	return g, nil
}

// putInForce flips the program to a generation: one store of the whole
// word, which the program reads once per packet.
func (t Rules) putInForce(g bpf.XdpRuleGeneration) error {
	if err := storeWords(t.inUse, wordStore{rulesWord, pack(g)}); err != nil {
		return fmt.Errorf("write the rule generation to the %s map: %w", SamplingName, err)
	}
	return nil
}

// LockPinDir takes an exclusive lock on an interface's pin folder, for
// a read-modify-write of its tables (rules add, a reload) not to lose
// another's change. It waits for the lock.
func LockPinDir(dir string) (unlock func(), err error) {
	f, err := os.Open(dir)
	if err != nil {
		return nil, fmt.Errorf("lock pin folder: %w", err)
	}
	if err := unix.Flock(int(f.Fd()), unix.LOCK_EX); err != nil {
		f.Close()
		return nil, fmt.Errorf("lock pin folder %s: %w", dir, err)
	}
	return func() { f.Close() }, nil
}

// All returns the rules in the table, by id.
func (t Rules) All() ([]Rule, error) {
	var (
		id   uint32
		info bpf.XdpRuleInfo
		all  []Rule
	)
	entries := t.info.Iterate()
	for entries.Next(&id, &info) {
		all = append(all, ruleFromInfo(id, info))
	}
	if err := entries.Err(); err != nil {
		return nil, fmt.Errorf("read %s map: %w", RulesName, err)
	}
	slices.SortFunc(all, func(a, b Rule) int { return cmp.Compare(a.ID, b.ID) })
	return all, nil
}

func ruleFromInfo(id uint32, v bpf.XdpRuleInfo) Rule {
	prefix := func(a [16]byte, bits uint8) netip.Prefix {
		switch v.Family {
		case uint8(bpf.XdpRuleFamilyRULE_FAMILY_IPV4):
			return netip.PrefixFrom(netip.AddrFrom16(a).Unmap(), int(bits))
		case uint8(bpf.XdpRuleFamilyRULE_FAMILY_IPV6):
			return netip.PrefixFrom(netip.AddrFrom16(a), int(bits))
		}
		return netip.Prefix{}
	}
	var tag []byte
	for _, c := range v.Tag {
		if c == 0 {
			break
		}
		tag = append(tag, byte(c))
	}
	return Rule{
		ID: id,
		RuleMatch: RuleMatch{
			Protocol:   Protocol(v.Protocol),
			Local:      prefix(v.Local, v.LocalPrefixLen),
			Remote:     prefix(v.Remote, v.RemotePrefixLen),
			LocalPort:  ntohs(v.LocalPort),
			RemotePort: ntohs(v.RemotePort),
		},
		Action: RuleAction(v.Action),
		Tag:    string(tag),
	}
}

func infoOf(r Rule) bpf.XdpRuleInfo {
	v := bpf.XdpRuleInfo{
		Local:      addr16(r.Local),
		Remote:     addr16(r.Remote),
		LocalPort:  htons(r.LocalPort),
		RemotePort: htons(r.RemotePort),
		Protocol:   uint8(r.Protocol),
		Family:     familyOf(r.Local),
		Action:     uint32(r.Action),
	}
	if r.Local.IsValid() {
		v.LocalPrefixLen, v.RemotePrefixLen = uint8(r.Local.Bits()), uint8(r.Remote.Bits())
	}
	for i := range len(r.Tag) {
		v.Tag[i] = int8(r.Tag[i])
	}
	return v
}

// CheckRules checks and normalizes a whole rule set as Replace would
// take it, without touching any map: every rule valid, no match twice,
// no more than MaxRules rules in MaxRuleShapes shapes.
func CheckRules(rules []Rule) ([]Rule, error) {
	if len(rules) > MaxRules {
		return nil, fmt.Errorf("%d rules: the table takes at most %d", len(rules), MaxRules)
	}
	checked := make([]Rule, len(rules))
	seen := make(map[RuleMatch]int, len(rules))
	for i, r := range rules {
		c, err := r.Check()
		if err != nil {
			return nil, fmt.Errorf("rule %s: %w", r, err)
		}
		if j, dup := seen[c.RuleMatch]; dup {
			return nil, fmt.Errorf("rule %s: same match as rule %s (delete that one first)", c, checked[j])
		}
		seen[c.RuleMatch] = i
		checked[i] = c
	}
	if n := RuleShapes(checked); n > MaxRuleShapes {
		return nil, fmt.Errorf("%d distinct shapes (protocol, prefix lengths, port wildcards): the program takes at most %d", n, MaxRuleShapes)
	}
	return checked, nil
}

// RuleShapes counts the distinct shapes of checked rules: the program
// looks a packet up once per shape and takes at most MaxRuleShapes.
func RuleShapes(rules []Rule) int {
	shapes := make(map[ruleShape]bool)
	for _, r := range rules {
		shapes[shapeOf(r.RuleMatch)] = true
	}
	return len(shapes)
}

// Replace makes the table hold exactly want, in one step as the program
// sees it, and returns the rules with their ids. A rule already in the
// table (same match, action and tag) keeps its id and hit counters; a
// new one gets a free id with its counters zeroed. Nothing changes when
// want is refused.
//
// The program reads the generation in use once per packet and looks
// only at that generation's shapes and keys. Replace writes the
// generation not in use (its rule set, its half of rule_slots, its keys
// in rule_match), then flips to it and leaves the retired generation in
// place; the next Replace overwrites it, long after any packet that
// read them has gone through (XDP runs each packet to completion). So
// no packet sees half of one set and half of another.
func (t Rules) Replace(want []Rule) ([]Rule, error) {
	want, err := CheckRules(want)
	if err != nil {
		return nil, err
	}
	have, err := t.All()
	if err != nil {
		return nil, err
	}
	type content struct {
		RuleMatch
		Action RuleAction
		Tag    string
	}
	kept := make(map[content]uint32, len(have))
	used := make(map[uint32]bool, len(have))
	for _, r := range have {
		kept[content{r.RuleMatch, r.Action, r.Tag}] = r.ID
		used[r.ID] = true
	}
	var fresh []uint32
	taken := make(map[uint32]bool, len(want))
	for i, r := range want {
		if id, ok := kept[content{r.RuleMatch, r.Action, r.Tag}]; ok {
			want[i].ID, taken[id] = id, true
		}
	}
	// New rules take ids no rule had, so that the retired generation,
	// still counting until the flip, counts into none of theirs; only
	// when those run out, the ids of rules going away.
	next, reused := uint32(1), uint32(1)
	for i := range want {
		if want[i].ID != 0 {
			continue
		}
		for next <= uint32(MaxRules) && used[next] {
			next++
		}
		id := next
		if id > uint32(MaxRules) {
			for taken[reused] {
				reused++
			}
			id = reused
		}
		want[i].ID, used[id], taken[id] = id, true, true
		fresh = append(fresh, id)
	}

	zero := make([]bpf.XdpCounter, ebpf.MustPossibleCPU())
	for _, id := range fresh {
		if err := t.hits.Put(id, zero); err != nil {
			return nil, fmt.Errorf("reset hits of rule %d: %w", id, err)
		}
	}
	inUse, err := t.inForce()
	if err != nil {
		return nil, err
	}
	if err := t.compile(want, inUse.Active&1^1); err != nil {
		return nil, err
	}

	// The set is in force; now its description.
	for _, r := range want {
		if slices.Contains(fresh, r.ID) {
			if err := t.info.Put(r.ID, infoOf(r)); err != nil {
				return nil, fmt.Errorf("rules in force, but listing them failed: write %s map: %w", RulesName, err)
			}
		}
	}
	wanted := make(map[uint32]bool, len(want))
	for _, r := range want {
		wanted[r.ID] = true
	}
	for _, r := range have {
		if !wanted[r.ID] {
			if err := t.info.Delete(r.ID); err != nil && !errors.Is(err, ebpf.ErrKeyNotExist) {
				return nil, fmt.Errorf("rules in force, but listing them failed: delete from %s map: %w", RulesName, err)
			}
		}
	}
	return want, nil
}

// Recompile compiles the rules in the table, ids and hits kept, into
// compiled maps that are new: an attach's, before its program runs. It
// compiles them as the generation in use rather than the other, for the
// program that the attach replaces, which reads the generation word of
// a sampling map it may share with the new one: that program finds the
// same generation, of the same rules, in its own compiled maps.
func (t Rules) Recompile() error {
	all, err := t.All()
	if err == nil {
		all, err = CheckRules(all)
	}
	var inUse bpf.XdpRuleGeneration
	if err == nil {
		inUse, err = t.inForce()
	}
	if err == nil {
		err = t.compile(all, inUse.Active&1)
	}
	if err != nil {
		return fmt.Errorf("compile the pinned rules: %w", err)
	}
	return nil
}

// compile writes checked rules, with their ids, as generation gen of
// the maps the program reads, then puts gen in force.
func (t Rules) compile(rules []Rule, gen uint32) error {
	if err := t.clearGeneration(uint8(gen)); err != nil {
		return err
	}
	c := compileRules(rules, uint8(gen))
	indexes := make([]uint32, len(c.slots))
	for i := range indexes {
		indexes[i] = gen<<ruleSlotBits | uint32(i)
	}
	if _, err := t.slots.BatchUpdate(indexes, c.slots, nil); err != nil {
		return fmt.Errorf("write %s map: %w", RuleSlotsName, err)
	}
	if len(c.overflowKeys) > 0 {
		if _, err := t.match.BatchUpdate(c.overflowKeys, c.overflow, nil); err != nil {
			return fmt.Errorf("write %s map: %w", RuleMatchName, err)
		}
	}
	if err := t.sets.Put(gen, c.set); err != nil {
		return fmt.Errorf("write %s map: %w", RuleSetsName, err)
	}
	return t.putInForce(bpf.XdpRuleGeneration{Active: gen, ShapeCount: c.set.ShapeCount})
}

// clearGeneration deletes the keys of a retired generation.
func (t Rules) clearGeneration(gen uint8) error {
	var (
		k     bpf.XdpRuleKey
		v     bpf.XdpRuleValue
		stale []bpf.XdpRuleKey
	)
	entries := t.match.Iterate()
	for entries.Next(&k, &v) {
		if k.Generation == gen {
			stale = append(stale, k)
		}
	}
	if err := entries.Err(); err != nil {
		return fmt.Errorf("read %s map: %w", RuleMatchName, err)
	}
	if len(stale) == 0 {
		return nil
	}
	if _, err := t.match.BatchDelete(stale, nil); err != nil {
		return fmt.Errorf("clear retired rules from %s map: %w", RuleMatchName, err)
	}
	return nil
}

// ruleSlotBits is RULE_SLOT_BITS: a generation has 1<<ruleSlotBits
// slots.
const ruleSlotBits = 15

// ruleSlotOf is rule_slot_of in xdp.c: the slot of a key, hashed as
// the program reads it, in little-endian 64-bit words.
func ruleSlotOf(k bpf.XdpRuleKey) uint32 {
	le := binary.LittleEndian.Uint64
	w4 := uint64(k.LocalPort) | uint64(k.RemotePort)<<16 | uint64(k.Protocol)<<32 |
		uint64(k.Family)<<40 | uint64(k.Shape)<<48 | uint64(k.Generation)<<56
	h := le(k.Local[:8])*0x9e3779b97f4a7c15 + le(k.Local[8:])*0xc2b2ae3d27d4eb4f +
		le(k.Remote[:8])*0x165667b19e3779f9 + le(k.Remote[8:])*0xd6e8feb86659fd93 +
		w4*0xff51afd7ed558ccd
	return uint32(h >> (64 - ruleSlotBits))
}

// compiledRules is one generation of the table as the program reads
// it: the rule set, the generation's half of rule_slots, and the keys
// that found their slot taken, for rule_match.
type compiledRules struct {
	set          bpf.XdpRuleSet
	slots        []bpf.XdpRuleSlot
	overflowKeys []bpf.XdpRuleKey
	overflow     []bpf.XdpRuleValue
}

// compileRules lays out checked rules as generation gen.
func compileRules(rules []Rule, gen uint8) compiledRules {
	var shapes []ruleShape
	for _, r := range rules {
		if s := shapeOf(r.RuleMatch); !slices.Contains(shapes, s) {
			shapes = append(shapes, s)
		}
	}
	slices.SortFunc(shapes, func(a, b ruleShape) int {
		return cmp.Or(b.spec.compare(a.spec), cmp.Compare(a.family, b.family))
	})
	c := compiledRules{
		set:   bpf.XdpRuleSet{ShapeCount: uint32(len(shapes)), RuleCount: uint32(len(rules))},
		slots: make([]bpf.XdpRuleSlot, 1<<ruleSlotBits),
	}
	for _, r := range rules {
		index := slices.Index(shapes, shapeOf(r.RuleMatch))
		shape := &c.set.Shapes[index]
		shape.Mask, shape.Family = shapeMask(r.RuleMatch), uint32(shapes[index].family)
		shape.Rules++
		k := bpf.XdpRuleKey{
			Local:      addr16(r.Local),
			Remote:     addr16(r.Remote),
			LocalPort:  htons(r.LocalPort),
			RemotePort: htons(r.RemotePort),
			Protocol:   uint8(r.Protocol),
			Family:     shapes[index].family,
			Shape:      uint8(index),
			Generation: gen,
		}
		v := bpf.XdpRuleValue{RuleId: r.ID, Action: uint32(r.Action)}
		slot := &c.slots[ruleSlotOf(k)]
		if slot.Value.RuleId == 0 {
			slot.Key, slot.Value = k, v
			continue
		}
		slot.Overflow = 1
		c.overflowKeys, c.overflow = append(c.overflowKeys, k), append(c.overflow, v)
	}
	return c
}

// Hits reads the hit counters of the rules in the table, summed over
// the CPUs, by rule id.
func (t Rules) Hits(rules []Rule) (map[uint32]Counter, error) {
	hits := make(map[uint32]Counter, len(rules))
	var perCPU []bpf.XdpCounter
	for _, r := range rules {
		if err := t.hits.Lookup(r.ID, &perCPU); err != nil {
			return nil, fmt.Errorf("read %s map: %w", RuleHitsName, err)
		}
		var sum Counter
		for _, c := range perCPU {
			sum = addCounter(sum, c)
		}
		hits[r.ID] = sum
	}
	return hits, nil
}
