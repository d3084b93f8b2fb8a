package link

import (
	"testing"

	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/checksum"
	"gvisor.dev/gvisor/pkg/tcpip/header"
)

var (
	local6  = tcpip.AddrFrom16([16]byte{0: 0xfd, 15: 1})
	remote6 = tcpip.AddrFrom16([16]byte{0: 0xfd, 15: 2})
)

// ipFrame builds a frame from the peer carrying a TCP or UDP header
// and 100 bytes of payload, its checksum right, over IPv6 when v6,
// behind the IPv6 extension headers in ext (each with its next-header
// byte left for ipFrame to fill).
func ipFrame(v6 bool, proto tcpip.TransportProtocolNumber, ext ...extHdr) []byte {
	var transport []byte
	csumAt := 16
	if proto == header.UDPProtocolNumber {
		transport = make([]byte, header.UDPMinimumSize+100)
		header.UDP(transport).Encode(&header.UDPFields{SrcPort: 7, DstPort: 9, Length: uint16(len(transport))})
		csumAt = 6
	} else {
		transport = make([]byte, header.TCPMinimumSize+100)
		header.TCP(transport).Encode(&header.TCPFields{SrcPort: 7, DstPort: 9, DataOffset: header.TCPMinimumSize, Flags: header.TCPFlagAck})
	}
	for i := range 100 {
		transport[len(transport)-100+i] = byte(i)
	}
	src, dst, netProto := remote, local, header.IPv4ProtocolNumber
	if v6 {
		src, dst, netProto = remote6, local6, header.IPv6ProtocolNumber
	}
	sum := ^checksum.Checksum(transport, header.PseudoHeaderChecksum(proto, src, dst, uint16(len(transport))))
	transport[csumAt], transport[csumAt+1] = byte(sum>>8), byte(sum)

	eth := make([]byte, header.EthernetMinimumSize)
	header.Ethernet(eth).Encode(&header.EthernetFields{Type: netProto})
	if !v6 {
		ip := make([]byte, header.IPv4MinimumSize)
		header.IPv4(ip).Encode(&header.IPv4Fields{TotalLength: uint16(len(ip) + len(transport)), TTL: 64, Protocol: uint8(proto), SrcAddr: src, DstAddr: dst})
		header.IPv4(ip).SetChecksum(^header.IPv4(ip).CalculateChecksum())
		return append(append(eth, ip...), transport...)
	}
	// Chain the extension headers: each names the one after it.
	var chain []byte
	next := uint8(proto)
	for i := len(ext) - 1; i >= 0; i-- {
		h := append([]byte{next}, ext[i].body...)
		chain, next = append(h, chain...), ext[i].id
	}
	ip := make([]byte, header.IPv6MinimumSize)
	header.IPv6(ip).Encode(&header.IPv6Fields{PayloadLength: uint16(len(chain) + len(transport)), HopLimit: 64, SrcAddr: src, DstAddr: dst})
	ip[6] = next
	return append(append(append(eth, ip...), chain...), transport...)
}

// extHdr is an IPv6 extension header: its identifier, and its bytes
// after the next-header byte.
type extHdr struct {
	id   uint8
	body []byte
}

var (
	// hopByHop holds one PadN option, to fill its 8 bytes.
	hopByHop = extHdr{uint8(header.IPv6HopByHopOptionsExtHdrIdentifier), []byte{0, 1, 4, 0, 0, 0, 0}}
	// atomicFragment is a fragment header of a datagram never cut.
	atomicFragment = extHdr{uint8(header.IPv6FragmentExtHdrIdentifier), []byte{0, 0, 0, 0, 0, 0, 1}}
	// secondFragment is the header of a fragment at offset 8.
	secondFragment = extHdr{uint8(header.IPv6FragmentExtHdrIdentifier), []byte{0, 0, 8, 0, 0, 0, 1}}
)

