package afxdp

import (
	"bytes"
	"encoding/binary"
	"net"
	"net/netip"
	"testing"
	"time"

	"golang.org/x/sys/unix"
	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/header"

	"github.com/xdpstack/xdpstack/internal/stagetime"
	"github.com/xdpstack/xdpstack/internal/testing/hosts"
	"github.com/xdpstack/xdpstack/internal/testing/packet"
	"github.com/xdpstack/xdpstack/internal/testing/testutil"
	"github.com/xdpstack/xdpstack/loader"
	"github.com/xdpstack/xdpstack/maps"
)

// rawSocket is an AF_PACKET socket on ifname that sends frames and
// receives those of etherType.
func rawSocket(t *testing.T, ifname string, etherType uint16) int {
	t.Helper()
	iface, err := net.InterfaceByName(ifname)
	if err != nil {
		t.Fatal(err)
	}
	proto := int(etherType>>8 | etherType<<8)
	fd, err := unix.Socket(unix.AF_PACKET, unix.SOCK_RAW|unix.SOCK_CLOEXEC, proto)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { unix.Close(fd) })
	if err := unix.Bind(fd, &unix.SockaddrLinklayer{Protocol: uint16(proto), Ifindex: iface.Index}); err != nil {
		t.Fatal(err)
	}
	unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &unix.Timeval{Sec: 2})
	return fd
}

