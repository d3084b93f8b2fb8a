package test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/xdpstack/xdpstack/internal/testing/testutil"
	"github.com/xdpstack/xdpstack/userstack/apps"
)

// echoResult is what `xdpstack echo client --json` prints.
type echoResult = apps.Result

// echoClient runs `xdpstack echo client` in h and decodes its result.
func echoClient(t *testing.T, h *testutil.Host, pinRoot string, args ...string) echoResult {
	t.Helper()
	if !slices.Contains(args, "--stats") {
		args = append(args, "--stats", "0")
	}
	args = append([]string{"--pin-root", pinRoot, "echo", "client", "--json"}, args...)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	var stdout, stderr bytes.Buffer
	cmd := h.Command(ctx, binary, args...)
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	var r echoResult
	if jerr := json.Unmarshal(stdout.Bytes(), &r); err != nil || jerr != nil {
		t.Fatalf("xdpstack %s: %v %v\n%s%s", strings.Join(args, " "), err, jerr, stdout.String(), stderr.String())
	}
	return r
}

// checkStatusXSKs checks that `xdpstack status` in h reports n AF_XDP
// sockets, one per queue, all in mode, in its JSON and its table.
func checkStatusXSKs(t *testing.T, h *testutil.Host, pinRoot, mode string, n int) {
	t.Helper()
	out := h.Exec(t, binary, "--pin-root", pinRoot, "status", h.Iface, "--json")
	var status []struct {
		AFXDP []struct {
			Queue int    `json:"queue"`
			Mode  string `json:"mode"`
		} `json:"afxdp"`
	}
	if err := json.Unmarshal([]byte(out), &status); err != nil || len(status) != 1 || len(status[0].AFXDP) != n {
		t.Fatalf("status --json: want %d AF_XDP sockets, got %v:\n%s", n, err, out)
	}
	for q, x := range status[0].AFXDP {
		if x.Queue != q || x.Mode != mode {
			t.Errorf("status --json: socket %d is %+v, want queue %d in %s mode", q, x, q, mode)
		}
	}
	queues := make([]string, n)
	for q := range queues {
		queues[q] = fmt.Sprint(q)
	}
	want := mode + " on queues " + strings.Join(queues, ",")
	if out := h.Exec(t, binary, "--pin-root", pinRoot, "status", h.Iface); !strings.Contains(out, want) {
		t.Errorf("status: want %q in:\n%s", want, out)
	}
}

