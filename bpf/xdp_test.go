package bpf_test

import (
	"bytes"
	"errors"
	"fmt"
	"net/netip"
	"testing"

	"github.com/cilium/ebpf"

	"github.com/xdpstack/xdpstack/bpf"
	"github.com/xdpstack/xdpstack/internal/testing/packet"
	"github.com/xdpstack/xdpstack/internal/testing/testutil"
	"github.com/xdpstack/xdpstack/maps"
)

var (
	src4 = netip.MustParseAddr("192.0.2.1")
	dst4 = netip.MustParseAddr("192.0.2.2")
	src6 = netip.MustParseAddr("2001:db8::1")
	dst6 = netip.MustParseAddr("2001:db8::2")
)

// loadXdp loads the ingress program unpinned, with the userstack port
// range set to [portMin, portMax].
func loadXdp(tb testing.TB, portMin, portMax uint16) *bpf.XdpObjects {
	tb.Helper()
	testutil.RequireBPF(tb)
	spec, err := bpf.LoadXdp()
	if err != nil {
		tb.Fatalf("LoadXdp: %v", err)
	}
	for _, m := range spec.Maps {
		m.Pinning = ebpf.PinNone
	}
	if err := spec.Variables[bpf.XdpVarUserstackPortMin].Set(portMin); err != nil {
		tb.Fatal(err)
	}
	if err := spec.Variables[bpf.XdpVarUserstackPortMax].Set(portMax); err != nil {
		tb.Fatal(err)
	}
	var objs bpf.XdpObjects
	if err := spec.LoadAndAssign(&objs, nil); err != nil {
		tb.Fatalf("load xdp objects: %v", err)
	}
	tb.Cleanup(func() { objs.Close() })
	return &objs
}

// runFrame runs the program once on frame and returns its verdict and
// which counters moved.
func runFrame(tb testing.TB, objs *bpf.XdpObjects, frame []byte) (maps.Action, map[maps.Verdict]maps.Counter) {
	tb.Helper()
	stats := maps.FromObjects(&objs.XdpMaps).Stats
	before, err := stats.Sum()
	if err != nil {
		tb.Fatal(err)
	}
	out := make([]byte, len(frame)+256)
	ret, err := objs.XdpstackIngress.Run(&ebpf.RunOptions{Data: frame, DataOut: out})
	if err != nil {
		tb.Fatalf("Run(%d-byte frame): %v", len(frame), err)
	}
	after, err := stats.Sum()
	if err != nil {
		tb.Fatal(err)
	}
	moved := make(map[maps.Verdict]maps.Counter)
	for v, c := range after {
		d := maps.Counter{Packets: c.Packets - before[v].Packets, Bytes: c.Bytes - before[v].Bytes}
		if d.Packets != 0 || d.Bytes != 0 {
			moved[v] = d
		}
	}
	return maps.Action(ret), moved
}

// checkVerdict asserts that frame got want and that exactly that
// counter moved by one packet of len(frame) bytes, leaving the frame as
// it was.
func checkVerdict(t *testing.T, objs *bpf.XdpObjects, frame []byte, want maps.Verdict) {
	t.Helper()
	orig := bytes.Clone(frame)
	got, moved := runFrame(t, objs, frame)
	if got != want.Action {
		t.Errorf("verdict: got %v, want %v", got, want.Action)
	}
	wantMoved := map[maps.Verdict]maps.Counter{want: {Packets: 1, Bytes: uint64(len(frame))}}
	if fmt.Sprint(moved) != fmt.Sprint(wantMoved) {
		t.Errorf("counters moved: got %v, want %v", moved, wantMoved)
	}
	if !bytes.Equal(frame, orig) {
		t.Errorf("program changed the frame")
	}
}

func eth4(proto uint8) *packet.Frame {
	return packet.Ethernet(packet.EtherTypeIPv4).IPv4(packet.IPv4{Src: src4, Dst: dst4, Protocol: proto})
}

func eth6(next uint8) *packet.Frame {
	return packet.Ethernet(packet.EtherTypeIPv6).IPv6(src6, dst6, next)
}

