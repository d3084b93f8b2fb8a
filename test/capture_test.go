package test

import (
	"context"
	"fmt"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/xdpstack/xdpstack/internal/testing/testutil"
	"github.com/xdpstack/xdpstack/maps"
)

// captureProc is a running `xdpstack capture`.
type captureProc struct {
	cmd            *exec.Cmd
	stdout, stderr *testutil.SyncBuffer
	exited         chan error
}

// startCapture runs `xdpstack capture IFACE args...` in the root
// namespace, where the pins are, and returns once it reads: at the XDP
// hook once it holds the capture lease, at the userstack or the PSP
// gateway once the daemon d says so. It is stopped when the test ends.
func startCapture(t *testing.T, root, iface string, d *daemon, args ...string) *captureProc {
	t.Helper()
	c := &captureProc{
		cmd:    exec.Command(binary, append([]string{"--pin-root", root, "capture", iface}, args...)...),
		stdout: &testutil.SyncBuffer{}, stderr: &testutil.SyncBuffer{}, exited: make(chan error, 1),
	}
	c.cmd.Stdout, c.cmd.Stderr = c.stdout, c.stderr
	started := d.output.String()
	if err := c.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { c.exited <- c.cmd.Wait() }()
	t.Cleanup(func() { c.cmd.Process.Kill(); <-c.exited; c.exited <- nil })
	ready := func() bool {
		for point, log := range map[string]string{"--point userstack": "capture of the userstack started", "--point psp": "capture of the psp gateway started"} {
			if strings.Contains(strings.Join(args, " "), point) {
				return strings.Count(d.output.String(), log) > strings.Count(started, log)
			}
		}
		return captureLease(t, root, iface).Until != 0
	}
	for deadline := time.Now().Add(10 * time.Second); !ready(); time.Sleep(10 * time.Millisecond) {
		select {
		case err := <-c.exited:
			c.exited <- err
			t.Fatalf("xdpstack capture exited before it read: %v\n%s", err, c.stderr)
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("xdpstack capture not reading after 10s:\n%s", c.stderr)
		}
	}
	return c
}

// stop interrupts the capture, as ^C does, and returns its summary.
func (c *captureProc) stop(t *testing.T) string {
	t.Helper()
	c.cmd.Process.Signal(syscall.SIGINT)
	return c.wait(t)
}

// wait waits for the capture to end and returns its summary.
func (c *captureProc) wait(t *testing.T) string {
	t.Helper()
	select {
	case err := <-c.exited:
		c.exited <- err
		if err != nil {
			t.Fatalf("xdpstack capture: %v\n%s", err, c.stderr)
		}
	case <-time.After(15 * time.Second):
		t.Fatalf("xdpstack capture did not end within 15s:\n%s", c.stderr)
	}
	return strings.TrimSpace(c.stderr.String())
}

// capturedCount reads the packet count of a capture's summary.
func capturedCount(t *testing.T, summary string) int {
	t.Helper()
	var n int
	if _, err := fmt.Sscanf(summary[strings.LastIndex(summary, "captured "):], "captured %d packets", &n); err != nil {
		t.Fatalf("summary %q: %v", summary, err)
	}
	return n
}

func captureLease(t *testing.T, root, iface string) maps.Lease {
	t.Helper()
	s, err := maps.OpenPinnedSampling(filepath.Join(root, iface))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	l, err := s.Lease()
	if err != nil {
		t.Fatal(err)
	}
	return l
}

// sampledTotal sums the interface's sample counters.
func sampledTotal(t *testing.T, root, iface string) uint64 {
	t.Helper()
	s, err := maps.OpenPinnedSampling(filepath.Join(root, iface))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	counts, err := s.Counts()
	if err != nil {
		t.Fatal(err)
	}
	var n uint64
	for _, c := range counts {
		n += c.Taken + c.Lost + c.Unread
	}
	return n
}

// tsharkFields reads fields of every packet in a capture file with
// tshark, one []string per packet.
func tsharkFields(t *testing.T, file string, fields ...string) [][]string {
	t.Helper()
	args := []string{"-r", file, "-T", "fields", "-E", "separator=|"}
	for _, f := range fields {
		args = append(args, "-e", f)
	}
	out, err := exec.Command("tshark", args...).Output()
	if err != nil {
		t.Fatalf("tshark -r %s: %v", file, err)
	}
	var rows [][]string
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		if line != "" {
			rows = append(rows, strings.Split(line, "|"))
		}
	}
	return rows
}

