package link

import (
	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/checksum"
	"gvisor.dev/gvisor/pkg/tcpip/header"
	"gvisor.dev/gvisor/pkg/tcpip/stack"

	"github.com/xdpstack/xdpstack/userstack/afxdp"
	"github.com/xdpstack/xdpstack/userstack/gsotx"
)

// The endpoint offers the netstack host GSO: TCP hands it segments of up
// to 64 KiB with only the pseudo-header in their checksum, and the
// endpoint cuts them into MSS-sized frames as a NIC's TSO would. The
// netstack then does its per-segment work (headers, routing, checksums,
// a call into the link layer) once per 64 KiB, and the frames of one
// segment go out with one kick.

// frame is one frame to send: a packet, or one MSS-sized piece of a
// TCP segment larger than the MTU.
type frame struct {
	pkt *outPacket
	// seg is which piece of pkt, from 0.
	seg int
}

// outPacket is a packet with what cutting it needs, worked out once.
type outPacket struct {
	pkt *stack.PacketBuffer
	// views are the packet's bytes, headers first.
	views [][]byte
	// tso says the packet is a TCP segment to cut into pieces of mss
	// bytes of payload, each with a partial checksum.
	tso bool
	// v6 says a tso packet is IPv6, not IPv4.
	v6                    bool
	mss                   int
	l3, l4, hdrs, payload int
	segs                  int
	// The header fields a tso packet's pieces differ in, read from pkt
	// once when segs > 1, so that write only stores into a frame:
	// reading the UMEM frame back right after writing it (the IPv4
	// header checksum) waited on its cold cache lines, 2.5% of the
	// daemon's CPU.
	ipID  uint16
	seq   uint32
	flags header.TCPFlags
	// ipSum is the sum of an IPv4 header's words but its total length,
	// ID and checksum.
	ipSum uint16
	// pseudo is the sum of the TCP pseudo-header but its length.
	pseudo uint16
	// held says the packet was held back (delayedACKs) and holds a
	// reference to pkt, dropped once it is sent.
	held bool
}

func newOutPacket(pkt *stack.PacketBuffer) *outPacket {
	p := &outPacket{pkt: pkt, views: pkt.AsSlices(), segs: 1}
	gso := pkt.GSOOptions
	if (gso.Type != stack.GSOTCPv4 && gso.Type != stack.GSOTCPv6) || !gso.NeedsCsum {
		return p
	}
	p.tso = true
	p.v6 = gso.Type == stack.GSOTCPv6
	p.l3 = len(pkt.LinkHeader().Slice())
	p.l4 = p.l3 + len(pkt.NetworkHeader().Slice())
	p.hdrs = p.l4 + len(pkt.TransportHeader().Slice())
	p.payload = pkt.Data().Size()
	p.mss = int(gso.MSS)
	if p.mss == 0 || p.mss > p.payload {
		p.mss = max(p.payload, 1)
	}
	p.segs = max(1, (p.payload+p.mss-1)/p.mss)
	ip := pkt.NetworkHeader().Slice()
	src, dst := ipAddresses(ip, p.v6)
	p.pseudo = tcpPseudoHeader(src, dst, 0)
	if p.segs == 1 {
		return p
	}
	tcp := header.TCP(pkt.TransportHeader().Slice())
	p.seq, p.flags = tcp.SequenceNumber(), tcp.Flags()
	if !p.v6 {
		var b [header.IPv4MaximumHeaderSize]byte
		h := header.IPv4(b[:copy(b[:], ip)])
		p.ipID = h.ID()
		h.SetTotalLength(0)
		h.SetID(0)
		h.SetChecksum(0)
		p.ipSum = checksum.Checksum(h[:h.HeaderLength()], 0)
	}
	return p
}

