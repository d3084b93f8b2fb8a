package userstack

import (
	"context"
	"fmt"
	"io"
	"net"
	"os"
	"runtime"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/header"
	"gvisor.dev/gvisor/pkg/tcpip/transport/tcp"

	"github.com/xdpstack/xdpstack/internal/testing/testutil"
	"github.com/xdpstack/xdpstack/loader"
	"github.com/xdpstack/xdpstack/maps"
)

const reservedPortsFile = "/proc/sys/net/ipv4/ip_local_reserved_ports"

// startOn attaches to a's interface and starts a userstack on it, inside
// a's namespace; both are closed when the test ends.
func startOn(t *testing.T, a *testutil.Host, opts Options) (*Stack, *loader.Attachment) {
	t.Helper()
	return startOnAttached(t, a, attachOn(t, a), opts)
}

// attachOn attaches to a's interface, inside a's namespace, until the
// test ends.
func attachOn(t *testing.T, a *testutil.Host) *loader.Attachment {
	t.Helper()
	root := testutil.PinRoot(t)
	var att *loader.Attachment
	a.Do(t, func() (err error) {
		att, err = loader.Attach(a.Iface, loader.Options{PinRoot: root, UserPorts: loader.DefaultUserPorts})
		return err
	})
	t.Cleanup(func() { att.Close() })
	return att
}

// startOnAttached starts a userstack on att inside a's namespace until
// the test ends.
func startOnAttached(t *testing.T, a *testutil.Host, att *loader.Attachment, opts Options) (*Stack, *loader.Attachment) {
	t.Helper()
	var s *Stack
	a.Do(t, func() (err error) {
		s, err = Start(att.Iface, att.Maps, opts)
		return err
	})
	t.Cleanup(func() {
		if err := s.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
		for _, sock := range s.Sockets() {
			if c := sock.Frames(); c.Free != c.Total {
				t.Errorf("queue %d frames after Close: %+v, want all free", sock.Queue, c)
			}
		}
		att.Close()
		a.Do(t, func() error {
			if b, _ := os.ReadFile(reservedPortsFile); strings.TrimSpace(string(b)) != "" {
				t.Errorf("ip_local_reserved_ports after Close: %q, want it empty again", b)
			}
			return nil
		})
	})
	return s, att
}

// TestTakesOverListeners leaves a listener in the pinned map, as a
// daemon killed with kill -9 does: the next userstack removes it, and
// its count, so that the kernel's server on that port gets its
// connections back.
func TestTakesOverListeners(t *testing.T) {
	a, b := testutil.HostPair(t, 2)
	att := attachOn(t, a)
	stale := maps.Listener{Protocol: maps.TCP, Port: 80}
	if err := att.Maps.Listeners.Put(stale, 1); err != nil {
		t.Fatal(err)
	}
	startOnAttached(t, a, att, Options{})
	all, err := att.Maps.Listeners.All()
	if err != nil {
		t.Fatal(err)
	}
	if len(all) != 0 {
		t.Errorf("listeners map after Start: %v, want it empty", all)
	}
	// None left: the program may skip the listener lookups again.
	if n, err := att.Maps.Listeners.Count(); err != nil || n != 0 {
		t.Errorf("listener count after Start: %d, %v; want 0", n, err)
	}
	b.EchoFrom(t, a.KernelEcho(t, fmt.Sprintf("%s:80", a.Addr)), 1000)
}

// echoOn serves echo on the userstack's TCP port 7 until the test ends.
func echoOn(t *testing.T, s *Stack) {
	t.Helper()
	ln, err := s.Listen("tcp", ":7")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go testutil.Echo(ln)
}

