package testutil

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/xdpstack/xdpstack/internal/testing/hosts"
)

// Host is a hosts.Host with helpers that fail the test.
type Host struct{ *hosts.Host }

// HostPair builds two hosts joined by veth (see hosts.NewPair) and
// deletes them when the test ends.
func HostPair(tb testing.TB, queues int) (*Host, *Host) {
	tb.Helper()
	RequireBPF(tb)
	p, err := hosts.NewPair(queues)
	if err != nil {
		tb.Fatalf("build hosts: %v", err)
	}
	tb.Cleanup(func() { p.Close() })
	return &Host{p.A}, &Host{p.B}
}

// Chain is a hosts.Chain whose hosts have helpers that fail the test.
type Chain struct {
	Client, Router, RouterBack, Server *Host
}

// HostChain builds three hosts in a routed row (see hosts.NewChain) and
// deletes them when the test ends.
func HostChain(tb testing.TB, queues int) *Chain {
	tb.Helper()
	RequireBPF(tb)
	c, err := hosts.NewChain(queues)
	if err != nil {
		tb.Fatalf("build hosts: %v", err)
	}
	tb.Cleanup(func() { c.Close() })
	return &Chain{&Host{c.Client}, &Host{c.Router}, &Host{c.RouterBack}, &Host{c.Server}}
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

// Do runs f inside the host (see hosts.Host.Run) and fails the test
// when f fails.
func (h *Host) Do(tb testing.TB, f func() error) {
	tb.Helper()
	if err := h.Run(f); err != nil {
		tb.Fatalf("in %s: %v", h.Netns, err)
	}
}

// TxStats returns what the host's interface has sent.
func (h *Host) TxStats(tb testing.TB) (packets, bytes uint64) {
	tb.Helper()
	l, err := h.Link()
	if err != nil {
		tb.Fatal(err)
	}
	s := l.Attrs().Statistics
	return s.TxPackets, s.TxBytes
}

// KernelEcho serves echo on a kernel TCP socket of the host at addr until
// the test ends, and returns the address it listens on.
func (h *Host) KernelEcho(tb testing.TB, addr string) string {
	tb.Helper()
	ln, err := h.Listen("tcp", addr)
	if err != nil {
		tb.Fatalf("listen on %s in %s: %v", addr, h.Netns, err)
	}
	tb.Cleanup(func() { ln.Close() })
	go Echo(ln)
	return ln.Addr().String()
}

// EchoFrom dials addr, an echo server, from a kernel socket of the host
// and checks that n bytes come back as sent (RoundTrip).
func (h *Host) EchoFrom(tb testing.TB, addr string, n int) {
	tb.Helper()
	h.Do(tb, func() error {
		c, err := net.DialTimeout("tcp", addr, 5*time.Second)
		if err != nil {
			return err
		}
		defer c.Close()
		if err := RoundTrip(c, n); err != nil {
			return fmt.Errorf("echo from %s: %w", addr, err)
		}
		return nil
	})
}

// LAN is a hosts.LAN whose hosts have helpers that fail the test.
type LAN struct {
	Hosts []*Host
	Addr6 []netip.Addr
	// Switch is the bridge's namespace: port pI there is Hosts[I]'s
	// wire, where a capture sees every frame the host sends or gets.
	Switch string
}

// HostLAN builds n hosts on one bridge (see hosts.NewLAN), deleted when
// the test ends.
func HostLAN(tb testing.TB, n, queues int) *LAN {
	tb.Helper()
	RequireBPF(tb)
	l, err := hosts.NewLAN(n, queues)
	if err != nil {
		tb.Fatalf("build hosts: %v", err)
	}
	tb.Cleanup(func() { l.Close() })
	lan := &LAN{Addr6: l.Addr6, Switch: l.Switch}
	for _, h := range l.Hosts {
		lan.Hosts = append(lan.Hosts, &Host{h})
	}
	return lan
}
