package kernelview

import (
	"fmt"
	"net"
	"net/netip"
	"slices"
	"sync"
	"testing"
	"time"

	xmaps "github.com/xdpstack/xdpstack/maps"

	"github.com/xdpstack/xdpstack/internal/testing/testutil"
)

// netstack keeps what a view told it, as a netstack would.
type netstack struct {
	mu     sync.Mutex
	addrs  map[netip.Prefix]bool
	routes []Route
	neighs map[netip.Addr]string
	mtu    int
	local  map[netip.Addr]xmaps.AddrKind
}

func (n *netstack) AddAddress(p netip.Prefix) error {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.addrs[p] = true
	return nil
}

func (n *netstack) RemoveAddress(p netip.Prefix) error {
	n.mu.Lock()
	defer n.mu.Unlock()
	delete(n.addrs, p)
	return nil
}

func (n *netstack) SetRoutes(r []Route) {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.routes = r
}

func (n *netstack) SetNeighbour(a netip.Addr, mac net.HardwareAddr, asked bool) {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.neighs[a] = fmt.Sprintf("%s asked=%v", mac, asked)
}

func (n *netstack) RemoveNeighbour(a netip.Addr) {
	n.mu.Lock()
	defer n.mu.Unlock()
	delete(n.neighs, a)
}

func (n *netstack) SetMTU(mtu int) {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.mtu = mtu
}

func (n *netstack) Sync(want map[netip.Addr]xmaps.AddrKind) error {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.local = want
	return nil
}

// waitFor waits up to 5s for cond to hold of what the netstack was told.
func (n *netstack) waitFor(t *testing.T, what string, cond func(n *netstack) bool) {
	t.Helper()
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		n.mu.Lock()
		ok := cond(n)
		n.mu.Unlock()
		if ok {
			return
		}
		if time.Now().After(deadline) {
			n.mu.Lock()
			defer n.mu.Unlock()
			t.Fatalf("%s: not after 5s; addrs %v, local %v, mtu %d, routes %v, neighbours %v", what, n.addrs, n.local, n.mtu, n.routes, n.neighs)
		}
	}
}

// TestFollowsKernel follows a veth in a namespace while ip changes its
// addresses, MTU and routes, and resolves a neighbour through the
// kernel.
func TestFollowsKernel(t *testing.T) {
	a, b := testutil.HostPair(t, 0)
	link, err := a.Link()
	if err != nil {
		t.Fatal(err)
	}
	n := &netstack{addrs: map[netip.Prefix]bool{}, neighs: map[netip.Addr]string{}}
	var v *View
	a.Do(t, func() (err error) {
		if v, err = Open(link.Attrs().Index, a.Iface); err != nil {
			return err
		}
		return v.Follow(n, n)
	})
	t.Cleanup(func() { v.Close() })
	bMAC, err := b.MAC()
	if err != nil {
		t.Fatal(err)
	}
	own := netip.PrefixFrom(a.Addr, 24)
	subnet := own.Masked()
	n.waitFor(t, "the start", func(n *netstack) bool {
		return n.addrs[own] && n.mtu == 1500 && n.local[a.Addr] == xmaps.AddrOwn|xmaps.AddrServed &&
			slices.Contains(n.routes, Route{Dst: subnet}) && n.neighs[b.Addr] == bMAC.String()+" asked=false"
	})

	second := netip.PrefixFrom(a.Addr.Next().Next().Next().Next(), 24)
	a.Exec(t, "ip", "addr", "add", second.String(), "dev", a.Iface)
	n.waitFor(t, "an address added", func(n *netstack) bool {
		return n.addrs[second] && n.local[second.Addr()] == xmaps.AddrOwn|xmaps.AddrServed
	})
	if !slices.Contains(v.Addrs(), second) {
		t.Errorf("Addrs(): %v, want %v among them", v.Addrs(), second)
	}
	a.Exec(t, "ip", "addr", "del", second.String(), "dev", a.Iface)
	n.waitFor(t, "an address removed", func(n *netstack) bool {
		_, steered := n.local[second.Addr()]
		return !n.addrs[second] && !steered
	})

	a.Exec(t, "ip", "link", "set", a.Iface, "mtu", "9000")
	n.waitFor(t, "the mtu raised", func(n *netstack) bool { return n.mtu == 9000 })

	routed := netip.MustParsePrefix("192.0.2.0/24")
	a.Exec(t, "ip", "route", "add", routed.String(), "via", b.Addr.String())
	n.waitFor(t, "a route added", func(n *netstack) bool { return slices.Contains(n.routes, Route{Dst: routed, Gateway: b.Addr}) })

	// A neighbour the kernel has not resolved yet: the view makes it.
	other := b.Addr.Next().Next().Next().Next()
	b.Exec(t, "ip", "addr", "add", other.String()+"/24", "dev", b.Iface)
	v.Resolve(other)
	n.waitFor(t, "a neighbour resolved", func(n *netstack) bool { return n.neighs[other] == bMAC.String()+" asked=true" })
}
