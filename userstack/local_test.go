package userstack

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/xdpstack/xdpstack/internal/testing/testutil"
	"github.com/xdpstack/xdpstack/loader"
	"github.com/xdpstack/xdpstack/maps"
	"github.com/xdpstack/xdpstack/userstack/appns"
)

// TestScopes: a local listener takes only local connects, a global one
// only connects over the netstack, one of scope both takes both; a
// connect of scope both finds the local listener first and falls back
// to the netstack.
func TestScopes(t *testing.T) {
	s, reg, steer := memStack(t, "10.0.0.1")
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
// echoPattern sends size bytes of a counting pattern through an echo
// and checks every byte that comes back.
func echoPattern(c net.Conn, size int64) error {
	c.SetDeadline(time.Now().Add(60 * time.Second))
	const period = 251 // prime, so that no power-of-two chunk lines up
	const chunk = 256 << 10
	// pattern holds every chunk-long stretch of the pattern, from any
	// offset within a period.
	pattern := make([]byte, chunk+period)
	for i := range pattern {
		pattern[i] = byte(i % period)
	}
	errc := make(chan error, 1)
	go func() {
		var err error
		for sent := int64(0); sent < size && err == nil; {
			n, off := min(size-sent, chunk), sent%period
			_, err = c.Write(pattern[off : off+n])
			sent += n
		}
		errc <- err
	}()
	buf := make([]byte, chunk)
	for got := int64(0); got < size; {
		n, err := c.Read(buf[:min(chunk, size-got)])
		if off := got % period; !bytes.Equal(buf[:n], pattern[off:off+int64(n)]) {
			return fmt.Errorf("the echo differs from what was sent within bytes %d to %d", got, got+int64(n))
		}
		got += int64(n)
		if err != nil {
			return fmt.Errorf("read echo at %d of %d: %w", got, size, err)
		}
	}
	return <-errc
}

func TestLocalScopeSendsNoPacket(t *testing.T) {
	a, _ := testutil.HostPair(t, 2)
	s, att := startOn(t, a, Options{})
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
	const size = 1 << 30
	if err := echoPattern(c, size); err != nil {
		t.Fatal(err)
	}
	if got := s.local.Counters().Bytes; got != uint64(2*size) {
		t.Errorf("cut-through carried %d bytes, want %d (%d each way)", got, 2*size, size)
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
