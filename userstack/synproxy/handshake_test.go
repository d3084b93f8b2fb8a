package synproxy

import (
	"bytes"
	"context"
	"crypto/rand"
	"io"
	"log/slog"
	"sync"
	"testing"
	"time"

	"gvisor.dev/gvisor/pkg/buffer"
	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/adapters/gonet"
	"gvisor.dev/gvisor/pkg/tcpip/header"
	"gvisor.dev/gvisor/pkg/tcpip/link/channel"
	"gvisor.dev/gvisor/pkg/tcpip/network/ipv4"
	"gvisor.dev/gvisor/pkg/tcpip/network/ipv6"
	"gvisor.dev/gvisor/pkg/tcpip/stack"
	"gvisor.dev/gvisor/pkg/tcpip/transport/tcp"
	"gvisor.dev/gvisor/pkg/waiter"
)

// wire joins a client netstack to a server netstack through a proxy, as
// the link endpoint does: the client's frames meet Received before the
// server, the server's TCP packets Sending before the client. Both
// netstacks check every checksum they receive.
type wire struct {
	proxy                *Proxy
	client, server       *stack.Stack
	clientLink, toServer *channel.Endpoint
	serverAddr           tcpip.Address
	netProto             tcpip.NetworkProtocolNumber

	mu sync.Mutex
	// synACKs are the SYN-ACKs the client received.
	synACKs []header.TCP
	// clientOptions is the longest options any segment of the client
	// carried after its SYN.
	clientOptions int
	// gate, when set, holds the SYN the proxy hands the server until it
	// is closed, as a busy server would.
	gate chan struct{}
}

func newStack(t *testing.T, v6 bool, last byte) (*stack.Stack, *channel.Endpoint, tcpip.Address) {
	t.Helper()
	s := stack.New(stack.Options{
		NetworkProtocols:   []stack.NetworkProtocolFactory{ipv4.NewProtocol, ipv6.NewProtocol},
		TransportProtocols: []stack.TransportProtocolFactory{tcp.NewProtocol},
	})
	sack := tcpip.TCPSACKEnabled(true)
	if err := s.SetTransportProtocolOption(tcp.ProtocolNumber, &sack); err != nil {
		t.Fatal(err)
	}
	ep := channel.New(1024, 1500, "")
	if err := s.CreateNIC(1, ep); err != nil {
		t.Fatal(err)
	}
	addr, proto := tcpip.AddrFrom4([4]byte{10, 0, 0, last}), ipv4.ProtocolNumber
	if v6 {
		addr, proto = tcpip.AddrFrom16([16]byte{0: 0xfd, 15: last}), ipv6.ProtocolNumber
	}
	if err := s.AddProtocolAddress(1, tcpip.ProtocolAddress{Protocol: proto, AddressWithPrefix: addr.WithPrefix()}, stack.AddressProperties{}); err != nil {
		t.Fatal(err)
	}
	s.SetRouteTable([]tcpip.Route{{Destination: header.IPv4EmptySubnet, NIC: 1}, {Destination: header.IPv6EmptySubnet, NIC: 1}})
	t.Cleanup(func() { ep.Close(); s.Close(); s.Wait() })
	return s, ep, addr
}

func newWire(t *testing.T, v6 bool) *wire {
	t.Helper()
	w := &wire{netProto: ipv4.ProtocolNumber}
	if v6 {
		w.netProto = ipv6.ProtocolNumber
	}
	w.client, w.clientLink, _ = newStack(t, v6, 2)
	w.server, w.toServer, w.serverAddr = newStack(t, v6, 1)
	p, err := New(Options{
		Lookup: func(netProto tcpip.NetworkProtocolNumber, id stack.TransportEndpointID) Owner {
			ep, ok := w.server.FindTransportEndpoint(netProto, tcp.ProtocolNumber, id, 1).(*tcp.Endpoint)
			switch {
			case !ok:
				return Nobody
			case ep.EndpointState() == tcp.StateListen:
				return Listener
			}
			return Connection
		},
		Deliver: func(frame []byte) {
			w.mu.Lock()
			gate := w.gate
			w.mu.Unlock()
			if s, _ := parse(frame); gate != nil && s.tcp().Flags() == header.TCPFlagSyn {
				frame = append([]byte(nil), frame...)
				go func() {
					<-gate
					inject(w.toServer, frame)
				}()
				return
			}
			inject(w.toServer, frame)
		},
		MTU:   w.toServer.MTU,
		Stats: w.server.Stats(),
		Log:   slog.New(slog.NewTextHandler(io.Discard, nil)),
	})
	if err != nil {
		t.Fatal(err)
	}
	w.proxy = p
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	t.Cleanup(func() { cancel(); wg.Wait(); p.Close() })
	wg.Go(func() { w.fromClient(ctx) })
	wg.Go(func() { w.fromServer(ctx) })
	return w
}

