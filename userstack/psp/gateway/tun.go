package gateway

import (
	"errors"
	"fmt"
	"net"
	"net/netip"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netlink/nl"
	"golang.org/x/sys/unix"
	"golang.zx2c4.com/wireguard/tun"

	"github.com/xdpstack/xdpstack/maps"
)

// openTUN creates the TUN device name with its offloads (tun.CreateTUN
// asks for the virtio-net header, TSO and USO), gives it mtu and the
// local addresses, brings it up and routes the remote networks through
// it. The device, and with it the addresses and routes, goes when its
// descriptor is closed.
func openTUN(name string, mtu int, local, remote []netip.Prefix) (dev tun.Device, err error) {
	if err := maps.CheckIfaceName(name); err != nil {
		return nil, fmt.Errorf("create tun %q: %w", name, err)
	}
	if _, err := netlink.LinkByName(name); err == nil {
		return nil, fmt.Errorf("create tun %s: an interface of that name exists (name another)", name)
	}
	if mtu < 576 {
		return nil, fmt.Errorf("create tun %s: mtu %d once psp is added (the attached interface's mtu is too small)", name, mtu)
	}
	if dev, err = tun.CreateTUN(name, mtu); err != nil {
		return nil, fmt.Errorf("create tun %s: %w", name, err)
	}
	defer func() {
		if err != nil {
			dev.Close()
			dev = nil
		}
	}()
	link, err := netlink.LinkByName(name)
	if err != nil {
		return nil, fmt.Errorf("create tun %s: %w", name, err)
	}
	// No link-local address: the device would send router
	// solicitations and MLD reports, which no peer owns.
	if err := netlink.LinkSetIP6AddrGenMode(link, nl.IN6_ADDR_GEN_MODE_NONE); err != nil && !errors.Is(err, unix.EAFNOSUPPORT) {
		return nil, fmt.Errorf("create tun %s: no ipv6 link-local address: %w", name, err)
	}
	for _, p := range local {
		// The addresses are the virtual networks' own: no duplicate
		// address detection to wait for.
		a := &netlink.Addr{IPNet: ipNet(p), Flags: unix.IFA_F_NODAD}
		if err := netlink.AddrAdd(link, a); err != nil {
			return nil, fmt.Errorf("create tun %s: add address %v: %w", name, p, err)
		}
	}
	if err := netlink.LinkSetUp(link); err != nil {
		return nil, fmt.Errorf("create tun %s: set up: %w", name, err)
	}
	for _, p := range remote {
		r := &netlink.Route{LinkIndex: link.Attrs().Index, Dst: ipNet(p.Masked()), Scope: netlink.SCOPE_LINK}
		if err := netlink.RouteReplace(r); err != nil {
			return nil, fmt.Errorf("create tun %s: route %v: %w", name, p, err)
		}
	}
	return dev, nil
}

func ipNet(p netip.Prefix) *net.IPNet {
	return &net.IPNet{IP: p.Addr().AsSlice(), Mask: net.CIDRMask(p.Bits(), p.Addr().BitLen())}
}
