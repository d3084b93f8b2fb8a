package test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/xdpstack/xdpstack/internal/testing/hosts"
	"github.com/xdpstack/xdpstack/internal/testing/testutil"
	"github.com/xdpstack/xdpstack/maps"
)

// readStats sums the pinned stats map of iface.
func readStats(t *testing.T, root, iface string) map[maps.Verdict]maps.Counter {
	t.Helper()
	set, err := maps.OpenPinned(filepath.Join(root, iface))
	if err != nil {
		t.Fatal(err)
	}
	defer set.Close()
	sums, err := set.Stats.Sum()
	if err != nil {
		t.Fatal(err)
	}
	return sums
}

func total(sums map[maps.Verdict]maps.Counter) maps.Counter {
	var c maps.Counter
	for _, s := range sums {
		c = c.Add(s)
	}
	return c
}

// kernelTraffic sends ICMP, UDP and TCP from b to kernel sockets on a and
// checks that all of it arrives. It returns how many ICMP and UDP
// packets it sent.
func kernelTraffic(t *testing.T, a, b *testutil.Host) int {
	t.Helper()
	const pings, datagrams = 20, 200
	b.Exec(t, "ping", "-q", "-c", fmt.Sprint(pings), "-i", "0.01", "-W", "2", a.Addr.String())

	var udp *net.UDPConn
	a.Do(t, func() (err error) {
		udp, err = net.ListenUDP("udp4", &net.UDPAddr{IP: a.Addr.AsSlice(), Port: 9999})
		return err
	})
	defer udp.Close()
	b.Do(t, func() error {
		c, err := net.Dial("udp4", fmt.Sprintf("%s:9999", a.Addr))
		if err != nil {
			return err
		}
		defer c.Close()
		for i := range datagrams {
			if _, err := c.Write([]byte(fmt.Sprintf("datagram %d", i))); err != nil {
				return err
			}
		}
		return nil
	})
	udp.SetReadDeadline(time.Now().Add(5 * time.Second))
	buf := make([]byte, 2048)
	for i := range datagrams {
		if _, _, err := udp.ReadFrom(buf); err != nil {
			t.Fatalf("UDP: received %d of %d datagrams: %v", i, datagrams, err)
		}
	}

	addr := a.KernelEcho(t, fmt.Sprintf("%s:7007", a.Addr))
	conn, err := b.DialContext(context.Background(), "tcp4", addr)
	if err != nil {
		t.Fatalf("TCP dial: %v", err)
	}
	defer conn.Close()
	payload := bytes.Repeat([]byte("xdpstack"), 128<<10) // 1 MiB
	go conn.Write(payload)
	conn.SetReadDeadline(time.Now().Add(10 * time.Second))
	echoed := make([]byte, len(payload))
	if _, err := io.ReadFull(conn, echoed); err != nil || !bytes.Equal(echoed, payload) {
		t.Fatalf("TCP echo of 1 MiB: %v (equal: %v)", err, bytes.Equal(echoed, payload))
	}
	return pings + datagrams
}

// waitCounted waits until the program has counted what b sent since the
// given point: veth delivers asynchronously.
func waitCounted(t *testing.T, root string, a, b *testutil.Host, before map[maps.Verdict]maps.Counter, txPackets, txBytes uint64) map[maps.Verdict]maps.Counter {
	t.Helper()
	var after map[maps.Verdict]maps.Counter
	var got maps.Counter
	var wantPackets, wantBytes uint64
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		after = readStats(t, root, a.Iface)
		p, by := b.TxStats(t)
		wantPackets, wantBytes = p-txPackets, by-txBytes
		got = total(after)
		got.Packets -= total(before).Packets
		got.Bytes -= total(before).Bytes
		// veth counts tx bytes from the IP header on; XDP sees the whole
		// frame, Ethernet header included.
		wantBytes += wantPackets * 14
		if got.Packets == wantPackets && got.Bytes == wantBytes {
			return after
		}
	}
	t.Fatalf("counted %d packets, %d bytes; peer sent %d packets, %d bytes", got.Packets, got.Bytes, wantPackets, wantBytes)
	return nil
}

