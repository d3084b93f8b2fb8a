package userstack

import (
	"net/netip"
	"strings"
	"testing"

	"github.com/xdpstack/xdpstack/loader"
)

func TestCheckListenAddr(t *testing.T) {
	iface := loader.Interface{Name: "eth0", Addrs: []netip.Prefix{
		netip.MustParsePrefix("10.0.0.1/24"),
		netip.MustParsePrefix("fd00::1/64"),
		netip.MustParsePrefix("fe80::1/64"),
	}}
	for _, tc := range []struct {
		addr string
		want string // "" for none
	}{
		{"", ""},
		{"0.0.0.0", ""},
		{"::", ""},
		{"10.0.0.1", ""},
		{"::ffff:10.0.0.1", ""},
		{"fd00::1", ""},
		{"10.0.0.2", "10.0.0.2 is not an address of eth0"},
		{"127.0.0.1", "127.0.0.1 is not an address of eth0"},
		{"fe80::1", "fe80::1 is link-local"},
	} {
		var addr netip.Addr
		if tc.addr != "" {
			addr = netip.MustParseAddr(tc.addr)
		}
		err := CheckListenAddr(iface, addr)
		if (tc.want == "") != (err == nil) || err != nil && !strings.Contains(err.Error(), tc.want) {
			t.Errorf("CheckListenAddr(%s): got %v, want %q", tc.addr, err, tc.want)
		}
	}
}
