package test

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/xdpstack/xdpstack/internal/testing/testutil"
)

// unitFile is the systemd unit that make install installs.
const unitFile = "../deploy/systemd/xdpstack@.service"

// unitBinary is the binary the unit runs as committed (PREFIX=/usr/local).
const unitBinary = "/usr/local/bin/xdpstack"

// serviceValues returns the values of key in the unit's [Service]
// section, one per line that sets it.
func serviceValues(t *testing.T, key string) []string {
	t.Helper()
	f, err := os.Open(unitFile)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var values []string
	section := ""
	for sc := bufio.NewScanner(f); sc.Scan(); {
		line := strings.TrimSpace(sc.Text())
		switch {
		case strings.HasPrefix(line, "["):
			section = line
		case section == "[Service]" && strings.HasPrefix(line, key+"="):
			values = append(values, strings.TrimPrefix(line, key+"="))
		}
	}
	if len(values) == 0 {
		t.Fatalf("%s: no %s= in [Service]", unitFile, key)
	}
	return values
}

// unitCommand is one of the unit's command lines (ExecStart,
// ExecReload) for instance iface, as systemd would run it with the
// unit's capabilities: the test's binary in place of the installed one,
// the config file at config, in iface's network namespace.
func unitCommand(t *testing.T, h *testutil.Host, key, config string) *exec.Cmd {
	t.Helper()
	words := strings.Fields(strings.ReplaceAll(serviceValues(t, key)[0], "%i", h.Iface))
	if words[0] != unitBinary {
		t.Fatalf("%s: %s runs %s, want %s", unitFile, key, words[0], unitBinary)
	}
	words[0] = binary
	for i, w := range words {
		if w == "/etc/xdpstack/"+h.Iface+".yaml" {
			words[i] = config
		}
	}
	// As systemd does for root with CapabilityBoundingSet= and
	// NoNewPrivileges=: the bounding set is all the process may have.
	caps := "-all"
	for _, c := range strings.Fields(serviceValues(t, "CapabilityBoundingSet")[0]) {
		caps += ",+" + strings.ToLower(strings.TrimPrefix(c, "CAP_"))
	}
	if serviceValues(t, "NoNewPrivileges")[0] != "yes" {
		t.Fatalf("%s: want NoNewPrivileges=yes", unitFile)
	}
	return h.Command(context.Background(), "setpriv", append([]string{"--no-new-privs", "--bounding-set", caps, "--inh-caps", "-all", "--"}, words...)...)
}

// notification is one datagram on the notify socket.
type notification struct {
	at     time.Time
	fields map[string]string
}

func (n notification) String() string { return fmt.Sprint(n.fields) }

// notifySocket stands in for systemd: it listens on a datagram socket
// and passes on what arrives.
func notifySocket(t *testing.T) (path string, received <-chan notification) {
	t.Helper()
	path = filepath.Join(t.TempDir(), "notify")
	conn, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: path, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	ch := make(chan notification, 100)
	go func() {
		defer close(ch)
		b := make([]byte, 4096)
		for {
			n, err := conn.Read(b)
			if err != nil {
				return
			}
			msg := notification{at: time.Now(), fields: map[string]string{}}
			for _, line := range strings.Split(string(b[:n]), "\n") {
				k, v, _ := strings.Cut(line, "=")
				msg.fields[k] = v
			}
			ch <- msg
		}
	}()
	return path, ch
}

// nextNotification returns the next notification with key, failing on
// any other in between but the watchdog's (and status lines).
func nextNotification(t *testing.T, received <-chan notification, key string) notification {
	t.Helper()
	timeout := time.After(20 * time.Second)
	for {
		select {
		case n := <-received:
			if _, ok := n.fields[key]; ok {
				return n
			}
			if len(n.fields) == 1 && (n.fields["WATCHDOG"] != "" || n.fields["STATUS"] != "") {
				continue
			}
			t.Fatalf("waiting for %s: got %v", key, n)
		case <-timeout:
			t.Fatalf("no %s within 20s", key)
		}
	}
}

