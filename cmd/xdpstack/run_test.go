package main

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/xdpstack/xdpstack/daemon"
	"github.com/xdpstack/xdpstack/daemon/control"
	"github.com/xdpstack/xdpstack/userstack/preload"
)

// TestRunRefuses: bad flags get one line naming what was wrong, before
// anything is looked for.
func TestRunRefuses(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"run"}, "run: missing PROGRAM"},
		{[]string{"run", "--secret", "s", "true"}, "run: --secret without --namespace"},
		{[]string{"run", "--namespace", "no way", "true"}, `run: --namespace "no way": want letters`},
		{[]string{"run", "--scope", "wide", "true"}, `run: --scope "wide": want global, local or both`},
		{[]string{"run", "--wildcard", "both", "true"}, `run: --wildcard "both": want userstack or kernel`},
		{[]string{"run", "--procname", "nginx,,sshd", "true"}, `run: --procname "nginx,,sshd": want comma-separated`},
		{[]string{"run", "--procname", "a-name-longer-than-comm", "true"}, "run: --procname"},
		{[]string{"run", "--iface", "a/b", "true"}, "run: --iface: interface name"},
		{[]string{"--run-dir", t.TempDir(), "run", "true"}, "run: no daemon attached (start `xdpstack attach IFACE` first"},
		{[]string{"--run-dir", t.TempDir(), "run", "--iface", "xs0", "true"}, "run: xdpstack is not running on xs0"},
	} {
		t.Run(strings.Join(tc.args, " "), func(t *testing.T) {
			code, stdout, stderr := runEnv(t, []string{"XDPSTACK_SECRET="}, tc.args...)
			if code == 0 || stdout != "" || !strings.Contains(stderr, tc.want) || strings.Count(stderr, "\n") != 1 {
				t.Errorf("exit %d, stdout %q, stderr %q; want one line with %q", code, stdout, stderr, tc.want)
			}
		})
	}
}

func TestAttachedIface(t *testing.T) {
	dir := t.TempDir()
	if _, err := attachedIface(dir); err == nil || !strings.Contains(err.Error(), "no daemon attached") {
		t.Errorf("no socket: %v", err)
	}
	touch(t, filepath.Join(dir, "eth0.sock"))
	touch(t, filepath.Join(dir, "eth0.sock.lock"))
	touch(t, filepath.Join(dir, "eth0.preload"))
	if iface, err := attachedIface(dir); iface != "eth0" || err != nil {
		t.Errorf("one socket: %q, %v", iface, err)
	}
	touch(t, filepath.Join(dir, "eth1.sock"))
	if _, err := attachedIface(dir); err == nil || err.Error() != "run: daemons attached to eth0, eth1: choose one with --iface" {
		t.Errorf("two sockets: %v", err)
	}
}

func touch(t *testing.T, path string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, nil, 0o644); err != nil {
		t.Fatal(err)
	}
}

// TestFindLib: beside the binary first, then in ../lib/xdpstack/ as
// make install places it; --lib alone when given.
func TestFindLib(t *testing.T) {
	root := t.TempDir()
	exe := filepath.Join(root, "bin", "xdpstack")
	touch(t, exe)
	installed := filepath.Join(root, "lib", "xdpstack", libName)
	beside := filepath.Join(root, "bin", libName)
	if _, err := findLib("", exe); err == nil || !strings.Contains(err.Error(), "tried "+beside+", "+filepath.Join(root, "bin", "..", "lib", "xdpstack", libName)) {
		t.Errorf("none: %v", err)
	}
	touch(t, installed)
	if got, err := findLib("", exe); got != installed || err != nil {
		t.Errorf("installed: %q, %v", got, err)
	}
	touch(t, beside)
	if got, err := findLib("", exe); got != beside || err != nil {
		t.Errorf("beside: %q, %v", got, err)
	}
	if _, err := findLib(filepath.Join(root, "nosuch.so"), exe); err == nil || !strings.Contains(err.Error(), "check --lib") {
		t.Errorf("--lib missing: %v", err)
	}
	// A symlinked binary finds the library beside the real one.
	link := filepath.Join(t.TempDir(), "xdpstack")
	if err := os.Symlink(exe, link); err != nil {
		t.Fatal(err)
	}
	if got, err := findLib("", link); got != beside || err != nil {
		t.Errorf("symlinked: %q, %v", got, err)
	}
}

