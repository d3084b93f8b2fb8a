package userstack

import (
	"log/slog"
	"net/netip"
	"testing"

	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/header"
	"gvisor.dev/gvisor/pkg/tcpip/link/channel"
	"gvisor.dev/gvisor/pkg/tcpip/network/ipv4"
	"gvisor.dev/gvisor/pkg/tcpip/network/ipv6"
	"gvisor.dev/gvisor/pkg/tcpip/stack"
	"gvisor.dev/gvisor/pkg/tcpip/transport/tcp"
	"gvisor.dev/gvisor/pkg/waiter"

	"github.com/xdpstack/xdpstack/internal/testing/packet"
)

var (
	screenLocal  = netip.MustParseAddr("10.0.0.1")
	screenRemote = netip.MustParseAddr("10.0.0.2")
)

// segment builds a TCP segment from screenRemote to port dst of
// screenLocal, with the given flags.
func segment(dst uint16, flags header.TCPFlags) []byte {
	f := packet.Ethernet(packet.EtherTypeIPv4).IPv4(packet.IPv4{Src: screenRemote, Dst: screenLocal, Protocol: packet.ProtoTCP}).TCP(40000, dst, 0).Bytes()
	f[header.EthernetMinimumSize+header.IPv4MinimumSize+13] = byte(flags)
	return f
}

// screenStack is a Stack over an in-memory link, with a TCP listener on
// port 7 of screenLocal.
func screenStack(t *testing.T) *Stack {
	t.Helper()
	st := stack.New(stack.Options{
		NetworkProtocols:   []stack.NetworkProtocolFactory{ipv4.NewProtocol, ipv6.NewProtocol},
		TransportProtocols: []stack.TransportProtocolFactory{tcp.NewProtocol},
	})
	t.Cleanup(func() { st.Close(); st.Wait() })
	if err := st.CreateNIC(nicID, channel.New(16, 1500, "")); err != nil {
		t.Fatal(err)
	}
	pa := tcpip.ProtocolAddress{Protocol: ipv4.ProtocolNumber, AddressWithPrefix: tcpip.AddrFrom4(screenLocal.As4()).WithPrefix()}
	if err := st.AddProtocolAddress(nicID, pa, stack.AddressProperties{}); err != nil {
		t.Fatal(err)
	}
	var wq waiter.Queue
	ep, err := st.NewEndpoint(tcp.ProtocolNumber, ipv4.ProtocolNumber, &wq)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(ep.Close)
	if err := ep.Bind(tcpip.FullAddress{Port: 7}); err != nil {
		t.Fatal(err)
	}
	if err := ep.Listen(10); err != nil {
		t.Fatal(err)
	}
	return &Stack{stack: st, log: slog.Default()}
}

func TestScreen(t *testing.T) {
	s := screenStack(t)
	for _, tc := range []struct {
		name  string
		frame []byte
		drop  bool
	}{
		{"reset for the listener", segment(7, header.TCPFlagRst), true},
		{"reset with ack for the listener", segment(7, header.TCPFlagRst|header.TCPFlagAck), true},
		{"reset for a port nobody listens on", segment(8, header.TCPFlagRst), false},
		{"syn", segment(7, header.TCPFlagSyn), false},
		{"ack", segment(7, header.TCPFlagAck), false},
		{"udp", packet.Ethernet(packet.EtherTypeIPv4).IPv4(packet.IPv4{Src: screenRemote, Dst: screenLocal, Protocol: packet.ProtoUDP}).UDP(4, 7).Bytes(), false},
		{"truncated", segment(7, header.TCPFlagRst)[:header.EthernetMinimumSize+header.IPv4MinimumSize+10], false},
		{"fragment", packet.Ethernet(packet.EtherTypeIPv4).IPv4(packet.IPv4{Src: screenRemote, Dst: screenLocal, Protocol: packet.ProtoTCP, MoreFragments: true}).TCP(4, 7, 0).Bytes(), false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := s.screen(tc.frame); got != tc.drop {
				t.Errorf("screen: got drop %v, want %v", got, tc.drop)
			}
		})
	}
	if got := s.stack.Stats().TCP.ResetsReceived.Value(); got != 2 {
		t.Errorf("resets counted: got %d, want the 2 dropped", got)
	}
	if got := s.flood.syns.Load(); got != 1 {
		t.Errorf("SYNs counted: got %d, want 1", got)
	}
}

// TestScreenBoundsSYNQueue: while SYN cookies are on, at most
// synQueueLimit SYNs wait for the listeners; the rest are dropped and
// counted as listen drops for a full SYN queue.
func TestScreenBoundsSYNQueue(t *testing.T) {
	s := screenStack(t)
	s.setSYNCookies(true, 0)
	syn := segment(7, header.TCPFlagSyn)
	for i := range synQueueLimit {
		if s.screen(syn) {
			t.Fatalf("screen dropped SYN %d of %d", i+1, synQueueLimit)
		}
	}
	if !s.screen(syn) {
		t.Errorf("screen let in SYN %d with %d waiting", synQueueLimit+1, synQueueLimit)
	}
	if got := s.stack.Stats().TCP.ListenOverflowSynDrop.Value(); got != 1 {
		t.Errorf("listen drops: got %d, want 1", got)
	}
	// The listener answering one makes room for one.
	s.stack.Stats().TCP.ListenOverflowSynCookieSent.Increment()
	if s.screen(syn) {
		t.Errorf("screen dropped a SYN after the listener answered one")
	}
	if !s.screen(syn) {
		t.Errorf("screen let in a SYN past the limit again")
	}
	// A port nobody listens on queues nothing: the netstack resets.
	if s.screen(segment(8, header.TCPFlagSyn)) {
		t.Errorf("screen dropped a SYN for a port without a listener")
	}
	s.setSYNCookies(false, 0)
	if s.screen(syn) {
		t.Errorf("screen dropped a SYN with cookies off")
	}
}
