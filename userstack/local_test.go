package userstack

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/xdpstack/xdpstack/internal/testing/testutil"
	"github.com/xdpstack/xdpstack/loader"
	"github.com/xdpstack/xdpstack/maps"
	"github.com/xdpstack/xdpstack/userstack/appns"
)

// pipeTable is a cut-through table for the tests: listeners by
// namespace and address, and connections of two io.Pipes.
type pipeTable struct {
	mu        sync.Mutex
	listeners map[string]*pipeListener
	conns     map[*pipeConn]bool
}

func newPipeTable() *pipeTable {
	return &pipeTable{listeners: map[string]*pipeListener{}, conns: map[*pipeConn]bool{}}
}

func listenKey(ns string, addr netip.AddrPort) string { return ns + " " + addr.String() }

func (t *pipeTable) Listen(ns string, addr netip.AddrPort, app string) (localListener, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	key := listenKey(ns, addr)
	if t.listeners[key] != nil {
		return nil, fmt.Errorf("listen %s: in use", addr)
	}
	l := &pipeListener{t: t, key: key, ns: ns, addr: addr, app: app, queue: make(chan localConn, 16), done: make(chan struct{})}
	t.listeners[key] = l
	return l, nil
}

func (t *pipeTable) Dial(ctx context.Context, ns string, local, remote netip.AddrPort, app string) (localConn, error) {
	t.mu.Lock()
	l := t.listeners[listenKey(ns, remote)]
	for _, any := range []netip.Addr{netip.IPv4Unspecified(), netip.IPv6Unspecified()} {
		if l == nil && (remote.Addr().Is4() || any.Is6()) {
			l = t.listeners[listenKey(ns, netip.AddrPortFrom(any, remote.Port()))]
		}
	}
	if l == nil {
		t.mu.Unlock()
		return nil, fmt.Errorf("dial %s: %w", remote, errNoLocalListener)
	}
	toServer, fromClient := io.Pipe()
	toClient, fromServer := io.Pipe()
	client := &pipeConn{t: t, ns: ns, app: app, local: local, remote: remote, r: toClient, w: fromClient}
	server := &pipeConn{t: t, ns: ns, app: l.app, local: remote, remote: local, r: toServer, w: fromServer}
	t.conns[client], t.conns[server] = true, true
	t.mu.Unlock()
	select {
	case l.queue <- server:
		return client, nil
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

func (t *pipeTable) Sessions() []localSession {
	t.mu.Lock()
	defer t.mu.Unlock()
	var out []localSession
	for _, l := range t.listeners {
		out = append(out, localSession{Namespace: l.ns, App: l.app, Local: l.addr, State: StateListening})
	}
	for c := range t.conns {
		out = append(out, localSession{Namespace: c.ns, App: c.app, Local: c.local, Remote: c.remote, State: StateOpened})
	}
	return out
}

type pipeListener struct {
	t            *pipeTable
	key, ns, app string
	addr         netip.AddrPort
	queue        chan localConn
	done         chan struct{}
	once         sync.Once
}

func (l *pipeListener) Accept() (localConn, error) {
	select {
	case c := <-l.queue:
		return c, nil
	case <-l.done:
		return nil, net.ErrClosed
	}
}

func (l *pipeListener) Close() error {
	l.once.Do(func() {
		l.t.mu.Lock()
		delete(l.t.listeners, l.key)
		l.t.mu.Unlock()
		close(l.done)
	})
	return nil
}

type pipeConn struct {
	t             *pipeTable
	ns, app       string
	local, remote netip.AddrPort
	r             *io.PipeReader
	w             *io.PipeWriter
}

func (c *pipeConn) Read(b []byte) (int, error)          { return c.r.Read(b) }
func (c *pipeConn) Write(b []byte) (int, error)         { return c.w.Write(b) }
func (c *pipeConn) WriteTo(w io.Writer) (int64, error)  { return io.Copy(w, c.r) }
func (c *pipeConn) ReadFrom(r io.Reader) (int64, error) { return io.Copy(c.w, r) }
func (c *pipeConn) CloseWrite() error                   { return c.w.Close() }
func (c *pipeConn) CloseRead() error                    { return c.r.Close() }
func (c *pipeConn) LocalAddr() net.Addr                 { return net.TCPAddrFromAddrPort(c.local) }
func (c *pipeConn) RemoteAddr() net.Addr                { return net.TCPAddrFromAddrPort(c.remote) }
func (c *pipeConn) SetDeadline(time.Time) error         { return nil }
func (c *pipeConn) SetReadDeadline(time.Time) error     { return nil }
func (c *pipeConn) SetWriteDeadline(time.Time) error    { return nil }
func (c *pipeConn) Close() error {
	c.t.mu.Lock()
	delete(c.t.conns, c)
	c.t.mu.Unlock()
	c.w.Close()
	return c.r.Close()
}

// TestScopes: a local listener takes only local connects, a global one
// only connects over the netstack, one of scope both takes both; a
// connect of scope both finds the local listener first and falls back
// to the netstack.
func TestScopes(t *testing.T) {
	s, reg, steer := memStack(t, "10.0.0.1")
	s.local = newPipeTable()
	if err := reg.Add(appns.Config{Name: "blue", Secret: "b"}); err != nil {
		t.Fatal(err)
	}
	listen := func(scope appns.Scope, port int) {
		app := attach(t, s, AppOptions{Name: "srv-" + scope.String(), Namespace: "blue", Secret: "b", Scope: scope})
		ln, err := app.Listen("tcp", fmt.Sprintf(":%d", port))
		if err != nil {
			t.Fatal(err)
		}
		go serveName(ln, scope.String())
	}
	listen(appns.ScopeLocal, 81)
	listen(appns.ScopeGlobal, 82)
	listen(appns.ScopeBoth, 83)
	if got, _ := steer.All(); len(got) != 2 {
		t.Errorf("steering %v, want ports 82 and 83 only: a local listener steers nothing", got)
	}
	clients := map[appns.Scope]*App{}
	for _, scope := range []appns.Scope{appns.ScopeLocal, appns.ScopeGlobal, appns.ScopeBoth} {
		clients[scope] = attach(t, s, AppOptions{Name: "cli-" + scope.String(), Namespace: "blue", Secret: "b", Scope: scope})
	}
	for _, tc := range []struct {
		client appns.Scope
		port   int
		want   string // the server, or a part of the error
	}{
		{appns.ScopeLocal, 81, "local"},
		{appns.ScopeLocal, 82, "dial tcp 10.0.0.1:82: no local listener for 10.0.0.1:82 in namespace blue (listen there with scope local or both, or connect with scope both or global)"},
		{appns.ScopeLocal, 83, "both"},
		{appns.ScopeGlobal, 81, "connection was refused"},
		{appns.ScopeGlobal, 82, "global"},
		{appns.ScopeGlobal, 83, "both"},
		{appns.ScopeBoth, 81, "local"},
		{appns.ScopeBoth, 82, "global"},
		{appns.ScopeBoth, 83, "both"},
	} {
		who, err := whoAnswers(t, clients[tc.client], fmt.Sprintf("10.0.0.1:%d", tc.port))
		if who != tc.want && (err == nil || !strings.Contains(err.Error(), tc.want)) {
			t.Errorf("scope %s to port %d: %q, %v; want %q", tc.client, tc.port, who, err, tc.want)
		}
	}
	// Held open, a local connection shows as CT in the namespace.
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	c, err := clients[appns.ScopeLocal].Dial(ctx, "tcp", "10.0.0.1:81")
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	var ct []Session
	for _, sess := range s.ListSessions(SessionFilter{Namespace: "blue"}) {
		if sess.Transport == TransportCutThrough {
			ct = append(ct, sess)
		}
	}
	if len(ct) < 3 { // the two listeners and at least the dialing end
		t.Errorf("cut-through sessions %+v, want the local listeners and the connection", ct)
	}
	for _, sess := range ct {
		if sess.Namespace != "blue" || sess.Protocol != "tcp" {
			t.Errorf("cut-through session %+v, want tcp in namespace blue", sess)
		}
	}
	if _, err := clients[appns.ScopeLocal].ListenPacket("udp", ":53"); !errors.Is(err, errLocalTCPOnly) {
		t.Errorf("ListenPacket of scope local: %v", err)
	}
	if _, err := clients[appns.ScopeLocal].Listen("tcp", ":0"); err == nil || !strings.Contains(err.Error(), "want a port") {
		t.Errorf("Listen on port 0 in scope local: %v", err)
	}
}

// TestLocalRulesCutThrough: the local rules apply to cut-through
// sessions too, both ways.
func TestLocalRulesCutThrough(t *testing.T) {
	s, reg, _ := memStack(t, "10.0.0.1", "10.0.0.2")
	s.local = newPipeTable()
	// Connects to 10.0.0.2:80 are denied, and so are the sessions of the
	// listener on 10.0.0.2:81.
	connects := maps.Rule{RuleMatch: maps.RuleMatch{Protocol: maps.TCP, Remote: netip.MustParsePrefix("10.0.0.2/32"), RemotePort: 80}, Action: maps.RuleDeny}
	sessions := maps.Rule{RuleMatch: maps.RuleMatch{Protocol: maps.TCP, Local: netip.MustParsePrefix("10.0.0.2/32"), LocalPort: 81}, Action: maps.RuleDeny}
	if err := reg.Add(appns.Config{Name: "blue", Secret: "b", Rules: []maps.Rule{connects, sessions}}); err != nil {
		t.Fatal(err)
	}
	app := attach(t, s, AppOptions{Namespace: "blue", Secret: "b", Scope: appns.ScopeLocal})
	for _, addr := range []string{"10.0.0.2:80", "10.0.0.2:81"} {
		ln, err := app.Listen("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		go serveName(ln, "blue")
	}
	if _, err := whoAnswers(t, app, "10.0.0.2:80"); err == nil || !strings.Contains(err.Error(), "local rule 1") {
		t.Errorf("denied local connect: %v, want the rule named", err)
	}
	// The connect passes (its remote is 10.0.0.2:81), the listener's
	// check does not: the connection closes unanswered.
	if who, err := whoAnswers(t, app, "10.0.0.2:81"); who != "" {
		t.Errorf("the listener served a session its rules deny: %q, %v", who, err)
	}
	if n := reg.RefusalCounts()["blue"][appns.RefusedRule]; n != 2 {
		t.Errorf("blue's rule refusals %d, want 2", n)
	}
}

// totalVerdicts sums the XDP program's verdicts.
func totalVerdicts(t *testing.T, att *loader.Attachment) uint64 {
	t.Helper()
	sums, err := att.Maps.Stats.Sum()
	if err != nil {
		t.Fatal(err)
	}
	var n uint64
	for _, c := range sums {
		n += c.Packets
	}
	return n
}

// TestLocalScopeSendsNoPacket: on a userstack attached to a veth, an
// echo of local scope serves a connect of local scope in memory: the
// XDP program sees no packet and the interface sends none.
func TestLocalScopeSendsNoPacket(t *testing.T) {
	a, _ := testutil.HostPair(t, 2)
	s, att := startOn(t, a, Options{})
	s.local = newPipeTable()
	server := attach(t, s, AppOptions{Name: "echo", Scope: appns.ScopeLocal})
	ln, err := server.Listen("tcp", ":7")
	if err != nil {
		t.Fatal(err)
	}
	go testutil.Echo(ln)
	client := attach(t, s, AppOptions{Name: "client", Scope: appns.ScopeLocal})
	verdicts := totalVerdicts(t, att)
	sent, _ := a.TxStats(t)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	c, err := client.Dial(ctx, "tcp", netip.AddrPortFrom(a.Addr, 7).String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := testutil.RoundTrip(c, 1<<20); err != nil {
		t.Fatal(err)
	}
	sessions := s.ListSessions(SessionFilter{Namespace: DefaultNamespace})
	var ct int
	for _, sess := range sessions {
		if sess.Transport == TransportCutThrough && sess.Remote.IsValid() {
			ct++
		}
	}
	if ct != 2 {
		t.Errorf("sessions %+v, want the connection's two ends as CT", sessions)
	}
	if now := totalVerdicts(t, att); now != verdicts {
		t.Errorf("the XDP program saw %d packets during a local echo, want none", now-verdicts)
	}
	if now, _ := a.TxStats(t); now != sent {
		t.Errorf("%s sent %d packets during a local echo, want none", a.Iface, now-sent)
	}
}
