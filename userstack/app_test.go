package userstack

import (
	"context"
	"errors"
	"fmt"
	"io"
	stdmaps "maps"
	"net"
	"net/netip"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/header"
	"gvisor.dev/gvisor/pkg/tcpip/link/loopback"
	"gvisor.dev/gvisor/pkg/tcpip/network/ipv4"
	"gvisor.dev/gvisor/pkg/tcpip/network/ipv6"
	"gvisor.dev/gvisor/pkg/tcpip/stack"
	"gvisor.dev/gvisor/pkg/tcpip/transport/tcp"
	"gvisor.dev/gvisor/pkg/tcpip/transport/udp"

	"github.com/xdpstack/xdpstack/maps"
	"github.com/xdpstack/xdpstack/userstack/appns"
	"github.com/xdpstack/xdpstack/userstack/cutthrough"
	"github.com/xdpstack/xdpstack/userstack/kernelview"
	"github.com/xdpstack/xdpstack/userstack/session"
)

// steering is an XDP listener table in memory.
type steering struct {
	mu sync.Mutex
	m  map[maps.Listener]uint32
}

func (f *steering) Put(l maps.Listener, id uint32) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.m[l] = id
	return nil
}

func (f *steering) Delete(l maps.Listener) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	delete(f.m, l)
	return nil
}

func (f *steering) All() (map[maps.Listener]uint32, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return stdmaps.Clone(f.m), nil
}

// memStack is a Stack without an interface: a netstack whose one NIC is
// a loopback holding addrs, so that its apps reach each other, with its
// steering entries in memory. It needs no privileges.
func memStack(t *testing.T, addrs ...string) (*Stack, *appns.Registry, *steering) {
	t.Helper()
	ns := stack.New(stack.Options{
		NetworkProtocols:   []stack.NetworkProtocolFactory{ipv4.NewProtocol, ipv6.NewProtocol},
		TransportProtocols: []stack.TransportProtocolFactory{tcp.NewProtocol, udp.NewProtocol},
	})
	t.Cleanup(func() {
		ns.Close()
		ns.Wait()
	})
	if err := ns.CreateNIC(nicID, loopback.New()); err != nil {
		t.Fatal(err)
	}
	var own []netip.Addr
	for _, a := range addrs {
		addr := netip.MustParseAddr(a)
		own = append(own, addr)
		pa := tcpip.ProtocolAddress{Protocol: addrProto(addr), AddressWithPrefix: tcpAddr(addr).WithPrefix()}
		if err := ns.AddProtocolAddress(nicID, pa, stack.AddressProperties{}); err != nil {
			t.Fatal(err)
		}
	}
	ns.SetRouteTable([]tcpip.Route{{Destination: header.IPv4EmptySubnet, NIC: nicID}, {Destination: header.IPv6EmptySubnet, NIC: nicID}})
	if err := ns.SetPortRange(61000, 61999); err != nil {
		t.Fatal(err)
	}
	reg := appns.New(func() []netip.Addr { return own })
	steer := &steering{m: map[maps.Listener]uint32{}}
	s := &Stack{stack: ns, view: &kernelview.View{}, sessions: session.NewTable(steer), local: cutthrough.NewTable(), done: make(chan struct{}), ports: maps.PortRange{Min: 61000, Max: 61999},
		opts: Options{Namespaces: reg, TCP: TCPOptions{Backlog: 16}}}
	return s, reg, steer
}

// attach attaches an app until the test ends.
func attach(t *testing.T, s *Stack, o AppOptions) *App {
	t.Helper()
	app, err := s.Attach(o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { app.Close() })
	return app
}

// serveName answers every connection with name, the app's, then closes
// it.
func serveName(ln net.Listener, name string) {
	for {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		c.Write([]byte(name))
		c.Close()
	}
}

