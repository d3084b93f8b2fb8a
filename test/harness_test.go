// Package test runs the real xdpstack binary on hosts built out of
// network namespaces and talks to it with real peers.
package test

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/xdpstack/xdpstack/internal/testing/testutil"
)

// binary is the xdpstack built once for all tests.
var binary string

// runDir holds the control sockets of the daemons the tests start,
// apart from those of other test runs (XDPSTACK_RUN_DIR, which every
// command the tests run inherits).
var runDir string

func TestMain(m *testing.M) {
	path, remove, err := testutil.BuildBinary("../cmd/xdpstack")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	binary = path
	if runDir, err = os.MkdirTemp("", "xdpstack-test-run"); err == nil {
		err = os.Chmod(runDir, 0o755) // as /run/xdpstack, for the tests of --control-group
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	os.Setenv("XDPSTACK_RUN_DIR", runDir)
	code := m.Run()
	remove()
	os.RemoveAll(runDir)
	os.Exit(code)
}

// readyInfo is what `attach --ready-file` writes.
type readyInfo struct {
	PID         int    `json:"pid"`
	Iface       string `json:"iface"`
	Mode        string `json:"mode"`
	ProgramID   uint32 `json:"program_id"`
	MetricsAddr string `json:"metrics_addr"`
	Queues      int    `json:"queues"`
	AFXDPMode   string `json:"afxdp_mode"`
}

// daemon is a running `xdpstack attach`.
type daemon struct {
	cmd       *exec.Cmd
	ready     readyInfo
	readyFile string
	output    *testutil.SyncBuffer
	exited    chan error
}

// startDaemon runs `xdpstack attach` on the host's interface and waits
// for its ready file. The process is stopped when the test ends.
func startDaemon(t *testing.T, h *testutil.Host, pinRoot string, args ...string) *daemon {
	t.Helper()
	return startDaemonWith(t, func(args ...string) *exec.Cmd { return h.Command(context.Background(), binary, args...) }, h, pinRoot, args...)
}

// startDaemonWith is startDaemon with the binary run by command, which
// gets the arguments.
func startDaemonWith(t *testing.T, command func(args ...string) *exec.Cmd, h *testutil.Host, pinRoot string, args ...string) *daemon {
	t.Helper()
	readyFile := filepath.Join(t.TempDir(), "ready")
	args = append([]string{"--pin-root", pinRoot, "attach", h.Iface, "--ready-file", readyFile}, args...)
	d := &daemon{cmd: command(args...), readyFile: readyFile, output: &testutil.SyncBuffer{}, exited: make(chan error, 1)}
	d.cmd.Stdout, d.cmd.Stderr = d.output, d.output
	if err := d.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { d.exited <- d.cmd.Wait() }()
	t.Cleanup(func() { d.stop(t) })

	deadline := time.Now().Add(20 * time.Second)
	for {
		b, err := os.ReadFile(readyFile)
		if err == nil {
			if err := json.Unmarshal(b, &d.ready); err != nil {
				t.Fatalf("ready file %q: %v", b, err)
			}
			return d
		}
		select {
		case err := <-d.exited:
			d.exited <- err
			t.Fatalf("xdpstack attach exited before ready: %v\n%s", err, d.output)
		case <-time.After(20 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatalf("xdpstack attach not ready after 20s:\n%s", d.output)
		}
	}
}

// signal sends sig and waits for the process to exit.
func (d *daemon) signal(t *testing.T, sig syscall.Signal) error {
	t.Helper()
	// nsenter execs xdpstack in its own process, so the pid is xdpstack's.
	d.cmd.Process.Signal(sig)
	select {
	case err := <-d.exited:
		d.exited <- err
		return err
	case <-time.After(15 * time.Second):
		t.Fatalf("xdpstack did not exit within 15s of %v:\n%s", sig, d.output)
		return nil
	}
}

func (d *daemon) stop(t *testing.T) {
	select {
	case err := <-d.exited:
		d.exited <- err
		return
	default:
	}
	d.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-d.exited:
	case <-time.After(10 * time.Second):
		d.cmd.Process.Kill()
		<-d.exited
	}
}

// xdpstack runs a one-shot command of the binary in the root namespace.
func xdpstack(t *testing.T, pinRoot string, args ...string) (string, error) {
	t.Helper()
	out, err := exec.Command(binary, append([]string{"--pin-root", pinRoot}, args...)...).CombinedOutput()
	return strings.TrimSpace(string(out)), err
}

// mustXdpstack is xdpstack that fails the test on error.
func mustXdpstack(t *testing.T, pinRoot string, args ...string) string {
	t.Helper()
	out, err := xdpstack(t, pinRoot, args...)
	if err != nil {
		t.Fatalf("xdpstack %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return out
}
