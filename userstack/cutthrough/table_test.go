package cutthrough

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

func mustListen(t *testing.T, tab *Table, ns, addr string, opts ListenOptions) *Listener {
	t.Helper()
	l, err := tab.Listen(ns, netip.MustParseAddrPort(addr), opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	return l
}

func TestListenRefusesOverlaps(t *testing.T) {
	tab := NewTable()
	mustListen(t, tab, "blue", "10.0.0.1:80", ListenOptions{})
	mustListen(t, tab, "blue", "[2001:db8::1]:443", ListenOptions{})
	// Same port, other address, other namespace, other port: all fine.
	mustListen(t, tab, "blue", "10.0.0.2:80", ListenOptions{})
	mustListen(t, tab, "red", "10.0.0.1:80", ListenOptions{})
	mustListen(t, tab, "red", "0.0.0.0:443", ListenOptions{})
	mustListen(t, tab, "blue", "0.0.0.0:8080", ListenOptions{})
	for _, tc := range []struct {
		ns, addr string
		want     string
	}{
		{"blue", "10.0.0.1:80", "address in use by the listener on 10.0.0.1:80"},
		{"blue", "[::ffff:10.0.0.1]:80", "address in use by the listener on 10.0.0.1:80"},
		{"blue", "[::]:8080", "address in use by the listener on 0.0.0.0:8080"},
		{"red", "0.0.0.0:443", "address in use by the listener on 0.0.0.0:443"},
		{"red", "[::]:443", "address in use by the listener on 0.0.0.0:443"},
		{"blue", "10.0.0.1:0", "port 0"},
		{"blue", ":80", "no address"},
		{"", "10.0.0.1:81", "no namespace"},
	} {
		ap, _ := netip.ParseAddrPort(tc.addr)
		if tc.addr == ":80" {
			ap = netip.AddrPortFrom(netip.Addr{}, 80)
		}
		_, err := tab.Listen(tc.ns, ap, ListenOptions{})
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("Listen(%q, %s) = %v, want %q", tc.ns, tc.addr, err, tc.want)
		}
	}
	for _, opts := range []ListenOptions{{Backlog: -1}, {Backlog: MaxBacklog + 1}, {ReceiveBuffer: -1}, {ReceiveBuffer: MaxBuffer + 1}} {
		if _, err := tab.Listen("green", netip.MustParseAddrPort("10.0.0.1:1"), opts); err == nil {
			t.Errorf("Listen with %+v: no error", opts)
		}
	}
	if got := len(tab.Sessions()); got != 6 {
		t.Errorf("refused listens changed the table: %d sessions, want 6", got)
	}
	// An address and all addresses share a port: the address first.
	mustListen(t, tab, "blue", "0.0.0.0:80", ListenOptions{})
	mustListen(t, tab, "blue", "[::]:443", ListenOptions{})
}

func TestListenAgainAfterClose(t *testing.T) {
	tab := NewTable()
	l := mustListen(t, tab, "default", "10.0.0.1:80", ListenOptions{})
	l.Close()
	mustListen(t, tab, "default", "10.0.0.1:80", ListenOptions{})
	if err := l.Close(); !errors.Is(err, net.ErrClosed) {
		t.Errorf("second Close: got %v, want net.ErrClosed", err)
	}
}