func TestChecksumsValid(t *testing.T) {
	type counts struct{ tcp, udp, malformed uint64 }
	ipAt := header.EthernetMinimumSize
	tcpCsum4 := ipAt + header.IPv4MinimumSize + 16
	// flip changes one byte at off of frame.
	flip := func(frame []byte, off int) []byte { frame[off] ^= 0x40; return frame }
	payloadEnd := func(frame []byte) int { return len(frame) - 1 }
	for _, tc := range []struct {
		name  string
		frame []byte
		valid bool
		count counts
	}{
		{"tcp4", ipFrame(false, header.TCPProtocolNumber), true, counts{}},
		{"tcp4 payload changed", func() []byte { f := ipFrame(false, header.TCPProtocolNumber); return flip(f, payloadEnd(f)) }(), false, counts{tcp: 1}},
		{"tcp4 checksum changed", flip(ipFrame(false, header.TCPProtocolNumber), tcpCsum4), false, counts{tcp: 1}},
		{"ipv4 header checksum wrong", flip(ipFrame(false, header.TCPProtocolNumber), ipAt+10), false, counts{malformed: 1}},
		{"udp4", ipFrame(false, header.UDPProtocolNumber), true, counts{}},
		{"udp4 payload changed", func() []byte { f := ipFrame(false, header.UDPProtocolNumber); return flip(f, payloadEnd(f)) }(), false, counts{udp: 1}},
		{"udp4 without checksum", func() []byte {
			f := ipFrame(false, header.UDPProtocolNumber)
			header.UDP(f[ipAt+header.IPv4MinimumSize:]).SetChecksum(0)
			return flip(f, payloadEnd(f))
		}(), true, counts{}},
		{"tcp6", ipFrame(true, header.TCPProtocolNumber), true, counts{}},
		{"tcp6 payload changed", func() []byte { f := ipFrame(true, header.TCPProtocolNumber); return flip(f, payloadEnd(f)) }(), false, counts{tcp: 1}},
		{"ipv6 source changed", flip(ipFrame(true, header.TCPProtocolNumber), ipAt+8), false, counts{tcp: 1}},
		{"udp6", ipFrame(true, header.UDPProtocolNumber), true, counts{}},
		{"udp6 without checksum", func() []byte {
			f := ipFrame(true, header.UDPProtocolNumber)
			header.UDP(f[ipAt+header.IPv6MinimumSize:]).SetChecksum(0)
			return f
		}(), false, counts{udp: 1}},
		{"tcp6 behind hop-by-hop and atomic fragment", ipFrame(true, header.TCPProtocolNumber, hopByHop, atomicFragment), true, counts{}},
		{"tcp6 behind hop-by-hop, payload changed", func() []byte {
			f := ipFrame(true, header.TCPProtocolNumber, hopByHop)
			return flip(f, payloadEnd(f))
		}(), false, counts{tcp: 1}},
		{"ipv6 fragment", ipFrame(true, header.TCPProtocolNumber, secondFragment), false, counts{malformed: 1}},
		{"ipv4 fragment", func() []byte {
			f := ipFrame(false, header.UDPProtocolNumber)
			ip := header.IPv4(f[ipAt:])
			ip.SetFlagsFragmentOffset(header.IPv4FlagMoreFragments, 0)
			ip.SetChecksum(0)
			ip.SetChecksum(^ip.CalculateChecksum())
			return f
		}(), false, counts{malformed: 1}},
		{"icmp4, which the endpoint cannot vouch for", func() []byte {
			f := ipFrame(false, header.TCPProtocolNumber)
			ip := header.IPv4(f[ipAt:])
			ip[9] = uint8(header.ICMPv4ProtocolNumber)
			ip.SetChecksum(0)
			ip.SetChecksum(^ip.CalculateChecksum())
			return f
		}(), false, counts{malformed: 1}},
		{"ipv4 longer than the frame: the netstack's to drop", ipFrame(false, header.TCPProtocolNumber)[:60], true, counts{}},
		{"ipv6 header cut short", ipFrame(true, header.TCPProtocolNumber)[:header.EthernetMinimumSize+30], true, counts{}},
		{"tcp6 header cut short", func() []byte {
			f := ipFrame(true, header.TCPProtocolNumber)[:ipAt+header.IPv6MinimumSize+10]
			header.IPv6(f[ipAt:]).SetPayloadLength(10)
			return f
		}(), true, counts{}},
		{"not ip", func() []byte {
			f := make([]byte, 60)
			header.Ethernet(f).Encode(&header.EthernetFields{Type: header.ARPProtocolNumber})
			return f
		}(), true, counts{}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			stats := tcpip.Stats{}.FillIn()
			if got := checksumsValid(tc.frame, &stats); got != tc.valid {
				t.Errorf("checksumsValid = %v, want %v", got, tc.valid)
			}
			got := counts{stats.TCP.ChecksumErrors.Value(), stats.UDP.ChecksumErrors.Value(), stats.IP.MalformedPacketsReceived.Value()}
			if got != tc.count {
				t.Errorf("counted %+v, want %+v", got, tc.count)
			}
		})
	}
}
