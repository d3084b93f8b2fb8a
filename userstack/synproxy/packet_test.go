package synproxy

import (
	"encoding/binary"
	"testing"

	"gvisor.dev/gvisor/pkg/tcpip/checksum"
	"gvisor.dev/gvisor/pkg/tcpip/header"
)

// TestTranslateIn: a received segment's acknowledgement and SACK block
// edges move by delta, the other options stay, and the checksum stays
// right.
func TestTranslateIn(t *testing.T) {
	id := testFlow(false)
	var delta uint32 = 0x80000010
	// NOP, NOP, timestamps; NOP, NOP, SACK with two blocks.
	opts := []byte{1, 1, 8, 10, 0, 0, 0, 7, 0, 0, 0, 9, 1, 1, 5, 18}
	edges := []uint32{0x10, 0x20, 0xfffffff0, 0x5}
	for _, e := range edges {
		opts = binary.BigEndian.AppendUint32(opts, e)
	}
	frame := fromClient(id, header.TCPFields{SeqNum: 77, AckNum: 0x1000, Flags: header.TCPFlagAck, WindowSize: 100}, 0, 0)
	// Rebuild with the options: data offset, lengths and sums.
	s, _ := parse(frame)
	frame = append(frame[:s.end:s.end], opts...)
	tcp := header.TCP(frame[s.l4:])
	tcp.SetDataOffset(uint8(header.TCPMinimumSize + len(opts)))
	ip := header.IPv4(frame[header.EthernetMinimumSize:])
	ip.SetTotalLength(uint16(len(frame) - header.EthernetMinimumSize))
	ip.SetChecksum(0)
	ip.SetChecksum(^ip.CalculateChecksum())
	frame = fromClientSums(id, frame)
	checkSums(t, "segment before", frame)

	s, _ = parse(frame)
	translateIn(s.tcp(), delta)
	checkSums(t, "segment translated", frame)
	tcp = s.tcp()
	if got := tcp.AckNumber(); got != 0x1000-delta {
		t.Errorf("ack: got %#x, want %#x", got, 0x1000-delta)
	}
	if got := tcp.SequenceNumber(); got != 77 {
		t.Errorf("seq: got %d, want 77 (untouched)", got)
	}
	parsed := header.ParseTCPOptions(tcp.Options())
	if parsed.TSVal != 7 || parsed.TSEcr != 9 {
		t.Errorf("timestamps: got %d %d, want 7 9 (untouched)", parsed.TSVal, parsed.TSEcr)
	}
	if len(parsed.SACKBlocks) != 2 {
		t.Fatalf("SACK blocks: got %d, want 2", len(parsed.SACKBlocks))
	}
	for i, b := range parsed.SACKBlocks {
		if uint32(b.Start) != edges[2*i]-delta || uint32(b.End) != edges[2*i+1]-delta {
			t.Errorf("SACK block %d: got %#x-%#x, want %#x-%#x", i, b.Start, b.End, edges[2*i]-delta, edges[2*i+1]-delta)
		}
	}

	// A segment without the ACK flag keeps its acknowledgement field.
	syn := fromClient(id, header.TCPFields{SeqNum: 1, AckNum: 5, Flags: header.TCPFlagSyn}, 1460, 0)
	s, _ = parse(syn)
	translateIn(s.tcp(), delta)
	if got := s.tcp().AckNumber(); got != 5 {
		t.Errorf("ack of a segment without ACK: got %d, want 5", got)
	}
}

// fromClientSums recomputes the TCP checksum of a client's frame.
func fromClientSums(id flowID, frame []byte) []byte {
	s, _ := parse(frame)
	t := s.tcp()
	t.SetChecksum(0)
	xsum := header.PseudoHeaderChecksum(header.TCPProtocolNumber, id.remoteAddr(), id.localAddr(), uint16(len(t)))
	t.SetChecksum(^checksum.Checksum(t, xsum))
	return frame
}

