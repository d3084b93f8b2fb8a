package capture

import (
	"bytes"
	"io"
	"testing"
	"time"

	"github.com/gopacket/gopacket/pcapgo"

	"github.com/xdpstack/xdpstack/internal/testing/packet"
	"github.com/xdpstack/xdpstack/maps"
)

func TestSummary(t *testing.T) {
	for _, tc := range []struct {
		name  string
		frame []byte
		want  string
	}{
		{"tcp syn", tcpFrame(addrB, addrA, 5555, 80), "TCP 10.0.0.2:5555 > 10.0.0.1:80 [S] len 54"},
		{"udp over ipv6", packet.Ethernet(packet.EtherTypeIPv6).IPv6(addr6, addr6, packet.ProtoUDP).UDP(1, 53).Bytes(), "UDP [2001:db8::1]:1 > [2001:db8::1]:53 len 62"},
		{"udp after ipv6 options", packet.Ethernet(packet.EtherTypeIPv6).IPv6(addr6, addr6, packet.ProtoHopByHop).IPv6Options(packet.ProtoUDP, 1).UDP(1, 53).Bytes(),
			"UDP [2001:db8::1]:1 > [2001:db8::1]:53 len 78"},
		{"ping", packet.Ethernet(packet.EtherTypeIPv4).IPv4(packet.IPv4{Src: addrA, Dst: addrB, Protocol: packet.ProtoICMP}).ICMPEcho(false).Bytes(), "ICMP 10.0.0.1 > 10.0.0.2 type 8 len 42"},
		{"gre", packet.Ethernet(packet.EtherTypeIPv4).IPv4(packet.IPv4{Src: addrA, Dst: addrB, Protocol: 47}).Bytes(), "IP 10.0.0.1 > 10.0.0.2 proto 47 len 34"},
		{"arp", packet.Ethernet(packet.EtherTypeARP).Payload(28).Bytes(), "ARP len 42"},
		{"vlan", packet.Ethernet(packet.EtherTypeVLAN).VLAN(7, packet.EtherTypeIPv4).IPv4(packet.IPv4{Src: addrA, Dst: addrB, Protocol: packet.ProtoUDP}).UDP(1, 2).Bytes(),
			"UDP 10.0.0.1:1 > 10.0.0.2:2 len 46"},
		{"lldp", packet.Ethernet(0x88cc).Payload(30).Bytes(), "ethertype 0x88cc len 44"},
		{"runt", []byte{1, 2, 3}, "runt len 3"},
		{"cut in the tcp header", tcpFrame(addrB, addrA, 5555, 80)[:40], "IP 10.0.0.2 > 10.0.0.1 proto 6 len 40"},
	} {
		if got := Summary(tc.frame, len(tc.frame)); got != tc.want {
			t.Errorf("Summary(%s): got %q, want %q", tc.name, got, tc.want)
		}
	}
}

// capturedAt is a fixed time for the lines below.
var capturedAt = time.Date(2026, 12, 6, 12, 0, 0, 123456000, time.Local)

func TestLineAndComment(t *testing.T) {
	tags := func(id uint32) string { return map[uint32]string{3: "no-ssh"}[id] }
	frame := tcpFrame(addrB, addrA, 5555, 22)
	for _, tc := range []struct {
		p             Packet
		line, comment string
	}{
		{Packet{Time: capturedAt, Verdict: maps.Verdict{Action: maps.ActionDrop, Reason: maps.ReasonRuleDeny}, RuleID: 3, Len: 54, Data: frame},
			"12:00:00.123456 xdp q0 drop/rule_deny rule 3 (no-ssh) TCP 10.0.0.2:5555 > 10.0.0.1:22 [S] len 54",
			"xdp drop/rule_deny rule 3 (no-ssh) queue 0"},
		{Packet{Time: capturedAt, Verdict: maps.Verdict{Action: maps.ActionPass, Reason: maps.ReasonRulePass}, RuleID: 4, Queue: 2, Len: 54, Data: frame},
			"12:00:00.123456 xdp q2 pass/rule_pass rule 4 TCP 10.0.0.2:5555 > 10.0.0.1:22 [S] len 54",
			"xdp pass/rule_pass rule 4 queue 2"},
		{Packet{Time: capturedAt, Point: PointUserstack, Out: true, Queue: 1, Len: 1000, Data: frame},
			"12:00:00.123456 userstack q1 out TCP 10.0.0.2:5555 > 10.0.0.1:22 [S] len 1000",
			"userstack out queue 1"},
	} {
		if got := Line(&tc.p, tags); got != tc.line {
			t.Errorf("Line: got %q, want %q", got, tc.line)
		}
		if got := Comment(&tc.p, tags); got != tc.comment {
			t.Errorf("Comment: got %q, want %q", got, tc.comment)
		}
	}
}

// TestWriter writes packets to pcapng and reads them back with
// gopacket's reader: lengths, bytes, times, comments and directions.
func TestWriter(t *testing.T) {
	var file bytes.Buffer
	filter, _ := ParseFilter("tcp")
	w, err := NewWriter(&file, "eth0", PointUserstack, 40, filter, nil)
	if err != nil {
		t.Fatal(err)
	}
	frame := tcpFrame(addrB, addrA, 5555, 22)
	in := []Packet{
		{Time: capturedAt, Point: PointUserstack, Len: len(frame), Data: frame[:40]},
		{Time: capturedAt.Add(time.Nanosecond), Point: PointUserstack, Out: true, Queue: 3, Len: len(frame), Data: frame[:40]},
	}
	for i := range in {
		if err := w.Write(&in[i]); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Flush(); err != nil {
		t.Fatal(err)
	}

	r, err := pcapgo.NewNgReader(&file, pcapgo.NgReaderOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for i, want := range in {
		data, ci, opts, err := r.ReadPacketDataWithOptions()
		if err != nil {
			t.Fatalf("packet %d: %v", i, err)
		}
		dir := pcapgo.NgEpbFlagDirectionInbound
		if want.Out {
			dir = pcapgo.NgEpbFlagDirectionOutbound
		}
		if !bytes.Equal(data, want.Data) || ci.Length != want.Len || !ci.Timestamp.Equal(want.Time) ||
			len(opts.Comments) != 1 || opts.Comments[0] != Comment(&want, nil) || opts.Flags == nil || opts.Flags.Direction != dir {
			t.Errorf("packet %d: got %d bytes of %d at %v, options %+v; want %d of %d at %v, comment %q, direction %v",
				i, len(data), ci.Length, ci.Timestamp, opts, len(want.Data), want.Len, want.Time, Comment(&want, nil), dir)
		}
	}
	if _, _, err := r.ReadPacketData(); err != io.EOF {
		t.Errorf("after the packets: got %v, want EOF", err)
	}
	if intf, err := r.Interface(0); err != nil || intf.Name != "eth0" || intf.SnapLength != 40 || intf.Filter != "tcp" {
		t.Errorf("interface: got %+v, %v", intf, err)
	}
}