func writeConfig(t *testing.T, path, text string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
}

// TestSystemdNotify runs the unit's ExecStart as systemd would, with
// the unit's capabilities, and speaks the notify protocol with it:
// READY=1 only once the program is attached and the app answers, the
// watchdog fed at half of WATCHDOG_USEC, RELOADING=1 and READY=1
// around the unit's ExecReload, STOPPING=1 on SIGTERM and a clean exit.
func TestSystemdNotify(t *testing.T) {
	a, b := testutil.HostPair(t, 1)
	pinRoot := testutil.PinRoot(t)
	config := filepath.Join(t.TempDir(), a.Iface+".yaml")
	base := "mode: auto\nmetrics-addr: \"\"\napps: [echo=tcp://:7]\n"
	writeConfig(t, config, base)
	notify, received := notifySocket(t)

	const watchdog = time.Second
	cmd := unitCommand(t, a, "ExecStart", config)
	cmd.Env = append(os.Environ(), "NOTIFY_SOCKET="+notify, "XDPSTACK_PIN_ROOT="+pinRoot,
		"WATCHDOG_USEC="+strconv.Itoa(int(watchdog/time.Microsecond)))
	d := &daemon{cmd: cmd, output: &testutil.SyncBuffer{}, exited: make(chan error, 1)}
	cmd.Stdout, cmd.Stderr = d.output, d.output
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { d.exited <- cmd.Wait() }()
	t.Cleanup(func() { d.stop(t) })

	var ready notification
	select {
	case ready = <-waitFor(t, received, "READY"):
	case err := <-d.exited:
		d.exited <- err
		t.Fatalf("xdpstack attach exited before READY=1: %v\n%s", err, d.output)
	case <-time.After(30 * time.Second):
		t.Fatalf("no READY=1 within 30s:\n%s", d.output)
	}
	// What READY=1 promises, at once: the program attached and pinned,
	// the app answering.
	linkPin := filepath.Join(pinRoot, a.Iface, "link")
	if _, err := os.Stat(linkPin); err != nil {
		t.Fatalf("READY=1 (%v) before the link was pinned: %v", ready, err)
	}
	if l, err := a.Link(); err != nil || l.Attrs().Xdp == nil || !l.Attrs().Xdp.Attached {
		t.Fatalf("READY=1 (%v) before the program was attached to %s (%v)", ready, a.Iface, err)
	}
	b.EchoFrom(t, fmt.Sprintf("%s:7", a.Addr), 1000)
	if st := ready.fields["STATUS"]; !strings.Contains(st, "serving "+a.Iface) || !strings.Contains(st, "echo=tcp://:7") {
		t.Errorf("STATUS with READY=1: got %q, want the interface and the app", st)
	}

	t.Run("watchdog", func(t *testing.T) {
		first := nextNotification(t, received, "WATCHDOG")
		const n = 4
		last := first
		for range n {
			last = nextNotification(t, received, "WATCHDOG")
		}
		// Half of WATCHDOG_USEC, with room for a loaded machine.
		if every := last.at.Sub(first.at) / n; every < watchdog*2/5 || every > watchdog*3/4 {
			t.Errorf("WATCHDOG=1 every %v, want about %v", every, watchdog/2)
		}
	})

	reload := func(t *testing.T) (string, error) {
		t.Helper()
		out, err := unitCommand(t, a, "ExecReload", config).CombinedOutput()
		return strings.TrimSpace(string(out)), err
	}
	t.Run("reload", func(t *testing.T) {
		writeConfig(t, config, base+"rules: [{proto: tcp, local: \":22\", action: deny}]\n")
		if out, err := reload(t); err != nil {
			t.Fatalf("ExecReload: %v: %s", err, out)
		}
		r := nextNotification(t, received, "RELOADING")
		if _, err := strconv.ParseUint(r.fields["MONOTONIC_USEC"], 10, 64); err != nil {
			t.Errorf("RELOADING=1 without MONOTONIC_USEC: %v", r)
		}
		if st := nextNotification(t, received, "READY").fields["STATUS"]; !strings.HasSuffix(st, "reloaded: applied rules") {
			t.Errorf("STATUS after the reload: got %q, want it to end in %q", st, "reloaded: applied rules")
		}
	})
	t.Run("refused reload", func(t *testing.T) {
		writeConfig(t, config, strings.Replace(base, "mode: auto", "mode: generic", 1))
		out, err := reload(t)
		if err == nil || !strings.Contains(out, "mode changed") {
			t.Fatalf("ExecReload with mode changed: got %v: %s, want it refused", err, out)
		}
		nextNotification(t, received, "RELOADING")
		if st := nextNotification(t, received, "READY").fields["STATUS"]; !strings.Contains(st, "reload refused: mode changed") {
			t.Errorf("STATUS after a refused reload: got %q", st)
		}
	})

	d.cmd.Process.Signal(syscall.SIGTERM)
	nextNotification(t, received, "STOPPING")
	select {
	case err := <-d.exited:
		d.exited <- err
		if err != nil {
			t.Fatalf("exit after SIGTERM: %v\n%s", err, d.output)
		}
	case <-time.After(15 * time.Second):
		t.Fatalf("no exit within 15s of SIGTERM:\n%s", d.output)
	}
	if _, err := os.Stat(linkPin); !os.IsNotExist(err) {
		t.Errorf("link pin after a clean exit: %v", err)
	}
}

