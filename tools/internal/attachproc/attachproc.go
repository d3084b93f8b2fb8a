// Package attachproc runs the real xdpstack binary on a test host, as an
// operator would: `attach` with pins in a folder of its own, waited for
// through its ready file. The benchmarks measure the daemon this way, in
// a process of its own, since the userstack sizes the process's
// GOMAXPROCS to its queues and the clients must not share it.
package attachproc

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"
	"syscall"
	"time"

	"github.com/xdpstack/xdpstack/internal/testing/hosts"
)

// NewPinRoot names a pin root of its own on /sys/fs/bpf for a
// benchmark called name, which the caller removes.
func NewPinRoot(name string) string {
	id := make([]byte, 4)
	rand.Read(id)
	return "/sys/fs/bpf/xdpstack-" + name + "-" + hex.EncodeToString(id)
}

// readyWithin bounds the wait for the ready file.
const readyWithin = 20 * time.Second

// Start runs `binary attach IFACE` on h with extra arguments (apps,
// tuning) and returns once it is attached and serving, with what stops
// it (SIGTERM, then the wait) and removes its pins.
func Start(h *hosts.Host, binary string, extra ...string) (stop func() error, err error) {
	stop, _, err = StartPinned(h, binary, extra...)
	return stop, err
}

// StartPinned is Start that also returns the folder of the interface's
// pins, for a caller to put rules in.
func StartPinned(h *hosts.Host, binary string, extra ...string) (stop func() error, pinDir string, err error) {
	pinRoot := NewPinRoot("bench")
	stop, err = start(h, binary, pinRoot, extra...)
	return stop, filepath.Join(pinRoot, h.Iface), err
}

func start(h *hosts.Host, binary, pinRoot string, extra ...string) (stop func() error, err error) {
	dir, err := os.MkdirTemp("", "xdpstack-attach")
	if err != nil {
		return nil, err
	}
	ready := filepath.Join(dir, "ready")
	logPath := filepath.Join(dir, "log")
	args := append([]string{"--pin-root", pinRoot, "attach", h.Iface, "--mode", "native", "--metrics-addr", "", "--ready-file", ready}, extra...)
	cmd := h.Command(context.Background(), binary, args...)
	out, err := os.Create(logPath)
	if err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	defer out.Close()
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	stop = func() error {
		defer os.RemoveAll(dir)
		defer os.RemoveAll(pinRoot)
		cmd.Process.Signal(syscall.SIGTERM)
		if err := cmd.Wait(); err != nil {
			log, _ := os.ReadFile(logPath)
			return fmt.Errorf("xdpstack attach: %w: %s", err, log)
		}
		return nil
	}
	for deadline := time.Now().Add(readyWithin); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		if _, err := os.Stat(ready); err == nil {
			return stop, nil
		}
	}
	log, _ := os.ReadFile(logPath)
	stop()
	return nil, fmt.Errorf("xdpstack attach not ready after %v: %s", readyWithin, log)
}