func TestPreloadEnv(t *testing.T) {
	s := runSettings{lib: "/x/libxdpstack.so", socket: "/run/xdpstack/eth0.preload", iface: "eth0", scope: "global", wildcard: "userstack"}
	for _, tc := range []struct {
		name string
		in   []string
		s    func(*runSettings)
		want []string
	}{
		{"plain", []string{"PATH=/bin"}, nil, []string{"PATH=/bin", "LD_PRELOAD=/x/libxdpstack.so",
			"XDPSTACK_SOCKET=/run/xdpstack/eth0.preload", "XDPSTACK_IFACE=eth0", "XDPSTACK_SCOPE=global", "XDPSTACK_WILDCARD=userstack"}},
		{"every setting", nil, func(s *runSettings) {
			s.namespace, s.secret, s.scope, s.procNames, s.debug, s.wildcard = "web", "s3", "both", []string{"nginx", "sshd"}, true, "kernel"
		}, []string{"LD_PRELOAD=/x/libxdpstack.so", "XDPSTACK_SOCKET=/run/xdpstack/eth0.preload", "XDPSTACK_IFACE=eth0",
			"XDPSTACK_NAMESPACE=web", "XDPSTACK_SECRET=s3", "XDPSTACK_SCOPE=both", "XDPSTACK_PROCNAMES=nginx,sshd", "XDPSTACK_DEBUG=1", "XDPSTACK_WILDCARD=kernel"}},
		{"preloads kept after ours, ours once", []string{"LD_PRELOAD=/a.so /x/libxdpstack.so:/b.so"}, nil, []string{"LD_PRELOAD=/x/libxdpstack.so:/a.so:/b.so",
			"XDPSTACK_SOCKET=/run/xdpstack/eth0.preload", "XDPSTACK_IFACE=eth0", "XDPSTACK_SCOPE=global", "XDPSTACK_WILDCARD=userstack"}},
		{"inherited settings replaced or dropped", []string{"XDPSTACK_NAMESPACE=old", "XDPSTACK_DEBUG=1", "XDPSTACK_PIN_ROOT=/p"}, nil, []string{"XDPSTACK_PIN_ROOT=/p", "LD_PRELOAD=/x/libxdpstack.so",
			"XDPSTACK_SOCKET=/run/xdpstack/eth0.preload", "XDPSTACK_IFACE=eth0", "XDPSTACK_SCOPE=global", "XDPSTACK_WILDCARD=userstack"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := s
			if tc.s != nil {
				tc.s(&s)
			}
			if got := preloadEnv(tc.in, s); !slices.Equal(got, tc.want) {
				t.Errorf("preloadEnv(%q):\n got %q\nwant %q", tc.in, got, tc.want)
			}
		})
	}
}

// TestRunExecs: with a daemon answering on the control socket, run
// becomes the program (same pid), with the library preloaded and the
// settings in its environment.
func TestRunExecs(t *testing.T) {
	cc, err := exec.LookPath("cc")
	if err != nil {
		t.Skipf("no C compiler to build a library to preload: %v", err)
	}
	dir := t.TempDir()
	lib := filepath.Join(dir, "lib.so")
	src := filepath.Join(dir, "lib.c")
	os.WriteFile(src, []byte("int xdpstack_test_lib;\n"), 0o644)
	if out, err := exec.Command(cc, "-shared", "-fPIC", "-o", lib, src).CombinedOutput(); err != nil {
		t.Fatalf("cc: %v\n%s", err, out)
	}
	srv, err := control.Listen("xsrun0", control.Options{Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	control.Register(srv, daemon.StatusEndpoint, func(context.Context, control.None) (daemon.Status, error) {
		return daemon.Status{Iface: "xsrun0"}, nil
	})
	srv.Serve()
	defer srv.Close()
	code, _, stderr := run(t, "--run-dir", dir, "run", "--lib", lib, "true")
	if code == 0 || !strings.Contains(stderr, "serves no preloaded programs") {
		t.Errorf("without a preload socket: exit %d, %q", code, stderr)
	}
	touch(t, preload.SocketPath(dir, "xsrun0"))
	cmd := exec.Command(xdpstack, "--run-dir", dir, "run", "--lib", lib, "--namespace", "web", "--secret", "s", "--debug",
		"sh", "-c", `echo $$; echo "$LD_PRELOAD"; env | grep ^XDPSTACK_ | sort`)
	cmd.Env = append(os.Environ(), "LD_PRELOAD=")
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("run: %v\n%s", err, out)
	}
	lines := strings.Split(strings.TrimSpace(string(out)), "\n")
	if pid, _ := strconv.Atoi(lines[0]); pid != cmd.Process.Pid {
		t.Errorf("the program's pid %s, run's %d", lines[0], cmd.Process.Pid)
	}
	want := []string{lib, "XDPSTACK_DEBUG=1", "XDPSTACK_IFACE=xsrun0", "XDPSTACK_NAMESPACE=web", "XDPSTACK_SCOPE=global",
		"XDPSTACK_SECRET=s", "XDPSTACK_SOCKET=" + preload.SocketPath(dir, "xsrun0"), "XDPSTACK_WILDCARD=userstack"}
	if !slices.Equal(lines[1:], want) {
		t.Errorf("the program's environment:\n got %q\nwant %q", lines[1:], want)
	}
}
