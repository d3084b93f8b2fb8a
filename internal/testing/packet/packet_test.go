package packet

import (
	"encoding/binary"
	"net/netip"
	"testing"
)

func TestIPv4UDPFields(t *testing.T) {
	f := Ethernet(EtherTypeIPv4).
		IPv4(IPv4{Src: netip.MustParseAddr("192.0.2.1"), Dst: netip.MustParseAddr("192.0.2.2"), Protocol: ProtoUDP}).
		UDP(1000, 2000).Payload(10)
	b := f.Bytes()
	if got, want := len(b), 14+20+8+10; got != want {
		t.Fatalf("len: got %d, want %d", got, want)
	}
	if got := binary.BigEndian.Uint16(b[14+2:]); got != 38 {
		t.Errorf("IPv4 total length: got %d, want 38", got)
	}
	if got := checksum(b[14:34]); got != 0 {
		t.Errorf("IPv4 header checksum does not verify: folded sum %#x", got)
	}
	if got := binary.BigEndian.Uint16(b[34+4:]); got != 18 {
		t.Errorf("UDP length: got %d, want 18", got)
	}
	if want := []int{14, 34, 42}; len(f.Ends) != 3 || f.Ends[0] != want[0] || f.Ends[1] != want[1] || f.Ends[2] != want[2] {
		t.Errorf("Ends: got %v, want %v", f.Ends, want)
	}
}

func TestIPv6PayloadLength(t *testing.T) {
	b := Ethernet(EtherTypeIPv6).
		IPv6(netip.MustParseAddr("2001:db8::1"), netip.MustParseAddr("2001:db8::2"), ProtoHopByHop).
		IPv6Options(ProtoTCP, 1).TCP(1, 2, 0).Bytes()
	if got := binary.BigEndian.Uint16(b[14+4:]); got != 16+20 {
		t.Errorf("IPv6 payload length: got %d, want 36", got)
	}
}
