package userstack

import (
	"fmt"
	"net"
	"net/netip"

	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/network/ipv4"
	"gvisor.dev/gvisor/pkg/tcpip/network/ipv6"
	"gvisor.dev/gvisor/pkg/tcpip/stack"

	"github.com/xdpstack/xdpstack/userstack/kernelview"
)

// nic applies the kernel's view of the interface to the netstack's NIC
// and its link endpoint.
type nic struct{ s *Stack }

var _ kernelview.Netstack = nic{}

func (n nic) AddAddress(p netip.Prefix) error {
	pa := tcpip.ProtocolAddress{Protocol: addrProto(p.Addr()), AddressWithPrefix: tcpip.AddressWithPrefix{Address: tcpAddr(p.Addr()), PrefixLen: p.Bits()}}
	if err := n.s.stack.AddProtocolAddress(nicID, pa, stack.AddressProperties{}); err != nil {
		return fmt.Errorf("%s", err)
	}
	return nil
}

func (n nic) RemoveAddress(p netip.Prefix) error {
	if err := n.s.stack.RemoveAddress(nicID, tcpAddr(p.Addr())); err != nil {
		return fmt.Errorf("%s", err)
	}
	return nil
}

func (n nic) SetRoutes(routes []kernelview.Route) {
	table := make([]tcpip.Route, 0, len(routes))
	for _, r := range routes {
		bits := r.Dst.Addr().BitLen()
		sub, err := tcpip.NewSubnet(tcpAddr(r.Dst.Masked().Addr()), tcpip.MaskFromBytes(net.CIDRMask(r.Dst.Bits(), bits)))
		if err != nil {
			continue
		}
		route := tcpip.Route{Destination: sub, NIC: nicID}
		if r.Gateway.IsValid() && r.Gateway.BitLen() == bits {
			route.Gateway = tcpAddr(r.Gateway)
		}
		table = append(table, route)
	}
	n.s.stack.SetRouteTable(table)
}

// SetNeighbour hands an answer the netstack waits for as the ARP reply
// or neighbour advertisement it expects (link.Endpoint.Resolved); a
// static entry would replace its pending one and fail the packets it
// holds.
func (n nic) SetNeighbour(addr netip.Addr, mac net.HardwareAddr, asked bool) {
	if asked {
		n.s.link.Resolved(tcpAddr(addr), tcpip.LinkAddress(mac))
		return
	}
	n.s.stack.AddStaticNeighbor(nicID, addrProto(addr), tcpAddr(addr), tcpip.LinkAddress(mac))
}

func (n nic) RemoveNeighbour(addr netip.Addr) {
	n.s.stack.RemoveNeighbor(nicID, addrProto(addr), tcpAddr(addr))
}

// SetMTU follows the interface's MTU: the netstack sizes its packets by
// it from then on (TCP connections made before keep their MSS). An MTU
// larger than the AF_XDP sockets carry is capped: the netstack then
// sends smaller packets, and the larger ones it receives are dropped.
func (n nic) SetMTU(mtu int) {
	if most := n.s.maxMTU(); mtu > most {
		n.s.log.Warn("mtu larger than the af_xdp sockets carry; larger packets are dropped (multi-buffer af_xdp, Linux 6.6 or later, carries any)", "mtu", mtu, "max", most)
		mtu = most
	}
	n.s.stack.SetNICMTU(nicID, uint32(mtu))
}

// addrProto tells the netstack protocol of an address.
func addrProto(a netip.Addr) tcpip.NetworkProtocolNumber {
	if a.Is4() || a.Is4In6() {
		return ipv4.ProtocolNumber
	}
	return ipv6.ProtocolNumber
}

// tcpAddr is a as the netstack has it.
func tcpAddr(a netip.Addr) tcpip.Address { return tcpip.AddrFromSlice(a.Unmap().AsSlice()) }
