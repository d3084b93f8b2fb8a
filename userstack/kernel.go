package userstack

import (
	"fmt"
	"net"
	"net/netip"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/network/ipv4"
	"gvisor.dev/gvisor/pkg/tcpip/network/ipv6"

	"github.com/xdpstack/xdpstack/maps"
)

// follow mirrors the kernel's neighbours and routes of the interface
// into the netstack until done is closed. It must run in the
// interface's network namespace; so must Start, which made s.nl. ARP and ND stay the kernel's:
// the netstack only ever uses the link addresses the kernel resolved.
func (s *Stack) follow(done chan struct{}) error {
	neighs := make(chan netlink.NeighUpdate, 256)
	routes := make(chan netlink.RouteUpdate, 64)
	errs := func(err error) {
		select {
		case <-done: // the subscription ends with an error when closed
		default:
			s.log.Warn("netlink subscription failed", "err", err)
		}
	}
	if err := netlink.NeighSubscribeWithOptions(neighs, done, netlink.NeighSubscribeOptions{ErrorCallback: errs}); err != nil {
		return fmt.Errorf("follow kernel neighbours: %w", err)
	}
	if err := netlink.RouteSubscribeWithOptions(routes, done, netlink.RouteSubscribeOptions{ErrorCallback: errs}); err != nil {
		return fmt.Errorf("follow kernel routes: %w", err)
	}
	if err := s.syncRoutes(); err != nil {
		return err
	}
	// The neighbours known now must be in before anything is sent; the
	// subscription's own listing arrives later, from another goroutine.
	for _, family := range []int{netlink.FAMILY_V4, netlink.FAMILY_V6} {
		known, err := s.nl.NeighList(s.iface.Index, family)
		if err != nil {
			return fmt.Errorf("list kernel neighbours of %s: %w", s.iface.Name, err)
		}
		for _, n := range known {
			s.neighbour(netlink.NeighUpdate{Type: unix.RTM_NEWNEIGH, Neigh: n})
		}
	}
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		for {
			select {
			case u, ok := <-neighs:
				if !ok {
					return
				}
				s.neighbour(u)
			case u, ok := <-routes:
				if !ok {
					return
				}
				if u.LinkIndex == s.iface.Index {
					if err := s.syncRoutes(); err != nil {
						s.log.Warn("cannot follow the kernel's routes", "err", err)
					}
				}
			case <-done:
				return
			}
		}
	}()
	return nil
}

// neighbour applies one kernel neighbour update; true when it gave the
// netstack a link address.
func (s *Stack) neighbour(u netlink.NeighUpdate) bool {
	if u.LinkIndex != s.iface.Index {
		return false
	}
	addr, ok := netip.AddrFromSlice(u.IP)
	if !ok {
		return false
	}
	addr = addr.Unmap()
	proto := addrProto(addr)
	a := tcpip.AddrFromSlice(addr.AsSlice())
	usable := netlink.NUD_REACHABLE | netlink.NUD_STALE | netlink.NUD_DELAY | netlink.NUD_PROBE | netlink.NUD_PERMANENT | netlink.NUD_NOARP
	if u.Type == unix.RTM_NEWNEIGH && u.State&usable != 0 && len(u.HardwareAddr) == 6 {
		mac := tcpip.LinkAddress(u.HardwareAddr)
		s.resolvingMu.Lock()
		pending := s.resolving[a]
		delete(s.resolving, a)
		s.resolvingMu.Unlock()
		if pending {
			s.link.Resolved(a, mac)
			return true
		}
		return s.stack.AddStaticNeighbor(nicID, proto, a, mac) == nil
	}
	if u.Type == unix.RTM_DELNEIGH || u.State&netlink.NUD_FAILED != 0 {
		s.stack.RemoveNeighbor(nicID, proto, a)
	}
	return false
}