func TestKernelTrafficPassesAndIsCounted(t *testing.T) {
	a, b := testutil.HostPair(t, 0)
	root := testutil.PinRoot(t)
	d := startDaemon(t, a, root, "--mode", "native", "--metrics-addr", "127.0.0.1:0")
	if d.ready.Mode != "native" || d.ready.Iface != a.Iface || d.ready.ProgramID == 0 {
		t.Errorf("ready file: got %+v", d.ready)
	}

	before := readStats(t, root, a.Iface)
	txPackets, txBytes := b.TxStats(t)
	sent := kernelTraffic(t, a, b)
	if _, err := exec.LookPath("iperf3"); err == nil {
		server := a.Command(context.Background(), "iperf3", "-s", "-1", "-B", a.Addr.String())
		if err := server.Start(); err != nil {
			t.Fatal(err)
		}
		defer server.Process.Kill()
		var out string
		for range 50 {
			cmd := b.Command(context.Background(), "iperf3", "-c", a.Addr.String(), "-n", "20M")
			o, err := cmd.CombinedOutput()
			if out = string(o); err == nil {
				break
			}
			time.Sleep(100 * time.Millisecond) // the server is not listening yet
		}
		if !strings.Contains(out, "iperf Done") {
			t.Fatalf("iperf3 through the attached interface failed:\n%s", out)
		}
		server.Wait()
	}
	after := waitCounted(t, root, a, b, before, txPackets, txBytes)

	for v, c := range after {
		if v.Action != maps.ActionPass && c.Packets > before[v].Packets {
			t.Errorf("%v/%v counted %d packets; with no listeners everything must pass", v.Action, v.Reason, c.Packets-before[v].Packets)
		}
	}
	noMatch := maps.Verdict{Action: maps.ActionPass, Reason: maps.ReasonNoMatch}
	if got := after[noMatch].Packets - before[noMatch].Packets; got < uint64(sent) {
		t.Errorf("pass/no_match: got %d packets, want at least the %d ICMP and UDP sent", got, sent)
	}

	// stats --json prints the same totals the maps hold.
	var rows []struct {
		Iface, Action, Reason string
		Packets, Bytes        uint64
	}
	if err := json.Unmarshal([]byte(mustXdpstack(t, root, "stats", a.Iface, "--json")), &rows); err != nil {
		t.Fatal(err)
	}
	for _, r := range rows {
		if r.Action == "pass" && r.Reason == "no_match" && r.Packets != after[noMatch].Packets {
			t.Errorf("stats --json pass/no_match: got %d, maps say %d", r.Packets, after[noMatch].Packets)
		}
	}
	// stats --rate prints one sample per interval and stops after --count.
	lines := strings.Split(mustXdpstack(t, root, "stats", "--rate", "--json", "--interval", "100ms", "--count", "2"), "\n")
	if len(lines) != 2 || !strings.Contains(lines[0], `"rates"`) {
		t.Errorf("stats --rate --count 2: got %q", lines)
	}
	if out := mustXdpstack(t, root, "stats"); !strings.Contains(out, "no_match") {
		t.Errorf("stats: got %q", out)
	}
}

func TestMetricsEqualMapSums(t *testing.T) {
	a, b := testutil.HostPair(t, 0)
	root := testutil.PinRoot(t)
	d := startDaemon(t, a, root, "--metrics-addr", "127.0.0.1:0")
	b.Exec(t, "ping", "-q", "-c", "10", "-i", "0.01", a.Addr.String())
	time.Sleep(100 * time.Millisecond) // let veth deliver the last replies' requests

	families := scrapeMetrics(t, a, d.ready.MetricsAddr)
	sums := readStats(t, root, a.Iface)

	for name, field := range map[string]func(maps.Counter) uint64{
		"xdpstack_xdp_packets_total": func(c maps.Counter) uint64 { return c.Packets },
		"xdpstack_xdp_bytes_total":   func(c maps.Counter) uint64 { return c.Bytes },
	} {
		fam := families[name]
		if fam == nil {
			t.Fatalf("/metrics has no %s", name)
		}
		if len(fam.Metric) != len(sums) {
			t.Errorf("%s: got %d series, maps have %d verdicts", name, len(fam.Metric), len(sums))
		}
		for _, m := range fam.Metric {
			labels := map[string]string{}
			for _, l := range m.Label {
				labels[l.GetName()] = l.GetValue()
			}
			var want uint64
			for v, c := range sums {
				if v.Action.String() == labels["action"] && v.Reason.String() == labels["reason"] {
					want = field(c)
				}
			}
			if got := uint64(m.GetCounter().GetValue()); got != want || labels["iface"] != a.Iface {
				t.Errorf("%s%v: got %d, maps say %d", name, labels, got, want)
			}
		}
	}
	if families["xdpstack_build_info"] == nil {
		t.Error("/metrics has no xdpstack_build_info")
	}
}

func TestBpftoolDumpsPinnedMaps(t *testing.T) {
	if _, err := exec.LookPath("bpftool"); err != nil {
		t.Skip("needs bpftool")
	}
	a, b := testutil.HostPair(t, 0)
	root := testutil.PinRoot(t)
	d := startDaemon(t, a, root)
	b.Exec(t, "ping", "-q", "-c", "3", "-i", "0.01", a.Addr.String())
	dir := filepath.Join(root, a.Iface)

	// With BTF, bpftool -j prints each entry's raw bytes and a
	// "formatted" object with the named fields.
	dump := func(name string) []map[string]any {
		out, err := exec.Command("bpftool", "-j", "map", "dump", "pinned", dir+"/"+name).Output()
		if err != nil {
			t.Fatalf("bpftool map dump %s: %v", name, err)
		}
		var entries []struct{ Formatted map[string]any }
		if err := json.Unmarshal(out, &entries); err != nil {
			t.Fatalf("bpftool map dump %s: %v\n%s", name, err, out)
		}
		var formatted []map[string]any
		for _, e := range entries {
			if e.Formatted == nil {
				t.Fatalf("bpftool map dump %s: entry without BTF formatting:\n%s", name, out)
			}
			formatted = append(formatted, e.Formatted)
		}
		return formatted
	}
	var packets float64
	for _, e := range dump(maps.StatsName) {
		for _, v := range e["values"].([]any) {
			value := v.(map[string]any)["value"].(map[string]any)
			if _, ok := value["bytes"]; !ok {
				t.Fatalf("stats entry without named fields: %v", e)
			}
			packets += value["packets"].(float64)
		}
	}
	if packets < 3 {
		t.Errorf("bpftool stats: %v packets, want at least the 3 pings", packets)
	}
	info := dump(maps.InfoName)
	if len(info) != 1 || info[0]["value"].(map[string]any)["pid"].(float64) != float64(d.ready.PID) {
		t.Errorf("bpftool info: got %v, want pid %d", info, d.ready.PID)
	}
	if l := dump(maps.ListenersName); len(l) != 0 {
		t.Errorf("bpftool listeners: got %v, want none", l)
	}
	if out, err := exec.Command("bpftool", "map", "show", "pinned", dir+"/"+maps.XSKsName).CombinedOutput(); err != nil || !strings.Contains(string(out), "xskmap") {
		t.Errorf("bpftool map show xsks: %v\n%s", err, out)
	}
}

