// Package hosts builds stand-in machines out of network namespaces
// joined by veth pairs, two side by side or three in a routed row, for
// integration tests, the demo's Go parts and benchmarks.
package hosts

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"sync/atomic"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// Host is a network namespace standing in for a machine, with one veth
// end as its only interface besides loopback.
type Host struct {
	Netns string
	Iface string
	Addr  netip.Addr
}

// Pair is two hosts joined by a veth pair.
type Pair struct {
	A, B *Host
}

var subnet atomic.Uint32

// nextSubnet returns the third byte of a fresh 10.213.N.0/24.
func nextSubnet() byte { return byte(64 + subnet.Add(1)%128) }

// randomID returns 8 hex digits that make a test's names its own.
func randomID() string {
	b := make([]byte, 4)
	rand.Read(b)
	return hex.EncodeToString(b)
}

// NewPair builds two hosts joined by a veth pair, each end with queues
// RX and TX queues (0: the default), all of them active, addressed in 10.213.N.0/24 inside
// the namespaces. IPv6 is off and the neighbours are static, so the only
// packets on the wire are the ones a caller sends. Close deletes it all.
func NewPair(queues int) (*Pair, error) {
	id := randomID()
	net3 := nextSubnet()
	p := &Pair{
		A: &Host{Netns: "xs-" + id + "-a", Iface: "xa" + id, Addr: netip.AddrFrom4([4]byte{10, 213, net3, 1})},
		B: &Host{Netns: "xs-" + id + "-b", Iface: "xb" + id, Addr: netip.AddrFrom4([4]byte{10, 213, net3, 2})},
	}
	err := addNetns(p.A.Netns, p.B.Netns)
	if err == nil {
		err = join(p.A, p.B, queues)
	}
	if err != nil {
		p.Close()
		return nil, err
	}
	return p, nil
}

// Close deletes both namespaces and with them the veth pair.
func (p *Pair) Close() error { return delNetns(p.A.Netns, p.B.Netns) }

// Chain is three hosts in a row, Client -- Router -- Server, joined by
// two veth pairs, each in a subnet of its own: the client and the
// server reach each other through the router, which forwards
// (ip_forward=1). Router and RouterBack are the router's two sides, one
// namespace: Router faces the client, RouterBack the server. As in a
// Pair, IPv6 is off and the neighbours are static.
type Chain struct {
	Client, Router, RouterBack, Server *Host
}

// NewChain builds a Chain, each veth end with queues RX and TX queues
// (0: the default). Close deletes it all.
func NewChain(queues int) (*Chain, error) {
	id := randomID()
	front, back := nextSubnet(), nextSubnet()
	router := "xs-" + id + "-r"
	c := &Chain{
		Client:     &Host{Netns: "xs-" + id + "-c", Iface: "xc" + id, Addr: netip.AddrFrom4([4]byte{10, 213, front, 2})},
		Router:     &Host{Netns: router, Iface: "xr" + id, Addr: netip.AddrFrom4([4]byte{10, 213, front, 1})},
		RouterBack: &Host{Netns: router, Iface: "xt" + id, Addr: netip.AddrFrom4([4]byte{10, 213, back, 1})},
		Server:     &Host{Netns: "xs-" + id + "-s", Iface: "xs" + id, Addr: netip.AddrFrom4([4]byte{10, 213, back, 2})},
	}
	if err := c.build(queues); err != nil {
		c.Close()
		return nil, err
	}
	return c, nil
}

func (c *Chain) build(queues int) error {
	if err := addNetns(c.Client.Netns, c.Router.Netns, c.Server.Netns); err != nil {
		return err
	}
	if err := join(c.Router, c.Client, queues); err != nil {
		return err
	}
	if err := join(c.RouterBack, c.Server, queues); err != nil {
		return err
	}
	for _, args := range [][]string{
		{"netns", "exec", c.Router.Netns, "sysctl", "-q", "-w", "net.ipv4.ip_forward=1"},
		{"-n", c.Client.Netns, "route", "add", "default", "via", c.Router.Addr.String()},
		{"-n", c.Server.Netns, "route", "add", "default", "via", c.RouterBack.Addr.String()},
	} {
		if err := run("ip", args...); err != nil {
			return err
		}
	}
	return nil
}

