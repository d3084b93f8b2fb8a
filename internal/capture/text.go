package capture

import (
	"fmt"
	"net/netip"
	"strings"
)

// RuleTags names session rules by id, for a packet's comment and line;
// "" for a rule without a tag. Nil names none.
type RuleTags func(id uint32) string

// why says why a packet is where it is: its verdict, reason and rule at
// the XDP hook ("drop/rule_deny rule 3 (no-ssh)"), its direction at the
// userstack ("in", "out"), its direction, SPI and S bit at the PSP
// gateway ("out spi 0x1a2b3c4d sampled").
func why(p *Packet, tags RuleTags) string {
	switch p.Point {
	case PointUserstack, PointPSP:
		s := "in"
		if p.Out {
			s = "out"
		}
		if p.Point == PointPSP {
			s += fmt.Sprintf(" spi %#x", p.SPI)
			if p.Sampled {
				s += " sampled"
			}
		}
		return s
	}
	s := p.Verdict.Action.String() + "/" + p.Verdict.Reason.String()
	if p.RuleID != 0 {
		s += fmt.Sprintf(" rule %d", p.RuleID)
		if tags != nil {
			if tag := tags(p.RuleID); tag != "" {
				s += " (" + tag + ")"
			}
		}
	}
	return s
}

// Comment is a packet's pcapng comment: "xdp drop/rule_deny rule 3
// (no-ssh) queue 0", "userstack out queue 1", "psp in spi 0x1a2b3c4d"
// (the gateway's packets have no queue).
func Comment(p *Packet, tags RuleTags) string {
	if p.Point == PointPSP {
		return fmt.Sprintf("%s %s", p.Point, why(p, tags))
	}
	return fmt.Sprintf("%s %s queue %d", p.Point, why(p, tags), p.Queue)
}

// Line is a packet on one line: "12:00:00.000123 xdp q0 drop/rule_deny
// rule 3 (no-ssh) TCP 10.0.0.2:5555 > 10.0.0.1:22 [S] len 74",
// "12:00:00.000123 psp out spi 0x1a2b3c4d TCP 10.7.0.1:5555 >
// 10.7.0.2:22 [S] len 60".
func Line(p *Packet, tags RuleTags) string {
	where := fmt.Sprintf("%s q%d", p.Point, p.Queue)
	if p.Point == PointPSP {
		where = p.Point.String()
	}
	return fmt.Sprintf("%s %s %s %s", p.Time.Format("15:04:05.000000"), where, why(p, tags), summary(packetHeaders(p), p.Point != PointPSP, p.Data, p.Len))
}

// Summary describes a frame of length n whose first bytes are data:
// "TCP 10.0.0.2:5555 > 10.0.0.1:80 [S] len 74".
func Summary(data []byte, n int) string { return summary(parseHeaders(data), true, data, n) }

// summary describes a packet of length n whose first bytes are data and
// whose headers are h; ethernet says data starts with an Ethernet
// header.
func summary(h headers, ethernet bool, data []byte, n int) string {
	var s string
	switch {
	case h.ip && h.ports:
		name := "UDP"
		if h.proto == protoTCP {
			name = "TCP"
		}
		s = fmt.Sprintf("%s %s > %s", name, netip.AddrPortFrom(h.src, h.sport), netip.AddrPortFrom(h.dst, h.dport))
		if h.proto == protoTCP {
			s += " [" + tcpFlags(h.tcpFlags) + "]"
		}
	case h.ip && (h.proto == protoICMP || h.proto == protoICMPv6):
		name := "ICMP"
		if h.proto == protoICMPv6 {
			name = "ICMPv6"
		}
		s = fmt.Sprintf("%s %s > %s type %d", name, h.src, h.dst, h.icmpType)
	case h.ip:
		s = fmt.Sprintf("IP %s > %s proto %d", h.src, h.dst, h.proto)
	case h.etherType == etherARP:
		s = "ARP"
	case ethernet && len(data) >= 14:
		s = fmt.Sprintf("ethertype 0x%04x", h.etherType)
	case !ethernet && len(data) > 0:
		s = fmt.Sprintf("not ip (version %d)", data[0]>>4)
	default:
		s = "runt"
	}
	return fmt.Sprintf("%s len %d", s, n)
}

// tcpFlags writes TCP flags as tcpdump does: S, F, R, P, U, E, W, and
// "." for ACK.
func tcpFlags(f uint8) string {
	var b strings.Builder
	for _, flag := range []struct {
		bit  uint8
		name byte
	}{{0x02, 'S'}, {0x01, 'F'}, {0x04, 'R'}, {0x08, 'P'}, {0x20, 'U'}, {0x40, 'E'}, {0x80, 'W'}, {0x10, '.'}} {
		if f&flag.bit != 0 {
			b.WriteByte(flag.name)
		}
	}
	if b.Len() == 0 {
		return "none"
	}
	return b.String()
}