// xdpAttached tells whether the host's interface has an XDP program.
func xdpAttached(t *testing.T, h *testutil.Host) bool {
	t.Helper()
	return xdpProgramID(t, h) != 0
}

func checkClean(t *testing.T, h *testutil.Host, root string) {
	t.Helper()
	if xdpAttached(t, h) {
		t.Errorf("%s still has an XDP program", h.Iface)
	}
	if _, err := os.Stat(filepath.Join(root, h.Iface)); !os.IsNotExist(err) {
		t.Errorf("pins of %s still there (%v)", h.Iface, err)
	}
}

func TestSignalDetachesAndUnpins(t *testing.T) {
	for _, sig := range []syscall.Signal{syscall.SIGTERM, syscall.SIGINT} {
		t.Run(sig.String(), func(t *testing.T) {
			a, b := testutil.HostPair(t, 0)
			root := testutil.PinRoot(t)
			d := startDaemon(t, a, root)
			if !xdpAttached(t, a) {
				t.Fatal("no XDP program after attach")
			}
			if err := d.signal(t, sig); err != nil {
				t.Fatalf("exit after %v: %v\n%s", sig, err, d.output)
			}
			if !strings.Contains(d.output.String(), "detached from "+a.Iface) {
				t.Errorf("output: got %q", d.output)
			}
			checkClean(t, a, root)
			b.Exec(t, "ping", "-q", "-c", "2", "-i", "0.01", a.Addr.String())
		})
	}
}

func TestKillNineLeavesKernelPathWorking(t *testing.T) {
	a, b := testutil.HostPair(t, 0)
	root := testutil.PinRoot(t)
	d := startDaemon(t, a, root)
	d.signal(t, syscall.SIGKILL)

	// The pinned link keeps the program, which keeps passing and counting.
	before := readStats(t, root, a.Iface)
	b.Exec(t, "ping", "-q", "-c", "5", "-i", "0.01", a.Addr.String())
	if got, was := total(readStats(t, root, a.Iface)).Packets, total(before).Packets; got < was+5 {
		t.Errorf("after kill -9: counted %d packets, want at least %d", got, was+5)
	}
	if out := mustXdpstack(t, root, "status", a.Iface); !strings.Contains(out, "exited") {
		t.Errorf("status after kill -9: got %q, want the attacher shown as exited", out)
	}

	// A new attach takes the program over atomically and keeps counting.
	d2 := startDaemon(t, a, root)
	if !strings.Contains(d2.output.String(), "replaced the program on "+a.Iface) {
		t.Errorf("re-attach output: got %q", d2.output)
	}
	if got := total(readStats(t, root, a.Iface)).Packets; got < total(before).Packets+5 {
		t.Errorf("counters after replace: got %d, want them kept", got)
	}
	d2.signal(t, syscall.SIGKILL)

	if out := mustXdpstack(t, root, "detach", a.Iface); !strings.Contains(out, "detached") {
		t.Errorf("detach: got %q", out)
	}
	checkClean(t, a, root)
	b.Exec(t, "ping", "-q", "-c", "2", "-i", "0.01", a.Addr.String())
}

