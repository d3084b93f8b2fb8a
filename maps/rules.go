package maps

import (
	"cmp"
	"errors"
	"fmt"
	"net/netip"
	"strconv"
	"strings"

	"github.com/xdpstack/xdpstack/bpf"
)

// RuleAction is what a session rule does with the packets it matches.
type RuleAction uint32

const (
	// RuleAllow lets the packet go on to steering, as if no rule matched.
	RuleAllow = RuleAction(bpf.XdpRuleActionRULE_ALLOW)
	// RuleDeny drops the packet in the driver (drop/rule_deny).
	RuleDeny = RuleAction(bpf.XdpRuleActionRULE_DENY)
	// RulePass hands the packet to the kernel, even where the userstack
	// listens (pass/rule_pass).
	RulePass = RuleAction(bpf.XdpRuleActionRULE_PASS)
)

var ruleActionNames = map[RuleAction]string{RuleAllow: "allow", RuleDeny: "deny", RulePass: "pass"}

func (a RuleAction) String() string {
	if name, ok := ruleActionNames[a]; ok {
		return name
	}
	return fmt.Sprintf("action(%d)", uint32(a))
}

// ParseRuleAction reads allow, deny or pass.
func ParseRuleAction(s string) (RuleAction, error) {
	for a, name := range ruleActionNames {
		if s == name {
			return a, nil
		}
	}
	return 0, fmt.Errorf("action %q: want allow, deny or pass", s)
}

// ParseRuleProtocol reads tcp, udp or any (0).
func ParseRuleProtocol(s string) (Protocol, error) {
	switch s {
	case "tcp":
		return TCP, nil
	case "udp":
		return UDP, nil
	case "any":
		return 0, nil
	}
	return 0, fmt.Errorf("protocol %q: want tcp, udp or any", s)
}

// MaxRules is how many global rules an interface takes: ids 1 to
// MAX_RULES - 1 in xdpstack.h.
const MaxRules = ruleTableSize - 1

// ruleTableSize is MAX_RULES, the size of the rules and rule_hits maps.
const ruleTableSize = 16384

// MaxRuleShapes is MAX_RULE_SHAPES in xdpstack.h: how many distinct
// shapes (see RuleMatch) the program tries per packet.
const MaxRuleShapes = len(bpf.XdpRuleSet{}.Shapes)

// ruleTagLen is RULE_TAG_LEN, the terminating NUL included.
const ruleTagLen = len(bpf.XdpRuleInfo{}.Tag)

// RuleMatch is what a session rule matches in a TCP or UDP packet
// arriving on the interface: local is its destination, remote its
// source. Its shape is which of these are wildcards and how long the
// prefixes are.
type RuleMatch struct {
	// Protocol is TCP or UDP; 0 matches both.
	Protocol Protocol
	// Local and Remote are prefixes of one family; the zero Prefix
	// matches any address of either family.
	Local, Remote netip.Prefix
	// LocalPort and RemotePort are ports; 0 matches any.
	LocalPort, RemotePort uint16
}

// Rule is a global session rule. Its ID is the table's, given when the
// rule is put in; it numbers its hit counters.
type Rule struct {
	ID uint32
	RuleMatch
	Action RuleAction
	// Tag names the rule for operators and metrics; may be empty.
	Tag string
}

