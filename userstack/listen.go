package userstack

import (
	"fmt"
	"net/netip"

	"github.com/xdpstack/xdpstack/loader"
	"github.com/xdpstack/xdpstack/userstack/kernelview"
)

// CheckListenAddr says why the userstack on iface could not listen on
// addr, so that a command can refuse it before anything is attached:
// the userstack serves the interface's own addresses but IPv6
// link-local ones. The unspecified address stands for all of them.
func CheckListenAddr(iface loader.Interface, addr netip.Addr) error {
	if !addr.IsValid() || addr.IsUnspecified() {
		return nil
	}
	addr = addr.Unmap()
	if !kernelview.Served(addr) {
		return fmt.Errorf("%s is link-local, which the userstack does not serve", addr)
	}
	for _, p := range iface.Addrs {
		if p.Addr() == addr {
			return nil
		}
	}
	return fmt.Errorf("%s is not an address of %s (see: ip addr show %s)", addr, iface.Name, iface.Name)
}