// TestSending: the netstack's segments of an open flow get the client's
// sequence numbers, with a whole checksum kept right and a partial one
// left alone; its SYN-ACK stays off the wire, and a reset before the
// handshake ends reaches the client at the number it expects and ends
// the flow.
func TestSending(t *testing.T) {
	n := &fakeNetstack{owners: map[uint16]Owner{7: Listener}}
	p := newProxy(t, n)
	p.setFlood(true)
	id := testFlow(false)
	const isn, iss = 1000, 5000
	cookie := cookieFor(t, p, id, isn)
	answer := make([]byte, 128)
	p.Received(fromClient(id, header.TCPFields{SeqNum: isn + 1, AckNum: cookie + 1, Flags: header.TCPFlagAck}, 0, 0), answer)
	n.take()

	// sent builds a segment from the server, as the netstack hands it
	// to the link endpoint, and shows it to Sending.
	sent := func(f header.TCPFields, partial bool) (ip, tcp []byte, send bool) {
		f.SrcPort, f.DstPort = id.localPort, id.remotePort
		b := make([]byte, maxFrame)
		l := build(b, clientMAC, serverMAC, false, id.localAddr(), id.remoteAddr(), f, 0)
		l4 := header.EthernetMinimumSize + header.IPv4MinimumSize
		ip, tcp = b[header.EthernetMinimumSize:l4], b[l4:l]
		if partial {
			header.TCP(tcp).SetChecksum(0x1234)
		}
		return ip, tcp, p.Sending(ip, tcp, partial)
	}
	if _, _, send := sent(header.TCPFields{SeqNum: iss, AckNum: isn + 1, Flags: header.TCPFlagSyn | header.TCPFlagAck}, false); send {
		t.Errorf("the netstack's SYN-ACK went to the wire")
	}
	p.wg.Wait()
	d := n.take()
	if len(d) != 1 {
		t.Fatalf("handed the netstack %d frames after its SYN-ACK, want its ACK", len(d))
	}
	s, _ := parse(d[0])
	if tcp := s.tcp(); tcp.Flags() != header.TCPFlagAck || tcp.SequenceNumber() != isn+1 || tcp.AckNumber() != iss+1 {
		t.Errorf("ACK to the netstack: %s seq %d ack %d, want ACK seq %d ack %d", tcp.Flags(), tcp.SequenceNumber(), tcp.AckNumber(), isn+1, iss+1)
	}
	if got := p.Counters().Opened; got != 1 {
		t.Errorf("connections opened: %d, want 1", got)
	}

	for _, partial := range []bool{false, true} {
		ip, tcp, send := sent(header.TCPFields{SeqNum: iss + 1, AckNum: isn + 1, Flags: header.TCPFlagAck | header.TCPFlagPsh}, partial)
		if !send {
			t.Fatalf("partial %v: a data segment was kept off the wire", partial)
		}
		if got := header.TCP(tcp).SequenceNumber(); got != cookie+1 {
			t.Errorf("partial %v: seq %#x, want the cookie's %#x", partial, got, cookie+1)
		}
		if got := header.TCP(tcp).AckNumber(); got != isn+1 {
			t.Errorf("partial %v: ack %d, want %d (untouched)", partial, got, isn+1)
		}
		if partial {
			if got := header.TCP(tcp).Checksum(); got != 0x1234 {
				t.Errorf("partial checksum changed to %#x", got)
			}
			continue
		}
		frame := append(append(make([]byte, header.EthernetMinimumSize), ip...), tcp...)
		binary.BigEndian.PutUint16(frame[12:], uint16(header.IPv4ProtocolNumber))
		checkSums(t, "translated segment", frame)
	}

	// A reset from the netstack before the flow is open.
	other := id
	other.remotePort++
	cookie = cookieFor(t, p, other, isn)
	p.Received(fromClient(other, header.TCPFields{SeqNum: isn + 1, AckNum: cookie + 1, Flags: header.TCPFlagAck}, 0, 0), answer)
	id = other
	if _, tcp, send := sent(header.TCPFields{AckNum: isn + 1, Flags: header.TCPFlagRst | header.TCPFlagAck}, false); !send || header.TCP(tcp).SequenceNumber() != cookie+1 {
		t.Errorf("the netstack's reset: sent %v with seq %#x, want sent with the cookie's %#x", send, header.TCP(tcp).SequenceNumber(), cookie+1)
	}
	if got := p.Counters().Flows; got != 1 {
		t.Errorf("flows after the reset: %d, want the first one only", got)
	}
}