// TestUserstackEcho serves the echo app on the userstack of a two-queue
// veth and talks to it from kernel peers: Go, nc, the echo tester with a
// large verified transfer and 1000 connections, UDP, while a kernel
// server on the same address and ICMP keep working.
func TestUserstackEcho(t *testing.T) {
	a, b := testutil.HostPair(t, 2)
	root := testutil.PinRoot(t)
	d := startDaemon(t, a, root, "--metrics-addr", "127.0.0.1:0", "--app", "echo=tcp://:7", "--app", "echo=udp://:7")
	if d.ready.Queues != 2 || d.ready.AFXDPMode == "" {
		t.Fatalf("ready file: %+v, want 2 queues and an AF_XDP mode", d.ready)
	}
	checkStatusXSKs(t, a, root, d.ready.AFXDPMode, 2)
	echoAddr := fmt.Sprintf("%s:7", a.Addr)
	kernelAddr := a.KernelEcho(t, fmt.Sprintf("%s:8080", a.Addr))
	t.Cleanup(func() {
		if t.Failed() {
			out, _ := a.Command(context.Background(), "curl", "-sf", "http://"+d.ready.MetricsAddr+"/metrics").Output()
			for _, line := range strings.Split(string(out), "\n") {
				if strings.HasPrefix(line, "xdpstack_afxdp") || strings.HasPrefix(line, "xdpstack_userstack") {
					t.Log(line)
				}
			}
		}
	})

	t.Run("go client", func(t *testing.T) {
		for range 4 {
			b.EchoFrom(t, echoAddr, 1<<20)
		}
	})
	t.Run("nc", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		cmd := b.Command(ctx, "nc", "-N", "-w", "5", a.Addr.String(), "7")
		cmd.Stdin = strings.NewReader("hello over AF_XDP\n")
		out, err := cmd.CombinedOutput()
		if err != nil || string(out) != "hello over AF_XDP\n" {
			t.Fatalf("nc: %v, echoed %q", err, out)
		}
	})
	t.Run("udp", func(t *testing.T) {
		r := echoClient(t, b, root, "--uri", "udp://"+echoAddr, "--bytes", "120K", "--nclients", "4", "--verify")
		if r.BytesReceived != 4*120<<10 || r.VerifyErrors != 0 {
			t.Fatalf("udp echo: %+v", r)
		}
	})
	t.Run("netstack counters", func(t *testing.T) {
		// /metrics sorts a series' labels by name.
		series := func(name, label string) string {
			labels := []string{`iface="` + a.Iface + `"`, label}
			slices.Sort(labels)
			return name + "{" + strings.Join(labels, ",") + "}"
		}
		// 4 go clients, nc, and 4 UDP clients whose every datagram came
		// back: nothing was dropped.
		if n := metric(t, a, d, series("xdpstack_userstack_tcp_connections_total", `side="passive"`)); n < 5 {
			t.Errorf("%v TCP connections accepted, want at least 5", n)
		}
		for _, dir := range []string{"rx", "tx"} {
			if n := metric(t, a, d, series("xdpstack_userstack_tcp_segments_total", `direction="`+dir+`"`)); n == 0 {
				t.Errorf("no TCP segments counted %s", dir)
			}
		}
		rx := metric(t, a, d, series("xdpstack_userstack_udp_datagrams_total", `direction="rx"`))
		if tx := metric(t, a, d, series("xdpstack_userstack_udp_datagrams_total", `direction="tx"`)); rx == 0 || tx != rx {
			t.Errorf("UDP datagrams %v received and %v sent by an echo, want as many, not 0", rx, tx)
		}
		for _, reason := range []string{"no_port", "receive_buffer", "malformed", "checksum", "send_error"} {
			if n := metric(t, a, d, series("xdpstack_userstack_udp_drops_total", `reason="`+reason+`"`)); n != 0 {
				t.Errorf("%v UDP datagrams dropped for %s", n, reason)
			}
		}
		if n := metric(t, a, d, series("xdpstack_userstack_tcp_receive_errors_total", `reason="checksum"`)); n != 0 {
			t.Errorf("%v TCP checksum errors", n)
		}
	})
	t.Run("large transfer", func(t *testing.T) {
		size := int64(1 << 30)
		if testing.Short() {
			size = 64 << 20
		}
		// Progress goes to stderr, shown if the run fails.
		r := echoClient(t, b, root, "--uri", "tcp://"+echoAddr, "--bytes", fmt.Sprint(size), "--verify", "--stats", "10")
		if r.BytesReceived != size || r.VerifyErrors != 0 {
			t.Fatalf("%d bytes verified: %+v", size, r)
		}
		t.Logf("%d bytes each way, verified, in %.1fs (%.2f Gbit/s)", size, r.Seconds, r.ThroughputGbps)
	})
	t.Run("segments whole with TSO, as frames without", func(t *testing.T) {
		series := `xdpstack_userstack_gso_segments_total{iface="` + a.Iface + `"}`
		if n := metric(t, a, d, series); n == 0 {
			t.Fatalf("%s = 0 after the large transfer on a veth with TSO on", series)
		}
		a.Exec(t, "ethtool", "-K", a.Iface, "tso", "off")
		t.Cleanup(func() { a.Exec(t, "ethtool", "-K", a.Iface, "tso", "on") })
		time.Sleep(1500 * time.Millisecond) // the userstack reads the setting every second
		before := metric(t, a, d, series)
		r := echoClient(t, b, root, "--uri", "tcp://"+echoAddr, "--bytes", "32M", "--verify")
		if r.BytesReceived != 32<<20 || r.VerifyErrors != 0 {
			t.Fatalf("with TSO off: %+v", r)
		}
		if after := metric(t, a, d, series); after != before {
			t.Errorf("%s went from %v to %v with TSO off", series, before, after)
		}
	})
	t.Run("1000 connections", func(t *testing.T) {
		r := echoClient(t, b, root, "--uri", "tcp://"+echoAddr, "--bytes", "1K", "--nclients", "1000", "--verify")
		if r.Connections != 1000 || r.Errors != 0 || r.VerifyErrors != 0 {
			t.Fatalf("1000 connections: %+v", r)
		}
		t.Logf("%.0f connections/s, connect p50 %.0fus p99 %.0fus", r.ConnectionsPerSecond, r.ConnectP50us, r.ConnectP99us)
		waitMetric(t, a, d, `xdpstack_userstack_endpoints{iface="`+a.Iface+`"}`, 2) // the two listeners
	})
	t.Run("kernel alongside", func(t *testing.T) {
		b.EchoFrom(t, kernelAddr, 1<<20)
		b.Exec(t, "ping", "-q", "-c", "5", "-i", "0.05", "-W", "2", a.Addr.String())
	})

	// Every frame is back where it belongs once the traffic is over.
	for q := range 2 {
		free := metric(t, a, d, fmt.Sprintf(`xdpstack_afxdp_frames{iface="%s",queue="%d",state="free"}`, a.Iface, q))
		kernel := metric(t, a, d, fmt.Sprintf(`xdpstack_afxdp_frames{iface="%s",queue="%d",state="kernel"}`, a.Iface, q))
		if free+kernel != 4096 {
			t.Errorf("queue %d: %v free + %v in the kernel, want 4096 frames", q, free, kernel)
		}
		for _, reason := range []string{"kick", "stuck", "full"} {
			n := metric(t, a, d, fmt.Sprintf(`xdpstack_afxdp_tx_failures_total{iface="%s",queue="%d",reason="%s"}`, a.Iface, q, reason))
			t.Logf("queue %d: %v transmit failures (%s)", q, n, reason)
		}
	}
}

