package link

import (
	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/checksum"
	"gvisor.dev/gvisor/pkg/tcpip/header"
)

// checksumsValid checks a received frame's IPv4 header checksum and its
// TCP or UDP checksum, as a NIC with receive checksum offload does, and
// counts a frame it rejects in the netstack's own counters. The endpoint
// tells the netstack that every packet it hands up is checked: GRO's
// coalesced segments carry their first piece's checksums, so only a
// check made on each frame before GRO can vouch for them.
//
// Only TCP and UDP can be checked: the XDP program steers nothing else
// here, and no fragments, whose transport checksum covers the whole
// reassembled datagram. Anything else is dropped as malformed, since
// passing it on would tell the netstack it was checked. A frame whose
// lengths do not add up goes on unchecked, for the netstack to drop as
// malformed.
func checksumsValid(frame []byte, stats *tcpip.Stats) bool {
	if len(frame) < header.EthernetMinimumSize {
		return true
	}
	ip := frame[header.EthernetMinimumSize:]
	var (
		src, dst  tcpip.Address
		transport []byte
		proto     tcpip.TransportProtocolNumber
		fragment  bool
	)
	switch header.Ethernet(frame).Type() {
	case header.IPv4ProtocolNumber:
		h := header.IPv4(ip)
		if !h.IsValid(len(ip)) {
			return true
		}
		if !h.IsChecksumValid() {
			stats.IP.MalformedPacketsReceived.Increment()
			return false
		}
		src, dst, proto = h.SourceAddress(), h.DestinationAddress(), h.TransportProtocol()
		transport = ip[h.HeaderLength():h.TotalLength()]
		fragment = h.More() || h.FragmentOffset() != 0
	case header.IPv6ProtocolNumber:
		h := header.IPv6(ip)
		if !h.IsValid(len(ip)) {
			return true
		}
		pkt := ip[:header.IPv6MinimumSize+int(h.PayloadLength())]
		var off int
		var ok bool
		if proto, off, fragment, ok = ipv6Transport(pkt); !ok {
			return true
		}
		src, dst, transport = h.SourceAddress(), h.DestinationAddress(), pkt[off:]
	default:
		return true
	}
	if fragment || (proto != header.TCPProtocolNumber && proto != header.UDPProtocolNumber) {
		stats.IP.MalformedPacketsReceived.Increment()
		return false
	}
	errors, minSize := stats.TCP.ChecksumErrors, header.TCPMinimumSize
	if proto == header.UDPProtocolNumber {
		errors, minSize = stats.UDP.ChecksumErrors, header.UDPMinimumSize
	}
	if len(transport) < minSize {
		return true
	}
	// IPv4 lets a sender leave the UDP checksum out; IPv6 does not.
	if proto == header.UDPProtocolNumber && header.UDP(transport).Checksum() == 0 && src.Len() == header.IPv4AddressSize {
		return true
	}
	sum := header.PseudoHeaderChecksum(proto, src, dst, uint16(len(transport)))
	if checksum.Checksum(transport, sum) != 0xffff {
		errors.Increment()
		return false
	}
	return true
}

// ipv6Transport walks an IPv6 packet's extension headers, as the XDP
// program does, to its transport protocol and where that starts. ok is
// false where a header runs past the packet.
func ipv6Transport(ip []byte) (proto tcpip.TransportProtocolNumber, off int, fragment, ok bool) {
	next, off := header.IPv6(ip).NextHeader(), header.IPv6MinimumSize
	for {
		switch next {
		case uint8(header.IPv6HopByHopOptionsExtHdrIdentifier), uint8(header.IPv6RoutingExtHdrIdentifier), uint8(header.IPv6DestinationOptionsExtHdrIdentifier):
			if len(ip) < off+2 {
				return 0, 0, false, false
			}
			next, off = ip[off], off+(int(ip[off+1])+1)*8
		case uint8(header.IPv6FragmentExtHdrIdentifier):
			if len(ip) < off+header.IPv6FragmentExtHdrLength {
				return 0, 0, false, false
			}
			// Offset and the M flag: zero in an atomic fragment.
			if ip[off+2] != 0 || ip[off+3]&^0x6 != 0 {
				fragment = true
			}
			next, off = ip[off], off+header.IPv6FragmentExtHdrLength
		default:
			if len(ip) < off {
				return 0, 0, false, false
			}
			return tcpip.TransportProtocolNumber(next), off, fragment, true
		}
	}
}