// TestDialMatches checks which listener a dial joins: exact address
// before wildcard, 0.0.0.0 for IPv4 only, :: for both, and never one in
// another namespace.
func TestDialMatches(t *testing.T) {
	tab := NewTable()
	labels := map[string]string{
		"blue 10.0.0.1:80": "exact", "blue 0.0.0.0:80": "any4",
		"blue [::]:443": "any6", "red 10.0.0.2:80": "red",
	}
	for key, app := range labels {
		ns, addr, _ := strings.Cut(key, " ")
		// Unaccepted ends show with their listener's label.
		mustListen(t, tab, ns, addr, ListenOptions{App: app})
	}
	port := uint16(40000)
	for _, tc := range []struct {
		ns, remote, want string
	}{
		{"blue", "10.0.0.1:80", "exact"},
		{"blue", "10.0.0.2:80", "any4"},
		{"blue", "10.0.0.1:443", "any6"},
		{"blue", "[2001:db8::1]:443", "any6"},
		{"red", "10.0.0.2:80", "red"},
		{"red", "10.0.0.1:80", ""},
		{"green", "10.0.0.1:80", ""},
		{"blue", "[2001:db8::1]:80", ""},
		{"blue", "10.0.0.1:81", ""},
	} {
		port++
		remote := netip.MustParseAddrPort(tc.remote)
		local := netip.AddrPortFrom(remote.Addr(), port)
		if got := tab.Listening(tc.ns, remote); got != (tc.want != "") {
			t.Errorf("Listening(%s, %s) = %v", tc.ns, remote, got)
		}
		before := tab.Counters().NoListener
		c, err := tab.Dial(context.Background(), tc.ns, local, remote, DialOptions{})
		if tc.want == "" {
			wantMsg := fmt.Sprintf("dial %s in namespace %s: no local listener", remote, tc.ns)
			if !errors.Is(err, ErrNoListener) || err.Error() != wantMsg {
				t.Errorf("Dial(%s, %s) = %v, want %q", tc.ns, remote, err, wantMsg)
			}
			if got := tab.Counters().NoListener; got != before+1 {
				t.Errorf("Dial(%s, %s): NoListener %d, want %d", tc.ns, remote, got, before+1)
			}
			continue
		}
		if err != nil {
			t.Errorf("Dial(%s, %s): %v", tc.ns, remote, err)
			continue
		}
		var got string
		for _, s := range tab.Sessions() {
			if s.Remote == local {
				got = s.App
			}
		}
		if got != tc.want {
			t.Errorf("Dial(%s, %s) joined %q, want %q", tc.ns, remote, got, tc.want)
		}
		c.Close()
	}
}

func TestDialRefusesBadArgs(t *testing.T) {
	tab := NewTable()
	mustListen(t, tab, "default", "10.0.0.1:80", ListenOptions{})
	remote := netip.MustParseAddrPort("10.0.0.1:80")
	local := netip.MustParseAddrPort("10.0.0.1:40000")
	cancelled, cancel := context.WithCancel(context.Background())
	cancel()
	for _, tc := range []struct {
		name          string
		ctx           context.Context
		ns            string
		local, remote netip.AddrPort
		opts          DialOptions
		want          string
	}{
		{"no namespace", context.Background(), "", local, remote, DialOptions{}, "no namespace"},
		{"remote port 0", context.Background(), "default", local, netip.MustParseAddrPort("10.0.0.1:0"), DialOptions{}, "remote address 10.0.0.1:0"},
		{"remote unspecified", context.Background(), "default", local, netip.MustParseAddrPort("0.0.0.0:80"), DialOptions{}, "remote address 0.0.0.0:80"},
		{"local missing", context.Background(), "default", netip.AddrPort{}, remote, DialOptions{}, "local address"},
		{"local port 0", context.Background(), "default", netip.MustParseAddrPort("10.0.0.1:0"), remote, DialOptions{}, "local address"},
		{"bad buffer", context.Background(), "default", local, remote, DialOptions{ReceiveBuffer: -5}, "receive buffer -5"},
		{"cancelled", cancelled, "default", local, remote, DialOptions{}, "context canceled"},
	} {
		if _, err := tab.Dial(tc.ctx, tc.ns, tc.local, tc.remote, tc.opts); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: Dial = %v, want %q", tc.name, err, tc.want)
		}
	}
	if c := tab.Counters(); c.Opened != 0 || len(tab.Sessions()) != 1 {
		t.Errorf("refused dials changed the table: %+v, %d sessions", c, len(tab.Sessions()))
	}
	// One connection per pair of addresses.
	c, err := tab.Dial(context.Background(), "default", local, remote, DialOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := tab.Dial(context.Background(), "default", local, remote, DialOptions{}); err == nil || !strings.Contains(err.Error(), "connected there already") {
		t.Errorf("second Dial from the same local address: %v", err)
	}
}

