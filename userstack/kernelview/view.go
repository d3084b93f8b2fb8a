// Package kernelview follows the kernel's view of one interface over
// netlink (its addresses, neighbours, routes and MTU) and hands every
// change to the userstack: to its netstack, and to the XDP program's
// table of local addresses, which says what a wildcard listener or the
// userstack's port range may steer. It also resolves neighbours for the
// netstack. ARP and ND stay the kernel's, so that the two stacks never
// disagree about the wire: the netstack only ever uses link addresses
// the kernel resolved, and when it lacks one the view makes the kernel
// resolve it and hands back the answer.
package kernelview

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"slices"
	"sync"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/xdpstack/xdpstack/maps"
)

// Netstack is what the view changes in the userstack's netstack.
type Netstack interface {
	// AddAddress and RemoveAddress change the addresses the netstack
	// serves (all but link-local ones: see Served).
	AddAddress(netip.Prefix) error
	RemoveAddress(netip.Prefix) error
	// SetRoutes replaces the routing table.
	SetRoutes([]Route)
	// SetNeighbour gives the link address of a neighbour; asked says the
	// netstack asked for it (Resolve) and holds packets for the answer.
	SetNeighbour(addr netip.Addr, mac net.HardwareAddr, asked bool)
	RemoveNeighbour(netip.Addr)
	// SetMTU follows the interface's MTU.
	SetMTU(int)
}

// LocalAddrs is the XDP program's table of the interface's addresses
// (maps.LocalAddrs).
type LocalAddrs interface {
	Sync(map[netip.Addr]maps.AddrKind) error
}

// Route is a route of the kernel's main table through the interface.
type Route struct {
	Dst netip.Prefix
	// Gateway is the next hop; invalid for a route on the link.
	Gateway netip.Addr
}

// Kernel is what the view reads from the kernel (*netlink.Handle).
type Kernel interface {
	LinkByIndex(index int) (netlink.Link, error)
	AddrList(link netlink.Link, family int) ([]netlink.Addr, error)
	NeighList(linkIndex, family int) ([]netlink.Neigh, error)
	RouteListFiltered(family int, filter *netlink.Route, filterMask uint64) ([]netlink.Route, error)
}

// Prober makes the kernel resolve a neighbour on the interface.
type Prober interface {
	Probe(netip.Addr) error
}

// View follows one interface. Make it with Open, connect it with
// Follow, and Close it when done.
type View struct {
	index  int
	name   string
	kernel Kernel
	prober Prober
	log    *slog.Logger
	// closers release what Open opened, in reverse order.
	closers []func() error

	mu    sync.Mutex
	ns    Netstack
	local LocalAddrs
	addrs []netip.Prefix
	mtu   int
	// resolving are the neighbours the netstack asked for.
	resolving map[netip.Addr]bool
	closed    bool

	done chan struct{}
	wg   sync.WaitGroup
}

// Open prepares to follow the interface with index and name: a netlink
// handle and the sockets that make the kernel resolve neighbours. It
// must run in the interface's network namespace, and so must Follow:
// sockets belong to the namespace they were opened in, whichever
// thread uses them later.
func Open(index int, name string) (*View, error) {
	h, err := netlink.NewHandle()
	if err != nil {
		return nil, fmt.Errorf("open netlink: %w", err)
	}
	probes, err := openProbes(name)
	if err != nil {
		h.Close()
		return nil, err
	}
	v := newView(index, name, h, probes)
	v.closers = []func() error{func() error { h.Close(); return nil }, probes.Close}
	return v, nil
}

func newView(index int, name string, k Kernel, p Prober) *View {
	return &View{
		index: index, name: name, kernel: k, prober: p,
		log:       slog.With("iface", name),
		resolving: map[netip.Addr]bool{},
		done:      make(chan struct{}),
	}
}

// updates are the kernel's news, as netlink subscriptions deliver them.
type updates struct {
	addrs  chan netlink.AddrUpdate
	neighs chan netlink.NeighUpdate
	routes chan netlink.RouteUpdate
	links  chan netlink.LinkUpdate
}

