// Package xdpmodel is a Go model of xdpstack's XDP ingress program:
// the same parse, session rules and steering decisions, written plainly,
// so that a differential test can run both on the same frames and
// compare verdicts and reasons. Rules are decided by maps.MatchRule, the
// linear definition, not the program's tuple-space search.
package xdpmodel

import (
	"encoding/binary"
	"net/netip"

	"github.com/xdpstack/xdpstack/maps"
)

// State is what the program's maps hold.
type State struct {
	Rules     []maps.Rule
	Listeners []maps.Listener
	Ports     maps.PortRange
	Local     map[netip.Addr]maps.AddrKind
}

// Result is the model's verdict and, when a rule decided, which.
type Result struct {
	maps.Verdict
	Rule uint32 // id of the rule that matched, 0 for none
}

func result(a maps.Action, r maps.Reason) Result {
	return Result{Verdict: maps.Verdict{Action: a, Reason: r}}
}

const (
	ethHeader      = 14
	maxVLANTags    = 2
	maxIPv6ExtHdrs = 4
)

// Classify decides a frame as the program does, with no AF_XDP socket
// on the queue (as under BPF_PROG_TEST_RUN): a packet it would steer
// passes as no_socket.
func (s *State) Classify(frame []byte) Result {
	pass := func(r maps.Reason) Result { return result(maps.ActionPass, r) }
	if len(frame) < ethHeader {
		return pass(maps.ReasonMalformed)
	}
	ethertype := binary.BigEndian.Uint16(frame[12:])
	pos, tags := ethHeader, 0
	for range maxVLANTags {
		if ethertype != 0x8100 && ethertype != 0x88a8 {
			break
		}
		if len(frame) < pos+4 {
			return pass(maps.ReasonMalformed)
		}
		ethertype = binary.BigEndian.Uint16(frame[pos+2:])
		pos += 4
		tags++
	}
	if tags > 0 {
		return pass(maps.ReasonVLAN)
	}

	var (
		src, dst [16]byte
		proto    uint8
		ipv6     bool
	)
	switch ethertype {
	case 0x0800:
		ip := frame[pos:]
		if len(ip) < 20 || ip[0]>>4 != 4 || ip[0]&0xf < 5 {
			return pass(maps.ReasonMalformed)
		}
		hdrLen := int(ip[0]&0xf) * 4
		if len(ip) < hdrLen || int(binary.BigEndian.Uint16(ip[2:])) < hdrLen {
			return pass(maps.ReasonMalformed)
		}
		if binary.BigEndian.Uint16(ip[6:])&0x3fff != 0 {
			return pass(maps.ReasonFragment)
		}
		proto = ip[9]
		src = netip.AddrFrom4([4]byte(ip[12:16])).As16()
		dst = netip.AddrFrom4([4]byte(ip[16:20])).As16()
		pos += hdrLen
	case 0x86dd:
		ip := frame[pos:]
		if len(ip) < 40 || ip[0]>>4 != 6 {
			return pass(maps.ReasonMalformed)
		}
		src, dst, ipv6 = [16]byte(ip[8:24]), [16]byte(ip[24:40]), true
		next := ip[6]
		pos += 40
		done := false
		for range maxIPv6ExtHdrs {
			switch next {
			case 0, 43, 60: // hop-by-hop, routing, destination options
				if len(frame) < pos+2 {
					return pass(maps.ReasonMalformed)
				}
				n := (int(frame[pos+1]) + 1) * 8
				if len(frame) < pos+n {
					return pass(maps.ReasonMalformed)
				}
				next = frame[pos]
				pos += n
				continue
			case 44: // fragment
				if len(frame) < pos+8 {
					return pass(maps.ReasonMalformed)
				}
				if binary.BigEndian.Uint16(frame[pos+2:])&0xfff9 != 0 {
					return pass(maps.ReasonFragment)
				}
				next = frame[pos]
				pos += 8
				continue
			}
			done = true
			break
		}
		if !done {
			switch next {
			case 0, 43, 60, 44:
				return pass(maps.ReasonExtHdrLimit)
			}
		}
		proto = next
	default:
		return pass(maps.ReasonNotIP)
	}

	l4 := frame[pos:]
	var sport, dport uint16
	switch proto {
	case 6:
		if len(l4) < 20 || l4[12]>>4 < 5 || len(l4) < int(l4[12]>>4)*4 {
			return pass(maps.ReasonMalformed)
		}
	case 17:
		if len(l4) < 8 {
			return pass(maps.ReasonMalformed)
		}
	case 1, 58:
		if len(l4) < 8 {
			return pass(maps.ReasonMalformed)
		}
		return pass(maps.ReasonNoMatch)
	default:
		return pass(maps.ReasonNoMatch)
	}
	sport, dport = binary.BigEndian.Uint16(l4), binary.BigEndian.Uint16(l4[2:])

	// The program keeps IPv4 addresses IPv4-mapped; a rule sees an IPv4
	// packet's addresses as IPv4 and an IPv6 packet's as IPv6.
	addr := func(a [16]byte) netip.Addr {
		if ipv6 {
			return netip.AddrFrom16(a)
		}
		return netip.AddrFrom16(a).Unmap()
	}
	pkt := maps.RulePacket{Protocol: maps.Protocol(proto), Local: netip.AddrPortFrom(addr(dst), dport), Remote: netip.AddrPortFrom(addr(src), sport)}
	if r, ok := maps.MatchRule(s.Rules, pkt); ok {
		switch r.Action {
		case maps.RuleDeny:
			return Result{maps.Verdict{Action: maps.ActionDrop, Reason: maps.ReasonRuleDeny}, r.ID}
		case maps.RulePass:
			return Result{maps.Verdict{Action: maps.ActionPass, Reason: maps.ReasonRulePass}, r.ID}
		}
		res := s.steer(src, dst, proto, dport, ipv6)
		res.Rule = r.ID
		return res
	}
	return s.steer(src, dst, proto, dport, ipv6)
}