// syncRoutes copies the kernel's main-table routes through the
// interface into the netstack.
func (s *Stack) syncRoutes() error {
	krs, err := s.nl.RouteListFiltered(netlink.FAMILY_ALL, &netlink.Route{LinkIndex: s.iface.Index, Table: unix.RT_TABLE_MAIN}, netlink.RT_FILTER_OIF|netlink.RT_FILTER_TABLE)
	if err != nil {
		return fmt.Errorf("list kernel routes of %s: %w", s.iface.Name, err)
	}
	var table []tcpip.Route
	for _, kr := range krs {
		dst := kr.Dst
		if dst == nil {
			bits := 32
			if kr.Family == unix.AF_INET6 {
				bits = 128
			}
			dst = &net.IPNet{IP: make(net.IP, bits/8), Mask: net.CIDRMask(0, bits)}
		}
		sub, err := tcpip.NewSubnet(tcpip.AddrFromSlice(dst.IP.To16()[16-len(dst.Mask):]), tcpip.MaskFromBytes(dst.Mask))
		if err != nil {
			continue
		}
		r := tcpip.Route{Destination: sub, NIC: nicID}
		if kr.Gw != nil {
			gw := kr.Gw
			if v4 := gw.To4(); v4 != nil && len(dst.Mask) == 4 {
				gw = v4
			}
			r.Gateway = tcpip.AddrFromSlice(gw)
		}
		table = append(table, r)
	}
	s.stack.SetRouteTable(table)
	return nil
}

// resolve is called when the netstack lacks addr's link address. If the
// kernel knows it (a permanent entry makes no news), it is copied over;
// else the kernel is made to resolve it by sending it an empty datagram
// to the discard port, which it can only send once it has resolved the
// neighbour (a netlink NTF_USE was tried first: the kernel delays that
// probe by a retransmit time, a full second for IPv6). The answer comes
// through the subscription while the netstack holds its packets, as it
// would for its own ARP or ND.
func (s *Stack) resolve(addr tcpip.Address) {
	family := unix.AF_INET
	if addr.Len() == 16 {
		family = unix.AF_INET6
	}
	ip := net.IP(addr.AsSlice())
	s.resolvingMu.Lock()
	s.resolving[addr] = true
	s.resolvingMu.Unlock()
	known, err := s.nl.NeighList(s.iface.Index, family)
	if err == nil {
		for _, n := range known {
			if n.IP.Equal(ip) && s.neighbour(netlink.NeighUpdate{Type: unix.RTM_NEWNEIGH, Neigh: n}) {
				return
			}
		}
	}
	var to unix.Sockaddr
	fd := s.probe4
	if family == unix.AF_INET6 {
		fd, to = s.probe6, &unix.SockaddrInet6{Port: discardPort, Addr: addr.As16()}
	} else {
		to = &unix.SockaddrInet4{Port: discardPort, Addr: addr.As4()}
	}
	if err := unix.Sendto(fd, nil, unix.MSG_DONTWAIT, to); err != nil {
		s.log.Warn("cannot ask the kernel to resolve a neighbour", "addr", addr, "err", err)
	}
}

// discardPort is where resolve's datagrams go (RFC 863).
const discardPort = 9

// openProbes opens the sockets resolve sends from, bound to the
// interface so that the kernel resolves the neighbour there.
func (s *Stack) openProbes() error {
	s.probe4, s.probe6 = -1, -1
	for _, p := range []struct {
		fd     *int
		family int
	}{{&s.probe4, unix.AF_INET}, {&s.probe6, unix.AF_INET6}} {
		fd, err := unix.Socket(p.family, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC|unix.SOCK_NONBLOCK, 0)
		if err != nil {
			if p.family == unix.AF_INET6 {
				continue // a kernel without IPv6
			}
			return fmt.Errorf("open neighbour probe socket: %w", err)
		}
		*p.fd = fd
		if err := unix.SetsockoptString(fd, unix.SOL_SOCKET, unix.SO_BINDTODEVICE, s.iface.Name); err != nil {
			return fmt.Errorf("bind neighbour probe socket to %s: %w", s.iface.Name, err)
		}
	}
	return nil
}

// addrProto tells the netstack protocol of an address.
func addrProto(a netip.Addr) tcpip.NetworkProtocolNumber {
	if a.Is4() || a.Is4In6() {
		return ipv4.ProtocolNumber
	}
	return ipv6.ProtocolNumber
}

// localAddrs is what the XDP program must know of the interface's
// addresses: each is its own, those the netstack serves (all but
// link-local ones) are steered to, and the broadcast address of each
// IPv4 subnet is no packet's source.
func localAddrs(prefixes []netip.Prefix) map[netip.Addr]maps.AddrKind {
	addrs := make(map[netip.Addr]maps.AddrKind, len(prefixes))
	for _, p := range prefixes {
		a := p.Addr().Unmap()
		kind := maps.AddrOwn
		if served(a) {
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

// served tells whether the netstack takes an address of the interface:
// link-local ones stay with the kernel.
func served(a netip.Addr) bool { return !a.IsLinkLocalUnicast() }
