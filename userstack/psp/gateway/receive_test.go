package gateway

import (
	"bytes"
	"net"
	"net/netip"
	"sync"
	"testing"

	"golang.zx2c4.com/wireguard/tun"

	"github.com/xdpstack/xdpstack/internal/testing/packet"
	"github.com/xdpstack/xdpstack/userstack/psp"
	"github.com/xdpstack/xdpstack/userstack/psp/tunnel"
)

// fakeTUN keeps copies of what is written to it, unless it discards.
type fakeTUN struct {
	tun.Device
	discard bool
	mu      sync.Mutex
	written [][]byte
	wrote   chan struct{}
}

func (f *fakeTUN) Write(bufs [][]byte, offset int) (int, error) {
	f.mu.Lock()
	for _, b := range bufs {
		if !f.discard {
			f.written = append(f.written, bytes.Clone(b[offset:]))
		}
	}
	f.mu.Unlock()
	f.wrote <- struct{}{}
	return len(bufs), nil
}

// receiving is a gateway with only its receiving side, over a fake TUN
// device, and a sender whose tunnel it has granted.
type receiving struct {
	g    *Gateway
	tun  *fakeTUN
	seal func(inner []byte) []byte
}

// newPeerSA returns a receiving device and an SA that sends to it under
// an SPI of version v it issued.
func newPeerSA(tb testing.TB, v psp.Version) (*psp.Device, *psp.SA) {
	tb.Helper()
	dev, err := psp.NewDeviceRandom()
	if err != nil {
		tb.Fatal(err)
	}
	spi, key, err := dev.AllocSPI(v)
	if err != nil {
		tb.Fatal(err)
	}
	sa, err := psp.NewSA(spi, v, key)
	if err != nil {
		tb.Fatal(err)
	}
	return dev, sa
}

func newReceiving(tb testing.TB, src netip.Addr) *receiving {
	dev, sa := newPeerSA(tb, psp.V0)
	acl := tunnel.NewACL(nil)
	if err := acl.Allow(tunnel.Grant{SPI: sa.SPI(), Version: psp.V0, Src: src}); err != nil {
		tb.Fatal(err)
	}
	ft := &fakeTUN{wrote: make(chan struct{}, 100)}
	g := &Gateway{opts: Options{Device: dev, ACL: acl, Local: []netip.Prefix{netip.MustParsePrefix("10.7.0.2/24")}}, tun: ft, done: make(chan struct{}), queues: 1}
	q := newRxQueue()
	g.rx = []*rxQueue{q}
	g.wg.Add(1)
	go g.write(q)
	tb.Cleanup(func() { close(g.done); g.wg.Wait() })
	encap := psp.Encap{Mode: psp.Tunnel, OuterSrc: netip.MustParseAddr("192.0.2.1"), OuterDst: netip.MustParseAddr("192.0.2.2")}
	seal := func(inner []byte) []byte {
		wire := make([]byte, len(inner)+100)
		n, err := sa.Encrypt(wire, inner, &encap)
		if err != nil {
			tb.Fatal(err)
		}
		return wire[:n]
	}
	return &receiving{g: g, tun: ft, seal: seal}
}

func innerUDP(src string, size int) []byte { return innerUDPTo(src, "10.7.0.2", size) }

func innerUDPTo(src, dst string, size int) []byte {
	return packet.EthernetTo(net.HardwareAddr{2, 0, 0, 0, 0, 2}, net.HardwareAddr{2, 0, 0, 0, 0, 1}, packet.EtherTypeIPv4).
		IPv4(packet.IPv4{Src: netip.MustParseAddr(src), Dst: netip.MustParseAddr(dst), Protocol: packet.ProtoUDP}).UDP(1, 2).Payload(size).Bytes()
}

// TestReceive hands the receiving side a batch: the packet from the
// granted source to this host is written to the TUN device; the one
// from another source, the one to an address in the local network but
// not this host's, and the corrupted one are counted and dropped.
func TestReceive(t *testing.T) {
	r := newReceiving(t, netip.MustParseAddr("10.7.0.1"))
	good := innerUDP("10.7.0.1", 100)
	corrupt := r.seal(good)
	corrupt[len(corrupt)-1] ^= 1
	for _, f := range [][]byte{r.seal(good), r.seal(innerUDP("10.7.0.9", 100)), r.seal(innerUDPTo("10.7.0.1", "10.7.0.3", 100)), corrupt} {
		r.g.Received(0, f)
	}
	r.g.Flush(0)
	<-r.tun.wrote
	if len(r.tun.written) != 1 || !bytes.Equal(r.tun.written[0], good[ethLen:]) {
		t.Errorf("written to the tun device: %d packets, want the one granted", len(r.tun.written))
	}
	if st := r.g.Stats(); st.ACLDenied != 1 || st.NotLocal != 1 || st.PSP.RxAuthFail != 1 || st.PSP.RxPackets != 3 {
		t.Errorf("stats: %+v, want 1 refused by the acl, 1 not to this host, 1 failing authentication, 3 opened", st)
	}
}

// BenchmarkReceive opens 1400-byte packets in batches of 64 and hands
// them to the TUN device's writer: no allocation per packet.
func BenchmarkReceive(b *testing.B) {
	r := newReceiving(b, netip.MustParseAddr("10.7.0.1"))
	r.tun.discard = true
	frame := r.seal(innerUDP("10.7.0.1", 1400))
	b.SetBytes(int64(len(frame)))
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		r.g.Received(0, frame)
		if i%64 == 63 {
			r.g.Flush(0)
			<-r.tun.wrote
		}
	}
}

// BenchmarkSeal seals 1400-byte packets in batches of 64, as the send
// loop does, into a discarding queue: no allocation per packet.
func BenchmarkSeal(b *testing.B) {
	_, sa := newPeerSA(b, psp.V0)
	t := &tunnel.Tunnel{SA: sa, PeerMAC: net.HardwareAddr{2, 0, 0, 0, 0, 2}, Encap: psp.Encap{Mode: psp.Tunnel,
		OuterSrc: netip.MustParseAddr("192.0.2.1"), OuterDst: netip.MustParseAddr("192.0.2.2")}}
	g := &Gateway{mac: net.HardwareAddr{2, 0, 0, 0, 0, 1}, wireMTU: 1500, queues: 1}
	sb := newSealBatch(g)
	frame := innerUDP("10.7.0.1", 1400)
	frames := make([][]byte, 64)
	for i := range frames {
		frames[i] = bytes.Clone(frame)
	}
	wire := make([]byte, 2048)
	b.SetBytes(int64(len(frame)))
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		sb.add(frames[i%64], t)
		if i%64 == 63 {
			sb.cur = sb.byQueue[0]
			for j := range sb.cur {
				sb.write(j, wire)
			}
			sb.byQueue[0] = sb.byQueue[0][:0]
		}
	}
}
