package tunnelbench

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"github.com/xdpstack/xdpstack/internal/testing/hosts"
)

// requireTunnelHosts skips where namespaces, TUN devices or the tools
// the tunnels need are missing.
func requireTunnelHosts(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root for network namespaces and TUN devices")
	}
	if _, err := os.Stat("/dev/net/tun"); err != nil {
		t.Skipf("no TUN devices here: %v", err)
	}
	for _, tool := range []string{"ip", "nsenter", "wg", "go"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("needs %s (make deps installs the packages)", tool)
		}
	}
}

// TestWireGuardGoCarriesEveryByte brings wireguard-go up between two
// hosts, sends a TCP transfer through it and checks every byte, then
// takes it down and checks that nothing was left: no process, no
// interface, no control socket, no key, and no namespace once the pair
// is closed.
func TestWireGuardGoCarriesEveryByte(t *testing.T) {
	requireTunnelHosts(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	binary, err := BuildWireGuardGo(ctx, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	tmp := t.TempDir()
	pair, addrA, addrB, downOnce := upOnPair(ctx, t, WireGuardGo{Binary: binary, TempDir: tmp})

	tunA := tunLink(t, pair.A)
	tunB := tunLink(t, pair.B)
	// The baseline is wireguard-go as it runs best: with TUN offloads.
	out, err := pair.A.Command(ctx, "ethtool", "-k", tunA.Attrs().Name).CombinedOutput()
	if err != nil {
		t.Fatalf("ethtool -k %s: %v: %s", tunA.Attrs().Name, err, out)
	}
	if !bytes.Contains(out, []byte("tcp-segmentation-offload: on")) {
		t.Errorf("wireguard-go's TUN device has TSO off:\n%s", out)
	}
	if keys, _ := filepath.Glob(filepath.Join(tmp, "*", "*.key")); len(keys) != 0 {
		t.Errorf("keys left on disk once configured: %v", keys)
	}

	const size = 32 << 20
	if err := transfer(ctx, pair, addrA, addrB, size); err != nil {
		t.Fatal(err)
	}
	// Through the tunnel, not beside it.
	if got := linkStats(t, pair.A, tunA.Attrs().Name).RxBytes; got < size {
		t.Errorf("%s received %d bytes, want the transfer's %d at least", tunA.Attrs().Name, got, size)
	}

	if err := downOnce(); err != nil {
		t.Fatalf("down: %v", err)
	}
	for _, h := range []*hosts.Host{pair.A, pair.B} {
		if names := linkNames(t, h); strings.Join(names, " ") != "lo "+h.Iface {
			t.Errorf("%s has links %v after down, want lo and %s", h.Netns, names, h.Iface)
		}
	}
	for _, tun := range []netlink.Link{tunA, tunB} {
		if _, err := os.Stat(filepath.Join(wgSocketDir, tun.Attrs().Name+".sock")); err == nil {
			t.Errorf("control socket of %s left after down", tun.Attrs().Name)
		}
	}
	if pids := processesOf(t, binary); len(pids) != 0 {
		t.Errorf("wireguard-go still running after down: pids %v", pids)
	}
	if left, _ := os.ReadDir(tmp); len(left) != 0 {
		t.Errorf("files left in the temporary folder after down: %v", left)
	}
	if err := pair.Close(); err != nil {
		t.Fatal(err)
	}
	out, err = exec.Command("ip", "netns", "list").Output()
	if err != nil {
		t.Fatal(err)
	}
	for _, h := range []*hosts.Host{pair.A, pair.B} {
		if bytes.Contains(out, []byte(h.Netns)) {
			t.Errorf("namespace %s left after close", h.Netns)
		}
	}
}

// transfer sends size bytes of a seeded stream from B to a listener on
// A, tunnel address to tunnel address, and checks each byte received
// against the same stream.
func transfer(ctx context.Context, pair *hosts.Pair, addrA, addrB netip.Addr, size int) error {
	ln, err := pair.A.Listen("tcp", netip.AddrPortFrom(addrA, 0).String())
	if err != nil {
		return err
	}
	defer ln.Close()
	seed := [32]byte{1, 2, 3}
	checked := make(chan error, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			checked <- err
			return
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(30 * time.Second))
		checked <- check(c, rand.NewChaCha8(seed), size)
	}()
	d := net.Dialer{LocalAddr: net.TCPAddrFromAddrPort(netip.AddrPortFrom(addrB, 0))}
	var c net.Conn
	err = pair.B.Run(func() (err error) {
		c, err = d.DialContext(ctx, "tcp", ln.Addr().String())
		return err
	})
	if err != nil {
		return err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(30 * time.Second))
	if _, err := io.CopyN(c, rand.NewChaCha8(seed), int64(size)); err != nil {
		return fmt.Errorf("send: %w", err)
	}
	c.(*net.TCPConn).CloseWrite()
	return <-checked
}

// check reads size bytes from r, compares each with want's, and wants
// the end of the stream after them.
func check(r io.Reader, want io.Reader, size int) error {
	got, exp := make([]byte, 64<<10), make([]byte, 64<<10)
	for off := 0; off < size; {
		n, err := r.Read(got[:min(len(got), size-off)])
		want.Read(exp[:n]) // a ChaCha8 fills all it is given
		if !bytes.Equal(got[:n], exp[:n]) {
			return fmt.Errorf("bytes %d to %d differ from what was sent", off, off+n)
		}
		off += n
		if err != nil {
			return fmt.Errorf("received %d of %d bytes: %w", off, size, err)
		}
	}
	if n, _ := r.Read(got); n != 0 {
		return fmt.Errorf("received more than the %d bytes sent", size)
	}
	return nil
}

// upOnPair brings tun up between two new hosts, which go when the test
// ends; so does the tunnel, unless the test took it down with downOnce.
func upOnPair(ctx context.Context, t *testing.T, tun Tunnel) (pair *hosts.Pair, addrA, addrB netip.Addr, downOnce func() error) {
	t.Helper()
	pair, err := hosts.NewPair(0)
	if err != nil {
		t.Fatalf("build hosts: %v", err)
	}
	t.Cleanup(func() { pair.Close() })
	addrA, addrB, down, err := tun.Up(ctx, pair.A, pair.B)
	if err != nil {
		t.Fatal(err)
	}
	downOnce = onlyOnce(down)
	t.Cleanup(func() { downOnce() })
	return pair, addrA, addrB, downOnce
}

func onlyOnce(f func() error) func() error {
	done := false
	return func() error {
		if done {
			return nil
		}
		done = true
		return f()
	}
}

// tunLink is the host's one TUN device.
func tunLink(t *testing.T, h *hosts.Host) netlink.Link {
	t.Helper()
	var tun netlink.Link
	err := h.Run(func() error {
		links, err := netlink.LinkList()
		for _, l := range links {
			if l.Type() == "tuntap" {
				tun = l
			}
		}
		return err
	})
	if err != nil || tun == nil {
		t.Fatalf("no TUN device in %s (err %v)", h.Netns, err)
	}
	return tun
}

func linkStats(t *testing.T, h *hosts.Host, name string) *netlink.LinkStatistics {
	t.Helper()
	var l netlink.Link
	err := h.Run(func() (err error) {
		l, err = netlink.LinkByName(name)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return l.Attrs().Statistics
}

func linkNames(t *testing.T, h *hosts.Host) []string {
	t.Helper()
	var names []string
	err := h.Run(func() error {
		links, err := netlink.LinkList()
		for _, l := range links {
			names = append(names, l.Attrs().Name)
		}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return names
}

// processesOf lists the processes running binary.
func processesOf(t *testing.T, binary string) []string {
	t.Helper()
	exes, err := filepath.Glob("/proc/[0-9]*/exe")
	if err != nil {
		t.Fatal(err)
	}
	var pids []string
	for _, exe := range exes {
		if target, err := os.Readlink(exe); err == nil && target == binary {
			pids = append(pids, filepath.Base(filepath.Dir(exe)))
		}
	}
	return pids
}

func TestConfigRefusesWhatIperf3CannotRun(t *testing.T) {
	for _, c := range []struct {
		cfg  Config
		want string
	}{
		{Config{}, "tunnelbench: no tunnels to measure (Config.Tunnels)"},
		{Config{Tunnels: []Tunnel{Bare{}, Bare{}}}, `tunnelbench: two tunnels named "bare veth" (each is a column of its own)`},
		{Config{Tunnels: []Tunnel{Bare{}}, Time: 1500 * time.Millisecond}, "tunnelbench: run time 1.5s (iperf3 takes whole seconds, at least 1)"},
		{Config{Tunnels: []Tunnel{Bare{}}, Time: -time.Second}, "tunnelbench: run time -1s (iperf3 takes whole seconds, at least 1)"},
	} {
		if _, err := Run(context.Background(), c.cfg); err == nil || err.Error() != c.want {
			t.Errorf("Run(%+v) = %v, want %q", c.cfg, err, c.want)
		}
	}
}

func TestMarkdownHasAColumnPerTunnel(t *testing.T) {
	r := &Report{Tunnels: []string{"bare veth", "wireguard-go"}, Streams: []int{1, 4}, Time: 3 * time.Second, rounds: map[figure][]float64{
		{"bare veth", 1}: {10e9, 9e9, 11e9}, {"bare veth", 4}: {12e9, 12e9, 12e9}, {"wireguard-go", 1}: {1e9, 0.9e9, 2.2e9}, {"wireguard-go", 4}: {1.5e9, 1.5e9, 1.5e9},
	}}
	want := `| TCP throughput, iperf3 3s (Gbit/s) | bare veth | wireguard-go |
|---|---:|---:|
| 1 stream | 10.00 | 1.00 |
| 4 streams | 12.00 | 1.50 |
`
	if got := r.Markdown(); got != want {
		t.Errorf("Markdown:\n%s\nwant:\n%s", got, want)
	}
	if v, ok := r.Gbps("wireguard-go", 4); !ok || v != 1.5 {
		t.Errorf("Gbps(wireguard-go, 4) = %v, %v; want 1.5, true", v, ok)
	}
	if _, ok := r.Gbps("PSP", 1); ok {
		t.Error("Gbps of a tunnel not measured says it was")
	}
	// Rounds' ratios 0.1, 0.1, 0.2: their median, not 1.0/10.0.
	if v, ok := r.Ratio("wireguard-go", "bare veth", 1); !ok || v != 0.1 {
		t.Errorf("Ratio(wireguard-go, bare veth, 1) = %v, %v; want 0.1, true", v, ok)
	}
}

func TestReceivedRefusesARunThatGotNothing(t *testing.T) {
	if bps, err := received([]byte(`{"end": {"sum_received": {"bits_per_second": 2.5e9}}}`)); err != nil || bps != 2.5e9 {
		t.Errorf("received of 2.5 Gbit/s = %v, %v", bps, err)
	}
	for _, out := range []string{`{"end": {"sum_received": {"bits_per_second": 0}}}`, `{"end": {}}`, `not json`} {
		if bps, err := received([]byte(out)); err == nil {
			t.Errorf("received(%s) = %v, want an error", out, bps)
		}
	}
}
