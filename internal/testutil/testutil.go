// Package testutil gates privileged tests and builds the network
// namespaces they run in. A missing privilege or kernel feature skips a
// test with the reason; anything else that goes wrong fails it.
package testutil

import (
	"errors"
	"os"
	"testing"

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