// waitFor passes on the first notification with key.
func waitFor(t *testing.T, received <-chan notification, key string) <-chan notification {
	ch := make(chan notification, 1)
	go func() {
		for n := range received {
			if _, ok := n.fields[key]; ok {
				ch <- n
				return
			}
		}
	}()
	return ch
}

// TestAttachWithoutCapabilities runs attach as root stripped of
// capabilities it needs, as a unit with too short a
// CapabilityBoundingSet would, and wants the error to say which, before
// anything is attached.
func TestAttachWithoutCapabilities(t *testing.T) {
	a, _ := testutil.HostPair(t, 0)
	pinRoot := testutil.PinRoot(t)
	const needs = " (needs CAP_BPF, CAP_NET_ADMIN, CAP_PERFMON, and CAP_NET_RAW with apps)\n"
	for _, tc := range []struct {
		caps string
		args []string
		want string
	}{
		{"-all", nil, "missing CAP_BPF, CAP_NET_ADMIN, CAP_PERFMON"},
		{"-all,+bpf,+net_admin", nil, "missing CAP_PERFMON"},
		{"-all,+net_admin,+perfmon", nil, "missing CAP_BPF"},
		{"-all,+bpf,+perfmon", nil, "missing CAP_NET_ADMIN"},
		{"-all,+bpf,+net_admin,+perfmon", []string{"--app", "echo=tcp://:7"}, "missing CAP_NET_RAW"},
	} {
		t.Run(tc.caps, func(t *testing.T) {
			args := append([]string{"--bounding-set", tc.caps, "--inh-caps", "-all", "--",
				binary, "--pin-root", pinRoot, "attach", a.Iface}, tc.args...)
			out, err := a.Command(context.Background(), "setpriv", args...).CombinedOutput()
			if want := "xdpstack: attach: " + tc.want + needs; err == nil || string(out) != want {
				t.Errorf("attach with bounding set %s: got %v: %q, want %q", tc.caps, err, out, want)
			}
			if _, err := os.Stat(filepath.Join(pinRoot, a.Iface)); !os.IsNotExist(err) {
				t.Errorf("pins after a refused attach: %v", err)
			}
		})
	}
}