// Close deletes the three namespaces and with them the veth pairs.
func (c *Chain) Close() error { return delNetns(c.Client.Netns, c.Router.Netns, c.Server.Netns) }

// addNetns makes network namespaces with loopback up and IPv6 off.
func addNetns(names ...string) error {
	if _, err := exec.LookPath("nsenter"); err != nil {
		return fmt.Errorf("needs nsenter (util-linux): %w", err)
	}
	for _, name := range names {
		for _, args := range [][]string{
			{"netns", "add", name},
			{"-n", name, "link", "set", "lo", "up"},
			{"netns", "exec", name, "sysctl", "-q", "-w", "net.ipv6.conf.all.disable_ipv6=1"},
		} {
			if err := run("ip", args...); err != nil {
				return err
			}
		}
	}
	return nil
}

// delNetns deletes network namespaces, and with them their interfaces.
func delNetns(names ...string) error {
	var errs []error
	for _, name := range names {
		if err := exec.Command("ip", "netns", "del", name).Run(); err != nil {
			errs = append(errs, fmt.Errorf("delete netns %s: %w", name, err))
		}
	}
	return errors.Join(errs...)
}

// join links two hosts, whose namespaces exist, with a veth pair: each
// end with queues RX and TX queues (0: the default), all active, up,
// with its address in a /24, and a static entry for the other's.
func join(a, b *Host, queues int) error {
	var q []string
	if queues > 0 {
		q = []string{"numrxqueues", fmt.Sprint(queues), "numtxqueues", fmt.Sprint(queues)}
	}
	args := append([]string{"link", "add", a.Iface, "netns", a.Netns}, q...)
	args = append(append(args, "type", "veth", "peer", "name", b.Iface, "netns", b.Netns), q...)
	if err := run("ip", args...); err != nil {
		return err
	}
	for _, h := range []*Host{a, b} {
		for _, args := range [][]string{
			{"-n", h.Netns, "addr", "add", h.Addr.String() + "/24", "dev", h.Iface},
			{"-n", h.Netns, "link", "set", h.Iface, "up"},
		} {
			if err := run("ip", args...); err != nil {
				return err
			}
		}
		// A veth uses one queue of those it has until told otherwise.
		if queues > 1 {
			n := fmt.Sprint(queues)
			if err := run("ip", "netns", "exec", h.Netns, "ethtool", "-L", h.Iface, "rx", n, "tx", n); err != nil {
				return err
			}
		}
	}
	for _, pair := range [][2]*Host{{a, b}, {b, a}} {
		mac, err := pair[1].MAC()
		if err != nil {
			return err
		}
		if err := run("ip", "-n", pair[0].Netns, "neigh", "replace", pair[1].Addr.String(), "lladdr", mac.String(), "dev", pair[0].Iface, "nud", "permanent"); err != nil {
			return err
		}
	}
	return nil
}

// Command returns a command that runs in the host's network namespace
// but the caller's mount namespace, so it sees the same BPF pins.
func (h *Host) Command(ctx context.Context, name string, args ...string) *exec.Cmd {
	return exec.CommandContext(ctx, "nsenter", append([]string{"--net=/run/netns/" + h.Netns, "--", name}, args...)...)
}