// tcpdumpCount reads a capture file with tcpdump and returns how many
// packets it printed.
func tcpdumpCount(t *testing.T, file string) int {
	t.Helper()
	out, err := exec.Command("tcpdump", "-n", "-r", file).Output()
	if err != nil {
		t.Fatalf("tcpdump -r %s: %v", file, err)
	}
	return len(strings.Split(strings.TrimSpace(string(out)), "\n"))
}

// TestCaptureVerdicts captures every packet from a peer while a deny
// rule drops its ssh connects, the userstack's echo app takes its
// connection and the kernel answers its pings: tcpdump reads the file,
// and each packet's comment, as tshark shows it, names its verdict,
// reason and rule. Then the same as lines.
func TestCaptureVerdicts(t *testing.T) {
	needTools(t, "nc", "tshark", "tcpdump")
	a, b := testutil.HostPair(t, 0)
	root := testutil.PinRoot(t)
	d := startDaemon(t, a, root, "--metrics-addr", "127.0.0.1:0", "--app", "echo=tcp://:7")
	mustXdpstack(t, root, "rules", "add", a.Iface, "--proto", "tcp", "--local", ":22", "--action", "deny", "--tag", "no-ssh")
	file := filepath.Join(t.TempDir(), "verdicts.pcapng")
	c := startCapture(t, root, a.Iface, d, "--all", "-w", file, "--filter", "src host "+b.Addr.String())

	if ncConnects(t, b, a.Addr.String(), 22) {
		t.Error("nc to port 22 under a deny rule: connected")
	}
	if !ncConnects(t, b, a.Addr.String(), 7) {
		t.Error("nc to the echo app: no connection")
	}
	b.Exec(t, "ping", "-q", "-c", "2", "-i", "0.05", a.Addr.String())
	summary := c.stop(t)
	n := capturedCount(t, summary)
	if !strings.HasSuffix(summary, " 0 lost") {
		t.Errorf("summary: %q, want none lost", summary)
	}
	if got := tcpdumpCount(t, file); got != n {
		t.Errorf("tcpdump -r reads %d packets, the summary says %d", got, n)
	}

	rows := tsharkFields(t, file, "tcp.dstport", "icmp.type", "frame.comment")
	if len(rows) != n {
		t.Errorf("tshark reads %d packets, the summary says %d", len(rows), n)
	}
	want := map[string]string{
		"tcp 22": "xdp drop/rule_deny rule 1 (no-ssh) queue 0",
		"tcp 7":  "xdp redirect/steered queue 0",
		"icmp 8": "xdp pass/no_match queue 0",
	}
	seen := map[string]int{}
	for _, r := range rows {
		key := "tcp " + r[0]
		if r[0] == "" {
			key = "icmp " + r[1]
		}
		if w, ok := want[key]; ok {
			seen[key]++
			if r[2] != w {
				t.Errorf("%s packet: comment %q, want %q", key, r[2], w)
			}
		}
	}
	for key := range want {
		if seen[key] == 0 {
			t.Errorf("no %s packet in the capture (tshark: %v)", key, rows)
		}
	}
	if got := metric(t, a, d, fmt.Sprintf(`xdpstack_xdp_samples_total{action="drop",iface="%s",reason="rule_deny",result="taken"}`, a.Iface)); got < 1 {
		t.Errorf("samples taken of drop/rule_deny: %v, want at least 1", got)
	}

	lines := startCapture(t, root, a.Iface, d, "--all", "--count", "2", "--filter", "icmp and src host "+b.Addr.String())
	b.Exec(t, "ping", "-q", "-c", "2", "-i", "0.05", a.Addr.String())
	lines.wait(t)
	out := strings.Split(strings.TrimSpace(lines.stdout.String()), "\n")
	wantLine := fmt.Sprintf(" xdp q0 pass/no_match ICMP %s > %s type 8 len 98", b.Addr, a.Addr)
	if len(out) != 2 || !strings.HasSuffix(out[0], wantLine) || !strings.HasSuffix(out[1], wantLine) {
		t.Errorf("capture lines: got %q, want two ending %q", out, wantLine)
	}
}