func (s *State) steer(src, dst [16]byte, proto uint8, port uint16, ipv6 bool) Result {
	if !s.listening(dst, proto, port) {
		return result(maps.ActionPass, maps.ReasonNoMatch)
	}
	if !s.served(dst, ipv6) {
		return result(maps.ActionPass, maps.ReasonNotLocal)
	}
	if s.martian(src, ipv6) {
		return result(maps.ActionDrop, maps.ReasonMartian)
	}
	return result(maps.ActionPass, maps.ReasonNoSocket)
}

// listening mirrors the listeners table, whose keys hold the address
// in 16 bytes: an IPv6 packet to an IPv4-mapped address finds an IPv4
// listener.
func (s *State) listening(dst [16]byte, proto uint8, port uint16) bool {
	for _, l := range s.Listeners {
		if uint8(l.Protocol) != proto || l.Port != port {
			continue
		}
		if !l.Addr.IsValid() || l.Addr.IsUnspecified() || l.Addr.As16() == dst {
			return true
		}
	}
	return s.Ports != (maps.PortRange{}) && s.Ports.Contains(port)
}

func isV4Mapped(a [16]byte) bool { return netip.AddrFrom16(a).Is4In6() }

func (s *State) served(dst [16]byte, ipv6 bool) bool {
	if ipv6 && isV4Mapped(dst) {
		return false
	}
	return s.Local[netip.AddrFrom16(dst).Unmap()]&maps.AddrServed != 0
}

func (s *State) martian(src [16]byte, ipv6 bool) bool {
	if !ipv6 {
		first := src[12]
		if first == 0 || first == 127 || first&0xf0 == 0xe0 || [4]byte(src[12:]) == [4]byte{255, 255, 255, 255} {
			return true
		}
	} else {
		a := netip.AddrFrom16(src)
		if src[0] == 0xff || a.Is4In6() || a.IsUnspecified() || a.IsLoopback() {
			return true
		}
	}
	_, ok := s.Local[netip.AddrFrom16(src).Unmap()]
	return ok
}
