package test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	xdaemon "github.com/xdpstack/xdpstack/daemon"
	"github.com/xdpstack/xdpstack/internal/testing/testutil"
	"github.com/xdpstack/xdpstack/loader"
	"github.com/xdpstack/xdpstack/maps"
	"github.com/xdpstack/xdpstack/userstack"
	"github.com/xdpstack/xdpstack/userstack/appns"
	"github.com/xdpstack/xdpstack/userstack/apps"
)

// Application namespaces and their local rules (issue 20.3, 20.5's
// local table, 20.8), with kernel peers. The daemon runs in the test's
// process, inside the host's namespace, so that the test gives it its
// namespaces; its control socket serves the binary's sessions verb.

// startInProcess starts a daemon on h's interface with namespaces and
// the apps of specs; it is closed when the test ends.
func startInProcess(t *testing.T, h *testutil.Host, namespaces []appns.Config, specs ...string) (*xdaemon.Daemon, error) {
	t.Helper()
	cfg := xdaemon.Config{Iface: h.Iface, Attach: loader.Options{PinRoot: testutil.PinRoot(t)}, Namespaces: namespaces}
	cfg.Control.Dir = runDir
	for _, s := range specs {
		spec, err := apps.ParseSpec(s)
		if err != nil {
			t.Fatal(err)
		}
		cfg.Apps = append(cfg.Apps, spec)
	}
	var d *xdaemon.Daemon
	var err error
	h.Do(t, func() error {
		d, err = xdaemon.Start(cfg)
		return nil
	})
	if err == nil {
		t.Cleanup(func() { d.Close() })
	}
	return d, err
}

// addAddr gives h's interface addr too, which peer reaches.
func addAddr(t *testing.T, h, peer *testutil.Host, addr netip.Addr) {
	t.Helper()
	mac, err := h.MAC()
	if err != nil {
		t.Fatal(err)
	}
	h.Exec(t, "ip", "addr", "add", addr.String()+"/24", "dev", h.Iface)
	peer.Exec(t, "ip", "neigh", "replace", addr.String(), "lladdr", mac.String(), "dev", peer.Iface, "nud", "permanent")
}

// fileRoot is a folder with who.txt saying who.
func fileRoot(t *testing.T, who string) string {
	t.Helper()
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "who.txt"), []byte(who), 0o644); err != nil {
		t.Fatal(err)
	}
	return dir
}

// kernelWebServer serves root on every address of h, port 8080, with
// python3's http.server until the test ends.
func kernelWebServer(t *testing.T, h *testutil.Host, root string) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	cmd := h.Command(ctx, "python3", "-m", "http.server", "8080", "--bind", "0.0.0.0", "--directory", root)
	out := &testutil.SyncBuffer{}
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cancel()
		cmd.Wait()
	})
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(100 * time.Millisecond) {
		if h.Command(context.Background(), "curl", "-sf", "-o", "/dev/null", fmt.Sprintf("http://%s:8080/who.txt", h.Addr)).Run() == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("python3 http.server in %s not serving after 10s:\n%s", h.Netns, out)
		}
	}
}

