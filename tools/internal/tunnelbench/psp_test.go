package tunnelbench

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/vishvananda/netlink"

	"github.com/xdpstack/xdpstack/internal/testing/hosts"
	"github.com/xdpstack/xdpstack/internal/testing/testutil"
)

// buildXdpstack builds the binary the PSP tunnel runs.
func buildXdpstack(t *testing.T) string {
	t.Helper()
	path, remove, err := testutil.BuildBinary("../../../cmd/xdpstack")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(remove)
	return path
}

// TestPSPCarriesEveryByte brings the PSP gateway up between two hosts,
// sends a TCP transfer through psp0 and checks every byte, then takes
// it down and checks that nothing was left: no process, no psp0, no XDP
// program on the veth, no pins, no file.
func TestPSPCarriesEveryByte(t *testing.T) {
	requireTunnelHosts(t)
	testutil.RequireBPF(t)
	binary := buildXdpstack(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	tmp := t.TempDir()
	pair, addrA, addrB, downOnce := upOnPair(ctx, t, PSP{Binary: binary, TempDir: tmp})
	if keys, _ := filepath.Glob(filepath.Join(tmp, "*", "certs", "*.key")); len(keys) != 0 {
		t.Errorf("keys left on disk once the daemons run: %v", keys)
	}

	const size = 32 << 20
	if err := transfer(ctx, pair, addrA, addrB, size); err != nil {
		t.Fatal(err)
	}
	// Through the tunnel, not beside it.
	if got := linkStats(t, pair.A, "psp0").RxBytes; got < size {
		t.Errorf("psp0 of host A received %d bytes, want the transfer's %d at least", got, size)
	}

	if err := downOnce(); err != nil {
		t.Fatalf("down: %v", err)
	}
	for _, h := range []*hosts.Host{pair.A, pair.B} {
		if names := linkNames(t, h); strings.Join(names, " ") != "lo "+h.Iface {
			t.Errorf("%s has links %v after down, want lo and %s", h.Netns, names, h.Iface)
		}
		var veth netlink.Link
		if err := h.Run(func() (err error) { veth, err = netlink.LinkByName(h.Iface); return err }); err != nil {
			t.Fatal(err)
		}
		if xdp := veth.Attrs().Xdp; xdp != nil && xdp.Attached {
			t.Errorf("an XDP program is still on %s after down", h.Iface)
		}
		if pins, _ := filepath.Glob("/sys/fs/bpf/xdpstack-bench-*/" + h.Iface); len(pins) != 0 {
			t.Errorf("pins left after down: %v", pins)
		}
	}
	if pids := processesOf(t, binary); len(pids) != 0 {
		t.Errorf("xdpstack still running after down: pids %v", pids)
	}
	if left, _ := os.ReadDir(tmp); len(left) != 0 {
		t.Errorf("files left in the temporary folder after down: %v", left)
	}
}

// TestOnDemandDeliversToEveryAddress makes a tunnel to one address,
// then to each of 20 at once, and wants every datagram delivered, and
// figures that make sense.
func TestOnDemandDeliversToEveryAddress(t *testing.T) {
	requireTunnelHosts(t)
	testutil.RequireBPF(t)
	binary := buildXdpstack(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	r, err := OnDemand(ctx, OnDemandConfig{Binary: binary, Addresses: 20, Rounds: 1})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("%+v", r)
	if r.Lost != 0 || r.First <= 0 || r.PerSecond <= 0 || r.P50 <= 0 || r.P99 < r.P50 {
		t.Errorf("on demand: %+v; want no datagram lost, a first time, a rate, and p50 <= p99", r)
	}
	if pids := processesOf(t, binary); len(pids) != 0 {
		t.Errorf("xdpstack still running after the run: pids %v", pids)
	}
}

func TestOnDemandRefusesBadConfigs(t *testing.T) {
	for _, c := range []struct {
		cfg  OnDemandConfig
		want string
	}{
		{OnDemandConfig{}, "tunnelbench: no xdpstack binary (OnDemandConfig.Binary)"},
		{OnDemandConfig{Binary: "x", Addresses: 254}, "tunnelbench: 254 addresses (want 1 to 253: one /24, with the first)"},
		{OnDemandConfig{Binary: "x", Rounds: -1}, "tunnelbench: -1 rounds (want at least 1)"},
	} {
		if _, err := OnDemand(context.Background(), c.cfg); err == nil || err.Error() != c.want {
			t.Errorf("OnDemand(%+v) = %v, want %q", c.cfg, err, c.want)
		}
	}
}