// metric scrapes the daemon's /metrics from inside h and returns the
// sample named exactly by series.
func metric(t *testing.T, h *testutil.Host, d *daemon, series string) float64 {
	t.Helper()
	out := h.Exec(t, "curl", "-sf", "http://"+d.ready.MetricsAddr+"/metrics")
	for _, line := range strings.Split(out, "\n") {
		if rest, ok := strings.CutPrefix(line, series+" "); ok {
			var v float64
			fmt.Sscan(rest, &v)
			return v
		}
	}
	t.Fatalf("no %s in /metrics", series)
	return 0
}

// waitMetric waits up to 10s for series to come down to want.
func waitMetric(t *testing.T, h *testutil.Host, d *daemon, series string, want float64) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		v := metric(t, h, d, series)
		if v == want {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s = %v after 10s, want %v", series, v, want)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// TestUserstackClient runs the echo tester on the userstack of one host
// against a kernel echo server on the other.
func TestUserstackClient(t *testing.T) {
	a, b := testutil.HostPair(t, 2)
	root := testutil.PinRoot(t)
	addr := b.KernelEcho(t, fmt.Sprintf("%s:7000", b.Addr))
	r := echoClient(t, a, root, "--iface", a.Iface, "--uri", "tcp://"+addr, "--bytes", "16M", "--nclients", "4", "--verify")
	if r.Connections != 4 || r.BytesReceived != 4*16<<20 || r.VerifyErrors != 0 {
		t.Fatalf("userstack client: %+v", r)
	}
	if out, err := xdpstack(t, root, "status"); err == nil && strings.Contains(out, a.Iface) {
		t.Errorf("the client left its attachment behind:\n%s", out)
	}
}

// TestUserstackUDP echoes UDP both ways between the userstack and the
// kernel: the echo tester on the userstack against a kernel echo, from
// a port of the userstack's range, and a kernel client against the echo
// app on the userstack.
func TestUserstackUDP(t *testing.T) {
	a, b := testutil.HostPair(t, 2)
	root := testutil.PinRoot(t)
	pc, err := b.ListenPacket("udp", fmt.Sprintf("%s:7001", b.Addr))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { pc.Close() })
	var peers sync.Map // the client ports the kernel echo saw
	go func() {
		buf := make([]byte, 64<<10)
		for {
			n, addr, err := pc.ReadFrom(buf)
			if err != nil {
				return
			}
			peers.Store(addr.(*net.UDPAddr).Port, true)
			pc.WriteTo(buf[:n], addr)
		}
	}()

	r := echoClient(t, a, root, "--iface", a.Iface, "--uri", "udp://"+pc.LocalAddr().String(), "--bytes", "120K", "--nclients", "4", "--verify")
	if r.Connections != 4 || r.BytesReceived != 4*120<<10 || r.VerifyErrors != 0 || r.Errors != 0 {
		t.Fatalf("userstack client, kernel echo: %+v", r)
	}
	peers.Range(func(port, _ any) bool {
		if p := port.(int); p < 61000 || p > 62999 {
			t.Errorf("the userstack sent from port %d, outside its range 61000-62999", p)
		}
		return true
	})

	startDaemon(t, a, root, "--metrics-addr", "", "--app", "echo=udp://:7")
	r = echoClient(t, b, root, "--uri", fmt.Sprintf("udp://%s:7", a.Addr), "--bytes", "120K", "--nclients", "4", "--verify")
	if r.BytesReceived != 4*120<<10 || r.VerifyErrors != 0 || r.Errors != 0 {
		t.Fatalf("kernel client, userstack echo: %+v", r)
	}
}

