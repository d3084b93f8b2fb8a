package link

import (
	"fmt"
	"slices"
	"testing"
	"time"

	"gvisor.dev/gvisor/pkg/buffer"
	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/header"
	"gvisor.dev/gvisor/pkg/tcpip/stack"
)

// tcpOut builds a packet as the netstack hands it to the endpoint with
// host GSO: headers pushed, partial checksum, GSO options set.
func tcpOut(srcPort uint16, flags header.TCPFlags, payload int, options []byte) *stack.PacketBuffer {
	pkt := stack.NewPacketBuffer(stack.PacketBufferOptions{
		ReserveHeaderBytes: 128,
		Payload:            buffer.MakeWithData(make([]byte, payload)),
	})
	tcp := header.TCP(pkt.TransportHeader().Push(header.TCPMinimumSize + len(options)))
	tcp.Encode(&header.TCPFields{SrcPort: srcPort, DstPort: 7, SeqNum: 1, AckNum: 1, DataOffset: uint8(len(tcp)), Flags: flags, WindowSize: 1000})
	copy(tcp.Options(), options)
	ip := header.IPv4(pkt.NetworkHeader().Push(header.IPv4MinimumSize))
	ip.Encode(&header.IPv4Fields{
		TotalLength: uint16(header.IPv4MinimumSize + len(tcp) + payload), TTL: 64, Protocol: uint8(header.TCPProtocolNumber),
		SrcAddr: tcpip.AddrFrom4([4]byte{10, 0, 0, 1}), DstAddr: tcpip.AddrFrom4([4]byte{10, 0, 0, 2}),
	})
	ip.SetChecksum(^ip.CalculateChecksum())
	header.Ethernet(pkt.LinkHeader().Push(header.EthernetMinimumSize)).Encode(&header.EthernetFields{Type: header.IPv4ProtocolNumber})
	pkt.NetworkProtocolNumber = header.IPv4ProtocolNumber
	pkt.GSOOptions = stack.GSO{Type: stack.GSOTCPv4, NeedsCsum: true, MSS: 1460, L3HdrLen: header.IPv4MinimumSize}
	return pkt
}

// write hands pkts to ep as the netstack would, and drops its own
// references after, as the netstack does.
func write(t *testing.T, ep *Endpoint, pkts ...*stack.PacketBuffer) {
	t.Helper()
	var l stack.PacketBufferList
	for _, p := range pkts {
		l.PushBack(p)
	}
	if n, err := ep.WritePackets(l); n != len(pkts) || err != nil {
		t.Fatalf("WritePackets(%d packets): %d, %v", len(pkts), n, err)
	}
	for _, p := range pkts {
		p.DecRef()
	}
}

// received returns what the peer got, as (source port, flags, payload
// length) per frame, and forgets it.
func received(q *memQueue) []string {
	q.mu.Lock()
	defer q.mu.Unlock()
	var got []string
	for _, f := range q.frames {
		tcp := header.TCP(f[header.EthernetMinimumSize+header.IPv4MinimumSize:])
		got = append(got, tcpSummary(tcp.SourcePort(), tcp.Flags(), len(tcp)-int(tcp.DataOffset())))
	}
	q.frames = nil
	return got
}

func tcpSummary(port uint16, flags header.TCPFlags, payload int) string {
	return fmt.Sprintf("port %d %s %dB", port, flags, payload)
}

