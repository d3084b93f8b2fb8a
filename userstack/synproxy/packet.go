package synproxy

import (
	"encoding/binary"

	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/checksum"
	"gvisor.dev/gvisor/pkg/tcpip/header"
	"gvisor.dev/gvisor/pkg/tcpip/stack"
)

// flowID names a TCP flow from the netstack's side: local is the
// userstack's address and port. An IPv4 address takes the first 4
// bytes.
type flowID struct {
	local, remote         [16]byte
	localPort, remotePort uint16
	v6                    bool
}

// endpoint is id as the netstack's demultiplexer has it.
func (id flowID) endpoint() (tcpip.NetworkProtocolNumber, stack.TransportEndpointID) {
	e := stack.TransportEndpointID{LocalPort: id.localPort, RemotePort: id.remotePort, LocalAddress: id.localAddr(), RemoteAddress: id.remoteAddr()}
	if id.v6 {
		return header.IPv6ProtocolNumber, e
	}
	return header.IPv4ProtocolNumber, e
}

func (id flowID) localAddr() tcpip.Address  { return address(id.local, id.v6) }
func (id flowID) remoteAddr() tcpip.Address { return address(id.remote, id.v6) }

func address(a [16]byte, v6 bool) tcpip.Address {
	if v6 {
		return tcpip.AddrFrom16(a)
	}
	return tcpip.AddrFrom4([4]byte(a[:4]))
}

// segment is a received TCP segment: a frame of Ethernet, IPv4 or IPv6
// without extension headers, and TCP, whose lengths add up. Fragments
// are none: they carry no whole header to judge.
type segment struct {
	frame   []byte
	l4, end int
	v6      bool
}

// parse finds the TCP segment in a received frame; ok is false for
// anything else, which the proxy leaves alone.
func parse(frame []byte) (s segment, ok bool) {
	const l3 = header.EthernetMinimumSize
	if len(frame) < l3 {
		return s, false
	}
	ip := frame[l3:]
	switch header.Ethernet(frame).Type() {
	case header.IPv4ProtocolNumber:
		h := header.IPv4(ip)
		if !h.IsValid(len(ip)) || h.Protocol() != uint8(header.TCPProtocolNumber) || h.More() || h.FragmentOffset() != 0 {
			return s, false
		}
		s.l4, s.end = l3+int(h.HeaderLength()), l3+int(h.TotalLength())
	case header.IPv6ProtocolNumber:
		h := header.IPv6(ip)
		if !h.IsValid(len(ip)) || h.NextHeader() != uint8(header.TCPProtocolNumber) {
			return s, false
		}
		s.l4 = l3 + header.IPv6MinimumSize
		s.end = s.l4 + int(h.PayloadLength())
		s.v6 = true
	default:
		return s, false
	}
	t := header.TCP(frame[s.l4:s.end])
	if len(t) < header.TCPMinimumSize || int(t.DataOffset()) < header.TCPMinimumSize || int(t.DataOffset()) > len(t) {
		return s, false
	}
	s.frame = frame
	return s, true
}

// flow names the segment's flow: it was received, so the destination is
// local. Read only when needed: most segments need no name.
func (s *segment) flow() flowID {
	id := flowID{v6: s.v6}
	ip := s.frame[header.EthernetMinimumSize:s.l4]
	if s.v6 {
		h := header.IPv6(ip)
		copy(id.local[:], h.DestinationAddressSlice())
		copy(id.remote[:], h.SourceAddressSlice())
	} else {
		h := header.IPv4(ip)
		copy(id.local[:], h.DestinationAddressSlice())
		copy(id.remote[:], h.SourceAddressSlice())
	}
	t := s.tcp()
	id.localPort, id.remotePort = t.DestinationPort(), t.SourcePort()
	return id
}

func (s *segment) tcp() header.TCP { return header.TCP(s.frame[s.l4:s.end]) }

// payload is how many bytes of data the segment carries.
func (s *segment) payload() int { return s.end - s.l4 - int(s.tcp().DataOffset()) }

// mss is the MSS option of a SYN, or the default of RFC 9293 without
// one.
func (s *segment) mss() uint16 {
	if mss := header.ParseSynOptions(s.tcp().Options(), false).MSS; mss != 0 {
		return mss
	}
	if s.v6 {
		return header.IPv6MinimumMTU - header.IPv6MinimumSize - header.TCPMinimumSize
	}
	return 536
}

// sentID names the flow of a TCP packet the netstack sends, from its IP
// header; ok is false for a header the proxy cannot read.
func sentID(ip, tcp []byte) (id flowID, ok bool) {
	if len(tcp) < header.TCPMinimumSize || len(ip) == 0 {
		return id, false
	}
	switch header.IPVersion(ip) {
	case header.IPv4Version:
		if len(ip) < header.IPv4MinimumSize {
			return id, false
		}
		h := header.IPv4(ip)
		copy(id.local[:], h.SourceAddressSlice())
		copy(id.remote[:], h.DestinationAddressSlice())
	case header.IPv6Version:
		if len(ip) < header.IPv6MinimumSize {
			return id, false
		}
		h := header.IPv6(ip)
		copy(id.local[:], h.SourceAddressSlice())
		copy(id.remote[:], h.DestinationAddressSlice())
		id.v6 = true
	default:
		return id, false
	}
	t := header.TCP(tcp)
	id.localPort, id.remotePort = t.SourcePort(), t.DestinationPort()
	return id, true
}

