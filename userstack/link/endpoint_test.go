package link

import (
	"context"
	"net"
	"sync"
	"testing"
	"time"

	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/adapters/gonet"
	"gvisor.dev/gvisor/pkg/tcpip/network/arp"
	"gvisor.dev/gvisor/pkg/tcpip/network/ipv4"
	"gvisor.dev/gvisor/pkg/tcpip/network/ipv6"
	"gvisor.dev/gvisor/pkg/tcpip/stack"
	"gvisor.dev/gvisor/pkg/tcpip/transport/tcp"

	"github.com/xdpstack/xdpstack/internal/testing/testutil"
	"github.com/xdpstack/xdpstack/userstack/afxdp"
)

// memQueue is a Queue over memory: what one side transmits, the peer's
// queue receives.
type memQueue struct {
	mu      sync.Mutex
	cond    *sync.Cond
	frames  [][]byte
	stopped bool
	peer    *memQueue
	sent    int
	// largest is the longest frame sent.
	largest int
	// flushErr is what Flush returns.
	flushErr error
}

func memPair() (*memQueue, *memQueue) {
	a, b := &memQueue{}, &memQueue{}
	a.cond, b.cond = sync.NewCond(&a.mu), sync.NewCond(&b.mu)
	a.peer, b.peer = b, a
	return a, b
}

func (q *memQueue) Receive(max int, deliver func([]byte)) int {
	q.mu.Lock()
	n := min(max, len(q.frames))
	batch := q.frames[:n]
	q.frames = q.frames[n:]
	q.mu.Unlock()
	for _, f := range batch {
		deliver(f)
	}
	return n
}

func (q *memQueue) Wait() bool {
	q.mu.Lock()
	defer q.mu.Unlock()
	for len(q.frames) == 0 && !q.stopped {
		q.cond.Wait()
	}
	return !q.stopped
}

func (q *memQueue) Stop() {
	q.mu.Lock()
	q.stopped = true
	q.mu.Unlock()
	q.cond.Broadcast()
}

func (q *memQueue) OffloadsChecksum() bool { return false }

// Flush has nothing to wait for: Transmit delivers at once.
func (q *memQueue) Flush() error { return q.flushErr }

func (q *memQueue) Transmit(n int, write func(int, []byte) (int, afxdp.Checksum)) (int, error) {
	frames := make([][]byte, n)
	for i := range n {
		f := make([]byte, 4096)
		l, _ := write(i, f)
		frames[i] = f[:l]
	}
	q.mu.Lock()
	for _, f := range frames {
		q.largest = max(q.largest, len(f))
	}
	q.sent += n
	q.mu.Unlock()
	q.peer.mu.Lock()
	q.peer.frames = append(q.peer.frames, frames...)
	q.peer.mu.Unlock()
	q.peer.cond.Broadcast()
	return n, nil
}

type side struct {
	stack       *stack.Stack
	ep          *Endpoint
	addr, addr6 tcpip.Address
	mac         tcpip.LinkAddress
}

func newSide(t *testing.T, q Queue, last byte, opts Options) *side {
	t.Helper()
	opts.MAC = net.HardwareAddr{2, 0, 0, 0, 0, last}
	if opts.MTU == 0 {
		opts.MTU = 1500
	}
	s := stack.New(stack.Options{
		NetworkProtocols:   []stack.NetworkProtocolFactory{ipv4.NewProtocol, ipv6.NewProtocol, arp.NewProtocol},
		TransportProtocols: []stack.TransportProtocolFactory{tcp.NewProtocol},
	})
	opts.Stats = s.Stats()
	ep := New([]Queue{q}, opts)
	if err := s.CreateNIC(1, ep); err != nil {
		t.Fatalf("CreateNIC: %v", err)
	}
	addr := tcpip.AddrFrom4([4]byte{10, 0, 0, last})
	if err := s.AddProtocolAddress(1, tcpip.ProtocolAddress{Protocol: ipv4.ProtocolNumber, AddressWithPrefix: addr.WithPrefix()}, stack.AddressProperties{}); err != nil {
		t.Fatalf("AddProtocolAddress: %v", err)
	}
	addr6 := tcpip.AddrFrom16([16]byte{0: 0xfd, 15: last})
	if err := s.AddProtocolAddress(1, tcpip.ProtocolAddress{Protocol: ipv6.ProtocolNumber, AddressWithPrefix: addr6.WithPrefix()}, stack.AddressProperties{}); err != nil {
		t.Fatalf("AddProtocolAddress: %v", err)
	}
	sub, _ := tcpip.NewSubnet(tcpip.AddrFrom4([4]byte{10, 0, 0, 0}), tcpip.MaskFromBytes([]byte{255, 255, 255, 0}))
	sub6, _ := tcpip.NewSubnet(tcpip.AddrFrom16([16]byte{0: 0xfd}), tcpip.MaskFromBytes(append([]byte{0xff}, make([]byte, 15)...)))
	s.SetRouteTable([]tcpip.Route{{Destination: sub, NIC: 1}, {Destination: sub6, NIC: 1}})
	t.Cleanup(func() { ep.Stop(); s.Close(); s.Wait() })
	return &side{stack: s, ep: ep, addr: addr, addr6: addr6, mac: tcpip.LinkAddress(opts.MAC)}
}

