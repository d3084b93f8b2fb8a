package testutil

import (
	"crypto/rand"
	"encoding/hex"
	"os"
	"path/filepath"
	"testing"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// UniqueName returns prefix followed by random hex, short enough for an
// interface name.
func UniqueName(prefix string) string {
	b := make([]byte, 4)
	rand.Read(b)
	return prefix + hex.EncodeToString(b)
}

// Veth creates a veth pair, both ends up and without addresses, in the
// current network namespace; the pair is deleted when the test ends.
func Veth(tb testing.TB) (string, string) {
	tb.Helper()
	RequireBPF(tb)
	a, b := UniqueName("xsa"), UniqueName("xsb")
	veth := &netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: a}, PeerName: b}
	if err := netlink.LinkAdd(veth); err != nil {
		tb.Fatalf("create veth %s/%s: %v", a, b, err)
	}
	tb.Cleanup(func() {
		if l, err := netlink.LinkByName(a); err == nil {
			netlink.LinkDel(l)
		}
	})
	for _, name := range []string{a, b} {
		l, err := netlink.LinkByName(name)
		if err != nil {
			tb.Fatal(err)
		}
		if err := netlink.LinkSetUp(l); err != nil {
			tb.Fatalf("set %s up: %v", name, err)
		}
	}
	return a, b
}

// PinRoot returns a fresh folder on the BPF filesystem for a test's
// pins, removed with everything in it when the test ends.
func PinRoot(tb testing.TB) string {
	tb.Helper()
	RequireBPF(tb)
	const bpffs = "/sys/fs/bpf"
	var st unix.Statfs_t
	if err := unix.Statfs(bpffs, &st); err != nil || st.Type != unix.BPF_FS_MAGIC {
		if err := unix.Mount("bpf", bpffs, "bpf", 0, "mode=0700"); err != nil {
			tb.Skipf("no BPF filesystem at %s and cannot mount one: %v", bpffs, err)
		}
	}
	root := filepath.Join(bpffs, UniqueName("xdpstack-test-"))
	tb.Cleanup(func() { os.RemoveAll(root) })
	return root
}

// NoNativeXDP creates an interface whose driver has no native XDP (a
// bridge) in the current network namespace; it is deleted when the test
// ends.
func NoNativeXDP(tb testing.TB) string {
	tb.Helper()
	RequireBPF(tb)
	name := UniqueName("xsbr")
	if err := netlink.LinkAdd(&netlink.Bridge{LinkAttrs: netlink.LinkAttrs{Name: name}}); err != nil {
		tb.Skipf("cannot create a bridge to test generic fallback: %v", err)
	}
	tb.Cleanup(func() {
		if l, err := netlink.LinkByName(name); err == nil {
			netlink.LinkDel(l)
		}
	})
	l, err := netlink.LinkByName(name)
	if err != nil {
		tb.Fatal(err)
	}
	if err := netlink.LinkSetUp(l); err != nil {
		tb.Fatalf("set %s up: %v", name, err)
	}
	return name
}
