package userstack

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"syscall"
	"testing"
	"time"

	"github.com/xdpstack/xdpstack/maps"
	"github.com/xdpstack/xdpstack/userstack/appns"
)

// TestListenTCPFamilies: as kernel sockets do, 0.0.0.0 and a v6-only ::
// listen on one port side by side, each taking its family, and share
// the port's wildcard steering entry until both close; :: without
// v6-only takes both families, so it conflicts with 0.0.0.0.
func TestListenTCPFamilies(t *testing.T) {
	s, _, steer := memStack(t, "10.0.0.1", "2001:db8::1")
	app := attach(t, s, AppOptions{})
	v4, err := app.ListenTCP(netip.MustParseAddrPort("0.0.0.0:80"), SocketOptions{})
	if err != nil {
		t.Fatal(err)
	}
	go serveName(v4, "v4")
	if _, err := app.ListenTCP(netip.MustParseAddrPort("[::]:80"), SocketOptions{}); !errors.Is(err, syscall.EADDRINUSE) {
		t.Errorf("ListenTCP([::]:80) beside 0.0.0.0:80: got %v, want EADDRINUSE", err)
	}
	v6, err := app.ListenTCP(netip.MustParseAddrPort("[::]:80"), SocketOptions{V6Only: true})
	if err != nil {
		t.Fatal(err)
	}
	go serveName(v6, "v6")
	for addr, want := range map[string]string{"10.0.0.1:80": "v4", "[2001:db8::1]:80": "v6"} {
		if who, err := whoAnswers(t, app, addr); who != want {
			t.Errorf("%s: %q, %v; want %q", addr, who, err, want)
		}
	}
	wildcard := maps.Listener{Protocol: maps.TCP, Port: 80}
	v4.Close()
	if _, ok := steer.m[wildcard]; !ok {
		t.Errorf("closing the IPv4 listener removed the entry the IPv6 one steers by")
	}
	v6.Close()
	if _, ok := steer.m[wildcard]; ok {
		t.Errorf("both listeners closed: the entry stays")
	}
}

// TestDialTCP: the local address is known before the handshake: the
// route's source and a port of the range, or the address asked for.
func TestDialTCP(t *testing.T) {
	s, _, _ := memStack(t, "10.0.0.1", "10.0.0.2")
	app := attach(t, s, AppOptions{})
	ln, err := app.Listen("tcp", "10.0.0.2:80")
	if err != nil {
		t.Fatal(err)
	}
	go serveName(ln, "server")
	remote := netip.MustParseAddrPort("10.0.0.2:80")
	for _, tc := range []struct {
		local string
		check func(netip.AddrPort) bool
	}{
		{"", func(l netip.AddrPort) bool { return l.Addr().IsValid() && l.Port() >= 61000 && l.Port() <= 61999 }},
		{"0.0.0.0:0", func(l netip.AddrPort) bool { return !l.Addr().IsUnspecified() && l.Port() >= 61000 }},
		{"10.0.0.1:0", func(l netip.AddrPort) bool { return l.Addr() == netip.MustParseAddr("10.0.0.1") && l.Port() >= 61000 }},
		{"10.0.0.1:5555", func(l netip.AddrPort) bool { return l == netip.MustParseAddrPort("10.0.0.1:5555") }},
	} {
		t.Run(tc.local, func(t *testing.T) {
			var local netip.AddrPort
			if tc.local != "" {
				local = netip.MustParseAddrPort(tc.local)
			}
			p, err := app.DialTCP(local, remote, SocketOptions{})
			if err != nil {
				t.Fatal(err)
			}
			bound := p.LocalAddr()
			if !tc.check(bound) {
				t.Fatalf("DialTCP(%s): bound to %s", tc.local, bound)
			}
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			c, err := p.Connect(ctx)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			if got := c.LocalAddr().(*net.TCPAddr).AddrPort(); got != bound {
				t.Errorf("connected from %s, said %s", got, bound)
			}
			if b, err := io.ReadAll(c); string(b) != "server" {
				t.Errorf("read %q, %v", b, err)
			}
		})
	}
}

