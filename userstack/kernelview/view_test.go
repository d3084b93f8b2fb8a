package kernelview

import (
	"fmt"
	"maps"
	"net"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	xmaps "github.com/xdpstack/xdpstack/maps"
)

const index = 7

// kernel plays the kernel's side of netlink for a view.
type kernel struct {
	mu     sync.Mutex
	mtu    int
	addrs  []netlink.Addr
	neighs []netlink.Neigh
	routes []netlink.Route
}

func (k *kernel) LinkByIndex(i int) (netlink.Link, error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	if i != index {
		return nil, fmt.Errorf("no link %d", i)
	}
	return &netlink.Dummy{LinkAttrs: netlink.LinkAttrs{Index: index, Name: "eth0", MTU: k.mtu}}, nil
}

func (k *kernel) AddrList(link netlink.Link, family int) ([]netlink.Addr, error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	return slices.Clone(k.addrs), nil
}

func (k *kernel) NeighList(linkIndex, family int) ([]netlink.Neigh, error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	var ns []netlink.Neigh
	for _, n := range k.neighs {
		if (n.IP.To4() != nil) == (family == netlink.FAMILY_V4) {
			ns = append(ns, n)
		}
	}
	return ns, nil
}

func (k *kernel) RouteListFiltered(family int, filter *netlink.Route, mask uint64) ([]netlink.Route, error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	return slices.Clone(k.routes), nil
}

// recorder is the netstack, the XDP table and the prober at once: it
// writes down every call, in order, as a line.
type recorder struct{ events chan string }

func newRecorder() *recorder { return &recorder{events: make(chan string, 100)} }

func (r *recorder) AddAddress(p netip.Prefix) error {
	r.events <- "add " + p.String()
	return nil
}

func (r *recorder) RemoveAddress(p netip.Prefix) error {
	r.events <- "remove " + p.String()
	return nil
}

func (r *recorder) SetRoutes(routes []Route) {
	var s []string
	for _, rt := range routes {
		s = append(s, fmt.Sprintf("%s via %s", rt.Dst, rt.Gateway))
	}
	r.events <- "routes " + strings.Join(s, ", ")
}
func (r *recorder) SetNeighbour(a netip.Addr, mac net.HardwareAddr, asked bool) {
	r.events <- fmt.Sprintf("neighbour %s at %s asked=%v", a, mac, asked)
}
func (r *recorder) RemoveNeighbour(a netip.Addr) { r.events <- "forget " + a.String() }
func (r *recorder) SetMTU(mtu int)               { r.events <- fmt.Sprintf("mtu %d", mtu) }

func (r *recorder) Probe(a netip.Addr) error {
	r.events <- "probe " + a.String()
	return nil
}

func (r *recorder) Sync(want map[netip.Addr]xmaps.AddrKind) error {
	var s []string
	for _, a := range slices.SortedFunc(maps.Keys(want), netip.Addr.Compare) {
		s = append(s, fmt.Sprintf("%s=%s", a, want[a]))
	}
	r.events <- "xdp " + strings.Join(s, " ")
	return nil
}

// expect checks that the next calls are want, in order.
func (r *recorder) expect(t *testing.T, want ...string) {
	t.Helper()
	for _, w := range want {
		select {
		case got := <-r.events:
			if got != w {
				t.Fatalf("got %q, want %q", got, w)
			}
		case <-time.After(5 * time.Second):
			t.Fatalf("no call after 5s, want %q", w)
		}
	}
}

// quiet checks that no call comes.
func (r *recorder) quiet(t *testing.T) {
	t.Helper()
	select {
	case got := <-r.events:
		t.Fatalf("unexpected %q", got)
	case <-time.After(20 * time.Millisecond):
	}
}

func ipNet(s string) *net.IPNet {
	p := netip.MustParsePrefix(s)
	return &net.IPNet{IP: p.Addr().AsSlice(), Mask: net.CIDRMask(p.Bits(), p.Addr().BitLen())}
}

var (
	peerMAC   = net.HardwareAddr{2, 0, 0, 0, 0, 2}
	routerMAC = net.HardwareAddr{2, 0, 0, 0, 0, 1}
)

