// Package packet builds frames by hand for tests and generators: each
// header is written byte by byte, so a test can also build the broken
// ones that a library would refuse to serialize.
package packet

import (
	"encoding/binary"
	"net"
	"net/netip"
)

// EtherTypes and IP protocol numbers used by the builders.
const (
	EtherTypeIPv4   = 0x0800
	EtherTypeARP    = 0x0806
	EtherTypeIPv6   = 0x86DD
	EtherTypeVLAN   = 0x8100
	EtherTypeQinQ   = 0x88A8
	ProtoHopByHop   = 0
	ProtoICMP       = 1
	ProtoTCP        = 6
	ProtoUDP        = 17
	ProtoRouting    = 43
	ProtoFragment   = 44
	ProtoICMPv6     = 58
	ProtoDestOpts   = 60
	ProtoNoNextHdr  = 59
	ipv4HeaderLen   = 20
	ipv6HeaderLen   = 40
	ethernetHdrLen  = 14
	defaultHopLimit = 64
)

// Default addresses of hand-built frames.
var (
	SrcMAC = net.HardwareAddr{0x02, 0, 0, 0, 0, 1}
	DstMAC = net.HardwareAddr{0x02, 0, 0, 0, 0, 2}
)

// Frame is a frame under construction. Ends records the offset at which
// each header ends, so that tests can cut the frame at every boundary.
type Frame struct {
	b      []byte
	Ends   []int
	ipv4At int
	ipv6At int
	udpAt  int
}

// Ethernet starts a frame whose next header is etherType.
func Ethernet(etherType uint16) *Frame {
	return EthernetTo(DstMAC, SrcMAC, etherType)
}

// EthernetTo starts a frame with the given addresses.
func EthernetTo(dst, src net.HardwareAddr, etherType uint16) *Frame {
	f := &Frame{ipv4At: -1, ipv6At: -1, udpAt: -1}
	h := make([]byte, ethernetHdrLen)
	copy(h, dst)
	copy(h[6:], src)
	binary.BigEndian.PutUint16(h[12:], etherType)
	return f.header(h)
}

func (f *Frame) header(h []byte) *Frame {
	f.b = append(f.b, h...)
	f.Ends = append(f.Ends, len(f.b))
	return f
}

// VLAN adds an 802.1Q or 802.1ad tag with id vid.
func (f *Frame) VLAN(vid uint16, next uint16) *Frame {
	h := make([]byte, 4)
	binary.BigEndian.PutUint16(h, vid&0x0fff)
	binary.BigEndian.PutUint16(h[2:], next)
	return f.header(h)
}

// IPv4 describes an IPv4 header; zero fields get working defaults.
type IPv4 struct {
	Src, Dst netip.Addr
	Protocol uint8
	Options  []byte // padded by the caller to a multiple of 4
	// FragOffset is in 8-byte units; MoreFragments sets MF.
	FragOffset    uint16
	MoreFragments bool
	// IHL and Version override the computed values, to build bad headers.
	IHL, Version uint8
}

// IPv4 adds an IPv4 header. Its total length and checksum are filled in
// by Bytes.
func (f *Frame) IPv4(h IPv4) *Frame {
	hdrLen := ipv4HeaderLen + len(h.Options)
	b := make([]byte, hdrLen)
	ihl, version := uint8(hdrLen/4), uint8(4)
	if h.IHL != 0 {
		ihl = h.IHL
	}
	if h.Version != 0 {
		version = h.Version
	}
	b[0] = version<<4 | ihl&0x0f
	frag := h.FragOffset & 0x1fff
	if h.MoreFragments {
		frag |= 0x2000
	}
	binary.BigEndian.PutUint16(b[6:], frag)
	b[8] = defaultHopLimit
	b[9] = h.Protocol
	src, dst := h.Src.As4(), h.Dst.As4()
	copy(b[12:], src[:])
	copy(b[16:], dst[:])
	copy(b[20:], h.Options)
	f.ipv4At = len(f.b)
	return f.header(b)
}

