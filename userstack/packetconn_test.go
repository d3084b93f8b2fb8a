package userstack

import (
	"net"
	"testing"
	"time"

	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/header"
	"gvisor.dev/gvisor/pkg/tcpip/link/loopback"
	"gvisor.dev/gvisor/pkg/tcpip/network/ipv4"
	"gvisor.dev/gvisor/pkg/tcpip/network/ipv6"
	"gvisor.dev/gvisor/pkg/tcpip/stack"
	"gvisor.dev/gvisor/pkg/tcpip/transport/udp"
)

// udpStack is a netstack with UDP over IPv4 and IPv6 and no NIC, enough
// to bind packet conns.
func udpStack(t *testing.T) *stack.Stack {
	s := stack.New(stack.Options{
		NetworkProtocols:   []stack.NetworkProtocolFactory{ipv4.NewProtocol, ipv6.NewProtocol},
		TransportProtocols: []stack.TransportProtocolFactory{udp.NewProtocol},
	})
	t.Cleanup(s.Destroy)
	return s
}

// quic-go sizes the buffers of the conn it is given when the conn lets
// it, as on a kernel socket; the netstack's limits bound them.
func TestPacketConnBuffers(t *testing.T) {
	c, err := newPacketConn(udpStack(t), tcpip.FullAddress{}, ipv4.ProtocolNumber)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	opts := c.ep.SocketOptions()
	for _, buf := range []struct {
		name   string
		set    func(int) error
		get    func() int64
		limits func() (int64, int64)
	}{
		{"SetReadBuffer", c.SetReadBuffer, opts.GetReceiveBufferSize, opts.ReceiveBufferLimits},
		{"SetWriteBuffer", c.SetWriteBuffer, opts.GetSendBufferSize, opts.SendBufferLimits},
	} {
		_, most := buf.limits()
		for _, tc := range []struct{ ask, want int64 }{
			{64 << 10, 64 << 10},
			{7 << 20, most}, // what quic-go asks for
		} {
			if err := buf.set(int(tc.ask)); err != nil {
				t.Fatalf("%s(%d): %v", buf.name, tc.ask, err)
			}
			if got := buf.get(); got != tc.want {
				t.Errorf("%s(%d): buffer %d, want %d", buf.name, tc.ask, got, tc.want)
			}
		}
	}
}

// Bound to no address, the conn reads as 0.0.0.0 or :: with its port, as a
// kernel socket does.
func TestPacketConnLocalAddr(t *testing.T) {
	s := udpStack(t)
	for _, tc := range []struct {
		proto tcpip.NetworkProtocolNumber
		want  string
	}{
		{ipv4.ProtocolNumber, "0.0.0.0:4433"},
		{ipv6.ProtocolNumber, "[::]:4433"},
	} {
		c, err := newPacketConn(s, tcpip.FullAddress{Port: 4433}, tc.proto)
		if err != nil {
			t.Fatal(err)
		}
		if got := c.LocalAddr().String(); got != tc.want {
			t.Errorf("LocalAddr() = %s, want %s", got, tc.want)
		}
		c.Close()
	}
}

// A conn dialled to one peer takes its port from the stack's range and
// writes and reads with Write and Read, as the echo tester does.
func TestDialUDP(t *testing.T) {
	s := udpStack(t)
	if err := s.CreateNIC(1, loopback.New()); err != nil {
		t.Fatal(err)
	}
	addr := tcpip.AddrFrom4([4]byte{10, 0, 0, 1})
	if err := s.AddProtocolAddress(1, tcpip.ProtocolAddress{Protocol: ipv4.ProtocolNumber, AddressWithPrefix: addr.WithPrefix()}, stack.AddressProperties{}); err != nil {
		t.Fatal(err)
	}
	s.SetRouteTable([]tcpip.Route{{Destination: header.IPv4EmptySubnet, NIC: 1}})
	if err := s.SetPortRange(61000, 61009); err != nil {
		t.Fatal(err)
	}
	server, err := newPacketConn(s, tcpip.FullAddress{Addr: addr, Port: 7}, ipv4.ProtocolNumber)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { server.Close() })
	go func() {
		buf := make([]byte, 2048)
		for {
			n, from, err := server.ReadFrom(buf)
			if err != nil {
				return
			}
			server.WriteTo(buf[:n], from)
		}
	}()

	c, err := dialUDP(s, tcpip.FullAddress{Addr: addr, Port: 7}, ipv4.ProtocolNumber)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	if port := c.LocalAddr().(*net.UDPAddr).Port; port < 61000 || port > 61009 {
		t.Errorf("LocalAddr %v: port outside the stack's range 61000-61009", c.LocalAddr())
	}
	if got := c.RemoteAddr().String(); got != "10.0.0.1:7" {
		t.Errorf("RemoteAddr = %s, want 10.0.0.1:7", got)
	}
	c.SetDeadline(time.Now().Add(5 * time.Second))
	for _, msg := range []string{"one", "two"} {
		if _, err := c.Write([]byte(msg)); err != nil {
			t.Fatalf("Write(%q): %v", msg, err)
		}
		buf := make([]byte, 64)
		n, err := c.Read(buf)
		if err != nil || string(buf[:n]) != msg {
			t.Fatalf("Read: %q, %v; want the echo of %q", buf[:n], err, msg)
		}
	}
}