// TestPinsUnderIPNetnsExec: `ip netns exec` gives each command its own
// BPF filesystem on /sys/fs/bpf, so one command cannot see the pins of
// another. status, attach and detach must say so rather than call xdpstack's
// program a foreign one, and a pin root on a BPF filesystem mounted
// elsewhere, as the message advises, must work across commands.
func TestPinsUnderIPNetnsExec(t *testing.T) {
	a, _ := testutil.HostPair(t, 0)
	netnsExec := func(args ...string) *exec.Cmd {
		return exec.Command("ip", append([]string{"netns", "exec", a.Netns, binary}, args...)...)
	}
	run := func(root string, args ...string) (string, error) {
		out, err := netnsExec(append([]string{"--pin-root", root}, args...)...).CombinedOutput()
		return strings.TrimSpace(string(out)), err
	}

	root := testutil.PinRoot(t)
	d := startDaemonWith(t, netnsExec, a, root, "--metrics-addr", "")
	want := fmt.Sprintf("%s has xdpstack's XDP program %d, but its pins are not in", a.Iface, d.ready.ProgramID)
	for _, args := range [][]string{{"status", a.Iface}, {"detach", a.Iface}} {
		out, err := run(root, args...)
		if err == nil || !strings.Contains(out, want) || !strings.Contains(out, "ip netns exec") {
			t.Errorf("xdpstack %s beside a daemon under ip netns exec: got %v, %q; want an error containing %q and the advice", strings.Join(args, " "), err, out, want)
		}
	}
	// attach finds the daemon by its control socket before its pins.
	if out, err := run(root, "attach", a.Iface, "--metrics-addr", ""); err == nil || !strings.Contains(out, "xdpstack already runs on "+a.Iface) {
		t.Errorf("xdpstack attach beside a daemon under ip netns exec: got %v, %q; want already runs", err, out)
	}
	if id := xdpProgramID(t, a); id != d.ready.ProgramID {
		t.Errorf("program on %s after the refused commands: %d, want the daemon's %d", a.Iface, id, d.ready.ProgramID)
	}
	// Its BPF filesystem, with the pinned link, goes with the process: so
	// does the program, even after kill -9.
	d.signal(t, syscall.SIGKILL)
	for deadline := time.Now().Add(2 * time.Second); xdpAttached(t, a) && time.Now().Before(deadline); {
		time.Sleep(10 * time.Millisecond)
	}
	checkClean(t, a, root)

	shared := t.TempDir()
	if err := unix.Mount("bpf", shared, "bpf", 0, "mode=0700"); err != nil {
		t.Fatalf("mount a BPF filesystem on %s: %v", shared, err)
	}
	t.Cleanup(func() { unix.Unmount(shared, unix.MNT_DETACH) })
	d = startDaemonWith(t, netnsExec, a, shared, "--metrics-addr", "")
	if out, err := run(shared, "status", a.Iface); err != nil || !strings.Contains(out, fmt.Sprint(d.ready.ProgramID)) {
		t.Errorf("status with a shared pin root: got %v, %q; want program %d", err, out, d.ready.ProgramID)
	}
	if err := d.signal(t, syscall.SIGTERM); err != nil {
		t.Fatalf("exit: %v\n%s", err, d.output)
	}
	checkClean(t, a, shared)
}

// xdpProgramID is the id of the XDP program on the host's interface, 0
// when none.
func xdpProgramID(t *testing.T, h *testutil.Host) uint32 {
	t.Helper()
	l, err := h.Link()
	if err != nil {
		t.Fatal(err)
	}
	if x := l.Attrs().Xdp; x != nil && x.Attached {
		return x.ProgId
	}
	return 0
}