func TestDelayedACKs(t *testing.T) {
	ack, psh := header.TCPFlagAck, header.TCPFlagAck|header.TCPFlagPsh
	sack := []byte{header.TCPOptionNOP, header.TCPOptionNOP, header.TCPOptionSACK, 10, 0, 0, 0, 1, 0, 0, 0, 2}
	for _, tc := range []struct {
		name string
		// steps are written one batch at a time; want is what the peer
		// has received after each.
		steps [][]*stack.PacketBuffer
		want  [][]string
		// expire is what arrives after the delay.
		expire   []string
		replaced uint64
	}{{
		name:     "data of the flow replaces its ACK",
		steps:    [][]*stack.PacketBuffer{{tcpOut(1, ack, 0, nil)}, {tcpOut(1, psh, 5, nil)}},
		want:     [][]string{nil, {tcpSummary(1, psh, 5)}},
		replaced: 1,
	}, {
		name:   "an ACK alone goes after the delay",
		steps:  [][]*stack.PacketBuffer{{tcpOut(1, ack, 0, nil)}},
		want:   [][]string{nil},
		expire: []string{tcpSummary(1, ack, 0)},
	}, {
		name:  "an ACK with SACK blocks goes at once",
		steps: [][]*stack.PacketBuffer{{tcpOut(1, ack, 0, sack)}},
		want:  [][]string{{tcpSummary(1, ack, 0)}},
	}, {
		name:   "a second ACK of the flow sends the first",
		steps:  [][]*stack.PacketBuffer{{tcpOut(1, ack, 0, nil)}, {tcpOut(1, ack, 0, nil)}},
		want:   [][]string{nil, {tcpSummary(1, ack, 0)}},
		expire: []string{tcpSummary(1, ack, 0)},
	}, {
		name:  "another flow's packet takes the ACK along",
		steps: [][]*stack.PacketBuffer{{tcpOut(1, ack, 0, nil)}, {tcpOut(2, psh, 3, nil)}},
		want:  [][]string{nil, {tcpSummary(1, ack, 0), tcpSummary(2, psh, 3)}},
	}, {
		name:  "FIN is never held",
		steps: [][]*stack.PacketBuffer{{tcpOut(1, ack|header.TCPFlagFin, 0, nil)}},
		want:  [][]string{{tcpSummary(1, ack|header.TCPFlagFin, 0)}},
	}} {
		t.Run(tc.name, func(t *testing.T) {
			qa, qb := memPair()
			ep := New([]Queue{qa}, Options{MTU: 1500})
			t.Cleanup(ep.Stop)
			// An ACK held across batches must still be held at the
			// next, however late a loaded machine runs it: the timer
			// waits for good, and the test expires the ACKs itself.
			multi := len(tc.steps) > 1
			if multi {
				ep.acks.delay = time.Hour
			}
			var all []*stack.PacketBuffer
			for i, batch := range tc.steps {
				for _, p := range batch {
					all = append(all, p.IncRef())
				}
				write(t, ep, batch...)
				if got := received(qb); !slices.Equal(got, tc.want[i]) {
					t.Fatalf("after batch %d the peer has %q, want %q", i, got, tc.want[i])
				}
			}
			if multi {
				ep.acks.expire()
			}
			// Timers run late on a loaded machine: wait up to 2s for
			// the ACKs due, and 20 delays to see that none comes when
			// none is.
			wait := 20 * ackDelay
			if len(tc.expire) > 0 {
				wait = 2 * time.Second
			}
			var got []string
			for deadline := time.Now().Add(wait); len(got) < len(tc.expire) || len(tc.expire) == 0; time.Sleep(ackDelay) {
				got = append(got, received(qb)...)
				if time.Now().After(deadline) {
					break
				}
			}
			if !slices.Equal(got, tc.expire) {
				t.Errorf("after the delay the peer has %q, want %q", got, tc.expire)
			}
			if ep.acks.replaced != tc.replaced {
				t.Errorf("replaced %d ACKs, want %d", ep.acks.replaced, tc.replaced)
			}
			// Every reference the endpoint took is back: only the
			// test's own remains.
			for i, p := range all {
				if refs := p.ReadRefs(); refs != 1 {
					t.Errorf("packet %d: %d references, want 1", i, refs)
				}
				p.DecRef()
			}
		})
	}
}

// TestDelayedACKsStop checks that Stop drops a held ACK and holds none
// after.
func TestDelayedACKsStop(t *testing.T) {
	qa, qb := memPair()
	ep := New([]Queue{qa}, Options{MTU: 1500})
	held := tcpOut(1, header.TCPFlagAck, 0, nil)
	write(t, ep, held.IncRef())
	ep.Stop()
	if refs := held.ReadRefs(); refs != 1 {
		t.Errorf("held ACK after Stop: %d references, want 1", refs)
	}
	held.DecRef()
	write(t, ep, tcpOut(1, header.TCPFlagAck, 0, nil))
	if got := received(qb); len(got) != 1 {
		t.Errorf("after Stop an ACK went out as %q, want at once", got)
	}
}