// IPv6 adds an IPv6 header; its payload length is filled in by Bytes.
func (f *Frame) IPv6(src, dst netip.Addr, next uint8) *Frame {
	b := make([]byte, ipv6HeaderLen)
	b[0] = 6 << 4
	b[6] = next
	b[7] = defaultHopLimit
	s, d := src.As16(), dst.As16()
	copy(b[8:], s[:])
	copy(b[24:], d[:])
	f.ipv6At = len(f.b)
	return f.header(b)
}

// IPv6Options adds a hop-by-hop, routing or destination-options header
// of (units+1)*8 bytes.
func (f *Frame) IPv6Options(next uint8, units uint8) *Frame {
	b := make([]byte, (int(units)+1)*8)
	b[0] = next
	b[1] = units
	return f.header(b)
}

// IPv6Fragment adds a fragment header; offset is in 8-byte units.
func (f *Frame) IPv6Fragment(next uint8, offset uint16, more bool) *Frame {
	b := make([]byte, 8)
	b[0] = next
	off := offset << 3
	if more {
		off |= 1
	}
	binary.BigEndian.PutUint16(b[2:], off)
	binary.BigEndian.PutUint32(b[4:], 0x1234)
	return f.header(b)
}

// TCP adds a TCP header with dataOffset 32-bit words (5 when zero),
// options zeroed.
func (f *Frame) TCP(src, dst uint16, dataOffset uint8) *Frame {
	if dataOffset == 0 {
		dataOffset = 5
	}
	n := int(dataOffset) * 4
	if n < 20 {
		n = 20
	}
	b := make([]byte, n)
	binary.BigEndian.PutUint16(b, src)
	binary.BigEndian.PutUint16(b[2:], dst)
	b[12] = dataOffset << 4
	b[13] = 0x02 // SYN
	binary.BigEndian.PutUint16(b[14:], 65535)
	return f.header(b)
}

// UDP adds a UDP header; its length is filled in by Bytes. The checksum
// stays zero ("none", which IPv4 allows).
func (f *Frame) UDP(src, dst uint16) *Frame {
	b := make([]byte, 8)
	binary.BigEndian.PutUint16(b, src)
	binary.BigEndian.PutUint16(b[2:], dst)
	f.udpAt = len(f.b)
	return f.header(b)
}

// ICMPEcho adds an ICMP or ICMPv6 echo request header.
func (f *Frame) ICMPEcho(v6 bool) *Frame {
	b := make([]byte, 8)
	b[0] = 8
	if v6 {
		b[0] = 128
	}
	binary.BigEndian.PutUint16(b[4:], 1)
	binary.BigEndian.PutUint16(b[6:], 1)
	return f.header(b)
}

// Payload appends n bytes of a repeating pattern.
func (f *Frame) Payload(n int) *Frame {
	for i := range n {
		f.b = append(f.b, byte(i))
	}
	return f
}

// Bytes finishes the length fields and the IPv4 checksum and returns
// the frame.
func (f *Frame) Bytes() []byte {
	if f.ipv4At >= 0 {
		h := f.b[f.ipv4At:]
		binary.BigEndian.PutUint16(h[2:], uint16(len(h)))
		ihl := int(h[0]&0x0f) * 4
		if ihl >= ipv4HeaderLen && ihl <= len(h) {
			binary.BigEndian.PutUint16(h[10:], checksum(h[:ihl]))
		}
	}
	if f.ipv6At >= 0 {
		binary.BigEndian.PutUint16(f.b[f.ipv6At+4:], uint16(len(f.b)-f.ipv6At-ipv6HeaderLen))
	}
	if f.udpAt >= 0 {
		binary.BigEndian.PutUint16(f.b[f.udpAt+4:], uint16(len(f.b)-f.udpAt))
	}
	return f.b
}

// checksum is the Internet checksum (RFC 1071) of b.
func checksum(b []byte) uint16 {
	var sum uint32
	for i := 0; i+1 < len(b); i += 2 {
		sum += uint32(binary.BigEndian.Uint16(b[i:]))
	}
	if len(b)%2 == 1 {
		sum += uint32(b[len(b)-1]) << 8
	}
	for sum > 0xffff {
		sum = sum>>16 + sum&0xffff
	}
	return ^uint16(sum)
}
