package gateway

import (
	"bytes"
	"net"
	"net/netip"
	"testing"

	"github.com/xdpstack/xdpstack/internal/testing/packet"
	"github.com/xdpstack/xdpstack/userstack/psp"
	"github.com/xdpstack/xdpstack/userstack/psp/tunnel"
)

// TestSeal builds the frames for each inner and outer IP version and
// checks that the peer's device opens them into the inner packet, and
// that the batch drops what would be too long on the wire.
func TestSeal(t *testing.T) {
	ourMAC, peerMAC := net.HardwareAddr{2, 0, 0, 0, 0, 1}, net.HardwareAddr{2, 0, 0, 0, 0, 2}
	for _, tc := range []struct {
		name               string
		inner              []byte
		outerSrc, outerDst string
	}{
		{"ipv4 in ipv4", packet.Ethernet(0).IPv4(packet.IPv4{Src: netip.MustParseAddr("10.7.0.1"), Dst: netip.MustParseAddr("10.7.0.2"), Protocol: packet.ProtoUDP}).UDP(1, 2).Payload(100).Bytes(), "192.0.2.1", "192.0.2.2"},
		{"ipv4 in ipv6", packet.Ethernet(0).IPv4(packet.IPv4{Src: netip.MustParseAddr("10.7.0.1"), Dst: netip.MustParseAddr("10.7.0.2"), Protocol: packet.ProtoUDP}).UDP(1, 2).Payload(100).Bytes(), "2001:db8::1", "2001:db8::2"},
		{"ipv6 in ipv4", packet.Ethernet(0).IPv6(netip.MustParseAddr("fd07::1"), netip.MustParseAddr("fd07::2"), packet.ProtoUDP).UDP(1, 2).Payload(100).Bytes(), "192.0.2.1", "192.0.2.2"},
		{"ipv6 in ipv6", packet.Ethernet(0).IPv6(netip.MustParseAddr("fd07::1"), netip.MustParseAddr("fd07::2"), packet.ProtoUDP).UDP(1, 2).Payload(100).Bytes(), "2001:db8::1", "2001:db8::2"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rx, sa := newPeerSA(t, psp.V1)
			tun := &tunnel.Tunnel{SA: sa, PeerMAC: peerMAC, Encap: psp.Encap{Mode: psp.Tunnel, VC: true,
				OuterSrc: netip.MustParseAddr(tc.outerSrc), OuterDst: netip.MustParseAddr(tc.outerDst)}}
			g := &Gateway{mac: ourMAC, wireMTU: 1500, queues: 1}
			b := newSealBatch(g)
			frame := bytes.Clone(tc.inner) // its Ethernet header is room only
			clear(frame[:ethLen])
			b.add(frame, tun)
			if len(b.byQueue[0]) != 1 {
				t.Fatal("add: the frame was not queued")
			}
			b.cur = b.byQueue[0]
			wire := make([]byte, 2048)
			n, _ := b.write(0, wire)
			if n > len(wire) {
				t.Fatal("write: not sealed")
			}
			wire = wire[:n]
			if !bytes.Equal(wire[0:6], peerMAC) || !bytes.Equal(wire[6:12], ourMAC) {
				t.Errorf("sealed frame goes from %x to %x, want %v to %v", wire[6:12], wire[0:6], ourMAC, peerMAC)
			}
			opened := make([]byte, len(wire))
			m, hdr, err := rx.Decrypt(opened, wire)
			if err != nil || hdr.SPI != sa.SPI() {
				t.Fatalf("Decrypt: %v, spi %#x (want %#x)", err, hdr.SPI, sa.SPI())
			}
			if !bytes.Equal(opened[ethLen:m], tc.inner[ethLen:]) {
				t.Error("the opened packet differs from the one sealed")
			}

			g.wireMTU = len(wire) - ethLen - 1
			b.add(bytes.Clone(frame), tun)
			if len(b.byQueue[0]) != 1 || g.counters.tooBig.Load() != 1 {
				t.Errorf("a packet one byte too long once sealed: %d queued, %d counted too big; want it counted and dropped", len(b.byQueue[0])-1, g.counters.tooBig.Load())
			}
		})
	}
}

func TestAddrs(t *testing.T) {
	v4 := packet.Ethernet(0).IPv4(packet.IPv4{Src: netip.MustParseAddr("10.7.0.1"), Dst: netip.MustParseAddr("10.7.0.2"), Protocol: packet.ProtoUDP}).UDP(1, 2).Bytes()[ethLen:]
	v6 := packet.Ethernet(0).IPv6(netip.MustParseAddr("fd07::1"), netip.MustParseAddr("fd07::2"), packet.ProtoUDP).UDP(1, 2).Bytes()[ethLen:]
	for _, tc := range []struct {
		name     string
		ip       []byte
		src, dst string
	}{
		{"ipv4", v4, "10.7.0.1", "10.7.0.2"},
		{"ipv6", v6, "fd07::1", "fd07::2"},
		{"ipv4 truncated", v4[:19], "", ""},
		{"ipv4 ihl past the end", append([]byte{0x4f}, v4[1:20]...), "", ""},
		{"ipv6 truncated", v6[:39], "", ""},
		{"version 5", append([]byte{0x50}, v6[1:]...), "", ""},
	} {
		src, dst, ok := addrs(tc.ip)
		if ok != (tc.src != "") || ok && (src.String() != tc.src || dst.String() != tc.dst) {
			t.Errorf("%s: addrs: %v %v %v, want %q %q", tc.name, src, dst, ok, tc.src, tc.dst)
		}
	}
}

// FuzzAddrs reads any bytes without a panic, and finds addresses only
// in what holds a whole IP header.
func FuzzAddrs(f *testing.F) {
	f.Add(packet.Ethernet(0).IPv4(packet.IPv4{Src: netip.MustParseAddr("10.7.0.1"), Dst: netip.MustParseAddr("10.7.0.2"), Protocol: packet.ProtoUDP}).Bytes()[ethLen:])
	f.Add(packet.Ethernet(0).IPv6(netip.MustParseAddr("fd07::1"), netip.MustParseAddr("fd07::2"), packet.ProtoUDP).Bytes()[ethLen:])
	f.Fuzz(func(t *testing.T, ip []byte) {
		if _, _, ok := addrs(ip); ok && len(ip) < 20 {
			t.Errorf("addresses found in %d bytes", len(ip))
		}
	})
}