// Run runs f on a thread inside the host's network namespace. Sockets
// and links f creates stay in that namespace wherever they are used
// afterwards.
func (h *Host) Run(f func() error) error {
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

// Listen opens a kernel listener inside the host. With ListenPacket and
// Dial it makes a Host a transport.Network: the kernel side of the
// comparisons runs the same application code as the userstack.
func (h *Host) Listen(network, addr string) (net.Listener, error) {
	var ln net.Listener
	err := h.Run(func() (err error) {
		ln, err = net.Listen(network, addr)
		return err
	})
	return ln, err
}

// ListenPacket opens a kernel packet socket inside the host.
func (h *Host) ListenPacket(network, addr string) (net.PacketConn, error) {
	var pc net.PacketConn
	err := h.Run(func() (err error) {
		pc, err = net.ListenPacket(network, addr)
		return err
	})
	return pc, err
}

// Dial dials from inside the host.
func (h *Host) Dial(ctx context.Context, network, addr string) (net.Conn, error) {
	return h.DialContext(ctx, network, addr)
}

// DialContext dials from inside the host; it fits http.Transport.
func (h *Host) DialContext(ctx context.Context, network, addr string) (net.Conn, error) {
	var conn net.Conn
	err := h.Run(func() error {
		var err error
		conn, err = (&net.Dialer{}).DialContext(ctx, network, addr)
		return err
	})
	return conn, err
}

// TCPSockets makes n unconnected TCP sockets for addresses of addr's
// family inside the host, all on one thread, for ConnectSocket to
// connect from any goroutine. A client that opens thousands of
// connections dials this way: DialContext makes a thread per
// connection, and a client whose goroutines stay in the namespace (a
// locked thread) switches threads at every read that waits; either cost
// the client more than the servers it measured.
func (h *Host) TCPSockets(n int, addr netip.AddrPort) ([]int, error) {
	family, _ := sockaddr(addr)
	fds := make([]int, 0, n)
	err := h.Run(func() error {
		for range n {
			fd, err := unix.Socket(family, unix.SOCK_STREAM|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, 0)
			if err != nil {
				return fmt.Errorf("tcp socket: %w", err)
			}
			fds = append(fds, fd)
		}
		return nil
	})
	if err != nil {
		for _, fd := range fds {
			unix.Close(fd)
		}
		return nil, err
	}
	return fds, nil
}

// ConnectSocket connects a socket from TCPSockets to addr, waiting in
// Go's network poller until ctx's deadline, and returns the connection.
// It takes fd over, closing it on failure.
func ConnectSocket(ctx context.Context, fd int, addr netip.AddrPort) (net.Conn, error) {
	f := os.NewFile(uintptr(fd), "tcp socket")
	defer f.Close() // net.FileConn works on a copy
	if d, ok := ctx.Deadline(); ok {
		f.SetWriteDeadline(d)
	}
	rc, err := f.SyscallConn()
	if err != nil {
		return nil, err
	}
	_, sa := sockaddr(addr)
	var connectErr error
	rc.Control(func(fd uintptr) {
		if err := unix.Connect(int(fd), sa); err != unix.EINPROGRESS {
			connectErr = err
		}
	})
	if connectErr == nil {
		// Writable means the handshake ended; SO_ERROR says how.
		err = rc.Write(func(fd uintptr) bool {
			code, err := unix.GetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_ERROR)
			if err == nil && code != 0 {
				err = unix.Errno(code)
			}
			if err != nil {
				connectErr = err
				return true
			}
			_, err = unix.Getpeername(int(fd))
			return err == nil
		})
		if connectErr == nil {
			connectErr = err
		}
	}
	if connectErr != nil {
		return nil, fmt.Errorf("connect to %s: %w", addr, connectErr)
	}
	return net.FileConn(f)
}

// sockaddr is addr's address family and addr as connect(2) takes it.
func sockaddr(addr netip.AddrPort) (family int, sa unix.Sockaddr) {
	if ip := addr.Addr().Unmap(); ip.Is4() {
		return unix.AF_INET, &unix.SockaddrInet4{Port: int(addr.Port()), Addr: ip.As4()}
	}
	return unix.AF_INET6, &unix.SockaddrInet6{Port: int(addr.Port()), Addr: addr.Addr().As16()}
}

// Link returns the host's interface as netlink sees it from inside.
func (h *Host) Link() (netlink.Link, error) {
	var l netlink.Link
	err := h.Run(func() error {
		var err error
		l, err = netlink.LinkByName(h.Iface)
		return err
	})
	return l, err
}

// MAC returns the hardware address of the host's interface.
func (h *Host) MAC() (net.HardwareAddr, error) {
	l, err := h.Link()
	if err != nil {
		return nil, err
	}
	return l.Attrs().HardwareAddr, nil
}

func run(name string, args ...string) error {
	var stderr bytes.Buffer
	cmd := exec.Command(name, args...)
	cmd.Stderr = &stderr
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("%s %s: %w: %s", name, strings.Join(args, " "), err, strings.TrimSpace(stderr.String()))
	}
	return nil
}
