package keyx_test

import (
	"context"
	"net"
	"net/netip"
	"time"

	"github.com/xdpstack/xdpstack/userstack/psp"
	"github.com/xdpstack/xdpstack/userstack/psp/keyx"
	"github.com/xdpstack/xdpstack/userstack/psp/pspconfig"
	"github.com/xdpstack/xdpstack/userstack/psp/tunnel"
)

// Example is how a daemon wires the key exchange: the config and
// options, the shared device, table and ACL, then serve, static tunnels
// and rotation in the background; the data path calls Request.
func Example() {
	cfg, err := pspconfig.ReadJSON("/etc/xdpstack/psp.json")
	if err != nil {
		return
	}
	opts := pspconfig.Defaults // or pspconfig.FromCLI(c)
	// The TUN device's addresses fill the sessions that name no local-vip.
	if err := cfg.FillLocalVIP(netip.MustParseAddr("10.9.0.1")); err != nil {
		return
	}
	id, err := keyx.LoadTLS(opts.Cert, opts.Key, opts.CA)
	if err != nil {
		return
	}
	dev, err := psp.NewDeviceRandom()
	if err != nil {
		return
	}
	table, acl := &tunnel.Table{}, tunnel.NewACL(nil) // the XDP SPI map as the ACL's mirror
	gw, err := keyx.New(keyx.Settings{
		Config: cfg, Options: opts, TLS: id,
		MAC: net.HardwareAddr{2, 0, 0, 0, 0, 1}, Addr: netip.MustParseAddr("2001:db8::1"),
		Device: dev, Table: table, ACL: acl,
		ObserveExchange: func(peer string, d time.Duration, err error) { /* histogram.Observe(d.Seconds()) */ },
	})
	if err != nil {
		return
	}
	defer gw.Close() // before the table, ACL and device go
	l, err := net.Listen("tcp", cfg.LocalGRPC)
	if err != nil {
		return
	}
	go gw.Serve(l)
	if opts.StaticTunnels {
		gw.StartStatic()
	}
	gw.StartRotation()
	var requester tunnel.Requester = gw // for the data path's held packets
	requester.Request(netip.MustParseAddr("10.9.0.2"))
	_ = gw.Rotate(context.Background()) // xdpstack psp rotate
	_ = gw.Peers()                      // xdpstack psp peers
}
