package link

import (
	"sync"
	"sync/atomic"

	"gvisor.dev/gvisor/pkg/tcpip/header"
)

// While the netstack advertises a zero receive window it accepts only
// empty segments whose sequence number is exactly the next it expects,
// and drops every other segment whole, acknowledgement included. RFC 793
// asks for "special allowance ... to accept valid ACKs" then, and Linux
// processes the ACK of any segment at or before the window's edge.
//
// That loses the peer's ACKs whenever the peer has a segment in flight
// that the netstack did not take (its snd_nxt is past our rcv_nxt): its
// retransmissions carry data and its pure ACKs the wrong sequence number.
// If the application stops reading until its writes complete (an echo
// does), nothing moves again: the send buffer never drains because the
// ACKs are dropped, and the window never opens because the application
// waits for the send buffer. The stall showed up about once in a hundred
// 64 MiB TLS echoes.
//
// So for a flow whose last segment advertised a zero window, every
// segment that carries an ACK is also delivered as a pure ACK at the
// sequence number the netstack expects, which it accepts. Its ACK, window
// and SACK blocks then reach the sender. While the window stays shut,
// these copies may count as duplicate ACKs and cost a retransmission.

// zeroWindows tracks the flows whose last segment sent advertised a zero
// window, with the acknowledgement number it carried (rcv_nxt).
type zeroWindows struct {
	mu    sync.Mutex
	flows map[flowKey]uint32
	// n is len(flows), read without the lock on every packet.
	n atomic.Int32
	// made counts the pure ACKs made.
	made atomic.Uint64
}

func newZeroWindows() *zeroWindows { return &zeroWindows{flows: map[flowKey]uint32{}} }

// sent notes the window an outgoing TCP packet advertises.
func (z *zeroWindows) sent(p *outPacket) {
	if !p.tso {
		return
	}
	tcp := header.TCP(p.pkt.TransportHeader().Slice())
	shut := tcp.WindowSize() == 0 && tcp.Flags()&(header.TCPFlagRst|header.TCPFlagFin) == 0
	if !shut && z.n.Load() == 0 {
		return
	}
	key := p.flow()
	z.mu.Lock()
	defer z.mu.Unlock()
	if shut {
		z.flows[key] = tcp.AckNumber()
	} else {
		delete(z.flows, key)
	}
	z.n.Store(int32(len(z.flows)))
}

// ackFor returns the pure ACK to deliver before frame, or nil when frame
// needs none.
func (z *zeroWindows) ackFor(frame []byte) []byte {
	if z.n.Load() == 0 {
		return nil
	}
	l3 := header.EthernetMinimumSize
	if len(frame) < l3 {
		return nil
	}
	var (
		l4, end int
		v6      bool
	)
	switch header.Ethernet(frame).Type() {
	case header.IPv4ProtocolNumber:
		ip := header.IPv4(frame[l3:])
		if !ip.IsValid(len(ip)) || ip.TransportProtocol() != header.TCPProtocolNumber || ip.More() || ip.FragmentOffset() != 0 {
			return nil
		}
		l4, end = l3+int(ip.HeaderLength()), l3+int(ip.TotalLength())
	case header.IPv6ProtocolNumber:
		ip := header.IPv6(frame[l3:])
		if !ip.IsValid(len(ip)) || ip.NextHeader() != uint8(header.TCPProtocolNumber) {
			return nil
		}
		l4, v6 = l3+header.IPv6MinimumSize, true
		end = l4 + int(ip.PayloadLength())
	default:
		return nil
	}
	src, dst := ipAddresses(frame[l3:l4], v6)
	tcp := header.TCP(frame[l4:])
	if len(tcp) < header.TCPMinimumSize || int(tcp.DataOffset()) < header.TCPMinimumSize || int(tcp.DataOffset()) > len(tcp) {
		return nil
	}
	flags := tcp.Flags()
	if flags&header.TCPFlagAck == 0 || flags&(header.TCPFlagSyn|header.TCPFlagRst) != 0 {
		return nil
	}
	// The flow as the outgoing packets name it: we are the destination.
	key := newFlowKey(dst, src, tcp[header.TCPDstPortOffset:][:2], tcp[header.TCPSrcPortOffset:][:2])
	z.mu.Lock()
	rcvNxt, shut := z.flows[key]
	z.mu.Unlock()
	hdrs := l4 + int(tcp.DataOffset())
	if !shut || hdrs > end || (end == hdrs && tcp.SequenceNumber() == rcvNxt) {
		return nil
	}
	ack := append([]byte(nil), frame[:hdrs]...)
	t := header.TCP(ack[l4:])
	t.SetSequenceNumber(rcvNxt)
	t.SetFlags(uint8(flags &^ (header.TCPFlagFin | header.TCPFlagPsh)))
	setIPLength(ack[l3:l4], v6, hdrs-l3)
	sumTCP(t, tcpPseudoHeader(src, dst, len(t)))
	z.made.Add(1)
	return ack
}