// write puts piece seg of p into buf and returns its length and the
// checksum it leaves to the kernel when offload is true; without
// offload it finishes the checksum itself. A piece longer than buf is
// not written: write returns its length (afxdp.Socket.Transmit).
func (p *outPacket) write(buf []byte, seg int, offload bool) (int, afxdp.Checksum) {
	if !p.tso {
		if size := p.pkt.Size(); size > len(buf) {
			return size, afxdp.Checksum{}
		}
		return copyFrom(buf, p.views, 0, len(buf)), afxdp.Checksum{}
	}
	off := seg * p.mss
	n := min(p.mss, p.payload-off)
	if p.hdrs+n > len(buf) {
		return p.hdrs + n, afxdp.Checksum{}
	}
	copyFrom(buf, p.views, 0, p.hdrs)
	copyFrom(buf[p.hdrs:], p.views, p.hdrs+off, n)
	end := p.hdrs + n
	if p.segs > 1 {
		// Each piece has its own length and, on IPv4, its own ID.
		size := end - p.l3
		if p.v6 {
			setIPLength(buf[p.l3:p.l4], true, size)
		} else {
			h := header.IPv4(buf[p.l3:p.l4])
			id := p.ipID + uint16(seg)
			h.SetID(id)
			h.SetTotalLength(uint16(size))
			h.SetChecksum(^checksum.Combine(p.ipSum, checksum.Combine(id, uint16(size))))
		}
		tcp := header.TCP(buf[p.l4:])
		tcp.SetSequenceNumber(p.seq + uint32(off))
		flags := p.flags
		if seg != p.segs-1 {
			// FIN and PSH belong to the last piece, CWR to the first.
			flags &^= header.TCPFlagFin | header.TCPFlagPsh
		}
		if seg != 0 {
			flags &^= header.TCPFlagCwr
		}
		tcp.SetFlags(uint8(flags))
	}
	tcp := header.TCP(buf[p.l4:end])
	pseudo := checksum.Combine(p.pseudo, uint16(len(tcp)))
	if offload {
		tcp.SetChecksum(pseudo)
		return end, afxdp.Checksum{Start: uint16(p.l4), Offset: header.TCPChecksumOffset}
	}
	sumTCP(tcp, pseudo)
	return end, afxdp.Checksum{}
}

// gso describes p, a tso packet, for a Segmenter.
func (p *outPacket) gso() gsotx.TCP {
	return gsotx.TCP{Frame: p.views, IPv6: p.v6, TCPOffset: p.l4, Headers: p.hdrs, MSS: p.mss}
}

// ipAddresses returns the source and destination of ip, an IPv4 header,
// or with v6 an IPv6 one.
func ipAddresses(ip []byte, v6 bool) (src, dst []byte) {
	if v6 {
		h := header.IPv6(ip)
		return h.SourceAddressSlice(), h.DestinationAddressSlice()
	}
	h := header.IPv4(ip)
	return h.SourceAddressSlice(), h.DestinationAddressSlice()
}

// setIPLength gives ip, an IPv4 header or with v6 an IPv6 one, the
// length of a packet of size bytes from the IP header on, and on IPv4
// the header checksum that goes with it.
func setIPLength(ip []byte, v6 bool, size int) {
	if v6 {
		header.IPv6(ip).SetPayloadLength(uint16(size - header.IPv6MinimumSize))
		return
	}
	h := header.IPv4(ip)
	h.SetTotalLength(uint16(size))
	h.SetChecksum(0)
	h.SetChecksum(^h.CalculateChecksum())
}

// tcpPseudoHeader is the checksum of the pseudo-header of a TCP segment
// of tcpLen bytes from src to dst.
func tcpPseudoHeader(src, dst []byte, tcpLen int) uint16 {
	return header.PseudoHeaderChecksum(header.TCPProtocolNumber, tcpip.AddrFromSlice(src), tcpip.AddrFromSlice(dst), uint16(tcpLen))
}

// sumTCP stores tcp's full checksum, pseudo being its pseudo-header's.
func sumTCP(tcp header.TCP, pseudo uint16) {
	tcp.SetChecksum(0)
	tcp.SetChecksum(^checksum.Checksum(tcp, pseudo))
}

// copyFrom copies n bytes of views, from offset off on, into dst and
// returns how many it copied.
func copyFrom(dst []byte, views [][]byte, off, n int) int {
	done := 0
	for _, v := range views {
		if done == n {
			break
		}
		if off >= len(v) {
			off -= len(v)
			continue
		}
		done += copy(dst[done:n], v[off:])
		off = 0
	}
	return done
}