var (
	passNoMatch   = maps.Verdict{Action: maps.ActionPass, Reason: maps.ReasonNoMatch}
	passMalformed = maps.Verdict{Action: maps.ActionPass, Reason: maps.ReasonMalformed}
	passNotIP     = maps.Verdict{Action: maps.ActionPass, Reason: maps.ReasonNotIP}
	passFragment  = maps.Verdict{Action: maps.ActionPass, Reason: maps.ReasonFragment}
	passExtLimit  = maps.Verdict{Action: maps.ActionPass, Reason: maps.ReasonExtHdrLimit}
	passNoSocket  = maps.Verdict{Action: maps.ActionPass, Reason: maps.ReasonNoSocket}
	passNotLocal  = maps.Verdict{Action: maps.ActionPass, Reason: maps.ReasonNotLocal}
	passVLAN      = maps.Verdict{Action: maps.ActionPass, Reason: maps.ReasonVLAN}
	dropMartian   = maps.Verdict{Action: maps.ActionDrop, Reason: maps.ReasonMartian}
)

// parseCases are well-formed and malformed frames with no listener
// configured: every one of them must pass.
var parseCases = []struct {
	name  string
	frame *packet.Frame
	want  maps.Verdict
}{
	{"ipv4 udp", eth4(packet.ProtoUDP).UDP(1000, 53).Payload(32), passNoMatch},
	{"ipv4 tcp", eth4(packet.ProtoTCP).TCP(1000, 80, 0), passNoMatch},
	{"ipv4 tcp options", eth4(packet.ProtoTCP).TCP(1000, 80, 15).Payload(100), passNoMatch},
	{"ipv4 icmp", eth4(packet.ProtoICMP).ICMPEcho(false).Payload(56), passNoMatch},
	{"ipv4 gre", eth4(47).Payload(40), passNoMatch},
	{"ipv4 options", packet.Ethernet(packet.EtherTypeIPv4).IPv4(packet.IPv4{Src: src4, Dst: dst4, Protocol: packet.ProtoUDP, Options: make([]byte, 40)}).UDP(1, 2), passNoMatch},
	{"ipv4 ihl 4", packet.Ethernet(packet.EtherTypeIPv4).IPv4(packet.IPv4{Src: src4, Dst: dst4, Protocol: packet.ProtoUDP, IHL: 4}).UDP(1, 2), passMalformed},
	{"ipv4 ihl past end", packet.Ethernet(packet.EtherTypeIPv4).IPv4(packet.IPv4{Src: src4, Dst: dst4, Protocol: packet.ProtoUDP, IHL: 15}).UDP(1, 2), passMalformed},
	{"ipv4 version 6 in ipv4 ethertype", packet.Ethernet(packet.EtherTypeIPv4).IPv4(packet.IPv4{Src: src4, Dst: dst4, Protocol: packet.ProtoUDP, Version: 6}).UDP(1, 2), passMalformed},
	{"ipv4 first fragment", packet.Ethernet(packet.EtherTypeIPv4).IPv4(packet.IPv4{Src: src4, Dst: dst4, Protocol: packet.ProtoUDP, MoreFragments: true}).UDP(1, 2).Payload(64), passFragment},
	{"ipv4 later fragment", packet.Ethernet(packet.EtherTypeIPv4).IPv4(packet.IPv4{Src: src4, Dst: dst4, Protocol: packet.ProtoUDP, FragOffset: 8}).Payload(64), passFragment},
	{"ipv6 udp", eth6(packet.ProtoUDP).UDP(1000, 53).Payload(32), passNoMatch},
	{"ipv6 tcp", eth6(packet.ProtoTCP).TCP(1000, 443, 8), passNoMatch},
	{"ipv6 icmpv6", eth6(packet.ProtoICMPv6).ICMPEcho(true), passNoMatch},
	{"ipv6 no next header", eth6(packet.ProtoNoNextHdr), passNoMatch},
	{"ipv6 ext headers", eth6(packet.ProtoHopByHop).IPv6Options(packet.ProtoRouting, 0).IPv6Options(packet.ProtoDestOpts, 2).IPv6Options(packet.ProtoTCP, 1).TCP(1, 80, 0), passNoMatch},
	{"ipv6 atomic fragment", eth6(packet.ProtoFragment).IPv6Fragment(packet.ProtoUDP, 0, false).UDP(1, 53), passNoMatch},
	{"ipv6 first fragment", eth6(packet.ProtoFragment).IPv6Fragment(packet.ProtoUDP, 0, true).UDP(1, 53).Payload(64), passFragment},
	{"ipv6 later fragment", eth6(packet.ProtoHopByHop).IPv6Options(packet.ProtoFragment, 0).IPv6Fragment(packet.ProtoUDP, 100, false).Payload(64), passFragment},
	{"ipv6 five ext headers", eth6(packet.ProtoHopByHop).IPv6Options(packet.ProtoDestOpts, 0).IPv6Options(packet.ProtoRouting, 0).IPv6Options(packet.ProtoDestOpts, 0).IPv6Options(packet.ProtoDestOpts, 0).IPv6Options(packet.ProtoUDP, 0).UDP(1, 2), passExtLimit},
	{"ipv4 version in ipv6 ethertype", packet.Ethernet(packet.EtherTypeIPv6).IPv4(packet.IPv4{Src: src4, Dst: dst4, Protocol: packet.ProtoUDP}).UDP(1, 2).Payload(20), passMalformed},
	{"tcp data offset 4", eth4(packet.ProtoTCP).TCP(1, 80, 4), passMalformed},
	{"tcp data offset past end", eth4(packet.ProtoTCP).TCP(1, 80, 5).Payload(0), passNoMatch},
	{"arp", packet.Ethernet(packet.EtherTypeARP).Payload(28), passNotIP},
	{"vlan ipv4 udp", packet.Ethernet(packet.EtherTypeVLAN).VLAN(100, packet.EtherTypeIPv4).IPv4(packet.IPv4{Src: src4, Dst: dst4, Protocol: packet.ProtoUDP}).UDP(1, 53), passVLAN},
	{"qinq ipv6 tcp", packet.Ethernet(packet.EtherTypeQinQ).VLAN(10, packet.EtherTypeVLAN).VLAN(20, packet.EtherTypeIPv6).IPv6(src6, dst6, packet.ProtoTCP).TCP(1, 80, 0), passVLAN},
	{"three vlan tags", packet.Ethernet(packet.EtherTypeQinQ).VLAN(10, packet.EtherTypeVLAN).VLAN(20, packet.EtherTypeVLAN).VLAN(30, packet.EtherTypeIPv4).IPv4(packet.IPv4{Src: src4, Dst: dst4, Protocol: packet.ProtoUDP}).UDP(1, 2), passVLAN},
	{"vlan arp", packet.Ethernet(packet.EtherTypeVLAN).VLAN(7, packet.EtherTypeARP).Payload(28), passVLAN},
}

