package test

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"net/netip"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/xdpstack/xdpstack/internal/testing/hosts"
	"github.com/xdpstack/xdpstack/internal/testing/testutil"
)

// memory reads a process's resident set now and at its peak, in bytes
// (VmRSS and VmHWM of /proc/PID/status).
func memory(t *testing.T, pid int) (rss, peak int64) {
	t.Helper()
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	for s := bufio.NewScanner(f); s.Scan(); {
		var kb int64
		if v, ok := strings.CutPrefix(s.Text(), "VmRSS:"); ok {
			fmt.Sscan(v, &kb)
			rss = kb << 10
		} else if v, ok := strings.CutPrefix(s.Text(), "VmHWM:"); ok {
			fmt.Sscan(v, &kb)
			peak = kb << 10
		}
	}
	return rss, peak
}

// synFloodPeakRSS bounds the daemon's resident set under the flood: it
// starts at about 38 MiB (16 MiB of it the UMEM), SYN cookies keep no
// state, and the SYNs waiting for the listener are bounded (a few MiB);
// the Go heap may double between collections. Unbounded, the waiting
// SYNs took it past 230 MiB here, and to 1.1 GB on a faster machine.
const synFloodPeakRSS = 128 << 20

// TestSYNFlood floods a userstack listener with SYNs from hping3 for
// ten seconds while the same peer opens 200 legitimate connections to
// it, spread over the flood, each given the 1 s before the kernel would
// send its SYN again. At least 95% must get through, the first after
// the flood must too, and the daemon's memory must stay bounded.
func TestSYNFlood(t *testing.T) {
	needTools(t, "hping3")
	const (
		floodFor = 10 * time.Second
		connects = 200
		timeout  = time.Second
	)
	a, b := testutil.HostPair(t, 0)
	root := testutil.PinRoot(t)
	d := startDaemon(t, a, root, "--metrics-addr", "127.0.0.1:0", "--app", "echo=tcp://:7")
	t.Cleanup(func() {
		if !t.Failed() {
			return
		}
		for _, l := range strings.Split(a.Exec(t, "curl", "-sf", "http://"+d.ready.MetricsAddr+"/metrics"), "\n") {
			if strings.HasPrefix(l, "xdpstack_") && !strings.Contains(l, "_bucket") && !strings.HasSuffix(l, " 0") {
				t.Log(l)
			}
		}
		t.Logf("daemon output:\n%s", d.output)
	})
	rssBefore, _ := memory(t, d.ready.PID)
	target := netip.AddrPortFrom(a.Addr, 7)
	fds, err := b.TCPSockets(connects, target)
	if err != nil {
		t.Fatal(err)
	}

	flood := b.Command(context.Background(), "hping3", "-q", "-S", "--flood", "-p", "7", a.Addr.String())
	if err := flood.Start(); err != nil {
		t.Fatal(err)
	}
	// nsenter execs hping3 in its own process: the pid is hping3's.
	stopFlood := sync.OnceFunc(func() { flood.Process.Kill(); flood.Wait() })
	t.Cleanup(stopFlood)
	started := time.Now()
	var ok atomic.Int64
	var wg sync.WaitGroup
	for i, fd := range fds {
		wg.Go(func() {
			time.Sleep(time.Until(started.Add(time.Duration(i) * floodFor / connects)))
			ctx, cancel := context.WithTimeout(context.Background(), timeout)
			defer cancel()
			if c, err := hosts.ConnectSocket(ctx, fd, target); err == nil {
				ok.Add(1)
				c.Close()
			}
		})
	}
	wg.Wait()
	stopFlood()
	floodEnded := time.Now()
	rssFlood, peak := memory(t, d.ready.PID)

	var c net.Conn
	err = b.Run(func() (err error) {
		c, err = net.DialTimeout("tcp", target.String(), timeout)
		return err
	})
	if err != nil {
		t.Errorf("first connect after the flood: %v", err)
	} else {
		c.Close()
	}
	back := time.Since(floodEnded)
	time.Sleep(2 * time.Second)
	rssAfter, _ := memory(t, d.ready.PID)

	t.Logf("legitimate connects within %v during the flood: %d of %d; first connect after it took %v", timeout, ok.Load(), connects, back.Round(time.Millisecond))
	t.Logf("daemon RSS: %d MiB before, %d MiB as the flood ended, %d MiB at the peak, %d MiB 2 s later", rssBefore>>20, rssFlood>>20, peak>>20, rssAfter>>20)
	if ok.Load() < connects*95/100 {
		t.Errorf("%d of %d legitimate connects got through within %v during the flood, want at least 95%%", ok.Load(), connects, timeout)
	}
	if peak > synFloodPeakRSS {
		t.Errorf("daemon RSS peaked at %d MiB under the flood, want at most %d MiB", peak>>20, synFloodPeakRSS>>20)
	}
	if n := metric(t, a, d, `xdpstack_userstack_tcp_syn_cookies_total{direction="tx",iface="`+a.Iface+`"}`); n == 0 {
		t.Errorf("no SYN cookies sent under the flood")
	}
}
