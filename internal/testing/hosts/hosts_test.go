package hosts_test

import (
	"context"
	"errors"
	"io"
	"net/netip"
	"os/exec"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/xdpstack/xdpstack/internal/testing/hosts"
	"github.com/xdpstack/xdpstack/internal/testing/testutil"
)

// Sockets made inside B connect from outside its namespace, to a kernel
// echo in A, and a refused connection says so.
func TestConnectSocket(t *testing.T) {
	a, b := testutil.HostPair(t, 0)
	echo := netip.MustParseAddrPort(a.KernelEcho(t, a.Addr.String()+":0"))
	closed := netip.AddrPortFrom(echo.Addr(), echo.Port()+1)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()

	fds, err := b.TCPSockets(3, echo)
	if err != nil {
		t.Fatal(err)
	}
	for _, fd := range fds[:2] {
		c, err := hosts.ConnectSocket(ctx, fd, echo)
		if err != nil {
			t.Fatal(err)
		}
		if got := c.LocalAddr().String(); netip.MustParseAddrPort(got).Addr() != b.Addr {
			t.Errorf("connection from %s, want from B's %s", got, b.Addr)
		}
		msg := []byte("ping")
		if _, err := c.Write(msg); err != nil {
			t.Fatal(err)
		}
		if _, err := io.ReadFull(c, msg); err != nil || string(msg) != "ping" {
			t.Errorf("echo gave %q, %v", msg, err)
		}
		c.Close()
	}

	_, err = hosts.ConnectSocket(ctx, fds[2], closed)
	if !errors.Is(err, unix.ECONNREFUSED) {
		t.Errorf("connect to the closed port %s: %v, want connection refused", closed, err)
	}
	if _, err := unix.FcntlInt(uintptr(fds[2]), unix.F_GETFD, 0); err != unix.EBADF {
		t.Errorf("the refused socket's fd is still open (%v)", err)
	}
}

// The client of a chain reaches the server through the router, and
// Close leaves no namespace behind.
func TestChain(t *testing.T) {
	c := testutil.HostChain(t, 0)
	c.Client.EchoFrom(t, c.Server.KernelEcho(t, c.Server.Addr.String()+":7"), 1000)
	if out := c.Client.Exec(t, "ip", "route", "get", c.Server.Addr.String()); !strings.Contains(out, "via "+c.Router.Addr.String()) {
		t.Errorf("client's route to the server: %s, want via the router", out)
	}
	chain, err := hosts.NewChain(0)
	if err != nil {
		t.Fatal(err)
	}
	if err := chain.Close(); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command("ip", "netns", "list").Output()
	if err != nil {
		t.Fatal(err)
	}
	for _, h := range []*hosts.Host{chain.Client, chain.Router, chain.Server} {
		if strings.Contains(string(out), h.Netns) {
			t.Errorf("netns %s left after Close", h.Netns)
		}
	}
}

func TestLAN(t *testing.T) {
	lan := testutil.HostLAN(t, 3, 0)
	for i, h := range lan.Hosts {
		for j, other := range lan.Hosts {
			if i == j {
				continue
			}
			for _, addr := range []netip.Addr{other.Addr, lan.Addr6[j]} {
				if out, err := h.Command(context.Background(), "ping", "-c1", "-W2", addr.String()).CombinedOutput(); err != nil {
					t.Errorf("host %d pings %v: %v: %s", i, addr, err, out)
				}
			}
		}
	}
}