// TestKernelPeers runs the userstack on one host of a two-queue veth
// pair and talks to it from kernel sockets on the other: TCP both ways
// and UDP. The steering entries come and go with the listeners.
func TestKernelPeers(t *testing.T) {
	a, b := testutil.HostPair(t, 2)
	s, att := startOn(t, a, Options{})
	if n := len(s.Sockets()); n != 2 {
		t.Fatalf("userstack opened %d AF_XDP sockets, want 2 (one per active queue)", n)
	}
	for _, sock := range s.Sockets() {
		t.Logf("queue %d: %s mode, need_wakeup %v", sock.Queue, sock.Mode, sock.NeedWakeup)
	}
	var reserved []byte
	a.Do(t, func() error {
		reserved, _ = os.ReadFile(reservedPortsFile)
		return nil
	})
	if !strings.Contains(string(reserved), "61000-62999") {
		t.Errorf("ip_local_reserved_ports in %s: %q, want 61000-62999 in it", a.Netns, reserved)
	}

	ln, err := s.Listen("tcp", ":7")
	if err != nil {
		t.Fatal(err)
	}
	go testutil.Echo(ln)
	steered, err := att.Maps.Listeners.All()
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := steered[maps.Listener{Protocol: maps.TCP, Port: 7}]; !ok {
		t.Errorf("listeners map after Listen: %v, want tcp port 7 in it", steered)
	}

	t.Cleanup(func() {
		if !t.Failed() {
			return
		}
		t.Logf("netstack: %v", s.NetstackCounters())
		for _, sock := range s.Sockets() {
			ss, _ := sock.Stats()
			t.Logf("queue %d: %+v", sock.Queue, ss)
		}
		sums, _ := att.Maps.Stats.Sum()
		t.Logf("xdp: %v", sums)
	})
	t.Run("kernel client", func(t *testing.T) {
		// Several connections, so that both queues carry some.
		for i := range 8 {
			b.EchoFrom(t, fmt.Sprintf("%s:7", a.Addr), 1<<20+i)
		}
	})

	t.Run("kernel server", func(t *testing.T) {
		b.KernelEcho(t, fmt.Sprintf("%s:8000", b.Addr))
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		c, err := s.Dial(ctx, "tcp", fmt.Sprintf("%s:8000", b.Addr))
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		if err := testutil.RoundTrip(c, 1<<20); err != nil {
			t.Fatal(err)
		}
	})

	t.Run("udp", func(t *testing.T) {
		pc, err := s.ListenPacket("udp", ":9")
		if err != nil {
			t.Fatal(err)
		}
		defer pc.Close()
		go func() {
			buf := make([]byte, 2048)
			for {
				n, from, err := pc.ReadFrom(buf)
				if err != nil {
					return
				}
				pc.WriteTo(buf[:n], from)
			}
		}()
		b.Do(t, func() error {
			c, err := net.Dial("udp", fmt.Sprintf("%s:9", a.Addr))
			if err != nil {
				return err
			}
			defer c.Close()
			c.SetDeadline(time.Now().Add(5 * time.Second))
			buf := make([]byte, 2048)
			for i := range 100 {
				msg := fmt.Sprintf("datagram %d", i)
				c.Write([]byte(msg))
				n, err := c.Read(buf)
				if err != nil {
					return fmt.Errorf("datagram %d: %w", i, err)
				}
				if string(buf[:n]) != msg {
					return fmt.Errorf("datagram %d: echo %q", i, buf[:n])
				}
			}
			return nil
		})
	})

	ln.Close()
	steered, _ = att.Maps.Listeners.All()
	if len(steered) != 0 {
		t.Errorf("listeners map after every listener closed: %v, want empty", steered)
	}
	for _, sock := range s.Sockets() {
		if c := sock.Frames(); c.Free+c.InKernel != c.Total {
			t.Errorf("queue %d frames: %+v", sock.Queue, c)
		}
	}
}

// TestListenerClosedBeforeItsConnections closes a listener while the
// connection it accepted goes on, as a program that execs or stops
// listening does: XDP keeps steering the port until the connection
// closes too, or the kernel would reset it.
func TestListenerClosedBeforeItsConnections(t *testing.T) {
	a, b := testutil.HostPair(t, 1)
	s, att := startOn(t, a, Options{})
	ln, err := s.Listen("tcp", ":7100")
	if err != nil {
		t.Fatal(err)
	}
	accepted := make(chan net.Conn, 1)
	go func() {
		c, err := ln.Accept()
		if err == nil {
			accepted <- c
		}
	}()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	peer, err := b.Dial(ctx, "tcp", fmt.Sprintf("%s:7100", a.Addr))
	if err != nil {
		t.Fatal(err)
	}
	defer peer.Close()
	peer.SetDeadline(time.Now().Add(10 * time.Second))
	var c net.Conn
	select {
	case c = <-accepted:
	case <-ctx.Done():
		t.Fatal("no connection accepted")
	}
	ln.Close()
	steered := func() bool {
		all, err := att.Maps.Listeners.All()
		if err != nil {
			t.Fatal(err)
		}
		_, ok := all[maps.Listener{Protocol: maps.TCP, Port: 7100}]
		return ok
	}
	if !steered() {
		t.Fatal("the port is no longer steered once the listener closed, with its connection open")
	}
	go io.Copy(c, c)
	if err := testutil.RoundTrip(peer, 1<<20); err != nil {
		t.Fatalf("the connection after its listener closed: %v", err)
	}
	c.Close()
	if steered() {
		t.Error("the port is still steered once the listener and its connection closed")
	}
}

