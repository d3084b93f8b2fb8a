package testutil

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"net/netip"
	"os/exec"
	"runtime"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
)

// Host is a network namespace standing in for a machine, with one veth
// end as its only interface besides loopback.
type Host struct {
	Netns string
	Iface string
	Addr  netip.Addr
}

var subnet atomic.Uint32

// HostPair builds two hosts joined by a veth pair, each end with rxQueues
// RX and TX queues (0: the default). IPv6 is off and the neighbours are
// static, so the only packets on the wire are the ones a test sends.
// Everything is deleted when the test ends.
func HostPair(tb testing.TB, rxQueues int) (*Host, *Host) {
	tb.Helper()
	RequireBPF(tb)
	if _, err := exec.LookPath("nsenter"); err != nil {
		tb.Skip("needs nsenter (util-linux)")
	}
	id := UniqueName("")
	net3 := 64 + subnet.Add(1)%128
	a := &Host{Netns: "xs-" + id + "-a", Iface: "xa" + id, Addr: netip.AddrFrom4([4]byte{10, 213, byte(net3), 1})}
	b := &Host{Netns: "xs-" + id + "-b", Iface: "xb" + id, Addr: netip.AddrFrom4([4]byte{10, 213, byte(net3), 2})}
	for _, h := range []*Host{a, b} {
		run(tb, "ip", "netns", "add", h.Netns)
		tb.Cleanup(func() { exec.Command("ip", "netns", "del", h.Netns).Run() })
	}
	queues := []string{}
	if rxQueues > 0 {
		q := fmt.Sprint(rxQueues)
		queues = []string{"numrxqueues", q, "numtxqueues", q}
	}
	args := append([]string{"link", "add", a.Iface, "netns", a.Netns}, queues...)
	args = append(args, "type", "veth", "peer", "name", b.Iface, "netns", b.Netns)
	run(tb, "ip", append(args, queues...)...)
	for _, h := range []*Host{a, b} {
		run(tb, "ip", "-n", h.Netns, "link", "set", "lo", "up")
		h.Exec(tb, "sysctl", "-q", "-w", "net.ipv6.conf.all.disable_ipv6=1")
		run(tb, "ip", "-n", h.Netns, "addr", "add", h.Addr.String()+"/24", "dev", h.Iface)
		run(tb, "ip", "-n", h.Netns, "link", "set", h.Iface, "up")
	}
	a.addNeighbour(tb, b)
	b.addNeighbour(tb, a)
	return a, b
}

func (h *Host) addNeighbour(tb testing.TB, peer *Host) {
	tb.Helper()
	var mac string
	peer.Do(tb, func() error {
		l, err := netlink.LinkByName(peer.Iface)
		if err == nil {
			mac = l.Attrs().HardwareAddr.String()
		}
		return err
	})
	run(tb, "ip", "-n", h.Netns, "neigh", "replace", peer.Addr.String(), "lladdr", mac, "dev", h.Iface, "nud", "permanent")
}

// Command returns a command that runs in the host's network namespace
// but the caller's mount namespace, so it sees the same BPF pins.
func (h *Host) Command(ctx context.Context, name string, args ...string) *exec.Cmd {
	return exec.CommandContext(ctx, "nsenter", append([]string{"--net=/run/netns/" + h.Netns, "--", name}, args...)...)
}

// Exec runs a command in the host and fails the test when it fails.
func (h *Host) Exec(tb testing.TB, name string, args ...string) string {
	tb.Helper()
	out, err := h.Command(context.Background(), name, args...).CombinedOutput()
	if err != nil {
		tb.Fatalf("%s %s in %s: %v\n%s", name, strings.Join(args, " "), h.Netns, err, out)
	}
	return string(out)
}

// Do runs f on a thread inside the host's network namespace and fails
// the test when f fails. Sockets f creates stay in that namespace
// wherever they are used afterwards.
func (h *Host) Do(tb testing.TB, f func() error) {
	tb.Helper()
	if err := h.do(f); err != nil {
		tb.Fatalf("in %s: %v", h.Netns, err)
	}
}

func (h *Host) do(f func() error) error {
	done := make(chan error, 1)
	go func() {
		// The thread is left locked, so the Go runtime throws it away
		// instead of reusing it outside the namespace.
		runtime.LockOSThread()
		ns, err := netns.GetFromName(h.Netns)
		if err != nil {
			done <- fmt.Errorf("open netns %s: %w", h.Netns, err)
			return
		}
		defer ns.Close()
		if err := netns.Set(ns); err != nil {
			done <- fmt.Errorf("enter netns %s: %w", h.Netns, err)
			return
		}
		done <- f()
	}()
	return <-done
}

// DialContext dials from inside the host; it fits http.Transport.
func (h *Host) DialContext(ctx context.Context, network, addr string) (net.Conn, error) {
	var conn net.Conn
	err := h.do(func() error {
		var err error
		conn, err = (&net.Dialer{}).DialContext(ctx, network, addr)
		return err
	})
	return conn, err
}

// TxStats returns what the host's interface has sent.
func (h *Host) TxStats(tb testing.TB) (packets, bytes uint64) {
	tb.Helper()
	h.Do(tb, func() error {
		l, err := netlink.LinkByName(h.Iface)
		if err != nil {
			return err
		}
		s := l.Attrs().Statistics
		packets, bytes = s.TxPackets, s.TxBytes
		return nil
	})
	return packets, bytes
}

func run(tb testing.TB, name string, args ...string) {
	tb.Helper()
	var stderr bytes.Buffer
	cmd := exec.Command(name, args...)
	cmd.Stderr = &stderr
	if err := cmd.Run(); err != nil {
		tb.Fatalf("%s %s: %v: %s", name, strings.Join(args, " "), err, stderr.String())
	}
}