func (s *side) knows(t *testing.T, peer *side) {
	if err := s.stack.AddStaticNeighbor(1, ipv4.ProtocolNumber, peer.addr, peer.mac); err != nil {
		t.Fatalf("AddStaticNeighbor: %v", err)
	}
	if err := s.stack.AddStaticNeighbor(1, ipv6.ProtocolNumber, peer.addr6, peer.mac); err != nil {
		t.Fatalf("AddStaticNeighbor: %v", err)
	}
}

// TestTransfer moves data both ways between two netstacks over the
// endpoint, with and without GRO, with checksums checked by the
// endpoint or trusted, over IPv4 and IPv6, and checks every byte, every
// checksum, that GRO coalesced, and that the netstack's 64 KiB segments
// left as frames no larger than the MTU.
func TestTransfer(t *testing.T) {
	for _, tc := range []struct {
		name  string
		gro   bool
		trust bool
		mtu   uint32
		v6    bool
	}{
		{"plain", false, false, 1500, false},
		{"gro", true, false, 1500, false},
		{"gro trusted", true, true, 1500, false},
		{"jumbo", true, false, 4000, false},
		{"ipv6", false, false, 1500, true},
		{"ipv6 gro", true, false, 1500, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			qa, qb := memPair()
			opts := Options{GRO: tc.gro, TrustChecksums: tc.trust, MTU: tc.mtu}
			a := newSide(t, qa, 1, opts)
			b := newSide(t, qb, 2, opts)
			a.knows(t, b)
			b.knows(t, a)
			to, proto := tcpip.FullAddress{NIC: 1, Addr: b.addr, Port: 7}, ipv4.ProtocolNumber
			if tc.v6 {
				to, proto = tcpip.FullAddress{NIC: 1, Addr: b.addr6, Port: 7}, ipv6.ProtocolNumber
			}
			ln, err := gonet.ListenTCP(b.stack, to, proto)
			if err != nil {
				t.Fatal(err)
			}
			defer ln.Close()
			go testutil.Echo(ln)
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			c, err := gonet.DialContextTCP(ctx, a.stack, to, proto)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			if err := testutil.RoundTrip(c, 4<<20); err != nil {
				t.Fatal(err)
			}
			for _, s := range []*side{a, b} {
				if bad := s.stack.Stats().TCP.ChecksumErrors.Value(); bad != 0 {
					t.Errorf("TCP checksum errors: %d", bad)
				}
			}
			qa.mu.Lock()
			defer qa.mu.Unlock()
			if max := int(tc.mtu) + 14; qa.largest > max {
				t.Errorf("largest frame sent: %d bytes, above the MTU's %d", qa.largest, max)
			}
			if segs := a.stack.Stats().TCP.SegmentsSent.Value(); segs >= uint64(qa.sent) {
				t.Errorf("netstack sent %d segments in %d frames: no segment was cut", segs, qa.sent)
			}
			if segs := b.stack.Stats().TCP.ValidSegmentsReceived.Value(); tc.gro && segs >= uint64(qa.sent) {
				t.Errorf("netstack received %d segments from %d frames: GRO coalesced none", segs, qa.sent)
			}
		})
	}
}

// TestARPGoesToKernel checks that the endpoint sends no ARP request of
// its own and names the neighbour the netstack is missing instead.
func TestARPGoesToKernel(t *testing.T) {
	qa, qb := memPair()
	asked := make(chan tcpip.Address, 8)
	a := newSide(t, qa, 1, Options{OnResolve: func(addr tcpip.Address) { asked <- addr }})
	b := newSide(t, qb, 2, Options{})
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	go gonet.DialContextTCP(ctx, a.stack, tcpip.FullAddress{NIC: 1, Addr: b.addr, Port: 7}, ipv4.ProtocolNumber)
	select {
	case got := <-asked:
		if got != b.addr {
			t.Errorf("OnResolve(%v), want %v", got, b.addr)
		}
	case <-time.After(2 * time.Second):
		t.Fatal("OnResolve not called for an unknown neighbour")
	}
	qa.mu.Lock()
	defer qa.mu.Unlock()
	if qa.sent != 0 {
		t.Errorf("endpoint transmitted %d frames, want none (ARP belongs to the kernel)", qa.sent)
	}
}