// TestBadInputChangesNothing runs bad input of every kind through the
// binary: each gets a one-line error naming what was wrong, and nothing
// is attached, pinned, reserved or written.
func TestBadInputChangesNothing(t *testing.T) {
	a, _ := testutil.HostPair(t, 0)
	root := testutil.PinRoot(t)
	files := t.TempDir() // where a ready file may not appear
	ready := filepath.Join(files, "ready")
	reserved := a.Exec(t, "cat", "/proc/sys/net/ipv4/ip_local_reserved_ports")
	app := func(spec string) []string { return []string{"attach", a.Iface, "--app", spec} }
	confs := t.TempDir()
	config := func(text string) string {
		es, _ := os.ReadDir(confs)
		path := filepath.Join(confs, fmt.Sprintf("%d.yaml", len(es)))
		os.WriteFile(path, []byte(text), 0o644)
		return path
	}
	unknownKey := config("mode: auto\nbogus: 1\n")
	badPSP := config("psp:\n  config: {local-grpc-address: \"192.0.2.1:3000\"}\n  peers:\n    - remote-grpc-address: 192.0.2.2\n      sessions: [{remote-vips: [10.9.0.0/33]}]\n")
	tooManyShapes := "rules:\n"
	for bits := 0; bits <= maps.MaxRuleShapes; bits++ {
		tooManyShapes += fmt.Sprintf("  - {remote: 100.64.0.0/%d, action: deny}\n", bits)
	}
	pspJSON := func(name, text string) string {
		path := filepath.Join(confs, name+".json")
		os.WriteFile(path, []byte(text), 0o644)
		return path
	}
	pspConfig := pspJSON("psp", fmt.Sprintf(`{"config": {"local-grpc-address": "%s:3000"}, "peers": [{"remote-grpc-address": "192.0.2.2:3000", "sessions": [{"local-vip": "10.77.0.1", "remote-vips": ["10.77.0.2"]}]}]}`, a.Addr))
	pspBadAddr := pspJSON("psp-bad-address", `{"config": {"local-grpc-address": "192.0.2.1:3000"}, "peers": [{"remote-grpc-address": "192.0.2.2:3000", "sessions": [{"local-vip": "10.77.0.300", "remote-vips": ["10.77.0.2"]}]}]}`)
	certs := filepath.Join(confs, "certs")
	mustXdpstack(t, root, "psp", "certs", "--dir", certs, "a="+a.Addr.String()+",10.77.0.1")
	psp := func(flags ...string) []string {
		return append([]string{"attach", a.Iface, "--psp-config", pspConfig, "--psp-key", filepath.Join(certs, "a.key"), "--psp-ca", filepath.Join(certs, "ca.pem")}, flags...)
	}
	missingCert := filepath.Join(certs, "b.pem")
	openSecret := filepath.Join(confs, "open.secret")
	os.WriteFile(openSecret, []byte("s3cret\n"), 0o644)
	os.Chmod(openSecret, 0o644)

	var taken net.Listener
	a.Do(t, func() (err error) {
		taken, err = net.Listen("tcp", "127.0.0.1:0")
		return err
	})
	defer taken.Close()

	for _, tc := range []struct {
		name string
		args []string
		want string
	}{
		{"no iface", []string{"attach"}, "missing IFACE"},
		{"unknown iface", []string{"attach", "xs-nosuch0"}, `interface "xs-nosuch0" not found`},
		{"bad mode", []string{"attach", a.Iface, "--mode", "fast"}, `unknown XDP mode "fast"`},
		{"bad metrics addr", []string{"attach", a.Iface, "--metrics-addr", "nope"}, "--metrics-addr"},
		{"bad metrics port", []string{"attach", a.Iface, "--metrics-addr", "127.0.0.1:99999"}, "not a number from 0 to 65535"},
		{"ready file folder missing", []string{"attach", a.Iface, "--ready-file", "/nonexistent/ready"}, "--ready-file: create a file in /nonexistent: no such file"},
		{"metrics port taken", []string{"attach", a.Iface, "--metrics-addr", taken.Addr().String()}, "listen for metrics"},
		{"unknown flag", []string{"attach", a.Iface, "--bogus"}, "attach: unknown flag --bogus (see: xdpstack attach --help)"},
		{"flag typo", []string{"attach", a.Iface, "--sampel-rate", "3"}, "attach: unknown flag --sampel-rate (did you mean --sample-rate? see: xdpstack attach --help)"},
		{"command typo", []string{"atach", a.Iface}, `unknown command "atach" (did you mean attach? see: xdpstack --help)`},
		{"bad congestion control", []string{"attach", a.Iface, "--app", "echo=tcp://:7", "--tcp-cc", "bbr"}, `congestion control "bbr": want cubic or reno`},
		{"tiny send buffer", []string{"attach", a.Iface, "--tcp-send-buffer", "100"}, "tcp send buffer 100: want 4096 to 1073741824 bytes"},
		{"bad receive buffer", []string{"attach", a.Iface, "--tcp-receive-buffer", "lots"}, "--tcp-receive-buffer"},
		{"bad backlog", []string{"attach", a.Iface, "--tcp-backlog", "0"}, "--tcp-backlog 0"},
		{"procs 0", []string{"attach", a.Iface, "--procs", "0"}, `--procs "0": want auto or a number from 1 to 4096`},
		{"procs not a number", []string{"attach", a.Iface, "--procs", "many"}, `--procs "many": want auto or a number from 1 to 4096`},
		{"app in the userstack's ports", []string{"attach", a.Iface, "--app", "echo=tcp://:61500"}, "port 61500 is in the userstack's own port range 61000-62999"},
		{"stats not attached", []string{"stats", a.Iface}, "xdpstack is not attached to " + a.Iface},
		{"stats count without rate", []string{"stats", "--count", "3"}, "go with --rate"},
		{"detach not attached", []string{"detach", a.Iface}, "not attached"},
		{"status not attached", []string{"status", a.Iface}, "not attached"},
		{"ready file a folder", []string{"attach", a.Iface, "--ready-file", files}, "--ready-file: " + files + " is a folder"},
		{"ready file in /proc", []string{"attach", a.Iface, "--ready-file", "/proc/self/ready"}, "--ready-file: create a file in /proc/self"},
		{"ready file a device", []string{"attach", a.Iface, "--ready-file", "/dev/null"}, "--ready-file: /dev/null is not a regular file"},
		{"huge backlog", []string{"attach", a.Iface, "--tcp-backlog", "99999999999"}, "tcp backlog 99999999999: want 1 to 65535"},
		{"size past int64 in K", []string{"attach", a.Iface, "--tcp-send-buffer", "18014398509486080K"}, `--tcp-send-buffer: "18014398509486080K" is more bytes than can be counted`},
		{"size past int64 in G", []string{"attach", a.Iface, "--tcp-receive-buffer", "17179869184G"}, `--tcp-receive-buffer: "17179869184G" is more bytes than can be counted`},
		{"huge buffer", []string{"attach", a.Iface, "--tcp-send-buffer", "2G"}, "tcp send buffer 2147483648: want 4096 to 1073741824 bytes"},
		{"backend port past 65535", app("proxy=tcp://:80,backend=tcp://127.0.0.1:99999"), `backend "tcp://127.0.0.1:99999": port "99999" is not a number from 0 to 65535`},
		{"backend without host and port", app("proxy=tcp://:80,backend=tcp://:"), `backend "tcp://:": port "" is not a number`},
		{"alpn on tcp", app("proxy=tcp://:80,backend=tcp://127.0.0.1:8080,alpn=h2"), "alpn= goes with tls:// or quic://"},
		{"app option without value", app("http=tcp://:80,root="), "option root: empty value"},
		{"app option twice", app("echo=tls://:7,test-cert=a.test,test-cert=b.test"), "option test-cert given twice"},
		{"app with a server name", app("echo=tls://[a.test]" + a.Addr.String() + ":7,test-cert=a.test"), "[a.test] names the server a client checks"},
		{"app on another host's address", app("echo=tcp://192.0.2.1:7"), "--app echo=tcp://192.0.2.1:7: 192.0.2.1 is not an address of " + a.Iface},
		{"mode without value", []string{"attach", a.Iface, "--mode"}, "--mode needs a value (see: xdpstack attach --help)"},
		{"mode twice", []string{"attach", a.Iface, "--mode", "native", "--mode", "generic"}, "--mode given twice"},
		{"interface name out of the pin root", []string{"attach", "../x"}, `interface name "../x"`},
		{"psp flag missing", []string{"psp", "derive"}, "psp derive: --spi missing (see: xdpstack psp derive --help)"},
		{"psp argument", []string{"psp", "derive", "--spi", "1", "--version", "0", "keys"}, `psp derive takes no arguments, got ["keys"]`},
		{"echo argument", []string{"echo", "server", "--uri", "tcp://:7", "extra"}, `echo server takes no arguments, got ["extra"]`},
		{"echo server on another host's address", []string{"echo", "server", "--iface", a.Iface, "--uri", "tcp://192.0.2.1:7"}, "--uri: 192.0.2.1 is not an address of " + a.Iface},
		{"echo client without address", []string{"echo", "client", "--uri", "tcp://:7"}, "a client needs the server's address and a port from 1 to 65535"},
		{"echo client to port 0", []string{"echo", "client", "--uri", "udp://192.0.2.1:0"}, "a client needs the server's address and a port from 1 to 65535"},
		{"echo client huge nclients", []string{"echo", "client", "--uri", "tcp://192.0.2.1:7", "--nclients", "99999999999"}, "--nclients 99999999999: want 1 to 65535"},
		{"echo client huge streams", []string{"echo", "client", "--uri", "quic://192.0.2.1:7", "--insecure", "--streams", "99999999"}, "--streams 99999999: want 1 to 1000"},
		{"echo client stats NaN", []string{"echo", "client", "--uri", "tcp://192.0.2.1:7", "--stats", "NaN"}, "--stats NaN: want 0 to 86400 seconds"},
		{"stats interval 1ns", []string{"stats", "--rate", "--interval", "1ns"}, "--interval 1ns: want at least 10ms"},
		{"sessions unknown state", []string{"sessions", a.Iface, "--state", "ESTABLISHED"}, `sessions: unknown state "ESTABLISHED" (want one of created, listening`},
		{"sessions bad proto", []string{"sessions", a.Iface, "--proto", "sctp"}, `sessions: unknown proto "sctp" (want tcp or udp)`},
		{"sessions verbose 3", []string{"sessions", a.Iface, "--verbose", "3"}, "sessions: verbose 3 (want 0, 1 or 2)"},
		{"sessions verbose not a number", []string{"sessions", a.Iface, "--verbose=lots"}, `sessions: verbose "lots" (want 0, 1 or 2)`},
		{"rule with a bad prefix", []string{"rules", "add", a.Iface, "--remote", "10.0.0.0/40", "--action", "deny"}, `rules add: --remote: "10.0.0.0/40": not an address or prefix`},
		{"rule with a bad action", []string{"rules", "add", a.Iface, "--action", "drop"}, `rules add: --action: action "drop": want allow, deny or pass`},
		{"rule in a namespace not running", []string{"rules", "add", a.Iface, "--action", "deny", "--namespace", "web"}, fmt.Sprintf("rules add %s: xdpstack is not running on %s (no daemon answers on %s)", a.Iface, a.Iface, socketOf(a))},
		{"ns add not running", []string{"ns", "add", a.Iface, "blue", "--secret", "s"}, fmt.Sprintf("ns add %s: xdpstack is not running on %s", a.Iface, a.Iface)},
		{"ns list not running", []string{"ns", "list", a.Iface}, fmt.Sprintf("ns list %s: xdpstack is not running on %s", a.Iface, a.Iface)},
		{"rule when not attached", []string{"rules", "add", a.Iface, "--action", "deny"}, "xdpstack is not attached to " + a.Iface},
		{"rules list when not attached", []string{"rules", "list", a.Iface}, "xdpstack is not attached to " + a.Iface},
		{"unknown control group", []string{"attach", a.Iface, "--control-group", "xs-nosuch-group"}, `--control-group: no group "xs-nosuch-group" (see: getent group)`},
		{"config missing", []string{"attach", a.Iface, "--config", "/nonexistent/x.yaml"}, "config: open /nonexistent/x.yaml: no such file or directory"},
		{"config unknown key", []string{"attach", a.Iface, "--config", unknownKey}, "config " + unknownKey + ` line 2: unknown key "bogus"`},
		{"config bad value", []string{"attach", a.Iface, "--config", config("tcp-sack: yes\n")}, `line 1: tcp-sack: want true or false, got "yes"`},
		{"config bad app", []string{"attach", a.Iface, "--config", config("apps:\n  - echo=tcp://:61500\n")}, "port 61500 is in the userstack's own port range"},
		{"config app on another host's address", []string{"attach", a.Iface, "--config", config("apps:\n  - echo=tcp://192.0.2.1:7\n")}, "apps echo=tcp://192.0.2.1:7: 192.0.2.1 is not an address of " + a.Iface},
		{"config rule not a mapping", []string{"attach", a.Iface, "--config", config("rules:\n  - allow\n")}, `line 2: rules: want a rule (proto, local, remote, action, tag), got "allow"`},
		{"config bad rule", []string{"attach", a.Iface, "--config", config("rules:\n  - proto: tcp\n    local: :22\n    action: drop\n")}, `line 4: rules: action: action "drop": want allow, deny or pass`},
		{"config rules of too many shapes", []string{"attach", a.Iface, "--config", config(tooManyShapes)}, "line 2: rules: 33 distinct shapes (protocol, prefix lengths, port wildcards): the program takes at most 32"},
		{"config namespaces not a list", []string{"attach", a.Iface, "--config", config("namespaces: {blue: {}}\n")}, "line 1: namespaces: want a list, got a mapping"},
		{"config namespace without secret", []string{"attach", a.Iface, "--config", config("namespaces:\n  - name: blue\n")}, "line 2: namespaces: namespace blue: needs a secret"},
		{"config namespace on another host's address", []string{"attach", a.Iface, "--config", config("namespaces:\n  - {name: blue, secret: s, addrs: [192.0.2.1]}\n")}, "line 2: namespaces: blue: addrs: 192.0.2.1 is not an address of " + a.Iface},
		{"config namespace secret others read", []string{"attach", a.Iface, "--config", config("namespaces:\n  - name: blue\n    secret-file: " + openSecret + "\n")}, "line 3: namespaces: blue: secret-file " + openSecret + ": mode 0644 lets others than its owner at the secret"},
		{"config local pass rule", []string{"attach", a.Iface, "--config", config("namespaces:\n  - name: default\n    rules:\n      - {local: \":80\", action: pass}\n")}, "line 4: namespaces: default: rules: action: pass is for global rules only"},
		{"config check bad", []string{"config", "check", unknownKey}, "config " + unknownKey + ` line 2: unknown key "bogus"`},
		{"config check bad psp", []string{"config", "check", badPSP}, "config " + badPSP + ` line 5: psp: peers[0].sessions[0].remote-vips[0]: "10.9.0.0/33" is not an address or prefix`},
		{"config check no file", []string{"config", "check"}, "config check: want one FILE argument, got 0"},
		{"sample rate past 16", []string{"attach", a.Iface, "--sample-rate", "17"}, "--sample-rate 17: want 0 (off) to 16 (1 packet in 2^N)"},
		{"snaplen 0", []string{"attach", a.Iface, "--snaplen", "0"}, "--snaplen 0: want 1 to 65280 bytes"},
		{"config bad sample rate", []string{"attach", a.Iface, "--config", config("sample-rate: 99\n")}, "line 1: sample-rate 99: want 0 (off) to 16"},
		{"capture bad filter", []string{"capture", a.Iface, "--all", "-w", filepath.Join(files, "c.pcapng"), "--filter", "verdict drp"},
			fmt.Sprintf(`capture %s: filter "verdict drp": unknown verdict "drp" (want aborted, drop, pass, tx, redirect)`, a.Iface)},
		{"capture filter cut short", []string{"capture", a.Iface, "--filter", "tcp and"}, "ends where a primitive should follow"},
		{"capture bad point", []string{"capture", a.Iface, "--point", "tc"}, `--point: unknown point "tc" (want xdp, userstack or psp)`},
		{"capture count 0", []string{"capture", a.Iface, "--count", "0"}, "--count 0: want at least 1"},
		{"capture duration 0", []string{"capture", a.Iface, "--duration", "0s"}, "--duration 0s: want a time above 0"},
		{"capture snaplen past its most", []string{"capture", a.Iface, "--snaplen", "70000"}, "--snaplen 70000: want 1 to 65280 bytes"},
		{"capture sample rate past 16", []string{"capture", a.Iface, "--sample-rate", "17"}, "--sample-rate 17: want 0 (off) to 16"},
		{"capture all at the userstack", []string{"capture", a.Iface, "--point", "userstack", "--all"}, "--all and --sample-rate go with --point xdp"},
		{"capture sample rate at the psp point", []string{"capture", a.Iface, "--point", "psp", "--sample-rate", "3"}, "--all and --sample-rate go with --point xdp"},
		{"capture verdicts at the userstack", []string{"capture", a.Iface, "--point", "userstack", "--filter", "reason steered"}, "verdict, reason and rule are the XDP hook's"},
		{"capture to a folder", []string{"capture", a.Iface, "--all", "-w", files}, "--write " + files + ": a folder (want a file, a pipe or -)"},
		{"capture not attached", []string{"capture", a.Iface, "--all", "-w", filepath.Join(files, "c.pcapng")}, "capture " + a.Iface + ": xdpstack is not attached to " + a.Iface},
		{"capture argument", []string{"capture", a.Iface, "tcp"}, "want one IFACE argument, got 2"},
		{"reload not running", []string{"reload", a.Iface}, fmt.Sprintf("reload %s: xdpstack is not running on %s (no daemon answers on %s)", a.Iface, a.Iface, socketOf(a))},
		{"reload bad name", []string{"reload", "../x"}, `interface name "../x"`},
		{"psp flag without psp config", []string{"attach", a.Iface, "--static-tunnels"}, "--static-tunnels: no PSP gateway to apply it to (give --psp-config or a psp: section)"},
		{"psp version 7", psp("--psp-cert", filepath.Join(certs, "a.pem"), "--psp-version", "7"), "--psp-version 7: want 0 to 3"},
		{"psp inner ipv5", psp("--psp-cert", filepath.Join(certs, "a.pem"), "--inner-ip-type", "ipv5"), `--inner-ip-type: ip type "ipv5": want ipv4 or ipv6`},
		{"psp cert missing", psp("--psp-cert", missingCert, "--outer-ip-type", "ipv4"), "load psp certificate " + missingCert + " and key " + filepath.Join(certs, "a.key") + ": open " + missingCert + ": no such file or directory"},
		{"psp config bad address", []string{"attach", a.Iface, "--psp-config", pspBadAddr, "--psp-plaintext"}, `psp-bad-address.json line 1: peers[0].sessions[0].local-vip: "10.77.0.300" is not an IP address`},
		{"ready without iface", []string{"status", "--ready"}, "missing IFACE argument"},
		{"ready as json", []string{"status", a.Iface, "--ready", "--json"}, "--ready and --json: choose one"},
		{"ready not running", []string{"status", a.Iface, "--ready"}, fmt.Sprintf("status %s: xdpstack is not running on %s (no daemon answers on %s)", a.Iface, a.Iface, socketOf(a))},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if tc.args[0] == "attach" && !slices.Contains(tc.args, "--ready-file") {
				tc.args = slices.Insert(tc.args, 1, "--ready-file", ready)
			}
			// Run inside the host, where its interface exists.
			cmd := a.Command(context.Background(), binary, append([]string{"--pin-root", root}, tc.args...)...)
			out, err := cmd.CombinedOutput()
			if err == nil || !strings.Contains(string(out), tc.want) {
				t.Errorf("xdpstack %s: got %v, %q; want an error containing %q", strings.Join(tc.args, " "), err, out, tc.want)
			}
			if n := strings.Count(strings.TrimSpace(string(out)), "\n"); n > 0 {
				t.Errorf("error is %d lines, want one: %q", n+1, out)
			}
			checkClean(t, a, root)
			checkNoSocket(t, a)
			if now := a.Exec(t, "cat", "/proc/sys/net/ipv4/ip_local_reserved_ports"); now != reserved {
				t.Errorf("reserved ports went from %q to %q", reserved, now)
			}
			if es, _ := os.ReadDir(files); len(es) != 0 {
				t.Errorf("%s holds %v, want nothing written", files, es)
			}
			if _, err := os.Stat(ready); !os.IsNotExist(err) {
				t.Errorf("%s written (%v)", ready, err)
			}
		})
	}

	t.Run("not root", func(t *testing.T) {
		out, err := exec.Command("setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", binary, "attach", "lo").CombinedOutput()
		if err == nil || !strings.Contains(string(out), "needs root") {
			t.Errorf("attach as nobody: got %v, %q", err, out)
		}
	})
}

