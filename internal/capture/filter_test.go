package capture

import (
	"net/netip"
	"strings"
	"testing"

	"github.com/xdpstack/xdpstack/internal/testing/packet"
	"github.com/xdpstack/xdpstack/maps"
)

var (
	addrA = netip.MustParseAddr("10.0.0.1")
	addrB = netip.MustParseAddr("10.0.0.2")
	addr6 = netip.MustParseAddr("2001:db8::1")
)

func tcpFrame(src, dst netip.Addr, sport, dport uint16) []byte {
	return packet.Ethernet(packet.EtherTypeIPv4).IPv4(packet.IPv4{Src: src, Dst: dst, Protocol: packet.ProtoTCP}).TCP(sport, dport, 0).Bytes()
}

func TestFilter(t *testing.T) {
	deny := &Packet{Verdict: maps.Verdict{Action: maps.ActionDrop, Reason: maps.ReasonRuleDeny}, RuleID: 3, Data: tcpFrame(addrB, addrA, 5555, 22)}
	steered := &Packet{Verdict: maps.Verdict{Action: maps.ActionRedirect, Reason: maps.ReasonSteered},
		Data: packet.Ethernet(packet.EtherTypeIPv4).IPv4(packet.IPv4{Src: addrB, Dst: addrA, Protocol: packet.ProtoUDP}).UDP(5353, 53).Bytes()}
	ping6 := &Packet{Verdict: maps.Verdict{Action: maps.ActionPass, Reason: maps.ReasonNoMatch},
		Data: packet.Ethernet(packet.EtherTypeIPv6).IPv6(addr6, addr6, packet.ProtoICMPv6).ICMPEcho(true).Bytes()}
	arp := &Packet{Verdict: maps.Verdict{Action: maps.ActionPass, Reason: maps.ReasonNotIP}, Data: packet.Ethernet(packet.EtherTypeARP).Payload(28).Bytes()}
	// A later IPv4 fragment has no ports to match.
	fragment := &Packet{Data: packet.Ethernet(packet.EtherTypeIPv4).IPv4(packet.IPv4{Src: addrB, Dst: addrA, Protocol: packet.ProtoUDP, FragOffset: 100}).UDP(1, 53).Bytes()}
	all := map[string]*Packet{"deny": deny, "steered": steered, "ping6": ping6, "arp": arp, "fragment": fragment}

	for _, tc := range []struct {
		filter string
		want   []string // the packets it keeps, in sorted order
	}{
		{"", []string{"arp", "deny", "fragment", "ping6", "steered"}},
		{"verdict drop", []string{"deny"}},
		{"reason steered", []string{"steered"}},
		{"rule 3", []string{"deny"}},
		{"tcp", []string{"deny"}},
		{"udp", []string{"fragment", "steered"}},
		{"icmp", []string{"ping6"}},
		{"arp", []string{"arp"}},
		{"ip6", []string{"ping6"}},
		{"ip", []string{"deny", "fragment", "steered"}},
		{"port 53", []string{"steered"}},
		{"dst port 22", []string{"deny"}},
		{"src port 22", nil},
		{"host 10.0.0.1", []string{"deny", "fragment", "steered"}},
		{"src host 10.0.0.1", nil},
		{"host 2001:db8::1", []string{"ping6"}},
		{"tcp port 22", []string{"deny"}},
		{"tcp and port 53", nil},
		{"tcp or udp port 53", []string{"deny", "steered"}},
		{"not ip", []string{"arp", "ping6"}},
		{"verdict pass and not (arp or icmp)", nil},
		{"(verdict drop or reason steered) and dst host 10.0.0.1", []string{"deny", "steered"}},
		{"not not tcp", []string{"deny"}},
	} {
		t.Run(tc.filter, func(t *testing.T) {
			f, err := ParseFilter(tc.filter)
			if err != nil {
				t.Fatalf("ParseFilter(%q): %v", tc.filter, err)
			}
			var got []string
			for _, name := range []string{"arp", "deny", "fragment", "ping6", "steered"} {
				if f.Match(all[name]) {
					got = append(got, name)
				}
			}
			if strings.Join(got, ",") != strings.Join(tc.want, ",") {
				t.Errorf("ParseFilter(%q) keeps %v, want %v", tc.filter, got, tc.want)
			}
		})
	}
}

func TestBadFilter(t *testing.T) {
	for _, tc := range []struct{ filter, want string }{
		{"verdict", "verdict wants a value"},
		{"verdict drp", `unknown verdict "drp" (want aborted, drop, pass, tx, redirect)`},
		{"reason nope", `unknown reason "nope" (want not_ip`},
		{"rule 0", `rule "0": want a rule id from 1 to 16383`},
		{"rule x", `rule "x"`},
		{"port 70000", `port "70000": want a number from 1 to 65535`},
		{"host 10.0.0.300", `host "10.0.0.300": want an IPv4 or IPv6 address`},
		{"src tcp", `src wants host or port after it, got "tcp"`},
		{"tcp and", "ends where a primitive should follow"},
		{"(tcp", "a ( without its )"},
		{"tcp )", `")" where the filter should end`},
		{"sctp", `unknown primitive "sctp"`},
		{"port and", "port wants a value"},
	} {
		_, err := ParseFilter(tc.filter)
		if err == nil || !strings.Contains(err.Error(), tc.want) || strings.Contains(err.Error(), "\n") {
			t.Errorf("ParseFilter(%q): got %v, want one line containing %q", tc.filter, err, tc.want)
		}
	}
}

func TestFilterPoint(t *testing.T) {
	for _, tc := range []struct {
		filter string
		ok     bool
	}{{"tcp port 80", true}, {"verdict drop", false}, {"not rule 3", false}, {"udp or reason steered", false}} {
		f, err := ParseFilter(tc.filter)
		if err != nil {
			t.Fatal(err)
		}
		if err := f.CheckPoint(PointUserstack); (err == nil) != tc.ok {
			t.Errorf("CheckPoint(userstack) of %q: got %v, want ok %v", tc.filter, err, tc.ok)
		}
		if err := f.CheckPoint(PointXDP); err != nil {
			t.Errorf("CheckPoint(xdp) of %q: %v", tc.filter, err)
		}
	}
}
