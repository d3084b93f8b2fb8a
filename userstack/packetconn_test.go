package userstack

import (
	"testing"

	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/network/ipv4"
	"gvisor.dev/gvisor/pkg/tcpip/network/ipv6"
	"gvisor.dev/gvisor/pkg/tcpip/stack"
	"gvisor.dev/gvisor/pkg/tcpip/transport/udp"
)

// quic-go sizes the buffers of the conn it is given when the conn lets
// it, as on a kernel socket; the netstack's limits bound them.
func TestPacketConnBuffers(t *testing.T) {
	s := stack.New(stack.Options{
		NetworkProtocols:   []stack.NetworkProtocolFactory{ipv4.NewProtocol},
		TransportProtocols: []stack.TransportProtocolFactory{udp.NewProtocol},
	})
	t.Cleanup(s.Destroy)
	c, err := newPacketConn(s, tcpip.FullAddress{}, ipv4.ProtocolNumber)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	opts := c.ep.SocketOptions()
	_, most := opts.ReceiveBufferLimits()
	for _, tc := range []struct{ ask, want int64 }{
		{64 << 10, 64 << 10},
		{7 << 20, most}, // what quic-go asks for
	} {
		if err := c.SetReadBuffer(int(tc.ask)); err != nil {
			t.Fatalf("SetReadBuffer(%d): %v", tc.ask, err)
		}
		if got := opts.GetReceiveBufferSize(); got != tc.want {
			t.Errorf("SetReadBuffer(%d): receive buffer %d, want %d", tc.ask, got, tc.want)
		}
	}
	_, most = opts.SendBufferLimits()
	for _, tc := range []struct{ ask, want int64 }{
		{64 << 10, 64 << 10},
		{7 << 20, most},
	} {
		if err := c.SetWriteBuffer(int(tc.ask)); err != nil {
			t.Fatalf("SetWriteBuffer(%d): %v", tc.ask, err)
		}
		if got := opts.GetSendBufferSize(); got != tc.want {
			t.Errorf("SetWriteBuffer(%d): send buffer %d, want %d", tc.ask, got, tc.want)
		}
	}
}

// Bound to no address, the conn reads as 0.0.0.0 or :: with its port, as a
// kernel socket does.
func TestPacketConnLocalAddr(t *testing.T) {
	s := stack.New(stack.Options{
		NetworkProtocols:   []stack.NetworkProtocolFactory{ipv4.NewProtocol, ipv6.NewProtocol},
		TransportProtocols: []stack.TransportProtocolFactory{udp.NewProtocol},
	})
	t.Cleanup(s.Destroy)
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