// TestSocketTraffic steers UDP frames into a socket, sends frames back
// out of it, and checks that every UMEM frame is accounted for after the
// traffic and after Close.
func TestSocketTraffic(t *testing.T) {
	a, b := testutil.Veth(t)
	att, err := loader.Attach(a, loader.Options{PinRoot: testutil.PinRoot(t)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { att.Close() })
	if err := att.Maps.Listeners.Put(maps.Listener{Protocol: maps.UDP, Port: 9000}, 1); err != nil {
		t.Fatal(err)
	}
	src, dst := netip.MustParseAddr("10.9.0.2"), netip.MustParseAddr("10.9.0.1")
	if err := att.Maps.LocalAddrs.Put(dst, maps.AddrOwn|maps.AddrServed); err != nil {
		t.Fatal(err)
	}
	s, err := Open(att.Iface.Index, 0, Options{Frames: 256})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	t.Logf("bound in %s mode (zero-copy refused: %v), need_wakeup %v", s.Mode, s.ZeroCopyErr, s.NeedWakeup)
	if s.txFD == s.fd {
		t.Error("the TX ring is on the receiving socket: the kernel refused a TX socket on the shared UMEM")
	}
	if err := att.Maps.XSKs.Register(0, s.FD()); err != nil {
		t.Fatal(err)
	}

	const frames, burst = 2000, 100
	const txEtherType = 0x88b5
	peer := rawSocket(t, b, txEtherType)
	got := 0
	for sent := 0; sent < frames; {
		for range burst {
			f := packet.Ethernet(packet.EtherTypeIPv4).IPv4(packet.IPv4{Src: src, Dst: dst, Protocol: packet.ProtoUDP}).UDP(1234, 9000)
			b := f.Payload(4).Bytes()
			binary.BigEndian.PutUint32(b[len(b)-4:], uint32(sent))
			if err := unix.Send(peer, b, 0); err != nil {
				t.Fatalf("send frame %d: %v", sent, err)
			}
			sent++
		}
		deadline := time.Now().Add(2 * time.Second)
		for got < sent && time.Now().Before(deadline) {
			s.Receive(64, func(frame []byte) {
				if n := binary.BigEndian.Uint32(frame[len(frame)-4:]); n != uint32(got) {
					t.Errorf("frame %d: carries number %d", got, n)
				}
				got++
			})
		}
		if got != sent {
			t.Fatalf("received %d of %d frames", got, sent)
		}
	}

	// Bursts, read in between: the peer's socket buffer holds a few
	// hundred frames.
	payload := bytes.Repeat([]byte{0xab}, 60)
	buf := make([]byte, 2048)
	for sent := 0; sent < frames; sent += burst {
		n, err := s.Transmit(burst, func(i int, frame []byte) (int, Checksum) {
			f := packet.EthernetTo(packet.DstMAC, packet.SrcMAC, txEtherType).Bytes()
			copy(frame, f)
			binary.BigEndian.PutUint32(frame[len(f):], uint32(sent+i))
			return len(f) + 4 + copy(frame[len(f)+4:], payload), Checksum{}
		})
		if err != nil || n != burst {
			t.Fatalf("Transmit(%d): got %d, %v", burst, n, err)
		}
		for i := range burst {
			n, err := unix.Read(peer, buf)
			for err == unix.EINTR { // the runtime's preemption signal; the socket has a timeout, so no restart
				n, err = unix.Read(peer, buf)
			}
			if err != nil {
				t.Fatalf("peer received %d of %d frames: %v", sent+i, frames, err)
			}
			if got := binary.BigEndian.Uint32(buf[14:]); got != uint32(sent+i) || n != 14+4+len(payload) {
				t.Fatalf("peer frame %d: %d bytes numbered %d", sent+i, n, got)
			}
		}
	}
	st, err := s.Stats()
	if err != nil {
		t.Fatal(err)
	}
	if st.RxPackets != frames || st.TxPackets != frames {
		t.Errorf("Stats(): %+v, want %d received and sent", st, frames)
	}
	if st.Kernel.Rx_fill_ring_empty_descs != 0 || st.Kernel.Rx_dropped != 0 {
		t.Errorf("kernel dropped frames: %+v", st.Kernel)
	}

	s.Transmit(0, nil) // reaps the last completions
	if err := s.audit(); err != nil {
		t.Errorf("after traffic: %v", err)
	}
	if c := s.Frames(); c.Free+c.InKernel != c.Total || c.Lost != 0 {
		t.Errorf("Frames() after traffic: %+v", c)
	}
	waited := make(chan bool)
	go func() { waited <- s.Wait() }()
	select {
	case <-waited:
		t.Fatal("Wait() returned on an idle socket")
	case <-time.After(50 * time.Millisecond):
	}
	s.Stop()
	if ok := <-waited; ok {
		t.Error("Wait() after Stop(): got true")
	}
	done := s.kickerDone
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	select {
	case <-done:
	default:
		t.Error("the kicker goroutine runs on after Close")
	}
	if c := s.Frames(); c.Free != c.Total {
		t.Errorf("Frames() after Close: %+v, want all %d free", c, c.Total)
	}
}

// TestSocketChecksumOffload sends two UDP datagrams whose checksum holds
// only the pseudo-header's sum to a kernel socket on the peer: the one
// sent asking the kernel to finish the checksum arrives, the same bytes
// sent without asking are dropped as corrupt, so the request is what
// made the checksum right.
func TestSocketChecksumOffload(t *testing.T) {
	testutil.RequireBPF(t)
	pair, err := hosts.NewPair(1)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { pair.Close() })
	var s *Socket
	root := testutil.PinRoot(t)
	err = pair.A.Run(func() error {
		att, err := loader.Attach(pair.A.Iface, loader.Options{PinRoot: root})
		if err != nil {
			return err
		}
		t.Cleanup(func() { att.Close() })
		s, err = Open(att.Iface.Index, 0, Options{Frames: 256})
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	if !s.OffloadsChecksum() {
		t.Skipf("no checksum offload in %s mode: AF_XDP TX metadata needs Linux 6.11 and copy mode", s.Mode)
	}
	srcMAC, err := pair.A.MAC()
	if err != nil {
		t.Fatal(err)
	}
	dstMAC, err := pair.B.MAC()
	if err != nil {
		t.Fatal(err)
	}
	pc, err := pair.B.ListenPacket("udp", netip.AddrPortFrom(pair.B.Addr, 9000).String())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { pc.Close() })

	// The datagrams differ in length only: 10 bytes without offload, 20 with.
	const l4 = 14 + 20
	for _, offload := range []bool{false, true} {
		size := 10
		if offload {
			size = 20
		}
		b := packet.EthernetTo(dstMAC, srcMAC, packet.EtherTypeIPv4).
			IPv4(packet.IPv4{Src: pair.A.Addr, Dst: pair.B.Addr, Protocol: packet.ProtoUDP}).UDP(1234, 9000).Payload(size).Bytes()
		udp := header.UDP(b[l4:])
		udp.SetChecksum(header.PseudoHeaderChecksum(header.UDPProtocolNumber,
			tcpip.AddrFrom4(pair.A.Addr.As4()), tcpip.AddrFrom4(pair.B.Addr.As4()), uint16(len(udp))))
		n, err := s.Transmit(1, func(_ int, buf []byte) (int, Checksum) {
			if offload {
				return copy(buf, b), Checksum{Start: l4, Offset: 6}
			}
			return copy(buf, b), Checksum{}
		})
		if n != 1 || err != nil {
			t.Fatalf("Transmit(offload=%v): %d, %v", offload, n, err)
		}
	}
	pc.SetReadDeadline(time.Now().Add(2 * time.Second))
	buf := make([]byte, 100)
	n, _, err := pc.ReadFrom(buf)
	if err != nil {
		t.Fatalf("peer received nothing: %v", err)
	}
	if n != 20 {
		t.Errorf("peer received a %d-byte datagram first, want only the 20-byte one sent with offload (a partial checksum without it must be dropped)", n)
	}
}

// TestStatsDuringClose reads a socket's statistics, as a /metrics scrape
// does, while the socket closes: the race detector must see no race on
// its descriptors, and Stats after Close gives the last values, no error.
func TestStatsDuringClose(t *testing.T) {
	a, _ := testutil.Veth(t)
	iface, err := net.InterfaceByName(a)
	if err != nil {
		t.Fatal(err)
	}
	s, err := Open(iface.Index, 0, Options{Frames: 64})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	scraped := make(chan error)
	go func() {
		var err error
		for range 1000 {
			if _, err = s.Stats(); err != nil {
				break
			}
		}
		scraped <- err
	}()
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if err := <-scraped; err != nil {
		t.Errorf("Stats() during Close: %v", err)
	}
	if _, err := s.Stats(); err != nil {
		t.Errorf("Stats() after Close: %v", err)
	}
}

// idleSocket is a socket on queue 0 of a fresh veth with the program
// attached and nothing steered to it, closed at the end of the test.
func idleSocket(t *testing.T) *Socket {
	t.Helper()
	a, _ := testutil.Veth(t)
	att, err := loader.Attach(a, loader.Options{PinRoot: testutil.PinRoot(t)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { att.Close() })
	s, err := Open(att.Iface.Index, 0, Options{Frames: 256})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// write60 writes a frame of 60 bytes of no protocol, which the peer's
// kernel drops.
func write60(int, []byte) (int, Checksum) { return 60, Checksum{} }

// TestTransmitWhileClosing sends small packets from several goroutines,
// most of them kicked inline, while the socket closes: no kick may reach
// the closed descriptors, no wake the closed kicker (under -race, and a
// send on the closed channel would panic).
func TestTransmitWhileClosing(t *testing.T) {
	s := idleSocket(t)
	done := make(chan struct{})
	for range 4 {
		go func() {
			defer func() { done <- struct{}{} }()
			for range 2000 {
				if sent, _ := s.Transmit(1, write60); sent == 0 {
					return // closed
				}
			}
		}()
	}
	time.Sleep(5 * time.Millisecond)
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	for range 4 {
		<-done
	}
}

// TestInlineKickOnlyApart checks that a small transmit on an idle ring
// kicks from the caller, and that one right after it leaves the kick to
// the kicker, so that a burst of small packets shares kicks.
func TestInlineKickOnlyApart(t *testing.T) {
	s := idleSocket(t)
	send := func() int64 {
		t.Helper()
		if sent, err := s.Transmit(1, write60); sent != 1 || err != nil {
			t.Fatalf("Transmit: %d, %v", sent, err)
		}
		return s.lastInline.Load()
	}
	if send() == 0 {
		t.Fatal("a lone small transmit did not kick inline")
	}
	// As if an inline kick had just ended. A transmit's own time is
	// not the test's to bound, under -race and load least of all, so
	// the gap is made long enough that it cannot pass meanwhile.
	s.inlineGap = time.Hour
	just := stagetime.Now()
	s.lastInline.Store(just)
	if send() != just {
		t.Error("a transmit right after an inline kick kicked inline too")
	}
	// Once the kicker has sent that one, the ring is idle again.
	for deadline := time.Now().Add(time.Second); s.tx.pending() != 0 && time.Now().Before(deadline); {
		time.Sleep(time.Millisecond)
	}
	s.lastInline.Store(just - int64(2*s.inlineGap))
	if send() == just-int64(2*s.inlineGap) {
		t.Error("a transmit well after the last inline kick did not kick inline")
	}
}