// whoAnswers connects from app to addr and reads the answer: the name
// of the app that serves it, or the connection's error.
func whoAnswers(t *testing.T, app *App, addr string) (string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	c, err := app.Dial(ctx, "tcp", addr)
	if err != nil {
		return "", err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	b, err := io.ReadAll(c)
	if err != nil {
		return "", err
	}
	return string(b), nil
}

func TestAttachRefused(t *testing.T) {
	s, reg, _ := memStack(t, "10.0.0.1")
	if err := reg.Add(appns.Config{Name: "blue", Secret: "right"}); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		o    AppOptions
		want appns.Refusal
	}{
		{AppOptions{Name: "echo", Namespace: "blue", Secret: "open-sesame"}, appns.RefusedSecret},
		{AppOptions{Name: "echo", Namespace: "green"}, appns.RefusedUnknown},
	} {
		_, err := s.Attach(tc.o)
		var e *appns.Error
		if !errors.As(err, &e) || e.Reason != tc.want || strings.Contains(err.Error(), "sesame") {
			t.Errorf("Attach(%s): %v, want a %s refusal that does not tell the secret", tc.o.Namespace, err, tc.want)
		}
	}
	if n := reg.RefusalCounts()["blue"][appns.RefusedSecret]; n != 1 {
		t.Errorf("blue's secret refusals %d, want 1", n)
	}
	app := attach(t, s, AppOptions{Name: "echo", Namespace: "blue", Secret: "right"})
	if app.Namespace() != "blue" {
		t.Errorf("attached to %q", app.Namespace())
	}
	if err := reg.Delete("blue"); err == nil {
		t.Error("deleted a namespace an app is attached to")
	}
	app.Close()
	if err := reg.Delete("blue"); err != nil {
		t.Errorf("delete after Close: %v", err)
	}
}

// TestNamespacesShareAPort: two namespaces of different addresses both
// listen on the unspecified address and the same port; each gets only
// its addresses' connections, and steers only its addresses.
func TestNamespacesShareAPort(t *testing.T) {
	s, reg, steer := memStack(t, "10.0.0.1", "10.0.0.2", "10.0.0.3")
	for _, c := range []appns.Config{
		{Name: "blue", Secret: "b", Addrs: []netip.Addr{netip.MustParseAddr("10.0.0.2")}},
		{Name: "red", Secret: "r", Addrs: []netip.Addr{netip.MustParseAddr("10.0.0.3"), netip.MustParseAddr("10.0.0.1")}},
	} {
		if err := reg.Add(c); err != nil {
			t.Fatal(err)
		}
	}
	blue := attach(t, s, AppOptions{Name: "web", Namespace: "blue", Secret: "b"})
	red := attach(t, s, AppOptions{Name: "web", Namespace: "red", Secret: "r"})
	for _, app := range []*App{blue, red} {
		ln, err := app.Listen("tcp", "0.0.0.0:80")
		if err != nil {
			t.Fatal(err)
		}
		go serveName(ln, app.Namespace())
	}
	want := map[maps.Listener]bool{}
	for _, a := range []string{"10.0.0.1", "10.0.0.2", "10.0.0.3"} {
		want[maps.Listener{Protocol: maps.TCP, Addr: netip.MustParseAddr(a), Port: 80}] = true
	}
	got, _ := steer.All()
	if len(got) != len(want) {
		t.Errorf("steering %v, want one entry per address: %v", got, want)
	}
	for l := range want {
		if _, ok := got[l]; !ok {
			t.Errorf("steering %v: %v missing", got, l)
		}
	}
	for addr, ns := range map[string]string{"10.0.0.1:80": "red", "10.0.0.2:80": "blue", "10.0.0.3:80": "red"} {
		if who, err := whoAnswers(t, blue, addr); who != ns {
			t.Errorf("%s answered by %q (%v), want %s", addr, who, err, ns)
		}
	}
	sessions := s.ListSessions(SessionFilter{Namespace: "blue", State: StateListening})
	if len(sessions) != 1 || sessions[0].Local != netip.MustParseAddrPort("10.0.0.2:80") || sessions[0].App != "web" {
		t.Errorf("blue's listeners: %+v, want one on 10.0.0.2:80 of app web", sessions)
	}
	if n := len(s.ListSessions(SessionFilter{Namespace: "red", State: StateListening})); n != 2 {
		t.Errorf("red has %d listeners, want 2", n)
	}
}