// TestManyConnections opens 1000 connections from kernel sockets to a
// userstack echo at once, uses and closes them, and checks that no
// endpoint, goroutine or frame is left behind.
func TestManyConnections(t *testing.T) {
	const conns = 1000
	a, b := testutil.HostPair(t, 2)
	s, _ := startOn(t, a, Options{})
	ln, err := s.Listen("tcp", ":7")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go testutil.Echo(ln)
	baseEndpoints, baseGoroutines := s.Endpoints(), runtime.NumGoroutine()

	var open []net.Conn
	b.Do(t, func() error {
		for i := range conns {
			c, err := net.DialTimeout("tcp", fmt.Sprintf("%s:7", a.Addr), 5*time.Second)
			if err != nil {
				return fmt.Errorf("connection %d: %w", i, err)
			}
			open = append(open, c)
		}
		return nil
	})
	errs := make(chan error, conns)
	for _, c := range open {
		go func() { errs <- testutil.RoundTrip(c, 1000) }()
	}
	for range conns {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	if n := s.Endpoints(); n < conns {
		t.Errorf("Endpoints() with %d connections open: %d", conns, n)
	}
	for _, c := range open {
		c.Close()
	}
	// The server closes after the client, so it keeps no TIME-WAIT.
	deadline := time.Now().Add(10 * time.Second)
	for s.Endpoints() > baseEndpoints || runtime.NumGoroutine() > baseGoroutines+5 {
		if time.Now().After(deadline) {
			t.Fatalf("after closing %d connections: %d endpoints (want %d), %d goroutines (were %d)",
				conns, s.Endpoints(), baseEndpoints, runtime.NumGoroutine(), baseGoroutines)
		}
		time.Sleep(50 * time.Millisecond)
	}
	for _, sock := range s.Sockets() {
		if c := sock.Frames(); c.Free+c.InKernel != c.Total || c.Lost != 0 {
			t.Errorf("queue %d frames: %+v", sock.Queue, c)
		}
	}
}

// TestUnknownNeighbour dials a peer the kernel has no neighbour entry
// for: the kernel resolves it, the userstack learns it and connects.
func TestUnknownNeighbour(t *testing.T) {
	a, b := testutil.HostPair(t, 2)
	a.Exec(t, "ip", "neigh", "del", b.Addr.String(), "dev", a.Iface)
	s, _ := startOn(t, a, Options{})
	b.KernelEcho(t, fmt.Sprintf("%s:8000", b.Addr))
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	c, err := s.Dial(ctx, "tcp", fmt.Sprintf("%s:8000", b.Addr))
	if err != nil {
		t.Fatalf("dial a peer the kernel had to resolve: %v\nkernel neighbours: %s", err, a.Exec(t, "ip", "neigh"))
	}
	defer c.Close()
	if err := testutil.RoundTrip(c, 1000); err != nil {
		t.Fatal(err)
	}
}

// TestJumbo runs the userstack on a veth with MTU 9000, where a packet
// spans three UMEM frames (AF_XDP multi-buffer) and the XDP program sees
// it in fragments.
func TestJumbo(t *testing.T) {
	a, b := testutil.HostPair(t, 2)
	for _, h := range []*testutil.Host{a, b} {
		h.Exec(t, "ip", "link", "set", h.Iface, "mtu", "9000")
	}
	s, _ := startOn(t, a, Options{})
	echoOn(t, s)
	b.EchoFrom(t, fmt.Sprintf("%s:7", a.Addr), 8<<20)
	var big uint64
	for _, sock := range s.Sockets() {
		st, _ := sock.Stats()
		if st.RxPackets > 0 && st.RxBytes/st.RxPackets > 4096 {
			big++
		}
		if c := sock.Frames(); c.Free+c.InKernel != c.Total {
			t.Errorf("queue %d frames: %+v", sock.Queue, c)
		}
	}
	if big == 0 {
		t.Error("no queue received packets larger than a frame")
	}
}

// TestFollowsRoutes adds a kernel route after the userstack started and
// dials through it: the netstack follows the kernel's route table.
func TestFollowsRoutes(t *testing.T) {
	a, b := testutil.HostPair(t, 2)
	b.Exec(t, "ip", "addr", "add", "10.99.0.1/32", "dev", "lo")
	s, _ := startOn(t, a, Options{})
	b.KernelEcho(t, "10.99.0.1:8000")
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	if _, err := s.Dial(ctx, "tcp", "10.99.0.1:8000"); err == nil {
		t.Fatal("dial 10.99.0.1 before the kernel had a route to it: got no error")
	}
	cancel()
	a.Exec(t, "ip", "route", "add", "10.99.0.0/24", "via", b.Addr.String())
	var (
		c   net.Conn
		err error
	)
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		c, err = s.Dial(ctx, "tcp", "10.99.0.1:8000")
		cancel()
		if err == nil {
			break
		}
	}
	if err != nil {
		t.Fatalf("dial through a route added after start: %v", err)
	}
	defer c.Close()
	if err := testutil.RoundTrip(c, 1000); err != nil {
		t.Fatal(err)
	}
}

