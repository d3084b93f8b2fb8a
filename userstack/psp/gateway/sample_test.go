package gateway

import (
	"bytes"
	"math"
	"net"
	"net/netip"
	"testing"

	"github.com/xdpstack/xdpstack/internal/testing/packet"
	"github.com/xdpstack/xdpstack/userstack/psp"
	"github.com/xdpstack/xdpstack/userstack/psp/tunnel"
)

// tapRecord is what a recordingTap saw of one packet.
type tapRecord struct {
	spi          uint32
	out, sampled bool
}

type recordingTap struct{ seen []tapRecord }

func (r *recordingTap) Tapped(spi uint32, out, sampled bool, _ []byte) {
	r.seen = append(r.seen, tapRecord{spi, out, sampled})
}

// With SampleRate 4, one sent packet in 16 goes out with the S bit:
// over 8192 packets the count is within 5 sigma of 512, each one the
// peer opens says S exactly when the tap was told so, and the gateway
// counts them.
func TestSampleRate(t *testing.T) {
	const rate, packets = 4, 8192
	rx, sa := newPeerSA(t, psp.V0)
	tun := &tunnel.Tunnel{SA: sa, PeerMAC: net.HardwareAddr{2, 0, 0, 0, 0, 2}, Encap: psp.Encap{Mode: psp.Tunnel,
		OuterSrc: netip.MustParseAddr("192.0.2.1"), OuterDst: netip.MustParseAddr("192.0.2.2")}}
	g := &Gateway{opts: Options{Device: rx}, mac: net.HardwareAddr{2, 0, 0, 0, 0, 1}, wireMTU: 1500, queues: 1, sampleMask: sampleMask(rate)}
	tap := &recordingTap{}
	if !g.StartTap(tap) {
		t.Fatal("StartTap: refused")
	}
	inner := packet.Ethernet(0).IPv4(packet.IPv4{Src: netip.MustParseAddr("10.7.0.1"), Dst: netip.MustParseAddr("10.7.0.2"), Protocol: packet.ProtoUDP}).UDP(1, 2).Payload(100).Bytes()
	b := newSealBatch(g)
	wire := make([]byte, 2048)
	opened := make([]byte, len(wire))
	sampled := 0
	for i := range packets {
		b.add(bytes.Clone(inner), tun)
		b.cur = b.byQueue[0]
		n, _ := b.write(0, wire)
		if n > len(wire) {
			t.Fatalf("packet %d: not sealed", i)
		}
		_, hdr, err := rx.Decrypt(opened, wire[:n])
		if err != nil {
			t.Fatalf("packet %d: Decrypt: %v", i, err)
		}
		if got := tap.seen[i]; got != (tapRecord{sa.SPI(), true, hdr.Sample}) {
			t.Fatalf("packet %d: tapped %+v, the peer read S %v under spi %#x", i, got, hdr.Sample, sa.SPI())
		}
		if hdr.Sample {
			sampled++
		}
		b.byQueue[0], b.cur = b.byQueue[0][:0], nil
	}
	p := 1.0 / (1 << rate)
	mean, sigma := packets*p, math.Sqrt(packets*p*(1-p))
	if math.Abs(float64(sampled)-mean) > 5*sigma {
		t.Errorf("%d of %d packets sampled at rate %d, want %.0f ± %.0f (5 sigma)", sampled, packets, rate, mean, 5*sigma)
	}
	if got := g.Stats().Sampled; got != uint64(sampled) {
		t.Errorf("Stats().Sampled = %d, the peer saw %d", got, sampled)
	}
}
