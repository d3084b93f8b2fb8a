package keyx

import (
	"fmt"
	"net"
	"net/netip"

	"github.com/xdpstack/xdpstack/userstack/psp"
	"github.com/xdpstack/xdpstack/userstack/psp/keyx/pb"
	"github.com/xdpstack/xdpstack/userstack/psp/pspconfig"
)

// params is a TunnelParameters checked: how to send to its maker.
type params struct {
	mac     net.HardwareAddr
	addr    netip.Addr
	version psp.Version
	spi     uint32
	key     []byte
}

// parseParams checks TunnelParameters against what this host sends:
// outer IP type outer, one of the versions accepted. Errors never show
// the key.
func parseParams(p *pb.TunnelParameters, outer pspconfig.IPType, accepted ...psp.Version) (params, error) {
	if p == nil {
		return params{}, fmt.Errorf("no tunnel parameters")
	}
	mac, err := net.ParseMAC(p.GetMacAddr())
	if err != nil || len(mac) != 6 {
		return params{}, fmt.Errorf("mac_addr %q: not an ethernet address", p.GetMacAddr())
	}
	addr, err := netip.ParseAddr(p.GetIpAddr())
	if err != nil || addr.Zone() != "" {
		return params{}, fmt.Errorf("ip_addr %q: not an ip address", p.GetIpAddr())
	}
	addr = addr.Unmap()
	if p.GetEncapType() != uint32(outer) || addr.Is4() != (outer == pspconfig.IPv4) {
		return params{}, fmt.Errorf("encap_type %d with ip_addr %v: this gateway's outer ip type is %s", p.GetEncapType(), addr, outer)
	}
	if !addr.IsGlobalUnicast() && !addr.IsPrivate() && !addr.IsLoopback() {
		return params{}, fmt.Errorf("ip_addr %v: not a unicast address", addr)
	}
	v := psp.Version(min(p.GetPspVersion(), 255))
	if !v.Valid() || (len(accepted) > 0 && !acceptedVersion(v, accepted)) {
		return params{}, fmt.Errorf("psp_version %d: not accepted (want %v)", p.GetPspVersion(), accepted)
	}
	if len(p.GetEncryptionKey()) != v.KeyLen() {
		return params{}, fmt.Errorf("encryption_key of %d bytes: version %d wants %d", len(p.GetEncryptionKey()), v, v.KeyLen())
	}
	if p.GetSpi() == 0 {
		return params{}, fmt.Errorf("spi 0: reserved")
	}
	return params{mac: mac, addr: addr, version: v, spi: p.GetSpi(), key: p.GetEncryptionKey()}, nil
}

func acceptedVersion(v psp.Version, accepted []psp.Version) bool {
	for _, a := range accepted {
		if a == v {
			return true
		}
	}
	return false
}

// parseVIP reads a virtual address of inner IP type inner.
func parseVIP(what, s string, inner pspconfig.IPType) (netip.Addr, error) {
	a, err := netip.ParseAddr(s)
	if err != nil || a.Zone() != "" {
		return netip.Addr{}, fmt.Errorf("%s %q: not an ip address", what, s)
	}
	a = a.Unmap()
	if a.Is4() != (inner == pspconfig.IPv4) {
		return netip.Addr{}, fmt.Errorf("%s %v: not %s (the inner ip type)", what, a, inner)
	}
	return a, nil
}
