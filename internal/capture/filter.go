package capture

import (
	"fmt"
	"net/netip"
	"strconv"
	"strings"

	"github.com/xdpstack/xdpstack/maps"
)

// Filter picks the packets a capture keeps. The zero Filter keeps all.
type Filter struct {
	text  string
	match func(*Packet, *headers) bool
	// verdicts says it asks about verdicts, reasons or rules, which only
	// the XDP hook has.
	verdicts bool
}

// FilterHelp is the filter syntax in short, for --help and errors.
const FilterHelp = "verdict V, reason R, rule ID, tcp, udp, icmp, arp, ip, ip6, [src|dst] host ADDR, [src|dst] port N; and, or, not, ( )"

// ParseFilter reads a filter. Its primitives are
//
//	verdict pass|drop|redirect|aborted|tx   the XDP program's verdict
//	reason NAME                             its reason (steered, rule_deny, ...)
//	rule ID                                 the session rule that decided it
//	tcp, udp, icmp, arp, ip, ip6            the protocol (icmp: v4 or v6)
//	[src|dst] host ADDR                     an IPv4 or IPv6 address
//	[src|dst] port N                        a TCP or UDP port
//
// joined by "and" (or nothing, as in "tcp port 80"), "or" and "not",
// with parentheses; "and" binds tighter than "or". An empty filter keeps
// every packet.
func ParseFilter(text string) (*Filter, error) {
	p := &filterParser{tokens: tokenize(text)}
	f := &Filter{text: strings.Join(p.tokens, " ")}
	if len(p.tokens) == 0 {
		return f, nil
	}
	m, err := p.or()
	if err == nil && p.pos < len(p.tokens) {
		err = fmt.Errorf("%q where the filter should end", p.tokens[p.pos])
	}
	if err != nil {
		return nil, fmt.Errorf("filter %q: %w (see: capture --help)", text, err)
	}
	f.match, f.verdicts = m, p.verdicts
	return f, nil
}

// String is the filter as given, its words one space apart.
func (f *Filter) String() string { return f.text }

// CheckPoint refuses a filter that asks what a point does not know: the
// userstack's link endpoint and the PSP gateway have no verdicts.
func (f *Filter) CheckPoint(p Point) error {
	if p != PointXDP && f.verdicts {
		return fmt.Errorf("filter %q: verdict, reason and rule are the XDP hook's (--point xdp)", f.text)
	}
	return nil
}

// Match tells whether the filter keeps p.
func (f *Filter) Match(p *Packet) bool {
	if f.match == nil {
		return true
	}
	h := packetHeaders(p)
	return f.match(p, &h)
}

// tokenize splits a filter into words and parentheses.
func tokenize(text string) []string {
	text = strings.NewReplacer("(", " ( ", ")", " ) ").Replace(text)
	return strings.Fields(text)
}

type filterParser struct {
	tokens   []string
	pos      int
	verdicts bool
}

func (p *filterParser) peek() string {
	if p.pos < len(p.tokens) {
		return p.tokens[p.pos]
	}
	return ""
}

func (p *filterParser) next() string {
	t := p.peek()
	if t != "" {
		p.pos++
	}
	return t
}

type matcher = func(*Packet, *headers) bool

func (p *filterParser) or() (matcher, error) {
	left, err := p.and()
	for err == nil && p.peek() == "or" {
		p.next()
		var right matcher
		if right, err = p.and(); err == nil {
			l := left
			left = func(pk *Packet, h *headers) bool { return l(pk, h) || right(pk, h) }
		}
	}
	return left, err
}

func (p *filterParser) and() (matcher, error) {
	left, err := p.unary()
	for err == nil {
		switch p.peek() {
		case "", "or", ")":
			return left, nil
		case "and":
			p.next()
		}
		var right matcher
		if right, err = p.unary(); err == nil {
			l := left
			left = func(pk *Packet, h *headers) bool { return l(pk, h) && right(pk, h) }
		}
	}
	return nil, err
}

