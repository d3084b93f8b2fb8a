package userstack

import (
	"net/netip"
	"testing"

	"github.com/xdpstack/xdpstack/maps"
)

func TestLocalAddrs(t *testing.T) {
	got := localAddrs([]netip.Prefix{
		netip.MustParsePrefix("10.1.2.3/24"),
		netip.MustParsePrefix("192.0.2.1/31"),
		netip.MustParsePrefix("2001:db8::1/64"),
		netip.MustParsePrefix("fe80::1/64"),
	})
	want := map[netip.Addr]maps.AddrKind{
		netip.MustParseAddr("10.1.2.3"):    maps.AddrOwn | maps.AddrServed,
		netip.MustParseAddr("10.1.2.255"):  maps.AddrBroadcast,
		netip.MustParseAddr("192.0.2.1"):   maps.AddrOwn | maps.AddrServed,
		netip.MustParseAddr("2001:db8::1"): maps.AddrOwn | maps.AddrServed,
		netip.MustParseAddr("fe80::1"):     maps.AddrOwn,
	}
	if len(got) != len(want) {
		t.Errorf("localAddrs: got %v, want %v", got, want)
	}
	for a, kind := range want {
		if got[a] != kind {
			t.Errorf("localAddrs[%s]: got %v, want %v", a, got[a], kind)
		}
	}
}