// TestPortZeroOnEveryAddress: a listener on port 0 of a namespace of
// several addresses gets one port, free on all of them.
func TestPortZeroOnEveryAddress(t *testing.T) {
	s, reg, _ := memStack(t, "10.0.0.1", "10.0.0.2", "10.0.0.3")
	if err := s.stack.SetPortRange(61000, 61009); err != nil {
		t.Fatal(err)
	}
	// Nine of the ten ports are taken on 10.0.0.2 alone.
	def := attach(t, s, AppOptions{})
	for range 9 {
		if _, err := def.Listen("tcp", "10.0.0.2:0"); err != nil {
			t.Fatal(err)
		}
	}
	if err := reg.Add(appns.Config{Name: "blue", Secret: "b", Addrs: []netip.Addr{netip.MustParseAddr("10.0.0.1"), netip.MustParseAddr("10.0.0.2")}}); err != nil {
		t.Fatal(err)
	}
	blue := attach(t, s, AppOptions{Namespace: "blue", Secret: "b"})
	ln, err := blue.Listen("tcp", ":0")
	if err != nil {
		t.Fatal(err)
	}
	go serveName(ln, "blue")
	port := ln.Addr().(*net.TCPAddr).Port
	if port == 0 {
		t.Fatalf("listener on %v", ln.Addr())
	}
	for _, a := range []string{"10.0.0.1", "10.0.0.2"} {
		if who, err := whoAnswers(t, def, fmt.Sprintf("%s:%d", a, port)); who != "blue" {
			t.Errorf("%s:%d: %q, %v", a, port, who, err)
		}
	}
}

// TestBindOutsideNamespaceRefused: a bind to an address that is not the
// namespace's is refused, counted, and steers nothing.
func TestBindOutsideNamespaceRefused(t *testing.T) {
	s, reg, steer := memStack(t, "10.0.0.1", "10.0.0.2")
	if err := reg.Add(appns.Config{Name: "blue", Secret: "b", Addrs: []netip.Addr{netip.MustParseAddr("10.0.0.2")}}); err != nil {
		t.Fatal(err)
	}
	blue := attach(t, s, AppOptions{Namespace: "blue", Secret: "b"})
	def := attach(t, s, AppOptions{})
	for _, tc := range []struct {
		app  *App
		addr string
		want string
	}{
		{blue, "10.0.0.1:80", "listen tcp 10.0.0.1:80: bind to 10.0.0.1: not an address of namespace blue (it has 10.0.0.2)"},
		{def, "10.0.0.2:80", "listen tcp 10.0.0.2:80: bind to 10.0.0.2: the address belongs to namespace blue"},
	} {
		if _, err := tc.app.Listen("tcp", tc.addr); err == nil || err.Error() != tc.want {
			t.Errorf("%s Listen(%s): %v, want %q", tc.app.Namespace(), tc.addr, err, tc.want)
		}
		if _, err := tc.app.ListenPacket("udp", tc.addr); err == nil || !strings.Contains(err.Error(), "bind to") {
			t.Errorf("%s ListenPacket(%s): %v", tc.app.Namespace(), tc.addr, err)
		}
	}
	ln, err := def.Listen("tcp", "10.0.0.1:80")
	if err != nil {
		t.Fatal(err)
	}
	// The default namespace's every address is 10.0.0.1 now.
	for _, addr := range []string{"10.0.0.1:80", ":80"} {
		want := fmt.Sprintf("listen tcp %s: bind to 10.0.0.1:80: port is in use", addr)
		if _, err := def.Listen("tcp", addr); err == nil || err.Error() != want {
			t.Errorf("Listen(%s) with 10.0.0.1:80 taken: %v, want %q", addr, err, want)
		}
	}
	ln.Close()
	if got, _ := steer.All(); len(got) != 0 {
		t.Errorf("steering after refused binds: %v", got)
	}
	counts := reg.RefusalCounts()
	if counts["blue"][appns.RefusedAddress] != 2 || counts["default"][appns.RefusedAddress] != 2 {
		t.Errorf("address refusals %v, want 2 in blue and 2 in default", counts)
	}
}

