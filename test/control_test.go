package test

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/xdpstack/xdpstack/daemon/control"
	"github.com/xdpstack/xdpstack/internal/testing/testutil"
)

// socketOf is the control socket of the daemon on h.
func socketOf(h *testutil.Host) string { return control.SocketPath(runDir, h.Iface) }

// checkNoSocket fails when h's control socket is still there.
func checkNoSocket(t *testing.T, h *testutil.Host) {
	t.Helper()
	if _, err := os.Lstat(socketOf(h)); !os.IsNotExist(err) {
		t.Errorf("control socket of %s still there (%v)", h.Iface, err)
	}
}

// waitOutput waits until the daemon has written want n times.
func (d *daemon) waitOutput(t *testing.T, want string, n int) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); strings.Count(d.output.String(), want) < n; {
		if time.Now().After(deadline) {
			t.Fatalf("daemon did not say %q %d times within 10s:\n%s", want, n, d.output)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestConfigFileAndReload attaches with a config file that starts an
// echo and an http app, and reloads it while a download runs: by the
// verb and by SIGHUP, with the file as it was (nothing to apply), with
// a key that needs a restart and with a bad file (both refused, nothing
// changes). The download completes whole and the apps keep serving.
func TestConfigFileAndReload(t *testing.T) {
	needTools(t, "curl")
	a, b := testutil.HostPair(t, 0)
	root := testutil.PinRoot(t)
	www := t.TempDir()
	big := make([]byte, 16<<20)
	rand.Read(big)
	os.WriteFile(filepath.Join(www, "big"), big, 0o644)
	good := fmt.Sprintf(`# attach with two apps
metrics-addr: ""
tcp-backlog: 128
apps:
  - echo=tcp://:7
  - name: http
    uri: tcp://:80
    options:
      root: %s
namespaces:
rules: []
`, www)
	config := filepath.Join(t.TempDir(), "xdpstack.yaml")
	os.WriteFile(config, []byte(good), 0o644)
	if out := mustXdpstack(t, root, "config", "check", config); out != "ok: "+config+": auto mode, app echo=tcp://:7, app http=tcp://:80" {
		t.Errorf("config check: got %q", out)
	}
	d := startDaemon(t, a, root, "--config", config)
	echo := netip.AddrPortFrom(a.Addr, 7).String()
	b.EchoFrom(t, echo, 1<<20)

	status := mustXdpstack(t, root, "status", a.Iface)
	if !strings.Contains(status, a.Iface+": daemon running, userstack on queues 0 (AF_XDP ") || !strings.Contains(status, "app http=tcp://:80 on ") {
		t.Errorf("status: want the daemon's queues and apps in:\n%s", status)
	}

	// A download of 16 MiB at 3 MiB/s runs through every reload below.
	got := filepath.Join(t.TempDir(), "big")
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	curl := b.Command(ctx, "curl", "-sS", "--limit-rate", "3M", "-o", got, fmt.Sprintf("http://%s:80/big", a.Addr))
	var curlOut bytes.Buffer
	curl.Stdout, curl.Stderr = &curlOut, &curlOut
	if err := curl.Start(); err != nil {
		t.Fatal(err)
	}
	downloaded := make(chan error, 1)
	go func() { downloaded <- curl.Wait() }()
	time.Sleep(500 * time.Millisecond)

	if out := mustXdpstack(t, root, "reload", a.Iface); out != "reloaded "+a.Iface+": nothing to apply" {
		t.Errorf("reload of the same file: got %q", out)
	}
	for _, tc := range []struct{ name, text, want string }{
		{"mode changed", "mode: generic\n" + good, "reload " + a.Iface + ": mode changed: needs a restart (detach and attach again)"},
		{"two keys changed", "tcp-backlog: 64\nprocs: \"1\"\n" + strings.Replace(good, "tcp-backlog: 128\n", "", 1), "reload " + a.Iface + ": procs, tcp-backlog changed: need a restart"},
		{"bad file", good + "bogus: 1\n", "reload " + a.Iface + `: bad configuration: config ` + config + ` line 12: unknown key "bogus"`},
		{"bad rule", strings.Replace(good, "rules: []", "rules:\n  - deny", 1), `line 12: rules: want a rule (proto, local, remote, action, tag), got "deny"`},
	} {
		os.WriteFile(config, []byte(tc.text), 0o644)
		out, err := xdpstack(t, root, "reload", a.Iface)
		if err == nil || !strings.Contains(out, tc.want) || strings.Contains(out, "\n") {
			t.Errorf("reload, %s: got %v, %q; want one line containing %q", tc.name, err, out, tc.want)
		}
	}
	// SIGHUP: the bad file is refused, then the good one is read.
	d.cmd.Process.Signal(syscall.SIGHUP)
	d.waitOutput(t, "reload refused; nothing changed", 5)
	os.WriteFile(config, []byte(good), 0o644)
	d.cmd.Process.Signal(syscall.SIGHUP)
	d.waitOutput(t, "reloaded: nothing to apply", 2)

	select {
	case err := <-downloaded:
		t.Fatalf("download over before the reloads were (%v): make it slower", err)
	default:
	}
	if err := <-downloaded; err != nil {
		t.Fatalf("download across the reloads: %v\n%s", err, curlOut.String())
	}
	if b, err := os.ReadFile(got); err != nil || !bytes.Equal(b, big) {
		t.Errorf("download across the reloads: %d bytes, %v; want the 16 MiB file as it is", len(b), err)
	}
	b.EchoFrom(t, echo, 1<<20)
	if err := d.signal(t, syscall.SIGTERM); err != nil {
		t.Fatalf("exit: %v\n%s", err, d.output)
	}
	checkClean(t, a, root)
	checkNoSocket(t, a)
}

// TestControlSocketPermissions: the socket is root's alone (0600) unless
// --control-group opens it to a group (0660), and answers curl.
func TestControlSocketPermissions(t *testing.T) {
	needTools(t, "curl", "setpriv", "groupadd")
	a, _ := testutil.HostPair(t, 0)
	root := testutil.PinRoot(t)
	asNobody := func(groups string, args ...string) (string, error) {
		out, err := exec.Command("setpriv", append([]string{"--reuid=65534", "--regid=65534", groups, binary}, args...)...).CombinedOutput()
		return strings.TrimSpace(string(out)), err
	}
	check := func(mode os.FileMode, gid uint32) {
		t.Helper()
		fi, err := os.Lstat(socketOf(a))
		if err != nil {
			t.Fatal(err)
		}
		st := fi.Sys().(*syscall.Stat_t)
		if fi.Mode().Type() != os.ModeSocket || fi.Mode().Perm() != mode || st.Uid != 0 || st.Gid != gid {
			t.Errorf("control socket: %v uid %d gid %d; want a socket %v owned by root, gid %d", fi.Mode(), st.Uid, st.Gid, mode, gid)
		}
	}

	d := startDaemon(t, a, root, "--metrics-addr", "")
	check(0o600, 0)
	out, err := exec.Command("curl", "-sS", "--unix-socket", socketOf(a), "http://x/v1/version").CombinedOutput()
	var v control.VersionInfo
	if err != nil || json.Unmarshal(out, &v) != nil || v.API != control.Version || v.PID != d.ready.PID {
		t.Errorf("curl /v1/version: got %v, %s; want API %d of pid %d", err, out, control.Version, d.ready.PID)
	}
	out, err = exec.Command("curl", "-sS", "-w", "%{http_code}", "--unix-socket", socketOf(a), "-X", "POST", "http://x/v1/status").CombinedOutput()
	if err != nil || !strings.HasPrefix(string(out), `{"error":"POST /v1/status: method not allowed (want GET)"}`) || !strings.HasSuffix(string(out), "405") {
		t.Errorf("curl POST /v1/status: got %v, %s; want a 405", err, out)
	}
	if out, err := asNobody("--clear-groups", "reload", a.Iface); err == nil || !strings.Contains(out, "permission denied (the control socket is root's; run with sudo, or attach with --control-group)") {
		t.Errorf("reload as nobody: got %v, %q", err, out)
	}
	d.signal(t, syscall.SIGTERM)

	group := testutil.UniqueName("xsg")
	if out, err := exec.Command("groupadd", group).CombinedOutput(); err != nil {
		t.Fatalf("groupadd %s: %v\n%s", group, err, out)
	}
	t.Cleanup(func() { exec.Command("groupdel", group).Run() })
	out, err = exec.Command("getent", "group", group).Output()
	var gid uint32
	if _, serr := fmt.Sscanf(strings.Split(string(out), ":")[2], "%d", &gid); err != nil || serr != nil {
		t.Fatalf("getent group %s: %v %v %q", group, err, serr, out)
	}
	startDaemon(t, a, root, "--metrics-addr", "", "--control-group", group)
	check(0o660, gid)
	// Through the socket: a daemon without a config file has none to
	// read again.
	want := "reload " + a.Iface + ": no configuration file to read again (attach with --config FILE)"
	if out, err := asNobody(fmt.Sprintf("--groups=%d", gid), "reload", a.Iface); err == nil || out != "xdpstack: "+want {
		t.Errorf("reload as nobody in %s: got %v, %q; want %q", group, err, out, want)
	}
	if out, err := asNobody("--clear-groups", "reload", a.Iface); err == nil || !strings.Contains(out, "permission denied") {
		t.Errorf("reload as nobody outside %s: got %v, %q", group, err, out)
	}
}

// TestStaleControlSocket: kill -9 leaves the socket behind; the verbs
// say no daemon runs, and the next attach replaces it. A second attach
// beside a running daemon is refused, and the first keeps its socket.
func TestStaleControlSocket(t *testing.T) {
	a, _ := testutil.HostPair(t, 0)
	root := testutil.PinRoot(t)
	d := startDaemon(t, a, root, "--metrics-addr", "")
	d.signal(t, syscall.SIGKILL)
	if _, err := os.Lstat(socketOf(a)); err != nil {
		t.Fatalf("socket after kill -9: %v, want it left behind", err)
	}
	want := fmt.Sprintf("xdpstack is not running on %s (no daemon answers on %s)", a.Iface, socketOf(a))
	if out, err := xdpstack(t, root, "reload", a.Iface); err == nil || out != "xdpstack: reload "+a.Iface+": "+want {
		t.Errorf("reload after kill -9: got %v, %q; want %q", err, out, want)
	}
	if out := mustXdpstack(t, root, "status", a.Iface); !strings.Contains(out, a.Iface+": no daemon running (none answers on "+socketOf(a)+")") {
		t.Errorf("status after kill -9: want no daemon running in:\n%s", out)
	}

	d = startDaemon(t, a, root, "--metrics-addr", "")
	out, err := a.Command(context.Background(), binary, "--pin-root", root, "attach", a.Iface, "--metrics-addr", "").CombinedOutput()
	if err == nil || !strings.Contains(string(out), fmt.Sprintf("xdpstack already runs on %s (a daemon holds %s.lock)", a.Iface, socketOf(a))) {
		t.Errorf("second attach: got %v, %q", err, out)
	}
	if out := mustXdpstack(t, root, "status", a.Iface, "--json"); !strings.Contains(out, `"daemon":{`) {
		t.Errorf("status --json after a refused second attach: want the daemon's status in %s", out)
	}
	if err := d.signal(t, syscall.SIGTERM); err != nil {
		t.Fatalf("exit: %v\n%s", err, d.output)
	}
	checkClean(t, a, root)
	checkNoSocket(t, a)
}

// TestReadinessProbe runs `status IFACE --ready` as a Kubernetes
// readiness probe would: it succeeds only while a daemon answers on the
// interface's control socket, not before the attach nor after a kill -9
// that left the socket behind.
func TestReadinessProbe(t *testing.T) {
	a, _ := testutil.HostPair(t, 0)
	root := testutil.PinRoot(t)
	notRunning := fmt.Sprintf("xdpstack: status %s: xdpstack is not running on %s (no daemon answers on %s)", a.Iface, a.Iface, socketOf(a))
	if out, err := xdpstack(t, root, "status", a.Iface, "--ready"); err == nil || out != notRunning {
		t.Errorf("status --ready before attach: got %v, %q; want %q", err, out, notRunning)
	}
	d := startDaemon(t, a, root, "--metrics-addr", "")
	if out, err := xdpstack(t, root, "status", a.Iface, "--ready"); err != nil || out != a.Iface+": daemon running, no userstack" {
		t.Errorf("status --ready with a daemon: got %v, %q", err, out)
	}
	d.signal(t, syscall.SIGKILL)
	if out, err := xdpstack(t, root, "status", a.Iface, "--ready"); err == nil || out != notRunning {
		t.Errorf("status --ready after kill -9: got %v, %q; want %q", err, out, notRunning)
	}
}

// TestSessionsThroughTheControlSocket lists a kernel client's connection
// to the echo app with `xdpstack sessions`, as the daemon answers it
// over its control socket.
func TestSessionsThroughTheControlSocket(t *testing.T) {
	a, b := testutil.HostPair(t, 0)
	root := testutil.PinRoot(t)
	startDaemon(t, a, root, "--metrics-addr", "", "--app", "echo=tcp://:7")
	c, err := b.DialContext(context.Background(), "tcp", netip.AddrPortFrom(a.Addr, 7).String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := c.Write([]byte("x")); err != nil {
		t.Fatal(err)
	}
	c.Read(make([]byte, 1))
	out := mustXdpstack(t, root, "sessions", a.Iface, "--verbose")
	conn := fmt.Sprintf("%s:7->%s", a.Addr, c.LocalAddr())
	if !strings.Contains(out, conn) || !strings.Contains(out, "opened") || !strings.Contains(out, "*:7->*") || !strings.Contains(out, "listening") || !strings.Contains(out, "echo") {
		t.Errorf("sessions: want the listener *:7 and the opened session %s of the echo app, got:\n%s", conn, out)
	}
	out = mustXdpstack(t, root, "sessions", a.Iface, "--state", "listening", "--json")
	var r struct {
		Sessions []struct{ State string } `json:"sessions"`
	}
	if err := json.Unmarshal([]byte(out), &r); err != nil || len(r.Sessions) == 0 {
		t.Fatalf("sessions --json: %v, %s", err, out)
	}
	for _, s := range r.Sessions {
		if s.State != "listening" {
			t.Errorf("sessions --state listening listed a session %q", s.State)
		}
	}
}
