package gateway

import (
	"context"
	"encoding/json"
	"fmt"
	"net/netip"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/xdpstack/xdpstack/internal/testing/testutil"
	"github.com/xdpstack/xdpstack/userstack"
	"github.com/xdpstack/xdpstack/userstack/afxdp"
)

// TestThroughput measures iperf3 TCP through the tunnel against the
// bare veth between the same two hosts, 1 and 4 streams, a few seconds
// each. It loads both cores for about a minute: it runs only when
// PSP_GATEWAY_IPERF is set.
func TestThroughput(t *testing.T) {
	if os.Getenv("PSP_GATEWAY_IPERF") == "" {
		t.Skip("a measurement that loads the machine: set PSP_GATEWAY_IPERF=1 to run it")
	}
	a, b := testutil.HostPair(t, queues())
	for _, h := range []*testutil.Host{a, b} {
		h.Exec(t, "sysctl", "-qw", "net.ipv6.conf.all.disable_ipv6=0")
	}
	av, bv := netip.MustParseAddr("10.77.1.1"), netip.MustParseAddr("10.77.2.1")
	// With the default 4096 frames, the receiver's fill ring ran dry
	// (1% of the packets lost, rx_fill_ring_empty_descs) whenever the
	// loaded machine kept its receive loop waiting; with 16384 none was.
	opts := userstack.Options{AFXDP: afxdp.Options{Frames: 16384}}
	sa := start(t, a, opts, a.Addr, av, netip.MustParseAddr("fd77:1::1"), []netip.Prefix{netip.MustParsePrefix("10.77.2.0/24")})
	sb := start(t, b, opts, b.Addr, bv, netip.MustParseAddr("fd77:2::1"), []netip.Prefix{netip.MustParsePrefix("10.77.1.0/24")})
	amac, err := a.MAC()
	if err != nil {
		t.Fatal(err)
	}
	bmac, err := b.MAC()
	if err != nil {
		t.Fatal(err)
	}
	connect(t, sa, sb, av, bv, bmac)
	connect(t, sb, sa, bv, av, amac)
	if path := os.Getenv("PSP_GATEWAY_CPUPROFILE"); path != "" {
		stop := cpuProfile(t, path)
		defer stop()
	}
	// Rounds alternate between the tunnel and the bare veth (kernel
	// TCP between the hosts' own addresses, which the XDP program
	// passes), so that both see the same load from the rest of the
	// machine.
	for round := range 2 {
		for _, streams := range []int{1, 4} {
			bare := iperf(t, a, b, b.Addr, streams, "3")
			psp := iperf(t, a, b, bv, streams, "3")
			t.Logf("round %d, %d stream(s): psp tunnel %.2f Gbit/s, bare veth %.2f Gbit/s (%.2fx)", round, streams, psp/1e9, bare/1e9, psp/bare)
		}
	}
	// What the TUN devices took and gave, against the packets on the
	// wire: their GRO and TSO at work.
	for _, h := range []*testutil.Host{a, b} {
		t.Logf("%s: %s", h.Netns, h.Exec(t, "ip", "-s", "-o", "link", "show", DefaultTUN))
	}
	for _, s := range []*side{sa, sb} {
		t.Logf("%s: %+v", s.host.Netns, s.gw.Stats())
		for _, sock := range s.stack.Sockets() {
			st, _ := sock.Stats()
			t.Logf("%s queue %d: %+v", s.host.Netns, sock.Queue, st)
		}
	}
}

// queues is PSP_GATEWAY_QUEUES, or 1.
func queues() int {
	n, err := strconv.Atoi(os.Getenv("PSP_GATEWAY_QUEUES"))
	if err != nil || n < 1 {
		return 1
	}
	return n
}

// iperf runs an iperf3 server on b at addr and a client on a for the
// given seconds and streams, and returns the bits per second received.
func iperf(t *testing.T, a, b *testutil.Host, addr netip.Addr, streams int, seconds string) float64 {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	srv := b.Command(ctx, "iperf3", "-s", "-1", "-B", addr.String(), "-p", "5201")
	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	defer srv.Wait()
	for range 100 { // until the server listens
		out, err := a.Command(ctx, "iperf3", "-c", addr.String(), "-p", "5201", "-t", seconds, "-P", fmt.Sprint(streams), "-J").Output()
		var res struct {
			Error string `json:"error"`
			End   struct {
				SumReceived struct {
					BitsPerSecond float64 `json:"bits_per_second"`
				} `json:"sum_received"`
			} `json:"end"`
		}
		if jerr := json.Unmarshal(out, &res); jerr != nil {
			t.Fatalf("iperf3 to %s: %v, %v", addr, err, jerr)
		}
		switch {
		case strings.Contains(res.Error, "unable to connect"):
			time.Sleep(100 * time.Millisecond)
		case res.Error != "" || err != nil:
			t.Fatalf("iperf3 to %s: %v %s", addr, err, res.Error)
		default:
			return res.End.SumReceived.BitsPerSecond
		}
	}
	t.Fatalf("iperf3 to %s: the server never listened", addr)
	return 0
}