func (p *filterParser) unary() (matcher, error) {
	switch t := p.next(); t {
	case "":
		return nil, fmt.Errorf("ends where a primitive should follow (%s)", FilterHelp)
	case "not":
		m, err := p.unary()
		if err != nil {
			return nil, err
		}
		return func(pk *Packet, h *headers) bool { return !m(pk, h) }, nil
	case "(":
		m, err := p.or()
		if err != nil {
			return nil, err
		}
		if p.next() != ")" {
			return nil, fmt.Errorf("a ( without its )")
		}
		return m, nil
	default:
		return p.primitive(t)
	}
}

// value reads the word after a primitive's name.
func (p *filterParser) value(name string) (string, error) {
	switch v := p.peek(); v {
	case "", "(", ")", "and", "or", "not":
		return "", fmt.Errorf("%s wants a value", name)
	}
	return p.next(), nil
}

func (p *filterParser) primitive(name string) (matcher, error) {
	switch name {
	case "tcp", "udp", "icmp":
		proto := map[string]uint8{"tcp": protoTCP, "udp": protoUDP, "icmp": protoICMP}[name]
		return func(_ *Packet, h *headers) bool {
			return h.ip && (h.proto == proto || proto == protoICMP && h.proto == protoICMPv6)
		}, nil
	case "arp", "ip", "ip6":
		etherType := map[string]uint16{"arp": etherARP, "ip": etherIPv4, "ip6": etherIPv6}[name]
		return func(_ *Packet, h *headers) bool { return h.etherType == etherType }, nil
	case "src", "dst":
		switch what := p.next(); what {
		case "host":
			return p.host(name)
		case "port":
			return p.port(name)
		default:
			return nil, fmt.Errorf("%s wants host or port after it, got %q", name, what)
		}
	case "host":
		return p.host("")
	case "port":
		return p.port("")
	case "verdict", "reason", "rule":
		return p.verdict(name)
	}
	return nil, fmt.Errorf("unknown primitive %q (want %s)", name, FilterHelp)
}

// verdict matches what the XDP program decided: the verdict, the
// reason or the rule.
func (p *filterParser) verdict(name string) (matcher, error) {
	p.verdicts = true
	v, err := p.value(name)
	if err != nil {
		return nil, err
	}
	switch name {
	case "verdict":
		a, err := maps.ParseAction(v)
		if err != nil {
			return nil, err
		}
		return func(pk *Packet, _ *headers) bool { return pk.Verdict.Action == a }, nil
	case "reason":
		r, err := maps.ParseReason(v)
		if err != nil {
			return nil, err
		}
		return func(pk *Packet, _ *headers) bool { return pk.Verdict.Reason == r }, nil
	}
	id, err := strconv.ParseUint(v, 10, 32)
	if err != nil || id == 0 || id > maps.MaxRules {
		return nil, fmt.Errorf("rule %q: want a rule id from 1 to %d", v, maps.MaxRules)
	}
	return func(pk *Packet, _ *headers) bool { return pk.RuleID == uint32(id) }, nil
}

// host matches an address as the source, the destination (dir "src"
// or "dst") or either.
func (p *filterParser) host(dir string) (matcher, error) {
	v, err := p.value(strings.TrimSpace(dir + " host"))
	if err != nil {
		return nil, err
	}
	addr, err := netip.ParseAddr(v)
	if err != nil || addr.Zone() != "" {
		return nil, fmt.Errorf("host %q: want an IPv4 or IPv6 address", v)
	}
	addr = addr.Unmap()
	return func(_ *Packet, h *headers) bool {
		return h.ip && (dir != "dst" && h.src == addr || dir != "src" && h.dst == addr)
	}, nil
}

// port matches a TCP or UDP port as the source, the destination or
// either.
func (p *filterParser) port(dir string) (matcher, error) {
	v, err := p.value(strings.TrimSpace(dir + " port"))
	if err != nil {
		return nil, err
	}
	n, err := strconv.ParseUint(v, 10, 16)
	if err != nil || n == 0 {
		return nil, fmt.Errorf("port %q: want a number from 1 to 65535", v)
	}
	port := uint16(n)
	return func(_ *Packet, h *headers) bool {
		return h.ports && (dir != "dst" && h.sport == port || dir != "src" && h.dport == port)
	}, nil
}
