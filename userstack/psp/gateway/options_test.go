package gateway

import (
	"net/netip"
	"strings"
	"testing"

	"github.com/xdpstack/xdpstack/userstack/psp"
	"github.com/xdpstack/xdpstack/userstack/psp/tunnel"
)

func TestOptionsRefused(t *testing.T) {
	dev, err := psp.NewDeviceRandom()
	if err != nil {
		t.Fatal(err)
	}
	good := func() Options {
		return Options{Device: dev, Tunnels: &tunnel.Table{}, ACL: tunnel.NewACL(nil), Secure: netip.MustParseAddr("192.0.2.1")}
	}
	for _, tc := range []struct {
		name   string
		change func(*Options)
		want   string
	}{
		{"no device", func(o *Options) { o.Device = nil }, "no psp device"},
		{"no secure address", func(o *Options) { o.Secure = netip.Addr{} }, "no secure-side address"},
		{"negative hold", func(o *Options) { o.HoldPackets = -1 }, "hold limits -1 packets"},
		{"sample rate too high", func(o *Options) { o.SampleRate = 17 }, "sample rate 17 (want 0 for none, up to 16)"},
		{"bad prefix", func(o *Options) { o.Remote = []netip.Prefix{{}} }, "virtual network invalid Prefix is not a prefix"},
	} {
		o := good()
		tc.change(&o)
		if err := o.setDefaults(); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v, want an error with %q", tc.name, err, tc.want)
		}
	}
	o := good()
	if err := o.setDefaults(); err != nil || o.TUN != DefaultTUN || o.HoldPackets != DefaultHoldPackets || o.HoldDestinations != DefaultHoldDestinations {
		t.Errorf("defaults: %+v, %v", o, err)
	}
	if _, err := openTUN("a/b", 1400, nil, nil); err == nil || !strings.Contains(err.Error(), `create tun "a/b"`) {
		t.Errorf("openTUN(a/b): %v, want the name refused", err)
	}
}

func TestTUNMTU(t *testing.T) {
	for _, tc := range []struct {
		secure string
		cookie bool
		want   int
	}{
		{"192.0.2.1", false, 1440},
		{"192.0.2.1", true, 1432},
		{"2001:db8::1", false, 1420},
		{"2001:db8::1", true, 1412},
	} {
		if got := TUNMTU(1500, netip.MustParseAddr(tc.secure), tc.cookie); got != tc.want {
			t.Errorf("TUNMTU(1500, %s, cookie %v): %d, want %d", tc.secure, tc.cookie, got, tc.want)
		}
	}
}