// TestDialTCPErrors: errors unwrap to the errno of a kernel socket, and
// a local address outside the namespace is refused before anything is
// bound.
func TestDialTCPErrors(t *testing.T) {
	s, reg, _ := memStack(t, "10.0.0.1", "10.0.0.2")
	app := attach(t, s, AppOptions{})
	p, err := app.DialTCP(netip.AddrPort{}, netip.MustParseAddrPort("10.0.0.2:81"), SocketOptions{})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if _, err := p.Connect(ctx); !errors.Is(err, syscall.ECONNREFUSED) {
		t.Errorf("Connect to a closed port: got %v, want ECONNREFUSED", err)
	}
	if err := reg.Add(appns.Config{Name: "blue", Secret: "b", Addrs: []netip.Addr{netip.MustParseAddr("10.0.0.2")}}); err != nil {
		t.Fatal(err)
	}
	blue := attach(t, s, AppOptions{Namespace: "blue", Secret: "b"})
	var refused *appns.Error
	if _, err := blue.DialTCP(netip.MustParseAddrPort("10.0.0.1:0"), netip.MustParseAddrPort("10.0.0.2:80"), SocketOptions{}); !errors.As(err, &refused) {
		t.Errorf("DialTCP from another namespace's address: got %v, want a refusal", err)
	}
	taken := netip.MustParseAddrPort("10.0.0.2:5555")
	first, err := blue.DialTCP(taken, netip.MustParseAddrPort("10.0.0.1:80"), SocketOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer first.Close()
	if _, err := blue.DialTCP(taken, netip.MustParseAddrPort("10.0.0.1:80"), SocketOptions{}); !errors.Is(err, syscall.EADDRINUSE) {
		t.Errorf("DialTCP from a bound port: got %v, want EADDRINUSE", err)
	}
}

// TestDialTCPLocal: an app of scope both connects to a local listener
// of its namespace where there is one, from a port of the range.
func TestDialTCPLocal(t *testing.T) {
	s, _, _ := memStack(t, "10.0.0.1")
	server := attach(t, s, AppOptions{Scope: appns.ScopeLocal})
	ln, err := server.ListenTCP(netip.MustParseAddrPort("10.0.0.1:80"), SocketOptions{})
	if err != nil {
		t.Fatal(err)
	}
	go serveName(ln, "local")
	client := attach(t, s, AppOptions{Scope: appns.ScopeBoth})
	remote := netip.MustParseAddrPort("10.0.0.1:80")
	if !client.LocalListener(remote) || client.LocalListener(netip.MustParseAddrPort("10.0.0.1:81")) {
		t.Fatalf("LocalListener: wrong")
	}
	p, err := client.DialTCP(netip.AddrPort{}, remote, SocketOptions{})
	if err != nil {
		t.Fatal(err)
	}
	c, err := p.Connect(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if got := c.LocalAddr().String(); got != p.LocalAddr().String() {
		t.Errorf("connected from %s, said %s", got, p.LocalAddr())
	}
	if b, _ := io.ReadAll(c); string(b) != "local" {
		t.Errorf("read %q", b)
	}
	if fmt.Sprint(client.Scope()) != "both" {
		t.Errorf("Scope: %s", client.Scope())
	}
}

// TestMayBind: an app may bind its namespace's addresses; another
// namespace's is refused, as a bind of it would be.
func TestMayBind(t *testing.T) {
	s, reg, _ := memStack(t, "10.0.0.1", "10.0.0.2")
	if err := reg.Add(appns.Config{Name: "blue", Secret: "b", Addrs: []netip.Addr{netip.MustParseAddr("10.0.0.2")}}); err != nil {
		t.Fatal(err)
	}
	blue := attach(t, s, AppOptions{Namespace: "blue", Secret: "b"})
	def := attach(t, s, AppOptions{})
	var refused *appns.Error
	for _, tc := range []struct {
		app     *App
		addr    string
		refused bool
	}{
		{blue, "10.0.0.2", false}, {blue, "10.0.0.1", true}, {blue, "0.0.0.0", false},
		{def, "10.0.0.1", false}, {def, "10.0.0.2", true},
	} {
		if err := tc.app.MayBind(netip.MustParseAddr(tc.addr)); errors.As(err, &refused) != tc.refused {
			t.Errorf("%s MayBind(%s): %v", tc.app.Namespace(), tc.addr, err)
		}
	}
}
