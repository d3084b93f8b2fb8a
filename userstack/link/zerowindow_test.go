package link

import (
	"testing"

	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/checksum"
	"gvisor.dev/gvisor/pkg/tcpip/header"
)

var (
	local  = tcpip.AddrFrom4([4]byte{10, 0, 0, 1})
	remote = tcpip.AddrFrom4([4]byte{10, 0, 0, 2})
)

// inFrame builds a frame the peer (remote:7) sends to local:port.
func inFrame(port uint16, seq uint32, flags header.TCPFlags, payload int) []byte {
	tcpLen := header.TCPMinimumSize + payload
	b := make([]byte, header.EthernetMinimumSize+header.IPv4MinimumSize+tcpLen)
	header.Ethernet(b).Encode(&header.EthernetFields{Type: header.IPv4ProtocolNumber})
	ip := header.IPv4(b[header.EthernetMinimumSize:])
	ip.Encode(&header.IPv4Fields{TotalLength: uint16(len(ip)), TTL: 64, Protocol: uint8(header.TCPProtocolNumber), SrcAddr: remote, DstAddr: local})
	ip.SetChecksum(^ip.CalculateChecksum())
	tcp := header.TCP(ip[header.IPv4MinimumSize:])
	tcp.Encode(&header.TCPFields{SrcPort: 7, DstPort: port, SeqNum: seq, AckNum: 5000, DataOffset: header.TCPMinimumSize, Flags: flags, WindowSize: 300})
	tcp.SetChecksum(^checksum.Checksum(tcp, header.PseudoHeaderChecksum(header.TCPProtocolNumber, remote, local, uint16(tcpLen))))
	return b
}

// advertise sends an ACK from local:port acknowledging rcvNxt with
// window.
func advertise(t *testing.T, ep *Endpoint, port uint16, rcvNxt uint32, window uint16) {
	pkt := tcpOut(port, header.TCPFlagAck|header.TCPFlagPsh, 10, nil)
	tcp := header.TCP(pkt.TransportHeader().Slice())
	tcp.SetAckNumber(rcvNxt)
	tcp.SetWindowSize(window)
	write(t, ep, pkt)
}

func TestZeroWindowACKs(t *testing.T) {
	qa, _ := memPair()
	ep := New([]Queue{qa}, Options{MTU: 1500})
	t.Cleanup(ep.Stop)

	if ack := ep.zero.ackFor(inFrame(1, 2000, header.TCPFlagAck, 100)); ack != nil {
		t.Fatal("a pure ACK made for a flow with its window open")
	}
	advertise(t, ep, 1, 1000, 0)
	for _, tc := range []struct {
		name  string
		frame []byte
		want  bool
	}{
		{"data past rcv_nxt", inFrame(1, 2000, header.TCPFlagAck|header.TCPFlagPsh, 100), true},
		{"data at rcv_nxt", inFrame(1, 1000, header.TCPFlagAck, 1448), true},
		{"pure ACK past rcv_nxt", inFrame(1, 2448, header.TCPFlagAck, 0), true},
		{"FIN", inFrame(1, 2448, header.TCPFlagAck|header.TCPFlagFin, 0), true},
		{"pure ACK at rcv_nxt", inFrame(1, 1000, header.TCPFlagAck, 0), false},
		{"RST", inFrame(1, 2000, header.TCPFlagAck|header.TCPFlagRst, 0), false},
		{"no ACK flag", inFrame(1, 2000, header.TCPFlagPsh, 10), false},
		{"another flow", inFrame(2, 2000, header.TCPFlagAck, 100), false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ack := ep.zero.ackFor(tc.frame)
			if (ack != nil) != tc.want {
				t.Fatalf("pure ACK made: %v, want %v", ack != nil, tc.want)
			}
			if ack == nil {
				return
			}
			ip := header.IPv4(ack[header.EthernetMinimumSize:])
			tcp := header.TCP(ip.Payload())
			in := header.TCP(header.IPv4(tc.frame[header.EthernetMinimumSize:]).Payload())
			switch {
			case !ip.IsChecksumValid():
				t.Error("IPv4 checksum invalid")
			case !tcp.IsChecksumValid(remote, local, checksum.Checksum(tcp.Payload(), 0), uint16(len(tcp.Payload()))):
				t.Error("TCP checksum invalid")
			case len(tcp.Payload()) != 0 || int(ip.TotalLength()) != len(ip):
				t.Errorf("ACK carries %d bytes of payload, IP length %d of %d", len(tcp.Payload()), ip.TotalLength(), len(ip))
			case tcp.SequenceNumber() != 1000 || tcp.Flags() != header.TCPFlagAck:
				t.Errorf("ACK has seq %d flags %s, want 1000 and A", tcp.SequenceNumber(), tcp.Flags())
			case tcp.AckNumber() != in.AckNumber() || tcp.WindowSize() != in.WindowSize():
				t.Errorf("ACK acknowledges %d window %d, want the segment's %d and %d", tcp.AckNumber(), tcp.WindowSize(), in.AckNumber(), in.WindowSize())
			}
		})
	}

	if made := ep.zero.made.Load(); made != 4 {
		t.Errorf("counted %d ACKs made, want 4", made)
	}
	advertise(t, ep, 1, 1100, 512)
	if ack := ep.zero.ackFor(inFrame(1, 2000, header.TCPFlagAck, 100)); ack != nil || ep.zero.n.Load() != 0 {
		t.Errorf("after the window opened: ACK made %v, %d flows tracked", ack != nil, ep.zero.n.Load())
	}
}

// TestZeroWindowStopsTrackingOnRST checks that a flow that ends with its
// window shut is forgotten.
func TestZeroWindowStopsTrackingOnRST(t *testing.T) {
	qa, _ := memPair()
	ep := New([]Queue{qa}, Options{MTU: 1500})
	t.Cleanup(ep.Stop)
	advertise(t, ep, 1, 1000, 0)
	rst := tcpOut(1, header.TCPFlagRst|header.TCPFlagAck, 0, nil)
	header.TCP(rst.TransportHeader().Slice()).SetWindowSize(0)
	write(t, ep, rst)
	if n := ep.zero.n.Load(); n != 0 {
		t.Errorf("%d flows tracked after RST, want 0", n)
	}
}