// loaded returns a view of a kernel with one IPv4 and one link-local
// IPv6 address, a router and two routes, after its first load.
func loaded(t *testing.T) (*View, *kernel, *recorder) {
	t.Helper()
	k := &kernel{
		mtu:   1500,
		addrs: []netlink.Addr{{IPNet: ipNet("10.1.2.3/24")}, {IPNet: ipNet("fe80::1/64")}},
		neighs: []netlink.Neigh{
			{LinkIndex: index, IP: net.ParseIP("10.1.2.1"), HardwareAddr: routerMAC, State: netlink.NUD_REACHABLE},
			{LinkIndex: index, IP: net.ParseIP("10.1.2.9"), State: netlink.NUD_FAILED},
		},
		routes: []netlink.Route{
			{LinkIndex: index, Family: unix.AF_INET, Gw: net.ParseIP("10.1.2.1").To4()},
			{LinkIndex: index, Family: unix.AF_INET, Dst: ipNet("10.1.2.0/24")},
		},
	}
	r := newRecorder()
	v := newView(index, "eth0", k, r)
	v.ns, v.local = r, r
	if err := v.load(); err != nil {
		t.Fatal(err)
	}
	r.expect(t,
		"mtu 1500",
		"add 10.1.2.3/24",
		"xdp 10.1.2.3=own|served 10.1.2.255=broadcast fe80::1=own",
		"routes 0.0.0.0/0 via 10.1.2.1, 10.1.2.0/24 via invalid IP",
		"neighbour 10.1.2.1 at 02:00:00:00:00:01 asked=false",
		"forget 10.1.2.9",
	)
	r.quiet(t)
	return v, k, r
}

func TestLoad(t *testing.T) {
	v, _, _ := loaded(t)
	if got, want := v.Addrs(), []netip.Prefix{netip.MustParsePrefix("10.1.2.3/24"), netip.MustParsePrefix("fe80::1/64")}; !slices.Equal(got, want) {
		t.Errorf("Addrs(): got %v, want %v", got, want)
	}
	if v.MTU() != 1500 {
		t.Errorf("MTU(): got %d, want 1500", v.MTU())
	}
}

// TestAddresses: the netstack gains an address before the XDP table
// steers to it, and loses it only after the table stopped.
func TestAddresses(t *testing.T) {
	v, _, r := loaded(t)
	update := func(addr string, add bool, link int) {
		v.addrUpdate(netlink.AddrUpdate{LinkAddress: *ipNet(addr), LinkIndex: link, NewAddr: add})
	}
	update("10.9.0.1/16", true, index)
	r.expect(t, "add 10.9.0.1/16", "xdp 10.1.2.3=own|served 10.1.2.255=broadcast 10.9.0.1=own|served 10.9.255.255=broadcast fe80::1=own")
	update("10.9.0.1/16", true, index) // the subscription's own listing
	update("10.8.0.1/16", true, index+1)
	r.quiet(t)

	// One address with two prefix lengths is in the netstack once.
	update("10.9.0.1/24", true, index)
	r.expect(t, "xdp 10.1.2.3=own|served 10.1.2.255=broadcast 10.9.0.1=own|served 10.9.0.255=broadcast 10.9.255.255=broadcast fe80::1=own")
	update("10.9.0.1/16", false, index)
	r.expect(t, "xdp 10.1.2.3=own|served 10.1.2.255=broadcast 10.9.0.1=own|served 10.9.0.255=broadcast fe80::1=own")
	r.quiet(t)
	update("10.9.0.1/24", false, index)
	r.expect(t, "xdp 10.1.2.3=own|served 10.1.2.255=broadcast fe80::1=own", "remove 10.9.0.1/24")

	update("2001:db8::5/64", true, index)
	r.expect(t, "add 2001:db8::5/64", "xdp 10.1.2.3=own|served 10.1.2.255=broadcast 2001:db8::5=own|served fe80::1=own")
	update("fe80::2/64", true, index)
	r.expect(t, "xdp 10.1.2.3=own|served 10.1.2.255=broadcast 2001:db8::5=own|served fe80::1=own fe80::2=own")
	r.quiet(t)
}

func TestNeighbours(t *testing.T) {
	v, k, r := loaded(t)
	peer := netip.MustParseAddr("10.1.2.2")
	neigh := func(typ uint16, state int, mac net.HardwareAddr) netlink.NeighUpdate {
		return netlink.NeighUpdate{Type: typ, Neigh: netlink.Neigh{LinkIndex: index, IP: peer.AsSlice(), HardwareAddr: mac, State: state}}
	}

	// Unasked: a static entry.
	v.neighbour(neigh(unix.RTM_NEWNEIGH, netlink.NUD_STALE, peerMAC))
	r.expect(t, "neighbour 10.1.2.2 at 02:00:00:00:00:02 asked=false")
	v.neighbour(neigh(unix.RTM_NEWNEIGH, netlink.NUD_INCOMPLETE, nil))
	r.quiet(t)
	v.neighbour(neigh(unix.RTM_DELNEIGH, netlink.NUD_STALE, peerMAC))
	r.expect(t, "forget 10.1.2.2")

	// Asked and unknown to the kernel: a probe, and the answer goes to
	// the netstack as the one it waits for.
	v.Resolve(peer)
	r.expect(t, "probe 10.1.2.2")
	v.neighbour(neigh(unix.RTM_NEWNEIGH, netlink.NUD_REACHABLE, peerMAC))
	r.expect(t, "neighbour 10.1.2.2 at 02:00:00:00:00:02 asked=true")
	v.neighbour(neigh(unix.RTM_NEWNEIGH, netlink.NUD_REACHABLE, peerMAC))
	r.expect(t, "neighbour 10.1.2.2 at 02:00:00:00:00:02 asked=false")

	// Asked and known (a permanent entry makes no news): no probe.
	k.mu.Lock()
	k.neighs = append(k.neighs, netlink.Neigh{LinkIndex: index, IP: peer.AsSlice(), HardwareAddr: peerMAC, State: netlink.NUD_PERMANENT})
	k.mu.Unlock()
	v.Resolve(peer)
	r.expect(t, "neighbour 10.1.2.2 at 02:00:00:00:00:02 asked=true")

	// Another link's neighbours are not ours.
	other := neigh(unix.RTM_NEWNEIGH, netlink.NUD_REACHABLE, peerMAC)
	other.LinkIndex = index + 1
	v.neighbour(other)
	r.quiet(t)

	if err := v.Close(); err != nil {
		t.Fatal(err)
	}
	v.Resolve(peer)
	r.quiet(t)
}

