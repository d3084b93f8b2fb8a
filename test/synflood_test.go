package test

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/sys/unix"

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
// starts at about 38 MiB (16 MiB of it the UMEM), and the SYN proxy
// keeps no state for a SYN; the Go heap may double between collections.
// Unbounded, the waiting SYNs took it past 230 MiB here, and to 1.1 GB
// on a faster machine.
const synFloodPeakRSS = 128 << 20

// echoDaemon starts a daemon on host a with the echo app on port 7, and
// logs its metrics and output if the test fails.
func echoDaemon(t *testing.T, a *testutil.Host) *daemon {
	t.Helper()
	d := startDaemon(t, a, testutil.PinRoot(t), "--metrics-addr", "127.0.0.1:0", "--app", "echo=tcp://:7")
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
	return d
}

// flood starts hping3 flooding port 7 of host a with SYNs from host b,
// and returns what stops it (the test's end does too).
func flood(t *testing.T, a, b *testutil.Host) (stop func()) {
	t.Helper()
	cmd := b.Command(context.Background(), "hping3", "-q", "-S", "--flood", "-p", "7", a.Addr.String())
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	// nsenter execs hping3 in its own process: the pid is hping3's.
	stop = sync.OnceFunc(func() { cmd.Process.Kill(); cmd.Wait() })
	t.Cleanup(stop)
	return stop
}

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
	d := echoDaemon(t, a)
	rssBefore, _ := memory(t, d.ready.PID)
	target := netip.AddrPortFrom(a.Addr, 7)
	fds, err := b.TCPSockets(connects, target)
	if err != nil {
		t.Fatal(err)
	}

	stopFlood := flood(t, a, b)
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

// tcpOptions reads which options a kernel TCP connection negotiated
// (TCP_INFO's tcpi_options).
func tcpOptions(t *testing.T, c net.Conn) (timestamps, sack, windowScale bool) {
	t.Helper()
	rc, err := c.(*net.TCPConn).SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	var info *unix.TCPInfo
	rc.Control(func(fd uintptr) { info, err = unix.GetsockoptTCPInfo(int(fd), unix.IPPROTO_TCP, unix.TCP_INFO) })
	if err != nil {
		t.Fatalf("tcp_info: %v", err)
	}
	const tcpiOptTimestamps, tcpiOptSACK, tcpiOptWscale = 1, 2, 4
	return info.Options&tcpiOptTimestamps != 0, info.Options&tcpiOptSACK != 0, info.Options&tcpiOptWscale != 0
}

// echo sends size random bytes through c and checks that the same come
// back within 30 s.
func echo(t *testing.T, c net.Conn, size int) {
	t.Helper()
	data := make([]byte, size)
	rand.Read(data)
	c.SetDeadline(time.Now().Add(30 * time.Second))
	written := make(chan error, 1)
	go func() {
		_, err := c.Write(data)
		written <- err
	}()
	got := make([]byte, size)
	if _, err := io.ReadFull(c, got); err != nil {
		t.Fatalf("echo of %d bytes: read: %v", size, err)
	}
	if err := <-written; err != nil {
		t.Fatalf("echo of %d bytes: write: %v", size, err)
	}
	if !bytes.Equal(got, data) {
		t.Fatalf("echo of %d bytes: what came back differs", size)
	}
}

// TestSYNFloodEcho: a kernel client's connection opened during a flood,
// through the SYN proxy, carries 1 MiB both ways, without the options a
// cookie cannot carry; the proxy forgets it once closed; and after the
// flood connections get every option again.
func TestSYNFloodEcho(t *testing.T) {
	needTools(t, "hping3")
	a, b := testutil.HostPair(t, 0)
	d := echoDaemon(t, a)
	target := netip.AddrPortFrom(a.Addr, 7).String()
	series := func(name string) string { return name + `{iface="` + a.Iface + `"}` }
	dial := func() (c net.Conn) {
		t.Helper()
		b.Do(t, func() (err error) {
			c, err = net.DialTimeout("tcp", target, 5*time.Second)
			return err
		})
		return c
	}

	stopFlood := flood(t, a, b)
	waitMetric(t, a, d, series("xdpstack_userstack_syn_flood"), 1)
	c := dial()
	if ts, sack, ws := tcpOptions(t, c); ts || sack || ws {
		t.Errorf("connection opened during the flood has timestamps %v, SACK %v, window scaling %v; want none (the SYN proxy answered)", ts, sack, ws)
	}
	echo(t, c, 1<<20)
	c.Close()
	if n := metric(t, a, d, series("xdpstack_userstack_synproxy_connections_total")); n == 0 {
		t.Errorf("no connection opened through the SYN proxy")
	}
	waitMetric(t, a, d, series("xdpstack_userstack_synproxy_flows"), 0)

	stopFlood()
	waitMetric(t, a, d, series("xdpstack_userstack_syn_flood"), 0)
	c = dial()
	if ts, sack, ws := tcpOptions(t, c); !ts || !sack || !ws {
		t.Errorf("connection opened after the flood has timestamps %v, SACK %v, window scaling %v; want all", ts, sack, ws)
	}
	echo(t, c, 1<<20)
	c.Close()
}