// TestUserstackKilled kills the daemon during a transfer: the peer's
// connection fails instead of hanging, the kernel keeps serving, and a
// new daemon serves echo again.
func TestUserstackKilled(t *testing.T) {
	a, b := testutil.HostPair(t, 2)
	root := testutil.PinRoot(t)
	d := startDaemon(t, a, root, "--metrics-addr", "", "--app", "echo=tcp://:7")
	echoAddr := fmt.Sprintf("%s:7", a.Addr)
	kernelAddr := a.KernelEcho(t, fmt.Sprintf("%s:8080", a.Addr))

	var c net.Conn
	b.Do(t, func() (err error) {
		c, err = net.DialTimeout("tcp", echoAddr, 5*time.Second)
		return err
	})
	defer c.Close()
	go func() {
		chunk := make([]byte, 64<<10)
		for c.SetWriteDeadline(time.Now().Add(30 * time.Second)); ; {
			if _, err := c.Write(chunk); err != nil {
				return
			}
		}
	}()
	buf := make([]byte, 64<<10)
	c.SetReadDeadline(time.Now().Add(30 * time.Second))
	if _, err := io.ReadFull(c, buf); err != nil {
		t.Fatalf("echo before the kill: %v", err)
	}

	d.signal(t, syscall.SIGKILL)
	killed := time.Now()
	var err error
	for err == nil {
		_, err = c.Read(buf)
	}
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		t.Fatalf("connection hung after the daemon was killed: %v", err)
	}
	t.Logf("peer saw %v %.1fs after the kill", err, time.Since(killed).Seconds())

	b.EchoFrom(t, kernelAddr, 1<<20)
	b.Exec(t, "ping", "-q", "-c", "3", "-i", "0.05", "-W", "2", a.Addr.String())

	startDaemon(t, a, root, "--metrics-addr", "", "--app", "echo=tcp://:7")
	b.EchoFrom(t, echoAddr, 1<<20)
}

// TestUserstackIdle checks that a daemon serving the userstack with no
// traffic uses well under 1% of a CPU: its receive loops sleep in poll().
func TestUserstackIdle(t *testing.T) {
	a, _ := testutil.HostPair(t, 2)
	root := testutil.PinRoot(t)
	d := startDaemon(t, a, root, "--metrics-addr", "", "--app", "echo=tcp://:7", "--app", "echo=udp://:7")
	cpu := func() time.Duration {
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", d.ready.PID))
		if err != nil {
			t.Fatal(err)
		}
		// Fields after the command name, which is in parentheses.
		f := strings.Fields(string(b[bytes.LastIndexByte(b, ')')+2:]))
		var user, sys int64
		fmt.Sscan(f[11], &user)
		fmt.Sscan(f[12], &sys)
		return time.Duration(user+sys) * 10 * time.Millisecond // USER_HZ is 100
	}
	time.Sleep(time.Second) // let start-up settle
	before, start := cpu(), time.Now()
	time.Sleep(3 * time.Second)
	used, elapsed := cpu()-before, time.Since(start)
	t.Logf("idle daemon used %v of CPU in %v", used, elapsed.Round(time.Millisecond))
	if used > elapsed/100 {
		t.Errorf("idle daemon used %v of CPU in %v: more than 1%%", used, elapsed)
	}
}