func TestAutoModeWarnsOnGenericFallback(t *testing.T) {
	a, _ := testutil.HostPair(t, 0)
	root := testutil.PinRoot(t)
	// A bridge has no native XDP.
	bridge := &testutil.Host{Host: &hosts.Host{Netns: a.Netns, Iface: "xsbr0"}}
	a.Exec(t, "ip", "link", "add", bridge.Iface, "type", "bridge")
	a.Exec(t, "ip", "link", "set", bridge.Iface, "up")
	d := startDaemon(t, bridge, root, "--metrics-addr", "")
	if d.ready.Mode != "generic" || !strings.Contains(d.output.String(), "level=WARN msg=\"native XDP failed; attached in generic mode\" iface=xsbr0") {
		t.Errorf("auto on a bridge: ready %+v, output %q; want generic with a warning", d.ready, d.output)
	}
	if out := mustXdpstack(t, root, "status", bridge.Iface); !strings.Contains(out, "unknown") {
		// status runs in the root namespace, where xsbr0 is not: it must
		// not guess the mode.
		t.Errorf("status from another namespace: got %q, want mode unknown", out)
	}
	out, err := bridge.Command(context.Background(), binary, "--pin-root", root, "status", bridge.Iface).CombinedOutput()
	if err != nil || !strings.Contains(string(out), "generic") {
		t.Errorf("status in the namespace: got %v, %q; want generic", err, out)
	}
}
