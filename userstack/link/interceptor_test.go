package link

import (
	"context"
	"encoding/binary"
	"net/netip"
	"sync"
	"testing"
	"time"

	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/adapters/gonet"
	"gvisor.dev/gvisor/pkg/tcpip/header"
	"gvisor.dev/gvisor/pkg/tcpip/network/ipv4"

	"github.com/xdpstack/xdpstack/internal/testing/packet"
)

// fakeInterceptor drops the received TCP segments to port drop, answers
// those to port answer with a copy of themselves, and keeps the sent
// TCP packets off the wire while hold is set, else gives them the
// sequence number seq.
type fakeInterceptor struct {
	drop, answer uint16
	mu           sync.Mutex
	hold         bool
	seq          uint32
	sending      []header.TCPFlags
}

func (f *fakeInterceptor) Received(frame, answer []byte) (bool, int) {
	port := binary.BigEndian.Uint16(frame[header.EthernetMinimumSize+header.IPv4MinimumSize+2:])
	switch port {
	case f.drop:
		return true, 0
	case f.answer:
		return true, copy(answer, frame)
	}
	return false, 0
}

func (f *fakeInterceptor) Sending(ip, tcp []byte, _ bool) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.sending = append(f.sending, header.TCP(tcp).Flags())
	header.TCP(tcp).SetSequenceNumber(f.seq)
	return !f.hold
}

func tcpFrame(dst uint16) []byte {
	return packet.Ethernet(packet.EtherTypeIPv4).IPv4(packet.IPv4{Src: netip.MustParseAddr("10.0.0.2"), Dst: netip.MustParseAddr("10.0.0.1"), Protocol: packet.ProtoTCP}).TCP(40000, dst, 0).Payload(10).Bytes()
}

// TestInterceptorReceived: the interceptor's dropped frames never reach
// the netstack, its answers leave on the queue the frames came in on,
// and Inject hands the netstack a frame.
func TestInterceptorReceived(t *testing.T) {
	f := &fakeInterceptor{drop: 8, answer: 9}
	frames := [][]byte{tcpFrame(7), tcpFrame(8), tcpFrame(9), tcpFrame(9), tcpFrame(7)}
	q, peer := memPair()
	q.frames = frames
	ep := New([]Queue{q}, Options{Interceptor: f, TrustChecksums: true})
	var r sizeRecorder
	ep.Attach(&r)
	t.Cleanup(ep.Stop)
	waitFor := func(what string, cond func() bool) {
		t.Helper()
		for deadline := time.Now().Add(2 * time.Second); !cond(); time.Sleep(time.Millisecond) {
			if time.Now().After(deadline) {
				t.Fatalf("timed out waiting for %s", what)
			}
		}
	}
	delivered := func() int {
		r.mu.Lock()
		defer r.mu.Unlock()
		return len(r.sizes)
	}
	waitFor("the frames to port 7", func() bool { return delivered() == 2 })
	got := received(peer)
	if len(got) != 2 {
		t.Errorf("answers on the wire: %v, want the 2 frames to port 9", got)
	}
	ep.Inject(tcpFrame(10))
	if got := delivered(); got != 3 {
		t.Errorf("after Inject: %d packets delivered, want 3", got)
	}
}

// TestInterceptorSending: the interceptor sees each TCP packet the
// netstack sends before the wire does: one it holds never leaves, and
// one it changes leaves changed.
func TestInterceptorSending(t *testing.T) {
	qa, qb := memPair()
	f := &fakeInterceptor{hold: true, seq: 12345}
	a := newSide(t, qa, 1, Options{Interceptor: f})
	// The peer is only a queue: what reaches it stays there.
	b := &side{addr: tcpip.AddrFrom4([4]byte{10, 0, 0, 2}), addr6: tcpip.AddrFrom16([16]byte{0: 0xfd, 15: 2}), mac: "\x02\x00\x00\x00\x00\x02"}
	a.knows(t, b)
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	if _, err := gonet.DialContextTCP(ctx, a.stack, tcpip.FullAddress{Addr: b.addr, Port: 7}, ipv4.ProtocolNumber); err == nil {
		t.Fatalf("dial through an interceptor that holds every packet: connected")
	}
	f.mu.Lock()
	sending := f.sending
	f.hold = false
	f.mu.Unlock()
	if len(sending) == 0 || sending[0] != header.TCPFlagSyn {
		t.Errorf("interceptor saw %v, want the SYN first", sending)
	}
	if got := received(qb); len(got) != 0 {
		t.Errorf("held packets on the wire: %v", got)
	}
	ctx, cancel = context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	gonet.DialContextTCP(ctx, a.stack, tcpip.FullAddress{Addr: b.addr, Port: 7}, ipv4.ProtocolNumber)
	qb.mu.Lock()
	defer qb.mu.Unlock()
	if len(qb.frames) == 0 {
		t.Fatalf("nothing on the wire once the interceptor let packets go")
	}
	if seq := header.TCP(qb.frames[0][header.EthernetMinimumSize+header.IPv4MinimumSize:]).SequenceNumber(); seq != 12345 {
		t.Errorf("SYN on the wire has seq %d, want the interceptor's 12345", seq)
	}
}