// TestCaptureAllStopsAfterKill kills a capture of every packet with -9:
// within 2 s the program samples no more, and has ended the lease.
func TestCaptureAllStopsAfterKill(t *testing.T) {
	a, b := testutil.HostPair(t, 0)
	root := testutil.PinRoot(t)
	d := startDaemon(t, a, root, "--metrics-addr", "")
	c := startCapture(t, root, a.Iface, d, "--all", "-w", filepath.Join(t.TempDir(), "all.pcapng"))
	b.Exec(t, "ping", "-q", "-c", "3", "-i", "0.05", a.Addr.String())
	before := sampledTotal(t, root, a.Iface)
	if before < 3 {
		t.Fatalf("sampled %d packets while capturing every one, want the pings", before)
	}

	c.cmd.Process.Kill()
	killed := time.Now()
	// Traffic goes on, as it does on a busy interface.
	b.Exec(t, "ping", "-q", "-c", "20", "-i", "0.05", a.Addr.String())
	time.Sleep(time.Until(killed.Add(2 * time.Second)))
	b.Exec(t, "ping", "-q", "-c", "1", a.Addr.String()) // one past the lease ends it
	settled := sampledTotal(t, root, a.Iface)
	b.Exec(t, "ping", "-q", "-c", "20", "-i", "0.02", a.Addr.String())
	if after := sampledTotal(t, root, a.Iface); after != settled {
		t.Errorf("2 s after kill -9 of the capture, the program still samples: %d samples, then %d", settled, after)
	}
	if l := captureLease(t, root, a.Iface); l != (maps.Lease{Snaplen: l.Snaplen, All: true}) {
		t.Errorf("lease 2 s after kill -9: %+v, want it ended (until 0)", l)
	}
}

// TestCaptureJumbo captures 8942-byte frames at MTU 9000, which arrive
// in more than one buffer: whole with a snap length above that, cut
// with one below.
func TestCaptureJumbo(t *testing.T) {
	needTools(t, "tshark")
	a, b := testutil.HostPair(t, 0)
	root := testutil.PinRoot(t)
	for _, h := range []*testutil.Host{a, b} {
		h.Exec(t, "ip", "link", "set", h.Iface, "mtu", "9000")
	}
	d := startDaemon(t, a, root, "--metrics-addr", "")
	for _, snaplen := range []int{9100, 1000} {
		file := filepath.Join(t.TempDir(), "jumbo.pcapng")
		c := startCapture(t, root, a.Iface, d, "--all", "--snaplen", strconv.Itoa(snaplen), "-w", file, "--filter", "icmp and src host "+b.Addr.String())
		b.Exec(t, "ping", "-q", "-c", "2", "-i", "0.05", "-s", "8900", a.Addr.String())
		c.stop(t)
		rows := tsharkFields(t, file, "frame.len", "frame.cap_len", "icmp.type")
		want := []string{"8942", strconv.Itoa(min(snaplen, 8942)), "8"}
		if len(rows) != 2 || strings.Join(rows[0], " ") != strings.Join(want, " ") || strings.Join(rows[1], " ") != strings.Join(want, " ") {
			t.Errorf("snaplen %d: tshark reads %v; want two pings of %v (frame.len, frame.cap_len, icmp.type)", snaplen, rows, want)
		}
	}
}