func TestParse(t *testing.T) {
	objs := loadXdp(t, 0, 0)
	for _, tc := range parseCases {
		t.Run(tc.name, func(t *testing.T) {
			checkVerdict(t, objs, tc.frame.Bytes(), tc.want)
		})
	}
}

// TestTruncated cuts every parsed frame inside each of its headers and
// right after each header that must be followed by another: every cut
// must pass as malformed.
func TestTruncated(t *testing.T) {
	objs := loadXdp(t, 0, 0)
	for _, tc := range parseCases {
		if tc.want != passNoMatch {
			continue
		}
		frame := tc.frame.Bytes()
		ends := tc.frame.Ends
		for i, end := range ends {
			cuts := []int{end - 1}
			if i < len(ends)-1 {
				cuts = append(cuts, end)
			}
			for _, cut := range cuts {
				// BPF_PROG_TEST_RUN refuses frames shorter than Ethernet.
				if cut < 14 {
					continue
				}
				t.Run(fmt.Sprintf("%s/cut %d of %d", tc.name, cut, len(frame)), func(t *testing.T) {
					checkVerdict(t, objs, bytes.Clone(frame[:cut]), passMalformed)
				})
			}
		}
	}
}

// serve makes addrs the interface's addresses that the userstack serves.
func serve(tb testing.TB, objs *bpf.XdpObjects, addrs ...netip.Addr) {
	tb.Helper()
	local := maps.FromObjects(&objs.XdpMaps).LocalAddrs
	for _, a := range addrs {
		if err := local.Put(a, maps.AddrOwn|maps.AddrServed); err != nil {
			tb.Fatal(err)
		}
	}
}