func TestParseAddr(t *testing.T) {
	for _, tc := range []struct {
		network, address string
		want             string // AddrPort, or the error
	}{
		{"tcp", ":7", "invalid AddrPort"},
		{"tcp", "10.0.0.1:7", "10.0.0.1:7"},
		{"udp6", "[::1]:53", "[::1]:53"},
		{"sctp", ":7", `network "sctp": want tcp or udp`},
		{"tcp", "10.0.0.1", "address 10.0.0.1: missing port in address"},
		{"tcp", "host:7", `host "host" is not an IP address`},
		{"tcp", ":http", `port "http" is not a number from 0 to 65535`},
	} {
		ap, _, err := parseAddr(tc.network, tc.address)
		got := ap.String()
		if err != nil {
			got = err.Error()
		}
		if got != tc.want {
			t.Errorf("parseAddr(%q, %q): got %s, want %s", tc.network, tc.address, got, tc.want)
		}
	}
}

// TestIPv6 serves a dual-stack listener on hosts with IPv6 addresses
// that have never talked: neighbour discovery is the kernel's, answered
// into the netstack as advertisements.
func TestIPv6(t *testing.T) {
	a, b := testutil.HostPair(t, 2)
	for i, h := range []*testutil.Host{a, b} {
		h.Exec(t, "sysctl", "-qw", "net.ipv6.conf.all.disable_ipv6=0", "net.ipv6.conf."+h.Iface+".disable_ipv6=0")
		h.Exec(t, "ip", "addr", "add", fmt.Sprintf("fd00:213::%d/64", i+1), "dev", h.Iface, "nodad")
	}
	s, _ := startOn(t, a, Options{})

	// First the userstack dials: nobody knows anybody's IPv6 link address
	// yet, so the netstack's solicitation must go through the kernel.
	b.KernelEcho(t, "[fd00:213::2]:8000")
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	c, err := s.Dial(ctx, "tcp", "[fd00:213::2]:8000")
	if err != nil {
		st := s.stack.Stats().ICMP.V6
		t.Fatalf("dial over IPv6 to an unresolved neighbour: %v (solicitations %d, advertisements %d)", err, st.PacketsSent.NeighborSolicit.Value(), st.PacketsReceived.NeighborAdvert.Value())
	}
	defer c.Close()
	if err := testutil.RoundTrip(c, 1<<20); err != nil {
		t.Fatal(err)
	}
	if n := s.stack.Stats().ICMP.V6.PacketsReceived.NeighborAdvert.Value(); n == 0 {
		t.Error("the netstack got no neighbour advertisement: the dial did not wait for the kernel's resolution")
	}
	// The veth has TSO on: the megabyte left in 64 KiB IPv6 segments.
	if s.gso == nil || s.gso.Segments.Load() == 0 {
		t.Error("no IPv6 segment went whole through the GSO socket")
	}

	echoOn(t, s)
	for _, addr := range []string{"[fd00:213::1]:7", fmt.Sprintf("%s:7", a.Addr)} {
		b.EchoFrom(t, addr, 1<<20)
	}
}

// TestTuning checks that the TCP options reach the netstack, and that
// bad ones are refused before anything starts.
func TestTuning(t *testing.T) {
	for _, o := range []TCPOptions{
		{CongestionControl: "bbr"},
		{SendBuffer: 100},
		{ReceiveBuffer: 4095},
		{Backlog: -1},
	} {
		if err := (Options{TCP: o}).Validate(); err == nil {
			t.Errorf("Validate(%+v): no error", o)
		}
	}

	a, _ := testutil.HostPair(t, 1)
	s, _ := startOn(t, a, Options{TCP: TCPOptions{CongestionControl: "cubic", NoSACK: true, SendBuffer: 64 << 10, ReceiveBuffer: 128 << 10}})
	var (
		cc   tcpip.CongestionControlOption
		sack tcpip.TCPSACKEnabled
		send tcpip.TCPSendBufferSizeRangeOption
		recv tcpip.TCPReceiveBufferSizeRangeOption
	)
	for _, opt := range []tcpip.GettableTransportProtocolOption{&cc, &sack, &send, &recv} {
		if err := s.stack.TransportProtocolOption(tcp.ProtocolNumber, opt); err != nil {
			t.Fatalf("read %T: %s", opt, err)
		}
	}
	if cc != "cubic" || sack || send.Max != 64<<10 || recv.Max != 128<<10 || send.Default > send.Max {
		t.Errorf("netstack has cc %q, sack %v, send buffers %+v, receive buffers %+v", cc, sack, send, recv)
	}
}