// TestCaptureUserstack captures what the userstack's echo app receives
// and sends, both ways, while a second capture of it is refused.
func TestCaptureUserstack(t *testing.T) {
	needTools(t, "tshark")
	a, b := testutil.HostPair(t, 0)
	root := testutil.PinRoot(t)
	d := startDaemon(t, a, root, "--metrics-addr", "", "--app", "echo=tcp://:7")
	file := filepath.Join(t.TempDir(), "userstack.pcapng")
	c := startCapture(t, root, a.Iface, d, "--point", "userstack", "-w", file, "--filter", "tcp port 7")
	if out, err := xdpstack(t, root, "capture", a.Iface, "--point", "userstack"); err == nil || !strings.Contains(out, "another capture of the userstack on "+a.Iface+" runs") {
		t.Errorf("a second capture of the userstack: got %v, %q", err, out)
	}
	b.EchoFrom(t, fmt.Sprintf("%s:7", a.Addr), 100_000)
	summary := c.stop(t)
	n := capturedCount(t, summary)

	rows := tsharkFields(t, file, "tcp.srcport", "tcp.dstport", "frame.comment", "frame.len", "frame.cap_len")
	if len(rows) != n || n < 10 {
		t.Fatalf("tshark reads %d packets, the summary (%q) says %d; want at least 10", len(rows), summary, n)
	}
	in, out := 0, 0
	for _, r := range rows {
		switch {
		case r[1] == "7" && r[2] == "userstack in queue 0":
			in++
		case r[0] == "7" && r[2] == "userstack out queue 0":
			out++
		default:
			t.Errorf("packet %v: want from the peer to port 7, in, or from port 7, out", r)
		}
		if l, _ := strconv.Atoi(r[3]); r[4] != strconv.Itoa(min(l, 256)) {
			t.Errorf("packet %v: captured length, want the frame's up to the default 256", r)
		}
	}
	if in == 0 || out == 0 {
		t.Errorf("captured %d in and %d out, want both", in, out)
	}
	for deadline := time.Now().Add(5 * time.Second); !strings.Contains(d.output.String(), "capture of the userstack ended"); time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("the daemon did not end the capture within 5s of its end:\n%s", d.output)
		}
	}
}

// TestCaptureSampling samples 1 packet in 2 as set by the capture,
// through the daemon, and after the daemon is gone, through the pins;
// with sampling off and no --all, a capture is refused.
func TestCaptureSampling(t *testing.T) {
	a, b := testutil.HostPair(t, 0)
	root := testutil.PinRoot(t)
	d := startDaemon(t, a, root, "--metrics-addr", "")
	if out, err := xdpstack(t, root, "capture", a.Iface, "--count", "1"); err == nil || !strings.Contains(out, "sampling is off: nothing to capture") {
		t.Errorf("capture with sampling off: got %v, %q", err, out)
	}

	c := startCapture(t, root, a.Iface, d, "--sample-rate", "1", "--count", "5", "--filter", "icmp")
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	b.Command(ctx, "ping", "-q", "-c", "100", "-i", "0.02", a.Addr.String()).Run()
	summary := c.wait(t)
	if !strings.Contains(summary, "samples 1 packet in 2^1 from now on (set through the daemon") || capturedCount(t, summary) != 5 {
		t.Errorf("capture --sample-rate 1 --count 5: summary %q", summary)
	}
	if lines := strings.Split(strings.TrimSpace(c.stdout.String()), "\n"); len(lines) != 5 {
		t.Errorf("capture --count 5: %d lines", len(lines))
	}
	if !strings.Contains(d.output.String(), "sample rate changed") {
		t.Errorf("the daemon did not log the new rate:\n%s", d.output)
	}
	if out := mustXdpstack(t, root, "status", a.Iface); !strings.Contains(out, a.Iface+": sampling 1 packet in 2 (rate 1), ") {
		t.Errorf("status after the rate change: want the rate in\n%s", out)
	}
	if out := mustXdpstack(t, root, "status", a.Iface, "--json"); !strings.Contains(out, `"sampling":{"rate":1,"snaplen":`) {
		t.Errorf("status --json after the rate change: want the rate in %s", out)
	}

	d.signal(t, syscall.SIGKILL) // the pins stay
	out := mustXdpstack(t, root, "capture", a.Iface, "--sample-rate", "0", "--all", "--duration", "10ms", "-w", "/dev/null")
	if !strings.Contains(out, "set through the pins") {
		t.Errorf("capture --sample-rate 0 with no daemon: %q", out)
	}
	s, err := maps.OpenPinnedSampling(filepath.Join(root, a.Iface))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if set, err := s.Settings(); err != nil || set.Rate != 0 {
		t.Errorf("settings after --sample-rate 0: %+v, %v", set, err)
	}
	mustXdpstack(t, root, "detach", a.Iface)
}
