package synproxy

import (
	"encoding/binary"
	"io"
	"log/slog"
	"sync"
	"testing"

	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/checksum"
	"gvisor.dev/gvisor/pkg/tcpip/header"
	"gvisor.dev/gvisor/pkg/tcpip/stack"
)

var (
	serverMAC = []byte{2, 0, 0, 0, 0, 1}
	clientMAC = []byte{2, 0, 0, 0, 0, 2}
)

// fakeNetstack stands in for the netstack: listeners by local port,
// and the frames handed to it.
type fakeNetstack struct {
	mu        sync.Mutex
	owners    map[uint16]Owner
	delivered [][]byte
}

func newProxy(t testing.TB, n *fakeNetstack) *Proxy {
	t.Helper()
	p, err := New(Options{
		Lookup: func(_ tcpip.NetworkProtocolNumber, id stack.TransportEndpointID) Owner {
			n.mu.Lock()
			defer n.mu.Unlock()
			return n.owners[id.LocalPort]
		},
		Deliver: func(frame []byte) {
			n.mu.Lock()
			defer n.mu.Unlock()
			n.delivered = append(n.delivered, append([]byte(nil), frame...))
		},
		MTU: func() uint32 { return 1500 },
		Log: slog.New(slog.NewTextHandler(io.Discard, nil)),
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(p.Close)
	return p
}

// take returns the frames handed to the netstack and forgets them.
func (n *fakeNetstack) take() [][]byte {
	n.mu.Lock()
	defer n.mu.Unlock()
	d := n.delivered
	n.delivered = nil
	return d
}

// fromClient builds a frame from the client of id (port remotePort) to
// the server (localPort), with an MSS option unless mss is 0 and n
// bytes of data.
func fromClient(id flowID, f header.TCPFields, mss uint16, n int) []byte {
	f.SrcPort, f.DstPort = id.remotePort, id.localPort
	b := make([]byte, maxFrame+n)
	l := build(b, serverMAC, clientMAC, id.v6, id.remoteAddr(), id.localAddr(), f, mss)
	if n == 0 {
		return b[:l]
	}
	// Grow the segment by n bytes of data, then fix its lengths and sums.
	s, _ := parse(b[:l])
	frame := b[:l+n]
	l4, tcpLen := s.l4, l+n-s.l4
	if id.v6 {
		header.IPv6(frame[header.EthernetMinimumSize:]).SetPayloadLength(uint16(tcpLen))
	} else {
		ip := header.IPv4(frame[header.EthernetMinimumSize:])
		ip.SetTotalLength(uint16(l4 - header.EthernetMinimumSize + tcpLen))
		ip.SetChecksum(0)
		ip.SetChecksum(^ip.CalculateChecksum())
	}
	t := header.TCP(frame[l4:])
	t.SetChecksum(0)
	t.SetChecksum(^checksum.Checksum(t, header.PseudoHeaderChecksum(header.TCPProtocolNumber, id.remoteAddr(), id.localAddr(), uint16(tcpLen))))
	return frame
}

// checkSums fails the test unless frame's IPv4 header (if any) and TCP
// checksums are whole and right.
func checkSums(t *testing.T, what string, frame []byte) {
	t.Helper()
	s, ok := parse(frame)
	if !ok {
		t.Fatalf("%s: not a TCP segment", what)
	}
	if !s.flow().v6 && !header.IPv4(frame[header.EthernetMinimumSize:]).IsChecksumValid() {
		t.Errorf("%s: bad IPv4 header checksum", what)
	}
	// The segment was sent from remote to local, or the other way.
	src, dst := s.flow().remoteAddr(), s.flow().localAddr()
	xsum := header.PseudoHeaderChecksum(header.TCPProtocolNumber, src, dst, uint16(s.end-s.l4))
	if checksum.Checksum(s.tcp(), xsum) != 0xffff {
		t.Errorf("%s: bad TCP checksum", what)
	}
}

func TestReceived(t *testing.T) {
	for _, v6 := range []bool{false, true} {
		n := &fakeNetstack{owners: map[uint16]Owner{7: Listener, 9: Connection}}
		p := newProxy(t, n)
		id := testFlow(v6)
		closed := id
		closed.localPort = 8
		const isn = 1000
		syn := fromClient(id, header.TCPFields{SeqNum: isn, Flags: header.TCPFlagSyn, WindowSize: 64240}, 1460, 0)
		answer := make([]byte, 128)

		// Outside a flood, the netstack answers SYNs.
		if drop, l := p.Received(syn, answer); drop || l != 0 {
			t.Errorf("v6 %v: SYN without a flood: drop %v, answer %d bytes; want it passed", v6, drop, l)
		}
		p.setFlood(true)
		if drop, l := p.Received(fromClient(closed, header.TCPFields{SeqNum: isn, Flags: header.TCPFlagSyn}, 0, 0), answer); drop || l != 0 {
			t.Errorf("v6 %v: SYN to a port nobody listens on: drop %v, answer %d bytes; want it passed, for the netstack's reset", v6, drop, l)
		}
		drop, l := p.Received(syn, answer)
		if !drop || l == 0 {
			t.Fatalf("v6 %v: SYN during a flood: drop %v, answer %d bytes; want an answer", v6, drop, l)
		}
		synACK := answer[:l]
		checkSums(t, "SYN-ACK", synACK)
		if got, want := synACK[0:12], append(append([]byte(nil), clientMAC...), serverMAC...); string(got) != string(want) {
			t.Errorf("v6 %v: SYN-ACK MACs %x, want %x", v6, got, want)
		}
		s, _ := parse(synACK)
		// Parsed as received: local is the frame's destination.
		if s.flow().local != id.remote || s.flow().remote != id.local || s.flow().localPort != id.remotePort || s.flow().remotePort != id.localPort {
			t.Errorf("v6 %v: SYN-ACK goes %v, want the way back of %v", v6, s.flow(), id)
		}
		tcp := s.tcp()
		wantMSS := uint16(1460)
		if v6 {
			wantMSS = 1440
		}
		opts := header.ParseSynOptions(tcp.Options(), true)
		if tcp.Flags() != header.TCPFlagSyn|header.TCPFlagAck || tcp.AckNumber() != isn+1 || opts.MSS != wantMSS || len(tcp.Options()) != mssOptionSize || tcp.WindowSize() != 20*wantMSS {
			t.Errorf("v6 %v: SYN-ACK %s ack %d mss %d options %x window %d; want SYN|ACK ack %d, only the mss %d, window %d", v6, tcp.Flags(), tcp.AckNumber(), opts.MSS, tcp.Options(), tcp.WindowSize(), isn+1, wantMSS, 20*wantMSS)
		}
		cookie := tcp.SequenceNumber()
		if index, ok := p.cookies.check(id, isn, cookie, p.period.Load()); !ok || mssTables[b2i(v6)][index] > 1460 {
			t.Errorf("v6 %v: SYN-ACK sequence number %#x is no cookie for the SYN", v6, cookie)
		}

		// Resets for a listener are dropped, others passed.
		if drop, _ := p.Received(fromClient(id, header.TCPFields{SeqNum: isn + 1, Flags: header.TCPFlagRst}, 0, 0), answer); !drop {
			t.Errorf("v6 %v: reset for the listener passed", v6)
		}
		connected := id
		connected.localPort = 9
		if drop, _ := p.Received(fromClient(connected, header.TCPFields{SeqNum: isn + 1, Flags: header.TCPFlagRst}, 0, 0), answer); drop {
			t.Errorf("v6 %v: reset for a connection dropped", v6)
		}
		if got := p.opts.Stats.TCP.ResetsReceived.Value(); got != 1 {
			t.Errorf("v6 %v: resets counted: %d, want the 1 dropped", v6, got)
		}

		// An ACK with a cookie not made for it goes to the netstack.
		for _, bad := range []header.TCPFields{
			{SeqNum: isn + 1, AckNum: cookie, Flags: header.TCPFlagAck},
			{SeqNum: isn + 2, AckNum: cookie + 1, Flags: header.TCPFlagAck},
			{SeqNum: isn + 1, AckNum: cookie + 1, Flags: header.TCPFlagAck | header.TCPFlagFin},
		} {
			if drop, _ := p.Received(fromClient(id, bad, 0, 0), answer); drop {
				t.Errorf("v6 %v: ACK seq %d ack %#x %s taken as the cookie's", v6, bad.SeqNum, bad.AckNum, bad.Flags)
			}
		}
		if d := n.take(); len(d) != 0 {
			t.Fatalf("v6 %v: %d frames handed to the netstack for bad cookies", v6, len(d))
		}
		// The right one opens the flow: the netstack gets the client's SYN.
		ack := fromClient(id, header.TCPFields{SeqNum: isn + 1, AckNum: cookie + 1, Flags: header.TCPFlagAck, WindowSize: 502}, 0, 0)
		if drop, _ := p.Received(ack, answer); !drop {
			t.Fatalf("v6 %v: ACK with the cookie passed", v6)
		}
		d := n.take()
		if len(d) != 1 {
			t.Fatalf("v6 %v: %d frames handed to the netstack, want the SYN", v6, len(d))
		}
		checkSums(t, "SYN to the netstack", d[0])
		s, _ = parse(d[0])
		tcp = s.tcp()
		opts = header.ParseSynOptions(tcp.Options(), false)
		if s.flow() != id || tcp.Flags() != header.TCPFlagSyn || tcp.SequenceNumber() != isn || opts.MSS != 1460 && opts.MSS != 1440 || len(tcp.Options()) != mssOptionSize || tcp.WindowSize() != 502 {
			t.Errorf("v6 %v: SYN to the netstack: flow %v, %s seq %d mss %d options %x window %d; want flow %v, SYN seq %d, only an mss of 1460 or 1440, window 502", v6, s.flow(), tcp.Flags(), tcp.SequenceNumber(), opts.MSS, tcp.Options(), tcp.WindowSize(), id, isn)
		}
		if got := p.opts.Stats.TCP.ListenOverflowSynCookieSent.Value(); got != 1 {
			t.Errorf("v6 %v: cookies sent: %d, want 1", v6, got)
		}
		if got := p.opts.Stats.TCP.ListenOverflowSynCookieRcvd.Value(); got != 1 {
			t.Errorf("v6 %v: valid cookies: %d, want 1", v6, got)
		}
		if got := p.Counters().Flows; got != 1 {
			t.Errorf("v6 %v: flows: %d, want 1", v6, got)
		}

		// Other traffic passes.
		for _, frame := range [][]byte{
			fromClient(connected, header.TCPFields{SeqNum: 5, AckNum: 6, Flags: header.TCPFlagAck}, 0, 100),
			frame(t, v6, header.UDPProtocolNumber),
			{1, 2, 3},
		} {
			if drop, l := p.Received(frame, answer); drop || l != 0 {
				t.Errorf("v6 %v: %d-byte frame: drop %v, answer %d bytes; want it passed", v6, len(frame), drop, l)
			}
		}
	}
}

// frame is an Ethernet frame with an IP packet of protocol proto and no
// payload.
func frame(t *testing.T, v6 bool, proto tcpip.TransportProtocolNumber) []byte {
	t.Helper()
	id := testFlow(v6)
	b := make([]byte, header.EthernetMinimumSize+header.IPv6MinimumSize)
	if v6 {
		binary.BigEndian.PutUint16(b[12:], uint16(header.IPv6ProtocolNumber))
		header.IPv6(b[14:]).Encode(&header.IPv6Fields{TransportProtocol: proto, HopLimit: 64, SrcAddr: id.remoteAddr(), DstAddr: id.localAddr()})
		return b
	}
	binary.BigEndian.PutUint16(b[12:], uint16(header.IPv4ProtocolNumber))
	header.IPv4(b[14:]).Encode(&header.IPv4Fields{TotalLength: header.IPv4MinimumSize, TTL: 64, Protocol: uint8(proto), SrcAddr: id.remoteAddr(), DstAddr: id.localAddr()})
	return b[:header.EthernetMinimumSize+header.IPv4MinimumSize]
}

// cookieFor answers a SYN of the client of id with ISN isn and returns
// the cookie.
func cookieFor(t *testing.T, p *Proxy, id flowID, isn uint32) uint32 {
	t.Helper()
	answer := make([]byte, 128)
	drop, l := p.Received(fromClient(id, header.TCPFields{SeqNum: isn, Flags: header.TCPFlagSyn}, 0, 0), answer)
	if !drop || l == 0 {
		t.Fatalf("SYN not answered")
	}
	s, _ := parse(answer[:l])
	return s.tcp().SequenceNumber()
}

// TestBounds: the flows being opened, the segments held for them and
// the flows translated are bounded, and a flow the netstack never
// answers is given up.
func TestBounds(t *testing.T) {
	n := &fakeNetstack{owners: map[uint16]Owner{7: Listener}}
	p := newProxy(t, n)
	p.setFlood(true)
	id := testFlow(false)
	const isn = 1
	// The client of the i-th flow.
	client := func(i int) flowID {
		id := id
		id.remotePort = uint16(i)
		id.remote[2] = byte(i >> 16)
		return id
	}
	opening := func(id flowID) []byte {
		cookie := cookieFor(t, p, id, isn)
		return fromClient(id, header.TCPFields{SeqNum: isn + 1, AckNum: cookie + 1, Flags: header.TCPFlagAck}, 0, 0)
	}
	answer := make([]byte, 128)
	for i := range maxOpening + 2 {
		p.Received(opening(client(i)), answer)
	}
	if got := p.Counters(); got.Flows != maxOpening || got.Drops[dropTableFull] != 2 {
		t.Errorf("after %d valid cookies with the netstack silent: %d flows, %d dropped for a full table; want %d and 2", maxOpening+2, got.Flows, got.Drops[dropTableFull], maxOpening)
	}
	data := fromClient(client(0), header.TCPFields{SeqNum: isn + 1, Flags: header.TCPFlagAck}, 0, 1000)
	for range maxHeld + 3 {
		if drop, _ := p.Received(data, answer); !drop {
			t.Fatalf("a segment of a flow being opened passed")
		}
	}
	if got := p.Counters().Drops[dropHoldFull]; got != 3 {
		t.Errorf("%d segments for a flow being opened: %d dropped, want 3", maxHeld+3, got)
	}
	n.take()
	for try := range handshakeTries {
		p.sweep()
		if d := n.take(); len(d) != maxOpening {
			t.Errorf("sweep %d: handed %d SYNs to the netstack again, want %d", try+1, len(d), maxOpening)
		}
	}
	p.sweep()
	if got := p.Counters(); got.Flows != 0 || got.Drops[dropHandshakeTimeout] != maxOpening || p.flows.opening != 0 || p.flows.heldBytes != 0 {
		t.Errorf("after %d sweeps: %d flows (%d opening, %d bytes held), %d given up; want none and %d", handshakeTries+1, got.Flows, p.flows.opening, p.flows.heldBytes, got.Drops[dropHandshakeTimeout], maxOpening)
	}

	// Open flows: the netstack answers each SYN at once.
	p.opts.Deliver = func(frame []byte) {
		s, _ := parse(frame)
		if s.tcp().Flags() == header.TCPFlagSyn {
			synACK := make([]byte, maxFrame)
			l := build(synACK, clientMAC, serverMAC, false, s.flow().localAddr(), s.flow().remoteAddr(), header.TCPFields{SrcPort: s.flow().localPort, DstPort: s.flow().remotePort, SeqNum: 5000, AckNum: isn + 1, Flags: header.TCPFlagSyn | header.TCPFlagAck}, 1460)
			l4 := header.EthernetMinimumSize + header.IPv4MinimumSize
			if p.Sending(synACK[header.EthernetMinimumSize:l4], synACK[l4:l], false) {
				t.Errorf("the netstack's SYN-ACK went to the wire")
			}
		}
	}
	for i := range maxFlows + 1 {
		p.Received(opening(client(i)), answer)
		if i%(maxOpening/2) == 0 {
			p.wg.Wait() // the completions: fewer than maxOpening open at once
		}
	}
	p.wg.Wait()
	if got := p.Counters(); got.Flows != maxFlows || got.Opened != maxFlows || got.Drops[dropTableFull] != 2+1 {
		t.Errorf("after %d flows opened: %d in the table, %d opened, %d dropped for a full table; want %d, %d, 3", maxFlows+1, got.Flows, got.Opened, got.Drops[dropTableFull], maxFlows, maxFlows)
	}
}
