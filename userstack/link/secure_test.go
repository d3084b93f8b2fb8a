package link

import (
	"bytes"
	"net/netip"
	"sync"
	"testing"
	"time"

	"github.com/xdpstack/xdpstack/internal/testing/packet"
	"github.com/xdpstack/xdpstack/userstack/afxdp"
)

var (
	src4, dst4 = netip.MustParseAddr("10.0.0.2"), netip.MustParseAddr("10.0.0.1")
	src6, dst6 = netip.MustParseAddr("fd00::2"), netip.MustParseAddr("fd00::1")
)

func udp4(dport uint16, fragOffset uint16) []byte {
	return packet.Ethernet(packet.EtherTypeIPv4).IPv4(packet.IPv4{Src: src4, Dst: dst4, Protocol: packet.ProtoUDP, FragOffset: fragOffset}).UDP(5, dport).Payload(40).Bytes()
}

func TestSecureFrame(t *testing.T) {
	for _, tc := range []struct {
		name  string
		frame []byte
		want  bool
	}{
		{"ipv4 udp/1000", udp4(SecurePort, 0), true},
		{"ipv4 udp/1000 with options", packet.Ethernet(packet.EtherTypeIPv4).IPv4(packet.IPv4{Src: src4, Dst: dst4, Protocol: packet.ProtoUDP, Options: make([]byte, 8)}).UDP(5, SecurePort).Payload(40).Bytes(), true},
		{"ipv6 udp/1000", packet.Ethernet(packet.EtherTypeIPv6).IPv6(src6, dst6, packet.ProtoUDP).UDP(5, SecurePort).Payload(40).Bytes(), true},
		{"ipv4 udp/1001", udp4(SecurePort+1, 0), false},
		{"ipv4 later fragment", udp4(SecurePort, 10), false},
		{"ipv4 tcp/1000", packet.Ethernet(packet.EtherTypeIPv4).IPv4(packet.IPv4{Src: src4, Dst: dst4, Protocol: packet.ProtoTCP}).TCP(5, SecurePort, 5).Payload(40).Bytes(), false},
		{"ipv6 with a fragment header", packet.Ethernet(packet.EtherTypeIPv6).IPv6(src6, dst6, packet.ProtoFragment).IPv6Fragment(packet.ProtoUDP, 0, true).UDP(5, SecurePort).Payload(40).Bytes(), false},
		{"vlan", packet.Ethernet(packet.EtherTypeVLAN).VLAN(5, packet.EtherTypeIPv4).IPv4(packet.IPv4{Src: src4, Dst: dst4, Protocol: packet.ProtoUDP}).UDP(5, SecurePort).Payload(40).Bytes(), false},
		{"truncated", udp4(SecurePort, 0)[:40], false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := secureFrame(tc.frame); got != tc.want {
				t.Errorf("secureFrame: got %v, want %v", got, tc.want)
			}
		})
	}
}

// recordingSecure keeps copies of the frames it is handed, and counts
// the batches.
type recordingSecure struct {
	mu      sync.Mutex
	frames  [][]byte
	flushes int
}

func (r *recordingSecure) Received(queue int, frame []byte) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.frames = append(r.frames, bytes.Clone(frame))
}

func (r *recordingSecure) Flush(queue int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.flushes++
}

// TestSecureTakesPSPFrames receives a batch of UDP frames with a Secure
// side on: it gets those to port 1000 and a Flush after them, the
// netstack the rest; and a frame it sends through Transmit goes out on
// the queue, seen by the tap.
func TestSecureTakesPSPFrames(t *testing.T) {
	qa, _ := memPair()
	a := newSide(t, qa, 1, Options{})
	sec := &recordingSecure{}
	if !a.ep.StartSecure(sec) || a.ep.StartSecure(&recordingSecure{}) {
		t.Fatal("StartSecure: the first refused or a second let on")
	}
	tap := &recordingTap{}
	a.ep.StartTap(tap)
	defer a.ep.StopTap(tap)
	psp, other := udp4(SecurePort, 0), udp4(SecurePort+1, 0)
	received := a.stack.Stats().IP.PacketsReceived.Value()
	qa.mu.Lock()
	qa.frames = append(qa.frames, psp, other, psp)
	qa.mu.Unlock()
	qa.cond.Broadcast()
	deadline := time.Now().Add(5 * time.Second)
	for a.stack.Stats().IP.PacketsReceived.Value() == received && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond)
	}
	time.Sleep(10 * time.Millisecond)
	sec.mu.Lock()
	if len(sec.frames) != 2 || !bytes.Equal(sec.frames[0], psp) || sec.flushes != 1 {
		t.Errorf("secure got %d frames in %d batches, want the 2 to port 1000 in 1", len(sec.frames), sec.flushes)
	}
	sec.mu.Unlock()
	if got := a.stack.Stats().IP.PacketsReceived.Value() - received; got != 1 {
		t.Errorf("netstack received %d packets, want 1 (the one to port 1001)", got)
	}

	n, err := a.ep.Transmit(0, 1, func(i int, buf []byte) (int, afxdp.Checksum) { return copy(buf, psp), afxdp.Checksum{} })
	if n != 1 || err != nil {
		t.Fatalf("Transmit: %d, %v", n, err)
	}
	if _, out := tap.counts(); out != 1 {
		t.Errorf("tap saw %d frames out, want the one Transmit sent", out)
	}

	a.ep.StopSecure(sec)
	if !a.ep.StartSecure(sec) {
		t.Error("StartSecure after StopSecure: refused")
	}
}

// FuzzSecureFrame reads any bytes without a panic.
func FuzzSecureFrame(f *testing.F) {
	f.Add(udp4(SecurePort, 0))
	f.Add(packet.Ethernet(packet.EtherTypeIPv6).IPv6(src6, dst6, packet.ProtoUDP).UDP(5, SecurePort).Payload(40).Bytes())
	f.Fuzz(func(t *testing.T, frame []byte) { secureFrame(frame) })
}
