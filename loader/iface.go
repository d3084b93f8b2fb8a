package loader

import (
	"errors"
	"fmt"
	"net"
	"net/netip"

	"github.com/vishvananda/netlink"

	"github.com/xdpstack/xdpstack/maps"
)

// Interface is what the loader needs to know about a network interface,
// as netlink reports it.
type Interface struct {
	Name  string
	Index int
	MTU   int
	MAC   net.HardwareAddr
	// Driver is the kernel driver's name (ethtool -i), "" if unknown.
	Driver string
	// RxQueues is the number of active RX queues (ethtool -l), which
	// can be fewer than the device has: a veth made with numrxqueues 2
	// uses one until `ethtool -L IFACE rx 2 tx 2`.
	RxQueues int
	TxQueues int
	Addrs    []netip.Prefix
}

// LookupInterface reads an interface's facts over netlink.
func LookupInterface(name string) (Interface, error) {
	if err := maps.CheckIfaceName(name); err != nil {
		return Interface{}, err
	}
	l, err := netlink.LinkByName(name)
	if err != nil {
		var notFound netlink.LinkNotFoundError
		if errors.As(err, &notFound) {
			return Interface{}, fmt.Errorf("interface %q not found (see: ip link show)", name)
		}
		return Interface{}, fmt.Errorf("look up interface %q: %w", name, err)
	}
	attrs := l.Attrs()
	iface := Interface{
		Name:     attrs.Name,
		Index:    attrs.Index,
		MTU:      attrs.MTU,
		MAC:      attrs.HardwareAddr,
		RxQueues: attrs.NumRxQueues,
		TxQueues: attrs.NumTxQueues,
	}
	if n, err := activeRxQueues(name); err == nil {
		iface.RxQueues = n
	}
	iface.Driver = driverName(name)
	addrs, err := netlink.AddrList(l, netlink.FAMILY_ALL)
	if err != nil {
		return Interface{}, fmt.Errorf("list addresses of %s: %w", name, err)
	}
	for _, a := range addrs {
		ip, ok := netip.AddrFromSlice(a.IP)
		if !ok {
			continue
		}
		ones, _ := a.Mask.Size()
		iface.Addrs = append(iface.Addrs, netip.PrefixFrom(ip.Unmap(), ones))
	}
	return iface, nil
}

// xdpProgramOn returns the id of the XDP program attached to the
// interface with index ifindex and the mode it runs in, or 0 when there is
// none.
func xdpProgramOn(ifindex int) (uint32, Mode, error) {
	l, err := netlink.LinkByIndex(ifindex)
	if err != nil {
		return 0, 0, fmt.Errorf("look up interface %d: %w", ifindex, err)
	}
	id, mode := xdpProgramOf(l)
	return id, mode, nil
}

// xdpProgramOf is xdpProgramOn for a link already looked up.
func xdpProgramOf(l netlink.Link) (uint32, Mode) {
	xdp := l.Attrs().Xdp
	if xdp == nil || !xdp.Attached {
		return 0, 0
	}
	return xdp.ProgId, modeFromNetlink(xdp.AttachMode)
}
