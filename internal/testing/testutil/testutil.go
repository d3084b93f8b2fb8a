// Package testutil gates privileged tests and builds the network
// namespaces they run in. A missing privilege or kernel feature skips a
// test with the reason; anything else that goes wrong fails it.
package testutil

import (
	"bytes"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/features"
)

// RequireBPF skips the test unless it runs as root on a kernel that can
// load XDP programs.
func RequireBPF(tb testing.TB) {
	tb.Helper()
	if os.Geteuid() != 0 {
		tb.Skip("needs root to load BPF programs")
	}
	if err := features.HaveProgramType(ebpf.XDP); err != nil {
		if errors.Is(err, ebpf.ErrNotSupported) {
			tb.Skipf("kernel cannot load XDP programs: %v", err)
		}
		tb.Fatalf("probe XDP support: %v", err)
	}
}

// BuildBinary builds the command in package folder pkg for a TestMain,
// into a temporary folder; remove deletes it.
func BuildBinary(pkg string) (path string, remove func(), err error) {
	dir, err := os.MkdirTemp("", "xdpstack-test-bin")
	if err != nil {
		return "", nil, err
	}
	remove = func() { os.RemoveAll(dir) }
	path = filepath.Join(dir, "xdpstack")
	if out, err := exec.Command("go", "build", "-o", path, pkg).CombinedOutput(); err != nil {
		remove()
		return "", nil, fmt.Errorf("go build %s: %v\n%s", pkg, err, out)
	}
	return path, remove, nil
}

// Serve accepts on ln until ln is closed, and serves each connection
// with handle on a goroutine of its own, closing it after.
func Serve(ln net.Listener, handle func(net.Conn)) {
	for {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		go func() {
			defer c.Close()
			handle(c)
		}()
	}
}

// Echo serves echo on ln until ln is closed: each connection gets back
// what it sends, and a half-close of the peer is passed back.
func Echo(ln net.Listener) {
	Serve(ln, func(c net.Conn) {
		if _, err := io.Copy(c, c); err == nil {
			if cw, ok := c.(interface{ CloseWrite() error }); ok {
				cw.CloseWrite()
			}
		}
	})
}

// RoundTrip sends n random bytes on c, which must echo them, and checks
// that the same bytes come back within 10 seconds.
func RoundTrip(c net.Conn, n int) error {
	c.SetDeadline(time.Now().Add(10 * time.Second))
	want := make([]byte, n)
	rand.Read(want)
	errc := make(chan error, 1)
	go func() {
		_, err := c.Write(want)
		errc <- err
	}()
	got := make([]byte, n)
	if _, err := io.ReadFull(c, got); err != nil {
		return fmt.Errorf("read echo: %w", err)
	}
	if err := <-errc; err != nil {
		return err
	}
	if !bytes.Equal(got, want) {
		return fmt.Errorf("echo of %d bytes differs from what was sent", n)
	}
	return nil
}