// TestWildcardBeforeClaim: a wildcard listener opened before a namespace
// claimed an address resets the connections to that address, counted,
// while the namespace may listen on the port itself.
func TestWildcardBeforeClaim(t *testing.T) {
	s, reg, _ := memStack(t, "10.0.0.1", "10.0.0.2")
	def := attach(t, s, AppOptions{Name: "old"})
	ln, err := def.Listen("tcp", ":80")
	if err != nil {
		t.Fatal(err)
	}
	go serveName(ln, "default")
	if _, err := def.Listen("tcp", ":80"); err == nil || err.Error() != "listen tcp :80: bind: port is in use" {
		t.Errorf("a second wildcard listener: %v", err)
	}
	if err := reg.Add(appns.Config{Name: "blue", Secret: "b", Addrs: []netip.Addr{netip.MustParseAddr("10.0.0.2")}}); err != nil {
		t.Fatal(err)
	}
	if who, err := whoAnswers(t, def, "10.0.0.1:80"); who != "default" {
		t.Errorf("10.0.0.1:80: %q, %v; want the default namespace's listener", who, err)
	}
	who, err := whoAnswers(t, def, "10.0.0.2:80")
	if who != "" || err == nil {
		t.Errorf("10.0.0.2:80 (blue's) answered %q, %v; want a reset", who, err)
	}
	if n := reg.RefusalCounts()["default"][appns.RefusedAddress]; n != 1 {
		t.Errorf("default's address refusals %d, want 1", n)
	}
	blue := attach(t, s, AppOptions{Namespace: "blue", Secret: "b"})
	bln, err := blue.Listen("tcp", ":80")
	if err != nil {
		t.Fatalf("blue listens on its address's port 80 under the wildcard: %v", err)
	}
	go serveName(bln, "blue")
	if who, err := whoAnswers(t, def, "10.0.0.2:80"); who != "blue" {
		t.Errorf("10.0.0.2:80: %q, %v; want blue's listener", who, err)
	}
}

// TestLocalRules: a denied connect fails naming the rule, before any
// packet; a listener resets a session from a denied remote and hands the
// app the next one.
func TestLocalRules(t *testing.T) {
	s, reg, _ := memStack(t, "10.0.0.1", "10.0.0.2")
	deny := maps.Rule{RuleMatch: maps.RuleMatch{Protocol: maps.TCP, Remote: netip.MustParsePrefix("10.0.0.1/32")}, Action: maps.RuleDeny, Tag: "not-red"}
	if err := reg.Add(appns.Config{Name: "blue", Secret: "b", Addrs: []netip.Addr{netip.MustParseAddr("10.0.0.2")}, Rules: []maps.Rule{deny}}); err != nil {
		t.Fatal(err)
	}
	if err := reg.Add(appns.Config{Name: "red", Secret: "r", Addrs: []netip.Addr{netip.MustParseAddr("10.0.0.1")}}); err != nil {
		t.Fatal(err)
	}
	blue := attach(t, s, AppOptions{Namespace: "blue", Secret: "b"})
	red := attach(t, s, AppOptions{Namespace: "red", Secret: "r"})
	for _, app := range []*App{blue, red} {
		ln, err := app.Listen("tcp", ":80")
		if err != nil {
			t.Fatal(err)
		}
		go serveName(ln, app.Namespace())
	}
	_, err := whoAnswers(t, blue, "10.0.0.1:80")
	want := "dial tcp 10.0.0.1:80: tcp 10.0.0.2:"
	if err == nil || !strings.HasPrefix(err.Error(), want) || !strings.Contains(err.Error(), "-> 10.0.0.1:80: denied by namespace blue's local rule 1 (") || !strings.Contains(err.Error(), "not-red") {
		t.Errorf("blue's denied connect: %v, want %q... naming the rule", err, want)
	}
	if who, err := whoAnswers(t, red, "10.0.0.2:80"); who != "" || err == nil {
		t.Errorf("blue's listener served a remote its rules deny: %q, %v", who, err)
	}
	if err := reg.SetRules("blue", nil); err != nil {
		t.Fatal(err)
	}
	if who, err := whoAnswers(t, red, "10.0.0.2:80"); who != "blue" {
		t.Errorf("after the rules went: %q, %v", who, err)
	}
	if n := reg.RefusalCounts()["blue"][appns.RefusedRule]; n != 2 {
		t.Errorf("blue's rule refusals %d, want 2 (a connect, a session)", n)
	}
}