// inject hands ep's netstack a frame as received.
func inject(ep *channel.Endpoint, frame []byte) {
	pkt := stack.NewPacketBuffer(stack.PacketBufferOptions{Payload: buffer.MakeWithData(frame[header.EthernetMinimumSize:])})
	ep.InjectInbound(header.Ethernet(frame).Type(), pkt)
	pkt.DecRef()
}

// ethernet is pkt in an Ethernet frame from src to dst.
func ethernet(dst, src []byte, pkt *stack.PacketBuffer) []byte {
	eth := make([]byte, header.EthernetMinimumSize)
	header.Ethernet(eth).Encode(&header.EthernetFields{DstAddr: tcpip.LinkAddress(dst), SrcAddr: tcpip.LinkAddress(src), Type: pkt.NetworkProtocolNumber})
	return append(eth, pkt.ToView().AsSlice()...)
}

func (w *wire) fromClient(ctx context.Context) {
	answer := make([]byte, 128)
	for {
		pkt := w.clientLink.ReadContext(ctx)
		if pkt == nil {
			return
		}
		frame := ethernet(serverMAC, clientMAC, pkt)
		pkt.DecRef()
		if s, ok := parse(frame); ok && s.tcp().Flags()&header.TCPFlagSyn == 0 {
			w.mu.Lock()
			w.clientOptions = max(w.clientOptions, len(s.tcp().Options()))
			w.mu.Unlock()
		}
		drop, n := w.proxy.Received(frame, answer)
		if n > 0 {
			w.toClient(answer[:n])
		}
		if !drop {
			inject(w.toServer, frame)
		}
	}
}

func (w *wire) fromServer(ctx context.Context) {
	for {
		pkt := w.toServer.ReadContext(ctx)
		if pkt == nil {
			return
		}
		if pkt.TransportProtocolNumber != header.TCPProtocolNumber || w.proxy.Sending(pkt.NetworkHeader().Slice(), pkt.TransportHeader().Slice(), false) {
			w.toClient(ethernet(clientMAC, serverMAC, pkt))
		}
		pkt.DecRef()
	}
}

func (w *wire) toClient(frame []byte) {
	if s, ok := parse(frame); ok && s.tcp().Flags()&header.TCPFlagSyn != 0 {
		w.mu.Lock()
		w.synACKs = append(w.synACKs, append(header.TCP(nil), s.tcp()...))
		w.mu.Unlock()
	}
	inject(w.clientLink, frame)
}

// dial connects the client to port 7 of the server.
func (w *wire) dial(t *testing.T) (*gonet.TCPConn, tcpip.Endpoint) {
	t.Helper()
	var wq waiter.Queue
	ep, err := w.client.NewEndpoint(tcp.ProtocolNumber, w.netProto, &wq)
	if err != nil {
		t.Fatal(err)
	}
	entry, connected := waiter.NewChannelEntry(waiter.WritableEvents)
	wq.EventRegister(&entry)
	defer wq.EventUnregister(&entry)
	if err := ep.Connect(tcpip.FullAddress{Addr: w.serverAddr, Port: 7}); err != nil {
		if _, ok := err.(*tcpip.ErrConnectStarted); !ok {
			t.Fatalf("connect: %v", err)
		}
		select {
		case <-connected:
		case <-time.After(5 * time.Second):
			t.Fatalf("connect: timed out")
		}
		if err := ep.LastError(); err != nil {
			t.Fatalf("connect: %v", err)
		}
	}
	return gonet.NewTCPConn(&wq, ep), ep
}

// waitFor polls cond for up to 5 s.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for start := time.Now(); !cond(); time.Sleep(time.Millisecond) {
		if time.Since(start) > 5*time.Second {
			t.Fatalf("timed out waiting for %s", what)
		}
	}
}