func TestBacklog(t *testing.T) {
	tab := NewTable()
	l := mustListen(t, tab, "default", "10.0.0.1:80", ListenOptions{Backlog: 1})
	remote := netip.MustParseAddrPort("10.0.0.1:80")
	dial := func(ctx context.Context, port uint16) (*Conn, error) {
		return tab.Dial(ctx, "default", netip.AddrPortFrom(remote.Addr(), port), remote, DialOptions{})
	}
	if _, err := dial(context.Background(), 1); err != nil {
		t.Fatal(err)
	}
	// The queue is full: the next dial waits until its context ends...
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	if _, err := dial(ctx, 2); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Dial to a full queue: got %v, want context.DeadlineExceeded", err)
	}
	// ...or until an Accept makes room.
	joined := make(chan error, 1)
	go func() {
		_, err := dial(context.Background(), 3)
		joined <- err
	}()
	waitFor(t, "a dial waiting for room", func() bool { return hasState(tab, StateConnecting) })
	if _, err := l.Accept(); err != nil {
		t.Fatal(err)
	}
	if err := <-joined; err != nil {
		t.Errorf("Dial once an Accept made room: %v", err)
	}
	// A dial waiting when the listener closes is refused.
	go func() {
		_, err := dial(context.Background(), 4)
		joined <- err
	}()
	waitFor(t, "a dial waiting for room", func() bool { return hasState(tab, StateConnecting) })
	l.Close()
	if err := <-joined; !errors.Is(err, syscall.ECONNREFUSED) {
		t.Errorf("Dial waiting as the listener closed: got %v, want ECONNREFUSED", err)
	}
	if c := tab.Counters(); c.Opened != 2 {
		t.Errorf("Opened = %d, want 2", c.Opened)
	}
}

func hasState(tab *Table, s State) bool {
	return slices.ContainsFunc(tab.Sessions(), func(x Session) bool { return x.State == s })
}

// waitFor polls cond for up to 5 s.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(5 * time.Second); !cond(); time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("no %s after 5s", what)
		}
	}
}

