package hosts

import (
	"fmt"
	"net/netip"
)

// LAN is hosts on one Ethernet segment: each host's veth end is in its
// own namespace, the other ends are ports of a bridge in a switch
// namespace. Every host has an IPv4 address in 10.213.N.0/24 (Addr) and
// an IPv6 one in fd00:213:N::/64 (Addr6), IPv6 on with duplicate address
// detection off, and static neighbours for every other host in both
// families, so that the only packets on the wire are the ones the hosts
// send.
type LAN struct {
	Hosts  []*Host
	Addr6  []netip.Addr // Addr6[i] is Hosts[i]'s IPv6 address
	Switch string       // the bridge's namespace
}

// NewLAN builds a LAN of n hosts, each interface with queues RX and TX
// queues (0: the default). Close deletes it all.
func NewLAN(n, queues int) (*LAN, error) {
	id := randomID()
	net3 := nextSubnet()
	l := &LAN{Switch: "xs-" + id + "-sw"}
	for i := range n {
		l.Hosts = append(l.Hosts, &Host{
			Netns: fmt.Sprintf("xs-%s-%d", id, i),
			Iface: fmt.Sprintf("xl%s%d", id, i),
			Addr:  netip.AddrFrom4([4]byte{10, 213, net3, byte(i + 1)}),
		})
		l.Addr6 = append(l.Addr6, netip.MustParseAddr(fmt.Sprintf("fd00:213:%x::%x", net3, i+1)))
	}
	if err := l.build(queues); err != nil {
		l.Close()
		return nil, err
	}
	return l, nil
}

func (l *LAN) build(queues int) error {
	names := []string{l.Switch}
	for _, h := range l.Hosts {
		names = append(names, h.Netns)
	}
	if err := addNetns(names...); err != nil {
		return err
	}
	bridge := "br0"
	for _, args := range [][]string{
		{"-n", l.Switch, "link", "add", bridge, "type", "bridge"},
		{"-n", l.Switch, "link", "set", bridge, "up"},
	} {
		if err := run("ip", args...); err != nil {
			return err
		}
	}
	var q []string
	if queues > 0 {
		q = []string{"numrxqueues", fmt.Sprint(queues), "numtxqueues", fmt.Sprint(queues)}
	}
	for i, h := range l.Hosts {
		port := fmt.Sprintf("p%d", i)
		args := append([]string{"link", "add", h.Iface, "netns", h.Netns}, q...)
		args = append(append(args, "type", "veth", "peer", "name", port, "netns", l.Switch), q...)
		if err := run("ip", args...); err != nil {
			return err
		}
		for _, args := range [][]string{
			{"-n", l.Switch, "link", "set", port, "master", bridge},
			{"-n", l.Switch, "link", "set", port, "up"},
			{"netns", "exec", h.Netns, "sysctl", "-q", "-w", "net.ipv6.conf.all.disable_ipv6=0"},
			{"netns", "exec", h.Netns, "sysctl", "-q", "-w", "net.ipv6.conf.all.accept_dad=0"},
			{"netns", "exec", h.Netns, "sysctl", "-q", "-w", "net.ipv6.conf.default.accept_dad=0"},
			{"-n", h.Netns, "addr", "add", h.Addr.String() + "/24", "dev", h.Iface},
			{"-n", h.Netns, "addr", "add", l.Addr6[i].String() + "/64", "dev", h.Iface, "nodad"},
			{"-n", h.Netns, "link", "set", h.Iface, "up"},
		} {
			if err := run("ip", args...); err != nil {
				return err
			}
		}
	}
	for i, h := range l.Hosts {
		for j, other := range l.Hosts {
			if i == j {
				continue
			}
			mac, err := other.MAC()
			if err != nil {
				return err
			}
			for _, addr := range []netip.Addr{other.Addr, l.Addr6[j]} {
				if err := run("ip", "-n", h.Netns, "neigh", "replace", addr.String(), "lladdr", mac.String(), "dev", h.Iface, "nud", "permanent"); err != nil {
					return err
				}
			}
		}
	}
	return nil
}

// Close deletes the namespaces and with them the veth pairs and the
// bridge.
func (l *LAN) Close() error {
	names := []string{l.Switch}
	for _, h := range l.Hosts {
		names = append(names, h.Netns)
	}
	return delNetns(names...)
}