func TestListeners(t *testing.T) {
	objs := loadXdp(t, 0, 0)
	serve(t, objs, dst4, dst6)
	listeners := maps.FromObjects(&objs.XdpMaps).Listeners
	for _, l := range []maps.Listener{
		{Protocol: maps.UDP, Addr: dst4, Port: 53},
		{Protocol: maps.TCP, Port: 80},
		{Protocol: maps.TCP, Addr: dst6, Port: 443},
	} {
		if err := listeners.Put(l, 1); err != nil {
			t.Fatalf("Put(%v): %v", l, err)
		}
	}
	other4 := netip.MustParseAddr("192.0.2.99")
	for _, tc := range []struct {
		name  string
		frame *packet.Frame
		want  maps.Verdict
	}{
		// The test run has no AF_XDP socket on its queue, so a match falls
		// back to the kernel, as it does when the daemon is gone.
		{"udp exact address", eth4(packet.ProtoUDP).UDP(9, 53), passNoSocket},
		{"udp other address", packet.Ethernet(packet.EtherTypeIPv4).IPv4(packet.IPv4{Src: src4, Dst: other4, Protocol: packet.ProtoUDP}).UDP(9, 53), passNoMatch},
		{"tcp to udp listener port", eth4(packet.ProtoTCP).TCP(9, 53, 0), passNoMatch},
		{"tcp wildcard v4", eth4(packet.ProtoTCP).TCP(9, 80, 0), passNoSocket},
		{"tcp wildcard v6", eth6(packet.ProtoTCP).TCP(9, 80, 0), passNoSocket},
		{"tcp wildcard to an address not ours", packet.Ethernet(packet.EtherTypeIPv4).IPv4(packet.IPv4{Src: src4, Dst: other4, Protocol: packet.ProtoTCP}).TCP(9, 80, 0), passNotLocal},
		{"tcp wildcard through vlan", packet.Ethernet(packet.EtherTypeVLAN).VLAN(5, packet.EtherTypeIPv4).IPv4(packet.IPv4{Src: src4, Dst: dst4, Protocol: packet.ProtoTCP}).TCP(9, 80, 0), passVLAN},
		{"udp to tcp wildcard port", eth4(packet.ProtoUDP).UDP(9, 80), passNoMatch},
		{"tcp v6 exact", eth6(packet.ProtoTCP).TCP(9, 443, 0), passNoSocket},
		{"tcp v4 to v6-only listener", eth4(packet.ProtoTCP).TCP(9, 443, 0), passNoMatch},
		{"fragment to listener", packet.Ethernet(packet.EtherTypeIPv4).IPv4(packet.IPv4{Src: src4, Dst: dst4, Protocol: packet.ProtoUDP, MoreFragments: true}).UDP(9, 53), passFragment},
	} {
		t.Run(tc.name, func(t *testing.T) {
			checkVerdict(t, objs, tc.frame.Bytes(), tc.want)
		})
	}

	all, err := listeners.All()
	if err != nil {
		t.Fatal(err)
	}
	if len(all) != 3 {
		t.Errorf("All(): got %d listeners, want 3: %v", len(all), all)
	}
	if err := listeners.Delete(maps.Listener{Protocol: maps.TCP, Port: 80}); err != nil {
		t.Fatalf("Delete: %v", err)
	}
	checkVerdict(t, objs, eth4(packet.ProtoTCP).TCP(9, 80, 0).Bytes(), passNoMatch)

	// The per-port count behind the fast skip: a listener put twice is
	// counted once, and another listener on the same port keeps it open.
	udp53 := maps.Listener{Protocol: maps.UDP, Addr: dst4, Port: 53}
	tcp53 := maps.Listener{Protocol: maps.TCP, Port: 53}
	for _, l := range []maps.Listener{udp53, tcp53} {
		if err := listeners.Put(l, 2); err != nil {
			t.Fatalf("Put(%v): %v", l, err)
		}
	}
	if err := listeners.Delete(udp53); err != nil {
		t.Fatal(err)
	}
	checkVerdict(t, objs, eth4(packet.ProtoTCP).TCP(9, 53, 0).Bytes(), passNoSocket)
	checkVerdict(t, objs, eth4(packet.ProtoUDP).UDP(9, 53).Bytes(), passNoMatch)
	if err := listeners.Delete(tcp53); err != nil {
		t.Fatal(err)
	}
	checkVerdict(t, objs, eth4(packet.ProtoTCP).TCP(9, 53, 0).Bytes(), passNoMatch)
	if err := listeners.Delete(tcp53); !errors.Is(err, maps.ErrNotFound) {
		t.Errorf("Delete of a missing listener: got %v, want ErrNotFound", err)
	}
}

