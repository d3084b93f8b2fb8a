package kernelview

import (
	"net/netip"

	"github.com/xdpstack/xdpstack/maps"
)

// LocalAddrMap is what the XDP program must know of the interface's
// addresses: each is its own, those the netstack serves are steered to,
// and the broadcast address of each IPv4 subnet is no packet's source.
func LocalAddrMap(prefixes []netip.Prefix) map[netip.Addr]maps.AddrKind {
	addrs := make(map[netip.Addr]maps.AddrKind, len(prefixes))
	for _, p := range prefixes {
		a := p.Addr().Unmap()
		kind := maps.AddrOwn
		if Served(a) {
			kind |= maps.AddrServed
		}
		addrs[a] |= kind
		if a.Is4() && p.Bits() < 31 {
			b := a.As4()
			host := uint32(1)<<(32-p.Bits()) - 1
			v := (uint32(b[0])<<24 | uint32(b[1])<<16 | uint32(b[2])<<8 | uint32(b[3])) | host
			addrs[netip.AddrFrom4([4]byte{byte(v >> 24), byte(v >> 16), byte(v >> 8), byte(v)})] |= maps.AddrBroadcast
		}
	}
	return addrs
}

// Served tells whether the netstack takes an address of the interface:
// link-local ones stay with the kernel.
func Served(a netip.Addr) bool { return !a.IsLinkLocalUnicast() }