// Normalize checks a match and puts it in the one form the table keeps:
// prefixes masked, and an absent prefix beside a present one made the
// /0 of that family (a rule with an address has a family).
func (m RuleMatch) Normalize() (RuleMatch, error) {
	if m.Protocol != 0 && m.Protocol != TCP && m.Protocol != UDP {
		return m, fmt.Errorf("protocol %d: want tcp, udp or any", m.Protocol)
	}
	for _, p := range []*netip.Prefix{&m.Local, &m.Remote} {
		if !p.IsValid() {
			continue
		}
		if p.Addr().Is4In6() {
			return m, fmt.Errorf("prefix %s: an IPv4-mapped address (write it as IPv4)", p)
		}
		if p.Addr().Zone() != "" {
			return m, fmt.Errorf("prefix %s: a zone has no place in a rule", p)
		}
		*p = p.Masked()
	}
	switch {
	case m.Local.IsValid() && m.Remote.IsValid():
		if m.Local.Addr().Is4() != m.Remote.Addr().Is4() {
			return m, fmt.Errorf("local %s and remote %s: prefixes of different families", m.Local, m.Remote)
		}
	case m.Local.IsValid():
		m.Remote = anyOfFamily(m.Local)
	case m.Remote.IsValid():
		m.Local = anyOfFamily(m.Remote)
	}
	return m, nil
}

func anyOfFamily(p netip.Prefix) netip.Prefix {
	if p.Addr().Is4() {
		return netip.PrefixFrom(netip.IPv4Unspecified(), 0)
	}
	return netip.PrefixFrom(netip.IPv6Unspecified(), 0)
}

// checkTag refuses a tag that would not fit or would not read well in a
// listing or a metric label.
func checkTag(tag string) error {
	if len(tag) >= ruleTagLen {
		return fmt.Errorf("tag %q: %d bytes, want at most %d", tag, len(tag), ruleTagLen-1)
	}
	for _, r := range tag {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || strings.ContainsRune("-_.:/", r)) {
			return fmt.Errorf("tag %q: want letters, digits and -_.:/ only", tag)
		}
	}
	return nil
}

// Check normalizes a rule's match and checks its action and tag.
func (r Rule) Check() (Rule, error) {
	var err error
	if r.RuleMatch, err = r.Normalize(); err != nil {
		return r, err
	}
	if _, ok := ruleActionNames[r.Action]; !ok {
		return r, fmt.Errorf("action %d: want allow, deny or pass", r.Action)
	}
	return r, checkTag(r.Tag)
}

// Specificity ranks matches; of the rules that match a packet, the
// one with the greatest specificity decides. The order, compared field
// by field:
//
//  1. the remote prefix length (an absent prefix ranks below /0),
//  2. the local prefix length (likewise),
//  3. an exact remote port before any,
//  4. an exact local port before any,
//  5. an exact protocol before any.
//
// Matches of one specificity that can both match a packet are the same
// match, which a table refuses to hold twice; CompareRules ends the
// order with the lower id all the same.
type Specificity [5]int

func (m RuleMatch) Specificity() Specificity {
	bits := func(p netip.Prefix) int {
		if !p.IsValid() {
			return -1
		}
		return p.Bits()
	}
	exact := func(b bool) int {
		if b {
			return 1
		}
		return 0
	}
	return Specificity{bits(m.Remote), bits(m.Local), exact(m.RemotePort != 0), exact(m.LocalPort != 0), exact(m.Protocol != 0)}
}

func (s Specificity) compare(o Specificity) int {
	for i := range s {
		if c := cmp.Compare(s[i], o[i]); c != 0 {
			return c
		}
	}
	return 0
}

// CompareRules orders rules most specific first, then by id.
func CompareRules(a, b Rule) int {
	return cmp.Or(b.Specificity().compare(a.Specificity()), cmp.Compare(a.ID, b.ID))
}

// RulePacket is what a rule looks at in a packet: its transport protocol
// and both ends, local being the destination.
type RulePacket struct {
	Protocol      Protocol
	Local, Remote netip.AddrPort
}

// Matches tells whether the (normalized) match takes the packet. An
// IPv4-mapped address in an IPv6 packet is IPv6, as the program sees it.
func (m RuleMatch) Matches(p RulePacket) bool {
	in := func(pre netip.Prefix, a netip.Addr) bool {
		return !pre.IsValid() || pre.Addr().Is4() == a.Is4() && pre.Contains(a)
	}
	port := func(want, got uint16) bool { return want == 0 || want == got }
	return (m.Protocol == 0 || m.Protocol == p.Protocol) &&
		in(m.Local, p.Local.Addr()) && in(m.Remote, p.Remote.Addr()) &&
		port(m.LocalPort, p.Local.Port()) && port(m.RemotePort, p.Remote.Port())
}