// TestNoListenersSkipsLookups checks that the program looks listeners
// up only while the sampling map's value counts some: an entry written
// behind the count's back is not steered until a recount sees it, and
// the port range, which needs no lookup, is steered either way.
func TestNoListenersSkipsLookups(t *testing.T) {
	objs := loadXdp(t, 40000, 40100)
	serve(t, objs, dst4)
	key := bpf.XdpListenerKey{Protocol: packet.ProtoTCP, Port: 80 << 8}
	if err := objs.Listeners.Put(key, bpf.XdpListenerValue{ListenerId: 1}); err != nil {
		t.Fatal(err)
	}
	if err := objs.ListenPorts.Put(uint32(80), uint32(1)); err != nil {
		t.Fatal(err)
	}
	toListener := eth4(packet.ProtoTCP).TCP(9, 80, 0).Bytes()
	toRange := eth4(packet.ProtoTCP).TCP(9, 40000, 0).Bytes()
	checkVerdict(t, objs, toListener, passNoMatch)
	checkVerdict(t, objs, toRange, passNoSocket)

	listeners := maps.FromObjects(&objs.XdpMaps).Listeners
	if err := listeners.Recount(); err != nil {
		t.Fatal(err)
	}
	if n, err := listeners.Count(); err != nil || n != 1 {
		t.Fatalf("Count after Recount: %d, %v; want 1", n, err)
	}
	checkVerdict(t, objs, toListener, passNoSocket)
	checkVerdict(t, objs, toRange, passNoSocket)
}

func TestUserstackPortRange(t *testing.T) {
	objs := loadXdp(t, 40000, 40100)
	serve(t, objs, dst4)
	for _, tc := range []struct {
		name  string
		port  uint16
		proto uint8
		want  maps.Verdict
	}{
		{"below", 39999, packet.ProtoTCP, passNoMatch},
		{"first", 40000, packet.ProtoTCP, passNoSocket},
		{"last", 40100, packet.ProtoUDP, passNoSocket},
		{"above", 40101, packet.ProtoUDP, passNoMatch},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := eth4(tc.proto)
			if tc.proto == packet.ProtoTCP {
				f.TCP(9, tc.port, 0)
			} else {
				f.UDP(9, tc.port)
			}
			checkVerdict(t, objs, f.Bytes(), tc.want)
		})
	}
	routed := packet.Ethernet(packet.EtherTypeIPv4).IPv4(packet.IPv4{Src: src4, Dst: netip.MustParseAddr("198.51.100.7"), Protocol: packet.ProtoTCP}).TCP(9, 40000, 0)
	checkVerdict(t, objs, routed.Bytes(), passNotLocal)
}