// TestPacketConnOfSeveralAddresses: a UDP bind to the unspecified
// address of a namespace of two addresses takes datagrams on both and
// answers each from the address it was sent to.
func TestPacketConnOfSeveralAddresses(t *testing.T) {
	s, reg, steer := memStack(t, "10.0.0.1", "10.0.0.2", "10.0.0.3")
	if err := reg.Add(appns.Config{Name: "blue", Secret: "b", Addrs: []netip.Addr{netip.MustParseAddr("10.0.0.1"), netip.MustParseAddr("10.0.0.2")}}); err != nil {
		t.Fatal(err)
	}
	blue := attach(t, s, AppOptions{Namespace: "blue", Secret: "b"})
	pc, err := blue.ListenPacket("udp", "0.0.0.0:53")
	if err != nil {
		t.Fatal(err)
	}
	if got := pc.LocalAddr().String(); got != "0.0.0.0:53" {
		t.Errorf("LocalAddr %s, want 0.0.0.0:53", got)
	}
	if got, _ := steer.All(); len(got) != 2 {
		t.Errorf("steering %v, want 10.0.0.1:53 and 10.0.0.2:53", got)
	}
	go func() {
		buf := make([]byte, 100)
		for {
			n, from, err := pc.ReadFrom(buf)
			if err != nil {
				return
			}
			pc.WriteTo(buf[:n], from)
		}
	}()
	def := attach(t, s, AppOptions{})
	for _, to := range []string{"10.0.0.1:53", "10.0.0.2:53", "10.0.0.1:53"} {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		c, err := def.Dial(ctx, "udp", to)
		cancel()
		if err != nil {
			t.Fatal(err)
		}
		if port := c.LocalAddr().(*net.UDPAddr).Port; port < 61000 || port > 61999 || c.RemoteAddr().String() != to {
			t.Errorf("dialled %s from %v to %v, want a port of the range 61000-61999", to, c.LocalAddr(), c.RemoteAddr())
		}
		c.SetDeadline(time.Now().Add(5 * time.Second))
		if _, err := c.Write([]byte(to)); err != nil {
			t.Fatal(err)
		}
		buf := make([]byte, 100)
		// A connected socket takes only what its peer sends: the
		// answer came from the address the datagram went to.
		n, err := c.Read(buf)
		if err != nil || string(buf[:n]) != to {
			t.Errorf("datagram to %s: answer %q, %v", to, buf[:n], err)
		}
		c.Close()
	}
	pc.SetReadDeadline(time.Now().Add(-time.Second))
	if _, _, err := pc.ReadFrom(make([]byte, 1)); !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Errorf("ReadFrom past the deadline: %v", err)
	}
	pc.Close()
	if got, _ := steer.All(); len(got) != 0 {
		t.Errorf("steering after Close: %v", got)
	}
}

// TestCloseClosesWhatTheAppHolds: closing an app closes its listeners,
// packet conns and connections, stops their steering and detaches it.
func TestCloseClosesWhatTheAppHolds(t *testing.T) {
	s, reg, steer := memStack(t, "10.0.0.1")
	app, err := s.Attach(AppOptions{Name: "a"})
	if err != nil {
		t.Fatal(err)
	}
	ln, err := app.Listen("tcp", ":80")
	if err != nil {
		t.Fatal(err)
	}
	pc, err := app.ListenPacket("udp", ":80")
	if err != nil {
		t.Fatal(err)
	}
	accepted := make(chan net.Conn, 1)
	go func() {
		c, err := ln.Accept()
		if err == nil {
			accepted <- c
		}
	}()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	c, err := app.Dial(ctx, "tcp", "10.0.0.1:80")
	if err != nil {
		t.Fatal(err)
	}
	server := <-accepted
	if err := app.Close(); err != nil {
		t.Errorf("Close: %v", err)
	}
	if _, err := ln.Accept(); !errors.Is(err, net.ErrClosed) {
		t.Errorf("Accept after the app closed: %v", err)
	}
	if _, _, err := pc.ReadFrom(make([]byte, 1)); !errors.Is(err, net.ErrClosed) {
		t.Errorf("ReadFrom after the app closed: %v", err)
	}
	for _, conn := range []net.Conn{c, server} {
		if _, err := conn.Write([]byte("x")); err == nil {
			t.Errorf("write on %v after the app closed", conn.LocalAddr())
		}
	}
	if got, _ := steer.All(); len(got) != 0 {
		t.Errorf("steering after Close: %v", got)
	}
	if _, err := app.Listen("tcp", ":81"); err == nil {
		t.Error("a closed app listens")
	}
	if info := reg.List()[0]; info.Apps != 0 {
		t.Errorf("default namespace after Close: %+v, want no app", info)
	}
}