// TestCheckedChecksums runs on a veth the receive path every other
// interface takes: checksums checked frame by frame, then GRO. A kernel
// client's transfer comes back intact in coalesced segments, and a
// segment with a wrong checksum is dropped and counted.
func TestCheckedChecksums(t *testing.T) {
	a, b := testutil.HostPair(t, 1)
	b.Exec(t, "ethtool", "-K", b.Iface, "tx", "off")
	s, _ := startOn(t, a, Options{CheckChecksums: true})
	echoOn(t, s)
	b.EchoFrom(t, fmt.Sprintf("%s:7", a.Addr), 16<<20)
	stats := s.stack.Stats()
	if n := stats.TCP.ChecksumErrors.Value(); n != 0 {
		t.Fatalf("TCP checksum errors after the transfer: %d, want 0", n)
	}
	var frames uint64
	for _, sock := range s.Sockets() {
		st, _ := sock.Stats()
		frames += st.RxPackets
	}
	if segs := stats.TCP.ValidSegmentsReceived.Value(); segs*2 > frames {
		t.Errorf("netstack received %d segments from %d frames: GRO coalesced little", segs, frames)
	}

	// A SYN to the listener whose checksum is off by one, from a raw
	// socket: the kernel fills in the IP header's checksum only.
	b.Do(t, func() error {
		fd, err := unix.Socket(unix.AF_INET, unix.SOCK_RAW, unix.IPPROTO_RAW)
		if err != nil {
			return err
		}
		defer unix.Close(fd)
		pkt := make([]byte, header.IPv4MinimumSize+header.TCPMinimumSize)
		src, dst := tcpip.AddrFrom4(b.Addr.As4()), tcpip.AddrFrom4(a.Addr.As4())
		header.IPv4(pkt).Encode(&header.IPv4Fields{TotalLength: uint16(len(pkt)), TTL: 64, Protocol: uint8(header.TCPProtocolNumber), SrcAddr: src, DstAddr: dst})
		seg := header.TCP(pkt[header.IPv4MinimumSize:])
		seg.Encode(&header.TCPFields{SrcPort: 40000, DstPort: 7, SeqNum: 1, DataOffset: header.TCPMinimumSize, Flags: header.TCPFlagSyn, WindowSize: 1000})
		seg.SetChecksum(^seg.CalculateChecksum(header.PseudoHeaderChecksum(header.TCPProtocolNumber, src, dst, header.TCPMinimumSize)) + 1)
		return unix.Sendto(fd, pkt, 0, &unix.SockaddrInet4{Addr: a.Addr.As4()})
	})
	for deadline := time.Now().Add(2 * time.Second); stats.TCP.ChecksumErrors.Value() == 0 && time.Now().Before(deadline); {
		time.Sleep(10 * time.Millisecond)
	}
	if n := stats.TCP.ChecksumErrors.Value(); n != 1 {
		t.Errorf("TCP checksum errors after a bad SYN: %d, want 1", n)
	}
	if n := stats.TCP.PassiveConnectionOpenings.Value(); n != 1 {
		t.Errorf("passive opens: %d, want only the client's", n)
	}
}

// TestFailedStartCleansUp starts a userstack on an attachment that
// steers it no ports: Start fails with that, after it opened the
// kernel view, and closes what it opened rather than a nil stack.
func TestFailedStartCleansUp(t *testing.T) {
	a, _ := testutil.HostPair(t, 0)
	root := testutil.PinRoot(t)
	var att *loader.Attachment
	a.Do(t, func() (err error) {
		att, err = loader.Attach(a.Iface, loader.Options{PinRoot: root})
		return err
	})
	t.Cleanup(func() { att.Close() })
	a.Do(t, func() error {
		s, err := Start(att.Iface, att.Maps, Options{})
		if err == nil || !strings.Contains(err.Error(), "steers no ports") || s != nil {
			t.Errorf("Start: got %v, %v; want no stack and the missing ports named", s, err)
		}
		return nil
	})
}