// Follow hands ns and local the interface's addresses, routes,
// neighbours and MTU as they are now, then every change until Close.
// Addresses reach the netstack before the XDP table, and leave it
// after, so that nothing is steered to an address the netstack lacks.
func (v *View) Follow(ns Netstack, local LocalAddrs) error {
	v.mu.Lock()
	v.ns, v.local = ns, local
	v.mu.Unlock()
	u := updates{
		addrs:  make(chan netlink.AddrUpdate, 64),
		neighs: make(chan netlink.NeighUpdate, 256),
		routes: make(chan netlink.RouteUpdate, 64),
		links:  make(chan netlink.LinkUpdate, 16),
	}
	failed := func(err error) {
		select {
		case <-v.done: // a subscription ends with an error when closed
		default:
			v.log.Warn("netlink subscription failed; the interface is no longer followed", "err", err)
		}
	}
	// Subscribed before listing, so that no change falls in between.
	for _, sub := range []struct {
		what string
		err  error
	}{
		{"addresses", netlink.AddrSubscribeWithOptions(u.addrs, v.done, netlink.AddrSubscribeOptions{ErrorCallback: failed})},
		{"neighbours", netlink.NeighSubscribeWithOptions(u.neighs, v.done, netlink.NeighSubscribeOptions{ErrorCallback: failed})},
		{"routes", netlink.RouteSubscribeWithOptions(u.routes, v.done, netlink.RouteSubscribeOptions{ErrorCallback: failed})},
		{"link", netlink.LinkSubscribeWithOptions(u.links, v.done, netlink.LinkSubscribeOptions{ErrorCallback: failed})},
	} {
		if sub.err != nil {
			return fmt.Errorf("follow the kernel's %s of %s: %w", sub.what, v.name, sub.err)
		}
	}
	if err := v.load(); err != nil {
		return err
	}
	v.wg.Add(1)
	go func() {
		defer v.wg.Done()
		v.run(u)
	}()
	return nil
}

// load hands over the interface as the kernel has it now. The
// neighbours known now must be in before anything is sent; the
// subscription's own listing arrives later, from another goroutine.
func (v *View) load() error {
	link, err := v.kernel.LinkByIndex(v.index)
	if err != nil {
		return fmt.Errorf("look up %s: %w", v.name, err)
	}
	v.setMTU(link.Attrs().MTU)
	addrs, err := v.kernel.AddrList(link, netlink.FAMILY_ALL)
	if err != nil {
		return fmt.Errorf("list addresses of %s: %w", v.name, err)
	}
	var prefixes []netip.Prefix
	for _, a := range addrs {
		if p, ok := prefixOf(a.IPNet); ok {
			prefixes = append(prefixes, p)
		}
	}
	if err := v.setAddrs(prefixes); err != nil {
		return err
	}
	if err := v.syncRoutes(); err != nil {
		return err
	}
	for _, family := range []int{netlink.FAMILY_V4, netlink.FAMILY_V6} {
		known, err := v.kernel.NeighList(v.index, family)
		if err != nil {
			return fmt.Errorf("list neighbours of %s: %w", v.name, err)
		}
		for _, n := range known {
			v.neighbour(netlink.NeighUpdate{Type: unix.RTM_NEWNEIGH, Neigh: n})
		}
	}
	return nil
}

func (v *View) run(u updates) {
	for {
		select {
		case a, ok := <-u.addrs:
			if !ok {
				return
			}
			v.addrUpdate(a)
		case n, ok := <-u.neighs:
			if !ok {
				return
			}
			v.neighbour(n)
		case r, ok := <-u.routes:
			if !ok {
				return
			}
			v.routeUpdate(r)
		case l, ok := <-u.links:
			if !ok {
				return
			}
			if l.Attrs().Index == v.index {
				v.setMTU(l.Attrs().MTU)
			}
		case <-v.done:
			return
		}
	}
}