// TestLocalAddresses checks which destinations a wildcard listener and
// the port range steer, and that sources no wire may carry are dropped
// before the userstack sees them.
func TestLocalAddresses(t *testing.T) {
	objs := loadXdp(t, 40000, 40100)
	local := maps.FromObjects(&objs.XdpMaps).LocalAddrs
	linkLocal := netip.MustParseAddr("fe80::2")
	bcast := netip.MustParseAddr("192.0.2.255")
	for a, kind := range map[netip.Addr]maps.AddrKind{
		dst4:      maps.AddrOwn | maps.AddrServed,
		dst6:      maps.AddrOwn | maps.AddrServed,
		linkLocal: maps.AddrOwn,
		bcast:     maps.AddrBroadcast,
	} {
		if err := local.Put(a, kind); err != nil {
			t.Fatal(err)
		}
	}
	if err := maps.FromObjects(&objs.XdpMaps).Listeners.Put(maps.Listener{Protocol: maps.UDP, Port: 53}, 1); err != nil {
		t.Fatal(err)
	}
	v4 := func(src, dst string) *packet.Frame {
		return packet.Ethernet(packet.EtherTypeIPv4).IPv4(packet.IPv4{Src: netip.MustParseAddr(src), Dst: netip.MustParseAddr(dst), Protocol: packet.ProtoUDP})
	}
	v6 := func(src, dst string) *packet.Frame {
		return packet.Ethernet(packet.EtherTypeIPv6).IPv6(netip.MustParseAddr(src), netip.MustParseAddr(dst), packet.ProtoUDP)
	}
	for _, tc := range []struct {
		name  string
		frame *packet.Frame
		want  maps.Verdict
	}{
		{"v4 to a served address", v4("192.0.2.1", "192.0.2.2").UDP(9, 53), passNoSocket},
		{"v4 to the subnet broadcast", v4("192.0.2.1", "192.0.2.255").UDP(9, 53), passNotLocal},
		{"v4 to the limited broadcast", v4("192.0.2.1", "255.255.255.255").UDP(9, 53), passNotLocal},
		{"v4 to multicast", v4("192.0.2.1", "224.0.0.251").UDP(9, 53), passNotLocal},
		{"v4 routed through", v4("192.0.2.1", "203.0.113.9").UDP(9, 53), passNotLocal},
		{"v4 port range routed through", v4("192.0.2.1", "203.0.113.9").UDP(9, 40050), passNotLocal},
		{"v4 from our own address", v4("192.0.2.2", "192.0.2.2").UDP(9, 53), dropMartian},
		{"v4 from our broadcast", v4("192.0.2.255", "192.0.2.2").UDP(9, 53), dropMartian},
		{"v4 from loopback", v4("127.0.0.1", "192.0.2.2").UDP(9, 53), dropMartian},
		{"v4 from multicast", v4("239.1.1.1", "192.0.2.2").UDP(9, 53), dropMartian},
		{"v4 from the limited broadcast", v4("255.255.255.255", "192.0.2.2").UDP(9, 53), dropMartian},
		{"v4 from 0.0.0.0", v4("0.0.0.0", "192.0.2.2").UDP(9, 53), dropMartian},
		{"v4 from our own address to the port range", v4("192.0.2.2", "192.0.2.2").UDP(9, 40000), dropMartian},
		{"v4 from our own address, no listener", v4("192.0.2.2", "192.0.2.2").UDP(9, 54), passNoMatch},
		{"v6 to a served address", v6("2001:db8::1", "2001:db8::2").UDP(9, 53), passNoSocket},
		{"v6 to our link-local address, not served", v6("fe80::1", "fe80::2").UDP(9, 53), passNotLocal},
		{"v6 to multicast", v6("2001:db8::1", "ff02::1").UDP(9, 53), passNotLocal},
		{"v6 to our v4 address, mapped", v6("2001:db8::1", "::ffff:192.0.2.2").UDP(9, 53), passNotLocal},
		{"v6 from our own address", v6("2001:db8::2", "2001:db8::2").UDP(9, 53), dropMartian},
		{"v6 from our link-local address", v6("fe80::2", "2001:db8::2").UDP(9, 53), dropMartian},
		{"v6 from loopback", v6("::1", "2001:db8::2").UDP(9, 53), dropMartian},
		{"v6 from ::", v6("::", "2001:db8::2").UDP(9, 53), dropMartian},
		{"v6 from multicast", v6("ff02::1", "2001:db8::2").UDP(9, 53), dropMartian},
		{"v6 from a mapped v4 address", v6("::ffff:192.0.2.1", "2001:db8::2").UDP(9, 53), dropMartian},
	} {
		t.Run(tc.name, func(t *testing.T) {
			checkVerdict(t, objs, tc.frame.Bytes(), tc.want)
		})
	}
}

// TestStatsLayout pins the stats map's size to the stride, not to the
// number of reasons: a build with more reasons must take over the pinned
// map of a running one.
func TestStatsLayout(t *testing.T) {
	spec, err := bpf.LoadXdp()
	if err != nil {
		t.Fatal(err)
	}
	if got := spec.Maps[maps.StatsName].MaxEntries; got != uint32(maps.StatsEntries) {
		t.Errorf("stats map: got %d entries, want %d (5 actions x %d reasons)", got, maps.StatsEntries, maps.ReasonStride)
	}
	if got := spec.Maps[maps.XSKsName].MaxEntries; got != maps.MaxQueues {
		t.Errorf("xsks map: got %d entries, want MaxQueues %d", got, maps.MaxQueues)
	}
}

// FuzzIngress runs the program on arbitrary frames: it must never abort,
// drop or redirect (no listeners), and must count each frame exactly once.
func FuzzIngress(f *testing.F) {
	for _, tc := range parseCases {
		f.Add(tc.frame.Bytes())
	}
	objs := loadXdp(f, 0, 0)
	f.Fuzz(func(t *testing.T, frame []byte) {
		if len(frame) < 14 || len(frame) > 4000 {
			t.Skip("outside what BPF_PROG_TEST_RUN takes")
		}
		got, moved := runFrame(t, objs, frame)
		if got != maps.ActionPass {
			t.Fatalf("verdict: got %v, want pass", got)
		}
		var total maps.Counter
		for v, c := range moved {
			if v.Action != maps.ActionPass {
				t.Errorf("counter %v moved", v)
			}
			total = total.Add(c)
		}
		if total != (maps.Counter{Packets: 1, Bytes: uint64(len(frame))}) {
			t.Errorf("counted %+v, want one packet of %d bytes", total, len(frame))
		}
	})
}
