package userstack

import (
	"errors"
	"net"
	"net/netip"
	"os"
	"testing"
	"time"

	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/network/ipv4"
	"gvisor.dev/gvisor/pkg/tcpip/network/ipv6"
	"gvisor.dev/gvisor/pkg/tcpip/stack"
	"gvisor.dev/gvisor/pkg/tcpip/transport/udp"
	"gvisor.dev/gvisor/pkg/waiter"
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

// bindUDP is a packet conn of one endpoint of s bound to addr.
func bindUDP(t *testing.T, s *stack.Stack, addr tcpip.FullAddress, netProto tcpip.NetworkProtocolNumber) *packetConn {
	t.Helper()
	var wq waiter.Queue
	ep, terr := s.NewEndpoint(udp.ProtocolNumber, netProto, &wq)
	if terr != nil {
		t.Fatal(terr)
	}
	if terr := ep.Bind(addr); terr != nil {
		ep.Close()
		t.Fatal(terr)
	}
	a, _ := netip.AddrFromSlice(addr.Addr.AsSlice())
	c := newPacketConn([]tcpip.Endpoint{ep}, []netip.Addr{a}, &wq)
	t.Cleanup(func() { c.Close() })
	return c
}

// quic-go sizes the buffers of the conn it is given when the conn lets
// it, as on a kernel socket; the netstack's limits bound them.
func TestPacketConnBuffers(t *testing.T) {
	c := bindUDP(t, udpStack(t), tcpip.FullAddress{}, ipv4.ProtocolNumber)
	opts := c.eps[0].SocketOptions()
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
		c := bindUDP(t, s, tcpip.FullAddress{Port: 4433}, tc.proto)
		if got := c.LocalAddr().String(); got != tc.want {
			t.Errorf("LocalAddr() = %s, want %s", got, tc.want)
		}
		c.Close()
	}
}

// A deadline set while a read waits applies to it, as on a kernel
// socket: quic-go and the echo tester end reads that way.
func TestPacketConnDeadlineWakesRead(t *testing.T) {
	c := bindUDP(t, udpStack(t), tcpip.FullAddress{Port: 4433}, ipv4.ProtocolNumber)
	read := make(chan error, 1)
	go func() {
		_, _, err := c.ReadFrom(make([]byte, 10))
		read <- err
	}()
	time.Sleep(20 * time.Millisecond) // it waits
	c.SetReadDeadline(time.Now().Add(20 * time.Millisecond))
	select {
	case err := <-read:
		if !errors.Is(err, os.ErrDeadlineExceeded) {
			t.Errorf("ReadFrom after the deadline: %v, want os.ErrDeadlineExceeded", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("ReadFrom still waits 5s after its deadline")
	}
	c.SetWriteDeadline(time.Now().Add(-time.Second))
	if _, err := c.WriteTo([]byte("x"), &net.UDPAddr{IP: net.IPv4(10, 0, 0, 1), Port: 7}); !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Errorf("WriteTo past the write deadline: %v", err)
	}
}
