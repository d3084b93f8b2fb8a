package capture

import (
	"bytes"
	"context"
	"io"
	"testing"
	"time"

	"github.com/gopacket/gopacket/layers"
	"github.com/gopacket/gopacket/pcapgo"

	"github.com/xdpstack/xdpstack/internal/testing/packet"
)

// innerTCP is an inner packet of the PSP gateway: IP, no Ethernet.
func innerTCP(sport, dport uint16) []byte { return tcpFrame(addrB, addrA, sport, dport)[14:] }

// TestPSPStream taps the gateway's inner packets, streams them and
// reads them back: the filter's, with their SPI, direction and S bit.
func TestPSPStream(t *testing.T) {
	filter, _ := ParseFilter("ip and tcp dst port 22")
	tap := NewPSPTap(1500, filter)
	pkt := innerTCP(5555, 22)
	tap.Tapped(0x1a2b3c4d, true, true, pkt)
	tap.Tapped(0x1a2b3c4d, true, false, innerTCP(5555, 80)) // not kept
	tap.Tapped(0x99, false, false, pkt)

	r, w := io.Pipe()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() { tap.Stream(ctx, w, func() {}); w.Close() }()
	s := ReadStream(r)
	defer s.Close()
	for _, want := range []struct {
		spi          uint32
		out, sampled bool
	}{{0x1a2b3c4d, true, true}, {0x99, false, false}} {
		p, err := s.Next(time.Now().Add(5 * time.Second))
		if err != nil {
			t.Fatal(err)
		}
		if p.Point != PointPSP || p.SPI != want.spi || p.Out != want.out || p.Sampled != want.sampled || p.Queue != 0 ||
			p.Len != len(pkt) || !bytes.Equal(p.Data, pkt) {
			t.Errorf("streamed packet: got %+v, want spi %#x out %v sampled %v", p, want.spi, want.out, want.sampled)
		}
	}
}

func TestPSPLineAndComment(t *testing.T) {
	pkt := innerTCP(5555, 22)
	p := Packet{Time: capturedAt, Point: PointPSP, Out: true, SPI: 0x1a2b3c4d, Sampled: true, Len: len(pkt), Data: pkt}
	if got, want := Line(&p, nil), "12:00:00.123456 psp out spi 0x1a2b3c4d sampled TCP 10.0.0.2:5555 > 10.0.0.1:22 [S] len 40"; got != want {
		t.Errorf("Line: got %q, want %q", got, want)
	}
	if got, want := Comment(&p, nil), "psp out spi 0x1a2b3c4d sampled"; got != want {
		t.Errorf("Comment: got %q, want %q", got, want)
	}
	v6 := packet.Ethernet(packet.EtherTypeIPv6).IPv6(addr6, addr6, packet.ProtoUDP).UDP(1, 53).Bytes()[14:]
	p = Packet{Time: capturedAt, Point: PointPSP, SPI: 7, Len: len(v6), Data: v6}
	if got, want := Line(&p, nil), "12:00:00.123456 psp in spi 0x7 UDP [2001:db8::1]:1 > [2001:db8::1]:53 len 48"; got != want {
		t.Errorf("Line: got %q, want %q", got, want)
	}
	p.Data, p.Len = []byte{0x20, 0}, 2
	if got, want := Line(&p, nil), "12:00:00.123456 psp in spi 0x7 not ip (version 2) len 2"; got != want {
		t.Errorf("Line: got %q, want %q", got, want)
	}
	for _, f := range []string{"ip6", "udp port 53", "host 2001:db8::1"} {
		filter, _ := ParseFilter(f)
		p.Data = v6
		if !filter.Match(&p) {
			t.Errorf("filter %q does not match an inner IPv6 UDP packet to port 53", f)
		}
	}
}

// The PSP point's pcapng is LINKTYPE_RAW: IP packets, no Ethernet.
func TestPSPWriter(t *testing.T) {
	var file bytes.Buffer
	w, err := NewWriter(&file, "eth0", PointPSP, 1500, &Filter{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	pkt := innerTCP(5555, 22)
	in := Packet{Time: capturedAt, Point: PointPSP, SPI: 0x42, Len: len(pkt), Data: pkt}
	if err := w.Write(&in); err != nil {
		t.Fatal(err)
	}
	if err := w.Flush(); err != nil {
		t.Fatal(err)
	}
	r, err := pcapgo.NewNgReader(&file, pcapgo.NgReaderOptions{})
	if err != nil {
		t.Fatal(err)
	}
	data, _, opts, err := r.ReadPacketDataWithOptions()
	if err != nil || !bytes.Equal(data, pkt) || len(opts.Comments) != 1 || opts.Comments[0] != "psp in spi 0x42" {
		t.Errorf("read back: %x, %+v, %v", data, opts, err)
	}
	if r.LinkType() != layers.LinkTypeRaw {
		t.Errorf("link type %v, want raw", r.LinkType())
	}
}