// Addrs are the interface's addresses, as last heard.
func (v *View) Addrs() []netip.Prefix {
	v.mu.Lock()
	defer v.mu.Unlock()
	return slices.Clone(v.addrs)
}

// MTU is the interface's MTU, as last heard.
func (v *View) MTU() int {
	v.mu.Lock()
	defer v.mu.Unlock()
	return v.mtu
}

func (v *View) addrUpdate(u netlink.AddrUpdate) {
	p, ok := prefixOf(&u.LinkAddress)
	if u.LinkIndex != v.index || !ok {
		return
	}
	next := v.Addrs()
	has := slices.Contains(next, p)
	switch {
	case u.NewAddr && !has:
		next = append(next, p)
	case !u.NewAddr && has:
		next = slices.DeleteFunc(next, func(q netip.Prefix) bool { return q == p })
	default:
		return
	}
	if err := v.setAddrs(next); err != nil {
		v.log.Warn("cannot follow the interface's addresses", "err", err)
	}
}

// setAddrs makes next the interface's addresses: the netstack gains the
// new ones, the XDP table follows, then the netstack loses the old.
func (v *View) setAddrs(next []netip.Prefix) error {
	v.mu.Lock()
	prev := v.addrs
	v.addrs = slices.Clone(next)
	ns, local := v.ns, v.local
	v.mu.Unlock()
	var errs []error
	for _, p := range next {
		if Served(p.Addr()) && !hasAddr(prev, p.Addr()) {
			if err := ns.AddAddress(p); err != nil {
				errs = append(errs, fmt.Errorf("add address %s to the netstack: %w", p, err))
			}
			v.log.Debug("address added", "addr", p)
		}
	}
	if err := local.Sync(LocalAddrMap(next)); err != nil {
		errs = append(errs, err)
	}
	for _, p := range prev {
		if Served(p.Addr()) && !hasAddr(next, p.Addr()) {
			if err := ns.RemoveAddress(p); err != nil {
				errs = append(errs, fmt.Errorf("remove address %s from the netstack: %w", p, err))
			}
			v.log.Debug("address removed", "addr", p)
		}
	}
	return errors.Join(errs...)
}

// hasAddr tells whether one of prefixes is a's: the kernel may hold
// one address with two prefix lengths, the netstack only once.
func hasAddr(prefixes []netip.Prefix, a netip.Addr) bool {
	return slices.ContainsFunc(prefixes, func(p netip.Prefix) bool { return p.Addr() == a })
}

func (v *View) setMTU(mtu int) {
	v.mu.Lock()
	changed := mtu != v.mtu
	v.mtu = mtu
	ns := v.ns
	v.mu.Unlock()
	if changed && mtu > 0 {
		v.log.Debug("mtu changed", "mtu", mtu)
		ns.SetMTU(mtu)
	}
}

func (v *View) routeUpdate(u netlink.RouteUpdate) {
	if u.LinkIndex != v.index {
		return
	}
	if err := v.syncRoutes(); err != nil {
		v.log.Warn("cannot follow the kernel's routes", "err", err)
	}
}

// syncRoutes copies the kernel's main-table routes through the
// interface into the netstack.
func (v *View) syncRoutes() error {
	krs, err := v.kernel.RouteListFiltered(netlink.FAMILY_ALL, &netlink.Route{LinkIndex: v.index, Table: unix.RT_TABLE_MAIN}, netlink.RT_FILTER_OIF|netlink.RT_FILTER_TABLE)
	if err != nil {
		return fmt.Errorf("list routes of %s: %w", v.name, err)
	}
	var table []Route
	for _, kr := range krs {
		dst, ok := prefixOf(kr.Dst)
		if kr.Dst == nil {
			dst, ok = netip.PrefixFrom(netip.IPv4Unspecified(), 0), true
			if kr.Family == unix.AF_INET6 {
				dst = netip.PrefixFrom(netip.IPv6Unspecified(), 0)
			}
		}
		if !ok {
			continue
		}
		r := Route{Dst: dst}
		if gw, ok := netip.AddrFromSlice(kr.Gw); ok {
			r.Gateway = gw.Unmap()
		}
		table = append(table, r)
	}
	v.mu.Lock()
	ns := v.ns
	v.mu.Unlock()
	ns.SetRoutes(table)
	return nil
}