func TestListenerCloseResetsQueued(t *testing.T) {
	tab := NewTable()
	l := mustListen(t, tab, "default", "10.0.0.1:80", ListenOptions{})
	c, err := tab.Dial(context.Background(), "default", cliAddr, srvAddr, DialOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.Write([]byte("hello"))
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Read(make([]byte, 1)); !errors.Is(err, syscall.ECONNRESET) {
		t.Errorf("Read on a connection the listener dropped: got %v, want ECONNRESET", err)
	}
	if _, err := c.Write([]byte("x")); !errors.Is(err, syscall.ECONNRESET) {
		t.Errorf("Write on a connection the listener dropped: got %v, want ECONNRESET", err)
	}
	var opErr *net.OpError
	if _, err := l.Accept(); !errors.Is(err, net.ErrClosed) || !errors.As(err, &opErr) {
		t.Errorf("Accept after Close: got %v, want a *net.OpError with net.ErrClosed", err)
	}
	if _, err := tab.Dial(context.Background(), "default", netip.MustParseAddrPort("10.0.0.1:40001"), srvAddr, DialOptions{}); !errors.Is(err, ErrNoListener) {
		t.Errorf("Dial after the listener closed: got %v, want ErrNoListener", err)
	}
}

func TestAcceptWakesOnClose(t *testing.T) {
	tab := NewTable()
	l := mustListen(t, tab, "default", "10.0.0.1:80", ListenOptions{})
	errs := make(chan error, 1)
	go func() { _, err := l.Accept(); errs <- err }()
	time.Sleep(10 * time.Millisecond)
	l.Close()
	if err := <-errs; !errors.Is(err, net.ErrClosed) {
		t.Errorf("Accept blocked as the listener closed: got %v, want net.ErrClosed", err)
	}
}

// TestSessionStates follows both ends through the sessions view: queued,
// opened, half-closed each way, closed, and reset.
func TestSessionStates(t *testing.T) {
	tab := NewTable()
	l := mustListen(t, tab, "blue", "10.0.0.1:80", ListenOptions{App: "server"})
	client, err := tab.Dial(context.Background(), "blue", cliAddr, srvAddr, DialOptions{App: "client"})
	if err != nil {
		t.Fatal(err)
	}
	type view struct {
		client, server     State
		clientRx, clientTx int
	}
	look := func() view {
		var v view
		v.client, v.server = "gone", "gone"
		for _, s := range tab.Sessions() {
			switch {
			case s.State == StateListening:
				if s.Local != srvAddr || s.App != "server" || s.Namespace != "blue" {
					t.Errorf("listener: %+v", s)
				}
			case s.Local == cliAddr && s.Remote == srvAddr && s.App == "client":
				v.client, v.clientRx, v.clientTx = s.State, s.RxFifo, s.TxFifo
			case s.Local == srvAddr && s.Remote == cliAddr && s.App == "server":
				v.server = s.State
			default:
				t.Errorf("unexpected session %+v", s)
			}
		}
		return v
	}
	check := func(step string, want view) {
		t.Helper()
		if got := look(); got != want {
			t.Errorf("%s: got %+v, want %+v", step, got, want)
		}
	}
	client.Write([]byte("12345"))
	check("queued", view{StateOpened, StateAccepting, 0, 5})
	c, _ := l.Accept()
	server := c.(*Conn)
	server.Write([]byte("abc"))
	check("accepted", view{StateOpened, StateOpened, 3, 5})
	client.CloseWrite()
	check("client shut down writing", view{StateClosing, StateTransportClosing, 3, 5})
	io.ReadAll(server)
	server.CloseWrite()
	check("both shut down writing", view{StateClosed, StateClosed, 3, 0})
	server.Close()
	check("server closed", view{StateClosed, "gone", 3, 0})
	client.Close()
	check("both closed", view{"gone", "gone", 0, 0})

	// A reset: the server closes with bytes unread.
	client, _ = tab.Dial(context.Background(), "blue", cliAddr, srvAddr, DialOptions{App: "client"})
	c, _ = l.Accept()
	client.Write([]byte("unread"))
	c.Close()
	check("server reset", view{StateTransportClosed, "gone", 0, 0})
	client.Close()
}

func TestCounters(t *testing.T) {
	tab, client, server := join(t, ListenOptions{}, DialOptions{})
	client.Write(make([]byte, 1000))
	server.Read(make([]byte, 600))
	if got := tab.Counters(); got.Bytes != 600 || got.Opened != 1 {
		t.Errorf("while open: %+v, want 600 bytes, 1 opened", got)
	}
	server.Write(make([]byte, 10))
	io.ReadFull(client, make([]byte, 10))
	client.Close()
	server.Close()
	if got := tab.Counters(); got.Bytes != 610 {
		t.Errorf("once closed: %+v, want 610 bytes (what was read)", got)
	}
	if n := len(tab.Sessions()); n != 1 {
		t.Errorf("%d sessions once closed, want the listener only", n)
	}
}

// TestStress dials, accepts, echoes and closes from many goroutines at
// once, with the listener closing under them, for a bounded time.
func TestStress(t *testing.T) {
	tab := NewTable()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	var wg sync.WaitGroup
	for round := 0; ctx.Err() == nil && round < 20; round++ {
		l, err := tab.Listen("default", srvAddr, ListenOptions{Backlog: 4, ReceiveBuffer: 512})
		if err != nil {
			t.Fatal(err)
		}
		wg.Go(func() {
			for {
				c, err := l.Accept()
				if err != nil {
					return
				}
				go func() {
					defer c.Close()
					io.Copy(c, c)
				}()
			}
		})
		var dialers sync.WaitGroup
		for i := range 8 {
			dialers.Go(func() {
				for j := range 20 {
					local := netip.AddrPortFrom(cliAddr.Addr(), uint16(1+round*1000+i*50+j))
					dctx, dcancel := context.WithTimeout(ctx, 50*time.Millisecond)
					c, err := tab.Dial(dctx, "default", local, srvAddr, DialOptions{ReceiveBuffer: 512})
					dcancel()
					if err != nil {
						continue
					}
					c.SetDeadline(time.Now().Add(time.Second))
					msg := make([]byte, 3000)
					go c.Write(msg)
					io.ReadFull(c, msg)
					if j%2 == 0 {
						c.CloseWrite()
					}
					c.Close()
				}
			})
		}
		time.Sleep(5 * time.Millisecond)
		l.Close()
		dialers.Wait()
	}
	wg.Wait()
	// Every connection's ends close (the echo's once the client's
	// close reaches it): the table forgets them all.
	waitFor(t, "empty table", func() bool { return len(tab.Sessions()) == 0 })
}
