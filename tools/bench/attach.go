package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"
	"syscall"
	"time"

	"github.com/cilium/ebpf/link"

	"github.com/xdpstack/xdpstack/bpf"
)

// attach puts setup s on host A's interface and returns what undoes it.
func (b *bench) attach(s setup) (func() error, error) {
	switch s {
	case minimalPass:
		return b.attachPass()
	case xdpstack:
		return b.attachXdpstack()
	}
	return func() error { return nil }, nil
}

func (b *bench) attachPass() (func() error, error) {
	var objs bpf.PassObjects
	if err := bpf.LoadPassObjects(&objs, nil); err != nil {
		return nil, err
	}
	var l link.Link
	err := b.pair.A.Run(func() error {
		ifc, err := b.pair.A.Link()
		if err != nil {
			return err
		}
		l, err = link.AttachXDP(link.XDPOptions{Program: objs.XdpPass, Interface: ifc.Attrs().Index, Flags: link.XDPDriverMode})
		return err
	})
	if err != nil {
		objs.Close()
		return nil, err
	}
	return func() error { l.Close(); return objs.Close() }, nil
}

// attachXdpstack runs the real binary, as an operator would, with pins in
// a folder of its own and the given extra arguments (apps).
func (b *bench) attachXdpstack(extra ...string) (func() error, error) {
	dir, err := os.MkdirTemp("", "xdpstack-bench")
	if err != nil {
		return nil, err
	}
	id := make([]byte, 4)
	rand.Read(id)
	pinRoot := "/sys/fs/bpf/xdpstack-bench-" + hex.EncodeToString(id)
	ready := filepath.Join(dir, "ready")
	args := append([]string{"--pin-root", pinRoot, "attach", b.pair.A.Iface, "--mode", "native", "--metrics-addr", "", "--ready-file", ready}, extra...)
	cmd := b.pair.A.Command(context.Background(), b.binary, args...)
	out, err := os.Create(filepath.Join(dir, "log"))
	if err != nil {
		return nil, err
	}
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	stop := func() error {
		defer os.RemoveAll(dir)
		defer os.RemoveAll(pinRoot)
		cmd.Process.Signal(syscall.SIGTERM)
		return cmd.Wait()
	}
	for deadline := time.Now().Add(20 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		if _, err := os.Stat(ready); err == nil {
			return stop, nil
		}
	}
	stop()
	log, _ := os.ReadFile(filepath.Join(dir, "log"))
	return nil, fmt.Errorf("xdpstack attach not ready after 20s: %s", log)
}