// MatchRule is the definition of which rule decides a packet: of the
// rules that match it, the first in CompareRules' order. False when none
// matches.
func MatchRule(rules []Rule, p RulePacket) (Rule, bool) {
	var best Rule
	found := false
	for _, r := range rules {
		if r.Matches(p) && (!found || CompareRules(r, best) < 0) {
			best, found = r, true
		}
	}
	return best, found
}

// ParseEndpoint reads PREFIX[:PORT] as the rules command takes it:
// 10.0.0.0/8:80, 192.0.2.1 (a /32), [2001:db8::/32]:443, 2001:db8::1 (a
// /128), :53 (any address, port 53). Port 0 is any port; an absent
// prefix is the zero Prefix, any address.
func ParseEndpoint(s string) (netip.Prefix, uint16, error) {
	addr, port := s, ""
	switch {
	case s == "":
		return netip.Prefix{}, 0, errors.New("empty (want PREFIX[:PORT])")
	case strings.HasPrefix(s, "["):
		end := strings.Index(s, "]")
		if end < 0 {
			return netip.Prefix{}, 0, fmt.Errorf("%q: no closing ] (want [PREFIX]:PORT)", s)
		}
		addr = s[1:end]
		if rest := s[end+1:]; rest != "" {
			if !strings.HasPrefix(rest, ":") {
				return netip.Prefix{}, 0, fmt.Errorf("%q: want :PORT after ]", s)
			}
			port = rest[1:]
		}
	case strings.Count(s, ":") == 1:
		addr, port, _ = strings.Cut(s, ":")
	}
	var p netip.Prefix
	if addr != "" {
		var err error
		if strings.Contains(addr, "/") {
			p, err = netip.ParsePrefix(addr)
		} else {
			var a netip.Addr
			if a, err = netip.ParseAddr(addr); err == nil {
				p = netip.PrefixFrom(a, a.BitLen())
			}
		}
		if err != nil {
			return netip.Prefix{}, 0, fmt.Errorf("%q: not an address or prefix (want e.g. 10.0.0.0/8 or [2001:db8::/32])", s)
		}
	} else if port == "" {
		return netip.Prefix{}, 0, fmt.Errorf("%q: want PREFIX[:PORT]", s)
	}
	var n uint64
	if port != "" || strings.HasSuffix(s, ":") {
		var err error
		if n, err = strconv.ParseUint(port, 10, 16); err != nil {
			return netip.Prefix{}, 0, fmt.Errorf("%q: port %q is not 0 to 65535", s, port)
		}
	}
	return p, uint16(n), nil
}

// formatEndpoint writes what ParseEndpoint reads; "any" for neither.
func formatEndpoint(p netip.Prefix, port uint16) string {
	switch {
	case !p.IsValid() && port == 0:
		return "any"
	case !p.IsValid():
		return fmt.Sprintf(":%d", port)
	case port == 0:
		return p.String()
	case p.Addr().Is6():
		return fmt.Sprintf("[%s]:%d", p, port)
	}
	return fmt.Sprintf("%s:%d", p, port)
}

// LocalString and RemoteString write the ends as the CLI takes them.
func (m RuleMatch) LocalString() string  { return formatEndpoint(m.Local, m.LocalPort) }
func (m RuleMatch) RemoteString() string { return formatEndpoint(m.Remote, m.RemotePort) }

// ProtocolString is tcp, udp or any.
func (m RuleMatch) ProtocolString() string {
	if m.Protocol == 0 {
		return "any"
	}
	return m.Protocol.String()
}

func (m RuleMatch) String() string {
	return fmt.Sprintf("--proto %s --local %s --remote %s", m.ProtocolString(), m.LocalString(), m.RemoteString())
}

func (r Rule) String() string { return r.Row().String() }