// TestHandshake runs a connection through the proxy during a flood,
// between two netstacks: the client's first data arrives before the
// server has the handshake and is held; 1 MiB is echoed both ways; the
// connection ends with both FINs; a second one with a reset; and the
// proxy forgets each once the server's endpoint is gone.
func TestHandshake(t *testing.T) {
	for _, v6 := range []bool{false, true} {
		w := newWire(t, v6)
		w.proxy.setFlood(true)
		ln, err := gonet.ListenTCP(w.server, tcpip.FullAddress{Port: 7}, w.netProto)
		if err != nil {
			t.Fatal(err)
		}
		defer ln.Close()
		gate := make(chan struct{})
		w.mu.Lock()
		w.gate = gate
		w.mu.Unlock()

		c, _ := w.dial(t)
		const size = 1 << 20
		data := make([]byte, size)
		rand.Read(data)
		if _, err := c.Write(data[:100]); err != nil {
			t.Fatal(err)
		}
		waitFor(t, "the first data held", func() bool {
			w.proxy.flows.mu.Lock()
			defer w.proxy.flows.mu.Unlock()
			return w.proxy.flows.heldBytes != 0
		})
		close(gate)
		s, err := ln.Accept()
		if err != nil {
			t.Fatal(err)
		}
		deadline := time.Now().Add(10 * time.Second)
		c.SetDeadline(deadline)
		s.SetDeadline(deadline)
		go func() {
			io.Copy(s, s)
			s.Close()
		}()
		done := make(chan error, 1)
		go func() {
			_, err := c.Write(data[100:])
			if err == nil {
				err = c.CloseWrite()
			}
			done <- err
		}()
		got, err := io.ReadAll(c)
		if err != nil {
			t.Fatalf("v6 %v: read the echo: %v", v6, err)
		}
		if err := <-done; err != nil {
			t.Fatalf("v6 %v: write: %v", v6, err)
		}
		if !bytes.Equal(got, data) {
			t.Errorf("v6 %v: echo of %d bytes: got %d bytes back, not the same", v6, len(data), len(got))
		}
		c.Close()

		w.mu.Lock()
		synACKs, options := w.synACKs, w.clientOptions
		w.mu.Unlock()
		if len(synACKs) != 1 || len(synACKs[0].Options()) != mssOptionSize {
			t.Errorf("v6 %v: the client got %d SYN-ACKs, want the proxy's only, with an MSS only", v6, len(synACKs))
		}
		if options != 0 {
			t.Errorf("v6 %v: the client sent options of %d bytes after its SYN; want none (no timestamps, no SACK)", v6, options)
		}
		if got := w.proxy.Counters(); got.Opened != 1 || got.Drops != [numDropReasons]uint64{} {
			t.Errorf("v6 %v: %d connections opened, drops %v; want 1 and none", v6, got.Opened, got.Drops)
		}
		w.forgets(t, "after both FINs")

		// A reset: the client aborts (SO_LINGER 0) after an exchange.
		c, ep := w.dial(t)
		s, err = ln.Accept()
		if err != nil {
			t.Fatal(err)
		}
		if _, err := c.Write([]byte("ping")); err != nil {
			t.Fatal(err)
		}
		if _, err := io.ReadFull(s, make([]byte, 4)); err != nil {
			t.Fatalf("v6 %v: server read: %v", v6, err)
		}
		ep.SocketOptions().SetLinger(tcpip.LingerOption{Enabled: true})
		c.Close()
		if _, err := s.Read(make([]byte, 1)); err == nil || err == io.EOF {
			t.Errorf("v6 %v: server read after the client's reset: %v, want the reset", v6, err)
		}
		s.Close()
		w.forgets(t, "after a reset")
	}
}

// forgets waits for the server to have no connection, then sweeps and
// checks that the proxy forgot every flow.
func (w *wire) forgets(t *testing.T, when string) {
	t.Helper()
	waitFor(t, "the server's connections to end "+when, func() bool {
		for _, ep := range w.server.RegisteredEndpoints() {
			if ep.(*tcp.Endpoint).EndpointState() != tcp.StateListen {
				return false
			}
		}
		return true
	})
	w.proxy.sweep()
	if got := w.proxy.Counters().Flows; got != 0 {
		t.Errorf("%s: %d flows left, want none", when, got)
	}
}