// The frames the proxy makes: a SYN-ACK to the client, and the SYN and
// the ACK it hands the netstack in the client's name. They carry at most
// an MSS option, so that they fit maxFrame bytes.
const (
	mssOptionSize = 4
	maxFrame      = header.EthernetMinimumSize + header.IPv6MinimumSize + header.TCPMinimumSize + mssOptionSize
)

// build writes into b the frame of a TCP segment from src to dst, with
// an MSS option unless mss is 0, and returns its length. The segment's
// ports, numbers, flags and window are in f.
func build(b []byte, dstMAC, srcMAC []byte, v6 bool, src, dst tcpip.Address, f header.TCPFields, mss uint16) int {
	const l3 = header.EthernetMinimumSize
	copy(b[0:6], dstMAC)
	copy(b[6:12], srcMAC)
	tcpLen := header.TCPMinimumSize
	if mss != 0 {
		tcpLen += mssOptionSize
	}
	var l4 int
	if v6 {
		binary.BigEndian.PutUint16(b[12:], uint16(header.IPv6ProtocolNumber))
		l4 = l3 + header.IPv6MinimumSize
		header.IPv6(b[l3:]).Encode(&header.IPv6Fields{PayloadLength: uint16(tcpLen), TransportProtocol: header.TCPProtocolNumber, HopLimit: ttl, SrcAddr: src, DstAddr: dst})
	} else {
		binary.BigEndian.PutUint16(b[12:], uint16(header.IPv4ProtocolNumber))
		l4 = l3 + header.IPv4MinimumSize
		ip := header.IPv4(b[l3:])
		ip.Encode(&header.IPv4Fields{TotalLength: uint16(header.IPv4MinimumSize + tcpLen), Flags: header.IPv4FlagDontFragment, TTL: ttl, Protocol: uint8(header.TCPProtocolNumber), SrcAddr: src, DstAddr: dst})
		ip.SetChecksum(^ip.CalculateChecksum())
	}
	t := header.TCP(b[l4 : l4+tcpLen])
	f.DataOffset = uint8(tcpLen)
	f.Checksum = 0
	t.Encode(&f)
	if mss != 0 {
		opt := t[header.TCPMinimumSize:]
		opt[0], opt[1] = header.TCPOptionMSS, mssOptionSize
		binary.BigEndian.PutUint16(opt[2:], mss)
	}
	xsum := header.PseudoHeaderChecksum(header.TCPProtocolNumber, src, dst, uint16(tcpLen))
	t.SetChecksum(^checksum.Checksum(t, xsum))
	return l4 + tcpLen
}

// ttl is what the netstack sends with by default.
const ttl = 64

// setUint32 stores v at off in a TCP header and keeps its checksum
// right (RFC 1624) where it was a whole one.
func setUint32(t header.TCP, off int, v uint32, fullChecksum bool) {
	old := binary.BigEndian.Uint32(t[off:])
	binary.BigEndian.PutUint32(t[off:], v)
	if fullChecksum {
		sum := checksum.Combine(^t.Checksum(), ^uint16(old>>16))
		sum = checksum.Combine(sum, ^uint16(old))
		sum = checksum.Combine(sum, uint16(v>>16))
		sum = checksum.Combine(sum, uint16(v))
		t.SetChecksum(^sum)
	}
}

// translateIn moves a received segment's acknowledgement and SACK
// blocks, which are in the client's view of the proxy's sequence
// numbers, to the netstack's: delta less. A received checksum is a
// whole one, or one the endpoint trusts and nobody checks.
func translateIn(t header.TCP, delta uint32) {
	if t.Flags()&header.TCPFlagAck != 0 {
		setUint32(t, header.TCPAckNumOffset, t.AckNumber()-delta, true)
	}
	opts := t[header.TCPMinimumSize:t.DataOffset()]
	for i := 0; i < len(opts); {
		switch opts[i] {
		case header.TCPOptionEOL:
			return
		case header.TCPOptionNOP:
			i++
			continue
		}
		if i+1 >= len(opts) || opts[i+1] < 2 || i+int(opts[i+1]) > len(opts) {
			return
		}
		size := int(opts[i+1])
		if opts[i] == header.TCPOptionSACK {
			for edge := i + 2; edge+4 <= i+size; edge += 4 {
				off := header.TCPMinimumSize + edge
				setUint32(t, off, binary.BigEndian.Uint32(t[off:])-delta, true)
			}
		}
		i += size
	}
}