func TestRoutesAndMTU(t *testing.T) {
	v, k, r := loaded(t)
	k.mu.Lock()
	k.routes = append(k.routes, netlink.Route{LinkIndex: index, Family: unix.AF_INET6, Gw: net.ParseIP("fe80::9")})
	k.mu.Unlock()
	v.routeUpdate(netlink.RouteUpdate{Type: unix.RTM_NEWROUTE, Route: netlink.Route{LinkIndex: index + 1}})
	r.quiet(t)
	v.routeUpdate(netlink.RouteUpdate{Type: unix.RTM_NEWROUTE, Route: netlink.Route{LinkIndex: index}})
	r.expect(t, "routes 0.0.0.0/0 via 10.1.2.1, 10.1.2.0/24 via invalid IP, ::/0 via fe80::9")

	v.setMTU(9000)
	r.expect(t, "mtu 9000")
	v.setMTU(9000)
	r.quiet(t)
	if v.MTU() != 9000 {
		t.Errorf("MTU(): got %d, want 9000", v.MTU())
	}
}

// TestRun feeds updates through the loop that reads the subscriptions.
func TestRun(t *testing.T) {
	v, _, r := loaded(t)
	u := updates{
		addrs:  make(chan netlink.AddrUpdate),
		neighs: make(chan netlink.NeighUpdate),
		routes: make(chan netlink.RouteUpdate),
		links:  make(chan netlink.LinkUpdate),
	}
	v.wg.Add(1)
	go func() {
		defer v.wg.Done()
		v.run(u)
	}()
	u.links <- netlink.LinkUpdate{Link: &netlink.Dummy{LinkAttrs: netlink.LinkAttrs{Index: index, MTU: 4000}}}
	r.expect(t, "mtu 4000")
	u.links <- netlink.LinkUpdate{Link: &netlink.Dummy{LinkAttrs: netlink.LinkAttrs{Index: index + 1, MTU: 1280}}}
	u.addrs <- netlink.AddrUpdate{LinkAddress: *ipNet("10.1.2.3/24"), LinkIndex: index}
	r.expect(t, "xdp fe80::1=own", "remove 10.1.2.3/24")
	u.neighs <- netlink.NeighUpdate{Type: unix.RTM_DELNEIGH, Neigh: netlink.Neigh{LinkIndex: index, IP: net.ParseIP("10.1.2.1")}}
	r.expect(t, "forget 10.1.2.1")
	if err := v.Close(); err != nil {
		t.Fatal(err)
	}
	r.quiet(t)
}

func TestLocalAddrMap(t *testing.T) {
	got := LocalAddrMap([]netip.Prefix{
		netip.MustParsePrefix("10.1.2.3/24"),
		netip.MustParsePrefix("192.0.2.1/31"),
		netip.MustParsePrefix("2001:db8::1/64"),
		netip.MustParsePrefix("fe80::1/64"),
	})
	want := map[netip.Addr]xmaps.AddrKind{
		netip.MustParseAddr("10.1.2.3"):    xmaps.AddrOwn | xmaps.AddrServed,
		netip.MustParseAddr("10.1.2.255"):  xmaps.AddrBroadcast,
		netip.MustParseAddr("192.0.2.1"):   xmaps.AddrOwn | xmaps.AddrServed,
		netip.MustParseAddr("2001:db8::1"): xmaps.AddrOwn | xmaps.AddrServed,
		netip.MustParseAddr("fe80::1"):     xmaps.AddrOwn,
	}
	if !maps.Equal(got, want) {
		t.Errorf("LocalAddrMap: got %v, want %v", got, want)
	}
}