// TestNamespacesSplitAPort: two namespaces, each with an address of its
// own, serve http on every address of theirs, port 8080, next to a
// kernel web server on every address of the host: curl from the peer
// gets each namespace's app on its address and the kernel's server on
// the address no namespace claims. A wrong secret stops the daemon with
// one line, attaching nothing; a bind outside a namespace is
// refused and steers nothing.
func TestNamespacesSplitAPort(t *testing.T) {
	needTools(t, "curl", "python3", "nc")
	a, b := testutil.HostPair(t, 2)
	blueAddr, redAddr := a.Addr.Next().Next(), a.Addr.Next().Next().Next()
	addAddr(t, a, b, blueAddr)
	addAddr(t, a, b, redAddr)
	kernelWebServer(t, a, fileRoot(t, "kernel"))
	namespaces := []appns.Config{
		{Name: "blue", Secret: "blue-secret", Addrs: []netip.Addr{blueAddr}},
		{Name: "red", Secret: "red-secret", Addrs: []netip.Addr{redAddr}},
	}
	blueApp := "http=tcp://0.0.0.0:8080,ns=blue,secret=blue-secret,root=" + fileRoot(t, "blue")

	_, err := startInProcess(t, a, namespaces, blueApp, "http=tcp://0.0.0.0:8080,ns=red,secret=guessed-it,root="+fileRoot(t, "red"))
	want := "start app http=tcp://0.0.0.0:8080,ns=red: attach to namespace red: wrong secret"
	if err == nil || err.Error() != want {
		t.Fatalf("attach with a wrong secret: %v, want %q", err, want)
	}
	if xdpAttached(t, a) {
		t.Error("the failed attach left the program attached")
	}
	curl(t, b, fmt.Sprintf("http://%s:8080/who.txt", blueAddr), "kernel")

	d, err := startInProcess(t, a, namespaces, blueApp, "http=tcp://:8080,ns=red,secret=red-secret,root="+fileRoot(t, "red"))
	if err != nil {
		t.Fatal(err)
	}
	reg := d.Namespaces
	for addr, who := range map[netip.Addr]string{blueAddr: "blue", redAddr: "red", a.Addr: "kernel"} {
		curl(t, b, fmt.Sprintf("http://%s:8080/who.txt", addr), who)
	}
	steered, err := d.Maps.Listeners.All()
	if err != nil {
		t.Fatal(err)
	}
	if len(steered) != 2 {
		t.Errorf("listeners map %v, want %s:8080 and %s:8080 only", steered, blueAddr, redAddr)
	}

	app, err := d.Stack.Attach(userstack.AppOptions{Name: "stray", Namespace: "blue", Secret: "blue-secret"})
	if err != nil {
		t.Fatal(err)
	}
	defer app.Close()
	_, err = app.Listen("tcp", netip.AddrPortFrom(redAddr, 9).String())
	want = fmt.Sprintf("listen tcp %s:9: bind to %s: the address belongs to namespace red", redAddr, redAddr)
	if err == nil || err.Error() != want {
		t.Errorf("blue binds red's address: %v, want %q", err, want)
	}
	if n := reg.RefusalCounts()["blue"][appns.RefusedAddress]; n != 1 {
		t.Errorf("blue's address refusals %d, want 1", n)
	}
	if ncConnects(t, b, redAddr.String(), 9) {
		t.Errorf("%s:9 takes connections after the refused bind", redAddr)
	}

	// The sessions view, through the binary and the control socket.
	var reply xdaemon.SessionsReply
	out := mustXdpstack(t, testutil.PinRoot(t), "sessions", a.Iface, "--namespace", "blue", "--json")
	if err := json.Unmarshal([]byte(out), &reply); err != nil {
		t.Fatalf("sessions --json: %v\n%s", err, out)
	}
	if len(reply.Sessions) != 1 || reply.Sessions[0].Local != netip.AddrPortFrom(blueAddr, 8080) || reply.Sessions[0].App != "http" || reply.Sessions[0].Namespace != "blue" {
		t.Errorf("sessions --namespace blue: %+v, want the http app's listener on %s:8080", reply.Sessions, blueAddr)
	}
}

// TestLocalRulesWithKernelPeers: a namespace's local rules refuse an
// app's connect to a kernel server, naming the rule, with no packet
// sent; and reset a kernel client's connection to the namespace's echo
// app. Both are counted; without the rules both go through.
func TestLocalRulesWithKernelPeers(t *testing.T) {
	a, b := testutil.HostPair(t, 2)
	echo := netip.MustParseAddrPort(b.KernelEcho(t, fmt.Sprintf("%s:7", b.Addr)))
	peer := netip.PrefixFrom(b.Addr, 32)
	rules := []maps.Rule{
		{RuleMatch: maps.RuleMatch{Protocol: maps.TCP, Remote: peer, RemotePort: 7}, Action: maps.RuleDeny, Tag: "no-echo-out"},
		{RuleMatch: maps.RuleMatch{Protocol: maps.TCP, Remote: peer, LocalPort: 9}, Action: maps.RuleDeny, Tag: "not-from-b"},
	}
	d, err := startInProcess(t, a, []appns.Config{{Name: "blue", Secret: "s", Rules: rules}}, "echo=tcp://:9,ns=blue,secret=s")
	if err != nil {
		t.Fatal(err)
	}
	reg := d.Namespaces
	app, err := d.Stack.Attach(userstack.AppOptions{Name: "client", Namespace: "blue", Secret: "s"})
	if err != nil {
		t.Fatal(err)
	}
	defer app.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()

	sent, _ := a.TxStats(t)
	_, err = app.Dial(ctx, "tcp", echo.String())
	if err == nil || !strings.Contains(err.Error(), "denied by namespace blue's local rule 1") || !strings.Contains(err.Error(), "no-echo-out") {
		t.Errorf("denied connect: %v, want an error naming local rule 1", err)
	}
	if now, _ := a.TxStats(t); now != sent {
		t.Errorf("the denied connect sent %d packets, want none", now-sent)
	}

	// The reset follows the handshake closely enough to reach connect
	// at times.
	c, err := b.Dial(ctx, "tcp", netip.AddrPortFrom(a.Addr, 9).String())
	if err == nil {
		c.SetDeadline(time.Now().Add(5 * time.Second))
		_, err = io.ReadAll(c)
		c.Close()
	}
	if !errors.Is(err, syscall.ECONNRESET) {
		t.Errorf("kernel client of the echo its rules deny: %v, want a reset", err)
	}
	if n := reg.RefusalCounts()["blue"][appns.RefusedRule]; n != 2 {
		t.Errorf("blue's rule refusals %d, want 2", n)
	}

	if err := reg.SetRules("blue", nil); err != nil {
		t.Fatal(err)
	}
	out, err := app.Dial(ctx, "tcp", echo.String())
	if err != nil {
		t.Fatalf("connect once the rules went: %v", err)
	}
	defer out.Close()
	if err := testutil.RoundTrip(out, 100000); err != nil {
		t.Errorf("echo from the kernel server: %v", err)
	}
	b.EchoFrom(t, netip.AddrPortFrom(a.Addr, 9).String(), 100000)
}
