package capture

import (
	"encoding/binary"
	"net/netip"
)

// EtherTypes and IP protocols a filter and a summary name.
const (
	etherIPv4 = 0x0800
	etherARP  = 0x0806
	etherVLAN = 0x8100
	etherQinQ = 0x88a8
	etherIPv6 = 0x86dd

	protoICMP   = 1
	protoTCP    = 6
	protoUDP    = 17
	protoICMPv6 = 58
)

// headers are what a filter and a summary read of a frame: as much as
// its first bytes hold.
type headers struct {
	// etherType follows the VLAN tags, if any.
	etherType uint16
	// ip says src, dst and proto are read.
	ip       bool
	src, dst netip.Addr
	proto    uint8
	// ports says sport and dport are read (TCP or UDP, not a later
	// fragment).
	ports        bool
	sport, dport uint16
	tcpFlags     uint8
	icmpType     uint8
}

// IPv6 extension headers that parseHeaders walks past.
const (
	ipv6HopByHop = 0
	ipv6Routing  = 43
	ipv6Fragment = 44
	ipv6DestOpts = 60
)

// packetHeaders reads p's headers: an Ethernet frame's, or an IP
// packet's at PointPSP.
func packetHeaders(p *Packet) headers {
	if p.Point == PointPSP {
		return parseIPHeaders(p.Data)
	}
	return parseHeaders(p.Data)
}

// parseHeaders reads the Ethernet, IP and transport headers of frame.
func parseHeaders(frame []byte) headers {
	var h headers
	be := binary.BigEndian
	if len(frame) < 14 {
		return h
	}
	h.etherType, frame = be.Uint16(frame[12:]), frame[14:]
	for (h.etherType == etherVLAN || h.etherType == etherQinQ) && len(frame) >= 4 {
		h.etherType, frame = be.Uint16(frame[2:]), frame[4:]
	}
	parseL3(&h, frame)
	return h
}

// parseIPHeaders reads the IP and transport headers of an IP packet
// with no link header, as the PSP gateway's inner packets are; its
// version stands for the EtherType.
func parseIPHeaders(packet []byte) headers {
	var h headers
	if len(packet) == 0 {
		return h
	}
	switch packet[0] >> 4 {
	case 4:
		h.etherType = etherIPv4
	case 6:
		h.etherType = etherIPv6
	default:
		return h
	}
	parseL3(&h, packet)
	return h
}

// parseL3 reads the IP and transport headers of frame, a packet of
// h.etherType.
func parseL3(h *headers, frame []byte) {
	be := binary.BigEndian
	var l4 []byte
	later := false // a fragment past the first
	switch h.etherType {
	case etherIPv4:
		if len(frame) < 20 || frame[0]>>4 != 4 {
			return
		}
		hlen := int(frame[0]&0xf) * 4
		h.ip, h.proto = true, frame[9]
		h.src, _ = netip.AddrFromSlice(frame[12:16])
		h.dst, _ = netip.AddrFromSlice(frame[16:20])
		later = be.Uint16(frame[6:])&0x1fff != 0
		if hlen >= 20 && len(frame) >= hlen {
			l4 = frame[hlen:]
		}
	case etherIPv6:
		if len(frame) < 40 || frame[0]>>4 != 6 {
			return
		}
		h.ip, h.proto = true, frame[6]
		h.src = netip.AddrFrom16([16]byte(frame[8:24]))
		h.dst = netip.AddrFrom16([16]byte(frame[24:40]))
		l4 = frame[40:]
		for range 4 {
			if h.proto != ipv6HopByHop && h.proto != ipv6Routing && h.proto != ipv6Fragment && h.proto != ipv6DestOpts || len(l4) < 8 {
				break
			}
			size := (int(l4[1]) + 1) * 8
			if h.proto == ipv6Fragment {
				size = 8
				later = be.Uint16(l4[2:])&0xfff8 != 0
			}
			if len(l4) < size {
				l4 = nil
				break
			}
			h.proto, l4 = l4[0], l4[size:]
		}
	default:
		return
	}
	if later {
		return
	}
	switch h.proto {
	case protoTCP:
		if len(l4) >= 14 {
			h.ports, h.sport, h.dport, h.tcpFlags = true, be.Uint16(l4), be.Uint16(l4[2:]), l4[13]
		}
	case protoUDP:
		if len(l4) >= 4 {
			h.ports, h.sport, h.dport = true, be.Uint16(l4), be.Uint16(l4[2:])
		}
	case protoICMP, protoICMPv6:
		if len(l4) >= 1 {
			h.icmpType = l4[0]
		}
	}
}
