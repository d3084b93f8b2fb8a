package test

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/xdpstack/xdpstack/internal/testing/testutil"
)

type listedNamespace struct {
	Name     string            `json:"name"`
	Addrs    []string          `json:"addrs"`
	Apps     int               `json:"apps"`
	Rules    int               `json:"rules"`
	Refusals map[string]uint64 `json:"refusals"`
	From     string            `json:"from"`
}

// listNamespaces runs ns list --json and returns the namespaces by name.
func listNamespaces(t *testing.T, root, iface string) map[string]listedNamespace {
	t.Helper()
	var list struct {
		Namespaces []listedNamespace `json:"namespaces"`
	}
	out := mustXdpstack(t, root, "ns", "list", iface, "--json")
	if err := json.Unmarshal([]byte(out), &list); err != nil {
		t.Fatalf("ns list --json: %v\n%s", err, out)
	}
	byName := map[string]listedNamespace{}
	for _, ns := range list.Namespaces {
		byName[ns.Name] = ns
	}
	return byName
}

// TestNamespacesThroughTheDaemon manages namespaces and their local
// rules with the CLI, through the control socket of a daemon attached
// with a config file: ns add, list and del, rules add, list and del
// with --namespace, bad requests that change nothing, and a reload that
// sets the file's namespaces and keeps the CLI's. No output shows a
// secret.
func TestNamespacesThroughTheDaemon(t *testing.T) {
	a, _ := testutil.HostPair(t, 0)
	root := testutil.PinRoot(t)
	dir := t.TempDir()
	secretFile := filepath.Join(dir, "secret")
	os.WriteFile(secretFile, []byte("blue-s3cret\n"), 0o600)
	config := filepath.Join(dir, "xdpstack.yaml")
	os.WriteFile(config, []byte("metrics-addr: 127.0.0.1:0\napps: [echo=tcp://:7]\nnamespaces:\n  - {name: web, secret: web-s3cret}\n"), 0o644)
	d := startDaemon(t, a, root, "--config", config)
	var outputs []string
	run := func(args ...string) string {
		t.Helper()
		out := mustXdpstack(t, root, args...)
		outputs = append(outputs, out)
		return out
	}

	if out := run("ns", "add", a.Iface, "blue", "--secret-file", secretFile, "--addr", a.Addr.String()); out != fmt.Sprintf("namespace blue on %s: %s", a.Iface, a.Addr) {
		t.Errorf("ns add: got %q", out)
	}
	table := run("ns", "list", a.Iface)
	for _, want := range []string{"NAME", "blue     " + a.Addr.String(), "web      -", "file", "cli", "built-in"} {
		if !strings.Contains(table, want) {
			t.Errorf("ns list: no %q in\n%s", want, table)
		}
	}
	out := run("rules", "add", a.Iface, "--namespace", "blue", "--proto", "tcp", "--remote", "192.0.2.0/24", "--action", "deny", "--tag", "no-doc")
	if out != "namespace blue: local rule 1: --proto tcp --local 0.0.0.0/0 --remote 192.0.2.0/24 --action deny --tag no-doc" {
		t.Errorf("rules add --namespace: got %q", out)
	}
	var local []listedRule
	if err := json.Unmarshal([]byte(run("rules", "list", a.Iface, "--namespace", "blue", "--json")), &local); err != nil || len(local) != 1 || local[0].Tag != "no-doc" || local[0].Remote != "192.0.2.0/24" {
		t.Errorf("rules list --namespace blue: got %+v, %v", local, err)
	}
	if global := listRules(t, root, a.Iface); len(global) != 0 {
		t.Errorf("the local rule is in the global table: %+v", global)
	}
	before := listNamespaces(t, root, a.Iface)
	if ns := before["blue"]; ns.Rules != 1 || ns.From != "cli" || len(ns.Addrs) != 1 || before["web"].From != "file" || before["default"].From != "built-in" {
		t.Errorf("ns list --json: %+v", before)
	}

	for _, tc := range []struct {
		name string
		args []string
		want string
	}{
		{"add twice", []string{"ns", "add", a.Iface, "blue", "--secret", "x"}, "ns add " + a.Iface + ": namespace blue: exists"},
		{"add an address of blue", []string{"ns", "add", a.Iface, "red", "--secret", "x", "--addr", a.Addr.String()}, "belongs to namespace blue"},
		{"add another host's address", []string{"ns", "add", a.Iface, "red", "--secret", "x", "--addr", "192.0.2.1"}, "address 192.0.2.1: not an address of the interface"},
		{"del unknown", []string{"ns", "del", a.Iface, "red"}, "ns del " + a.Iface + ": namespace red: no such namespace"},
		{"del default", []string{"ns", "del", a.Iface, "default"}, "namespace default: cannot be deleted"},
		{"local rule to unknown", []string{"rules", "add", a.Iface, "--namespace", "red", "--action", "deny"}, "namespace red: no such namespace"},
		{"local pass rule", []string{"rules", "add", a.Iface, "--namespace", "blue", "--local", ":80", "--action", "pass"}, "pass is for global rules only"},
		{"local rule twice", []string{"rules", "add", a.Iface, "--namespace", "blue", "--proto", "tcp", "--remote", "192.0.2.0/24", "--action", "allow"}, "a rule with this match is already in the table"},
		{"local del unknown tag", []string{"rules", "del", a.Iface, "--namespace", "blue", "--tag", "nope"}, `namespace blue: no local rule has tag "nope"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			out, err := xdpstack(t, root, tc.args...)
			outputs = append(outputs, out)
			if err == nil || !strings.Contains(out, tc.want) || strings.Contains(out, "\n") {
				t.Errorf("xdpstack %s: got %v, %q; want one line with %q", strings.Join(tc.args, " "), err, out, tc.want)
			}
			if after := listNamespaces(t, root, a.Iface); fmt.Sprint(after) != fmt.Sprint(before) {
				t.Errorf("namespaces after a refused command: %+v, want %+v", after, before)
			}
		})
	}

	series := scrapeMetrics(t, a, d.ready.MetricsAddr)
	for name, want := range map[string]int{"xdpstack_namespace_apps": 3, "xdpstack_namespace_refusals_total": 1 + 3*3} {
		if fam := series[name]; fam == nil || len(fam.Metric) != want {
			t.Errorf("/metrics: %s has %v, want %d series", name, fam, want)
		}
	}

	// The file changes web and adds api, on an address the interface
	// got after attach: a reload sets both and keeps blue, which the
	// CLI added.
	added := netip.AddrFrom4([4]byte{a.Addr.As4()[0], a.Addr.As4()[1], a.Addr.As4()[2], 9})
	a.Exec(t, "ip", "addr", "add", added.String()+"/24", "dev", a.Iface)
	os.WriteFile(config, []byte("metrics-addr: 127.0.0.1:0\napps: [echo=tcp://:7]\nnamespaces:\n  - name: web\n    secret: web-s3cret\n    rules: [{remote: \":25\", action: deny}]\n  - {name: api, secret-file: "+secretFile+", addrs: ["+added.String()+"]}\n"), 0o644)
	if out := run("reload", a.Iface); out != "reloaded "+a.Iface+": applied namespaces" {
		t.Errorf("reload: got %q", out)
	}
	after := listNamespaces(t, root, a.Iface)
	if len(after) != 4 || after["web"].Rules != 1 || after["api"].From != "file" || fmt.Sprint(after["api"].Addrs) != "["+added.String()+"]" || after["blue"].Rules != 1 || after["blue"].From != "cli" {
		t.Errorf("namespaces after the reload: %+v", after)
	}

	if out := run("rules", "del", a.Iface, "--namespace", "blue", "--tag", "no-doc"); !strings.HasPrefix(out, "namespace blue: deleted local rule 1: ") {
		t.Errorf("rules del --namespace: got %q", out)
	}
	if out := run("ns", "del", a.Iface, "blue"); out != "deleted namespace blue on "+a.Iface {
		t.Errorf("ns del: got %q", out)
	}
	if _, ok := listNamespaces(t, root, a.Iface)["blue"]; ok {
		t.Error("blue listed after ns del")
	}
	for _, out := range append(outputs, d.output.String()) {
		for _, secret := range []string{"blue-s3cret", "web-s3cret"} {
			if strings.Contains(out, secret) {
				t.Errorf("output shows a secret: %q", out)
			}
		}
	}
	d.signal(t, syscall.SIGTERM)
	want := fmt.Sprintf("ns list %s: xdpstack is not running on %s (no daemon answers on %s)", a.Iface, a.Iface, socketOf(a))
	if out, err := xdpstack(t, root, "ns", "list", a.Iface); err == nil || out != "xdpstack: "+want {
		t.Errorf("ns list with no daemon: got %v, %q; want %q", err, out, want)
	}
}

// echoLoad keeps a kernel TCP connection busy with the userstack's echo
// app until stop, and counts the bytes that came back intact.
type echoLoad struct {
	conn  net.Conn
	moved atomic.Int64
	stop  chan struct{}
	done  chan error
}

func startEchoLoad(t *testing.T, c net.Conn) *echoLoad {
	l := &echoLoad{conn: c, stop: make(chan struct{}), done: make(chan error, 1)}
	go func() {
		chunk, back := make([]byte, 64<<10), make([]byte, 64<<10)
		deadline := time.Now().Add(60 * time.Second)
		for time.Now().Before(deadline) {
			select {
			case <-l.stop:
				l.done <- nil
				return
			case <-time.After(5 * time.Millisecond): // about 12 MB/s
			}
			rand.Read(chunk)
			c.SetDeadline(time.Now().Add(10 * time.Second))
			if _, err := c.Write(chunk); err != nil {
				l.done <- fmt.Errorf("write after %d bytes: %w", l.moved.Load(), err)
				return
			}
			if _, err := io.ReadFull(c, back); err != nil {
				l.done <- fmt.Errorf("read after %d bytes: %w", l.moved.Load(), err)
				return
			}
			if !bytes.Equal(chunk, back) {
				l.done <- fmt.Errorf("echo after %d bytes differs", l.moved.Load())
				return
			}
			l.moved.Add(int64(len(chunk)))
		}
		l.done <- fmt.Errorf("still running after 60s")
	}()
	return l
}

// waitMoved waits until the load has moved n more bytes than from.
func (l *echoLoad) waitMoved(t *testing.T, from, n int64) {
	t.Helper()
	for deadline := time.Now().Add(15 * time.Second); l.moved.Load() < from+n; time.Sleep(10 * time.Millisecond) {
		select {
		case err := <-l.done:
			t.Fatalf("transfer stopped: %v", err)
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("transfer moved %d bytes in 15 s, want %d", l.moved.Load()-from, n)
		}
	}
}

// TestReloadAddsRuleUnderTransfer: a SIGHUP reload puts in a global rule
// that denies new connections to the echo app, and one, more specific,
// that allows the transfer already running to it; the transfer goes on
// through the reload while a kernel client's new connections are
// dropped in XDP. A reload with a bad namespace changes nothing and
// says why in one line; a reload without the rules takes them out.
func TestReloadAddsRuleUnderTransfer(t *testing.T) {
	needTools(t, "nc")
	a, b := testutil.HostPair(t, 0)
	root := testutil.PinRoot(t)
	config := filepath.Join(t.TempDir(), "xdpstack.yaml")
	base := "metrics-addr: \"\"\napps: [echo=tcp://:7]\n"
	os.WriteFile(config, []byte(base), 0o644)
	d := startDaemon(t, a, root, "--config", config)
	echo := netip.AddrPortFrom(a.Addr, 7)

	c, err := b.DialContext(context.Background(), "tcp", echo.String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	load := startEchoLoad(t, c)
	defer close(load.stop)
	load.waitMoved(t, 0, 1<<20)

	rules := fmt.Sprintf("rules:\n  - {proto: tcp, local: %q, remote: %q, action: allow, tag: running}\n  - {proto: tcp, local: \":7\", action: deny, tag: no-new-echo}\n",
		echo.String(), c.LocalAddr().String())
	os.WriteFile(config, []byte(base+rules), 0o644)
	d.cmd.Process.Signal(syscall.SIGHUP)
	d.waitOutput(t, "applied=rules", 1)
	atReload := load.moved.Load()
	if ncConnects(t, b, a.Addr.String(), 7) {
		t.Error("nc to the echo app under the file's deny rule: connected")
	}
	load.waitMoved(t, atReload, 4<<20)
	byTag := map[string]listedRule{}
	for _, r := range listRules(t, root, a.Iface) {
		byTag[r.Tag] = r
	}
	if byTag["no-new-echo"].Packets == 0 || byTag["running"].Packets == 0 || len(byTag) != 2 {
		t.Errorf("rules after the reload: %+v, want both with hits", byTag)
	}

	bad := base + rules + "namespaces:\n  - {name: blue, secret: s, addrs: [192.0.2.1]}\n"
	os.WriteFile(config, []byte(bad), 0o644)
	out, err := xdpstack(t, root, "reload", a.Iface)
	want := fmt.Sprintf("xdpstack: reload %s: bad configuration: config %s line 7: namespaces: blue: addrs: 192.0.2.1 is not an address of %s", a.Iface, config, a.Iface)
	if err == nil || !strings.HasPrefix(out, want) || strings.Contains(out, "\n") {
		t.Errorf("reload with a bad namespace: got %v, %q; want one line %q", err, out, want)
	}
	if got := listRules(t, root, a.Iface); len(got) != 2 {
		t.Errorf("rules after a refused reload: %+v", got)
	}

	os.WriteFile(config, []byte(base), 0o644)
	if out := mustXdpstack(t, root, "reload", a.Iface); out != "reloaded "+a.Iface+": applied rules" {
		t.Errorf("reload without rules: got %q", out)
	}
	if !ncConnects(t, b, a.Addr.String(), 7) {
		t.Error("nc to the echo app after the file's rules went: no connection")
	}
	load.waitMoved(t, load.moved.Load(), 1<<20)
}