// usable are the states of a neighbour whose link address can be used.
const usable = netlink.NUD_REACHABLE | netlink.NUD_STALE | netlink.NUD_DELAY | netlink.NUD_PROBE | netlink.NUD_PERMANENT | netlink.NUD_NOARP

// neighbour applies one kernel neighbour update; true when it gave the
// netstack a link address.
func (v *View) neighbour(u netlink.NeighUpdate) bool {
	if u.LinkIndex != v.index {
		return false
	}
	addr, ok := netip.AddrFromSlice(u.IP)
	if !ok {
		return false
	}
	addr = addr.Unmap()
	v.mu.Lock()
	ns := v.ns
	if ns == nil {
		v.mu.Unlock()
		return false
	}
	if u.Type == unix.RTM_NEWNEIGH && u.State&usable != 0 && len(u.HardwareAddr) == 6 {
		asked := v.resolving[addr]
		delete(v.resolving, addr)
		v.mu.Unlock()
		ns.SetNeighbour(addr, u.HardwareAddr, asked)
		return true
	}
	v.mu.Unlock()
	if u.Type == unix.RTM_DELNEIGH || u.State&netlink.NUD_FAILED != 0 {
		ns.RemoveNeighbour(addr)
	}
	return false
}

// Resolve is for the netstack, which lacks addr's link address. It
// returns at once: the netstack calls it with its neighbour entry
// locked, and the answer may come at once. If the kernel knows the
// address (a permanent entry makes no news), it is handed over; else the
// kernel is made to resolve it. The answer comes through the
// subscription while the netstack holds its packets, as it would for
// its own ARP or ND.
func (v *View) Resolve(addr netip.Addr) {
	v.mu.Lock()
	defer v.mu.Unlock()
	if v.closed {
		return
	}
	v.resolving[addr] = true
	v.wg.Add(1)
	go func() {
		defer v.wg.Done()
		v.resolve(addr)
	}()
}

func (v *View) resolve(addr netip.Addr) {
	family := netlink.FAMILY_V4
	if addr.Is6() {
		family = netlink.FAMILY_V6
	}
	known, err := v.kernel.NeighList(v.index, family)
	if err == nil {
		for _, n := range known {
			if ip, ok := netip.AddrFromSlice(n.IP); ok && ip.Unmap() == addr && v.neighbour(netlink.NeighUpdate{Type: unix.RTM_NEWNEIGH, Neigh: n}) {
				return
			}
		}
	}
	if err := v.prober.Probe(addr); err != nil {
		v.log.Warn("cannot ask the kernel to resolve a neighbour", "addr", addr, "err", err)
	}
}

// Close stops following and releases what Open opened.
func (v *View) Close() error {
	v.mu.Lock()
	if v.closed {
		v.mu.Unlock()
		return nil
	}
	v.closed = true
	v.mu.Unlock()
	close(v.done)
	v.wg.Wait()
	var errs []error
	for _, c := range slices.Backward(v.closers) {
		errs = append(errs, c())
	}
	return errors.Join(errs...)
}

// prefixOf reads an address with its prefix length, IPv4 unmapped.
func prefixOf(n *net.IPNet) (netip.Prefix, bool) {
	if n == nil {
		return netip.Prefix{}, false
	}
	a, ok := netip.AddrFromSlice(n.IP)
	if !ok {
		return netip.Prefix{}, false
	}
	ones, bits := n.Mask.Size()
	if bits == 0 {
		return netip.Prefix{}, false
	}
	a = a.Unmap()
	if a.Is4() && bits == 128 {
		ones -= 96
	}
	return netip.PrefixFrom(a, ones), true
}
