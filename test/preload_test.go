package test

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/xdpstack/xdpstack/internal/testing/programs"
	"github.com/xdpstack/xdpstack/internal/testing/testutil"
)

// The tests of issue 23 run real programs on host A against peers on
// kernel sockets on host B, each in two modes: "kernel", the program on
// A's kernel sockets, which proves the configurations and assertions;
// and "userstack", the program under `xdpstack run` on the userstack of
// an `attach` daemon on A's interface, skipped until run and the
// library are built.

// preloadEnv is one mode's hosts: A, where the program under test runs
// through the launcher, and B, its peer on kernel sockets.
type preloadEnv struct {
	*programs.Launcher
	a, b *testutil.Host
	root string
	// d is the attach daemon on A's interface, in userstack mode.
	d *daemon
}

// inModes runs test on hosts of its own in each mode.
func inModes(t *testing.T, test func(t *testing.T, e *preloadEnv)) {
	for _, mode := range []string{"kernel", "userstack"} {
		t.Run(mode, func(t *testing.T) {
			if mode == "userstack" {
				requirePreload(t)
			}
			a, b := testutil.HostPair(t, 2)
			e := &preloadEnv{Launcher: programs.Kernel(a.Host), a: a, b: b, root: testutil.PinRoot(t)}
			if mode == "userstack" {
				e.d = startDaemon(t, a, e.root, "--metrics-addr", "127.0.0.1:0")
				e.Launcher = programs.Preloaded(a.Host, binary, "--pin-root", e.root)
			}
			test(t, e)
		})
	}
}

var preloadBuild struct {
	once sync.Once
	skip string
	err  error
}

// requirePreload skips the test until `xdpstack run` and the library
// are built: the binary has run, and `make build`, which builds the
// library as bin/libxdpstack.so, made one. It goes beside the test's
// binary, where run looks first.
func requirePreload(t *testing.T) {
	t.Helper()
	preloadBuild.once.Do(func() {
		if err := programs.PreloadBuilt(binary); err != nil && !strings.Contains(err.Error(), programs.LibraryName) {
			preloadBuild.skip = err.Error()
			return
		}
		if out, err := exec.Command("make", "-C", "..", "build").CombinedOutput(); err != nil {
			preloadBuild.err = fmt.Errorf("make build: %v\n%s", err, out)
			return
		}
		lib, err := os.ReadFile(filepath.Join("..", "bin", programs.LibraryName))
		if errors.Is(err, os.ErrNotExist) {
			preloadBuild.skip = "xdpstack run not built yet (make build made no bin/" + programs.LibraryName + ")"
			return
		}
		if err == nil {
			err = os.WriteFile(filepath.Join(filepath.Dir(binary), programs.LibraryName), lib, 0o755)
		}
		if err == nil {
			err = programs.PreloadBuilt(binary)
		}
		preloadBuild.err = err
	})
	if preloadBuild.skip != "" {
		t.Skip(preloadBuild.skip)
	}
	if preloadBuild.err != nil {
		t.Fatal(preloadBuild.err)
	}
}

// userstack says whether the programs run on the userstack.
func (e *preloadEnv) userstack() bool { return e.d != nil }

// start starts a program on A in the mode, stopped when the test ends.
func (e *preloadEnv) start(t *testing.T, name string, args ...string) *programs.Proc {
	t.Helper()
	return startProc(t, e.Command(context.Background(), name, args...))
}

// startProc starts cmd, stopped when the test ends; its output is
// logged if the test failed.
func startProc(t *testing.T, cmd *exec.Cmd) *programs.Proc {
	t.Helper()
	p, err := programs.Start(cmd)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		p.Stop()
		if t.Failed() {
			t.Logf("%s:\n%s", strings.Join(cmd.Args, " "), p.Output())
		}
	})
	return p
}

// run runs a program on A in the mode, bounded by timeout.
func (e *preloadEnv) run(timeout time.Duration, name string, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	out, err := e.Command(ctx, name, args...).CombinedOutput()
	return string(out), err
}

// carried checks, in userstack mode, that the userstack received
// segments of proto ("tcp" or "udp"): the program's sockets were its,
// not libc's.
func (e *preloadEnv) carried(t *testing.T, proto string) {
	t.Helper()
	if !e.userstack() {
		return
	}
	series := map[string]string{"tcp": "xdpstack_userstack_tcp_segments_total", "udp": "xdpstack_userstack_udp_datagrams_total"}[proto]
	if n := metric(t, e.a, e.d, fmt.Sprintf(`%s{direction="rx",iface="%s"}`, series, e.a.Iface)); n == 0 {
		t.Errorf("the userstack received no %s: the program's sockets stayed with libc", proto)
	}
}

// iperf3 runs an iperf3 client through l against server, retrying while
// the server is not listening yet, and returns its report.
func iperf3(t *testing.T, l *programs.Launcher, server string, args ...string) programs.Iperf3 {
	t.Helper()
	args = append([]string{"-J", "-c", server, "-t", "2", "--connect-timeout", "2000"}, args...)
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(100 * time.Millisecond) {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		out, err := l.Command(ctx, "iperf3", args...).Output()
		cancel()
		r, perr := programs.ParseIperf3(out)
		if err == nil && perr == nil {
			return r
		}
		if !strings.Contains(r.Error, "unable to connect") || time.Now().After(deadline) {
			t.Fatalf("iperf3 %s (%s): %v, %v", strings.Join(args, " "), l.Mode(), err, perr)
		}
	}
}

// checkIperf3 checks a client's report: data arrived, and for UDP how
// many datagrams were lost is reported.
func checkIperf3(t *testing.T, r programs.Iperf3, udp bool) {
	t.Helper()
	got := r.End.SumReceived
	if got.Bytes == 0 || udp && got.LostPackets >= got.Packets {
		t.Fatalf("iperf3: nothing received: %+v", got)
	}
	if udp {
		t.Logf("udp: %d datagrams, %d lost (%.2f%%)", got.Packets, got.LostPackets, got.LostPercent)
	} else {
		t.Logf("tcp: %d bytes received, %.2f Gbit/s", got.Bytes, got.BitsPerSecond/1e9)
	}
}

// TestPreloadIperf3 runs iperf3 as server and as client, TCP and UDP,
// against iperf3 on kernel sockets.
func TestPreloadIperf3(t *testing.T) {
	needTools(t, "iperf3")
	inModes(t, func(t *testing.T, e *preloadEnv) {
		for _, tc := range []struct {
			name string
			args []string
		}{
			{"tcp", nil},
			{"udp", []string{"-u", "-b", "100M"}},
		} {
			udp := tc.args != nil
			t.Run(tc.name+" server", func(t *testing.T) {
				server := e.start(t, "iperf3", "-s", "-1", "-J", "-B", e.a.Addr.String())
				checkIperf3(t, iperf3(t, programs.Kernel(e.b.Host), e.a.Addr.String(), tc.args...), udp)
				select {
				case <-server.Done():
				case <-time.After(5 * time.Second):
					t.Fatalf("iperf3 -s -1 still running 5s after its client ended")
				}
				if _, err := programs.ParseIperf3([]byte(server.Output())); err != nil || server.Err() != nil {
					t.Fatalf("iperf3 server: %v, %v", server.Err(), err)
				}
			})
			t.Run(tc.name+" client", func(t *testing.T) {
				startProc(t, e.b.Command(context.Background(), "iperf3", "-s", "-1", "-B", e.b.Addr.String()))
				checkIperf3(t, iperf3(t, e.Launcher, e.b.Addr.String(), tc.args...), udp)
			})
		}
		e.carried(t, "tcp")
		e.carried(t, "udp")
	})
}

// startNginx starts nginx on A in the mode with two workers, listening
// on A's port 80, each request in its access log; stopped when the test
// ends.
func (e *preloadEnv) startNginx(t *testing.T) *programs.Nginx {
	t.Helper()
	return startNginxOn(t, e.Launcher, e.a.Addr.String()+":80")
}

// startNginxOn starts nginx through l on listen, stopped when the test
// ends; the error log must show no alert or worse by then.
func startNginxOn(t *testing.T, l *programs.Launcher, listen string) *programs.Nginx {
	t.Helper()
	n, err := programs.StartNginx(context.Background(), l, t.TempDir(), programs.NginxOptions{Listen: listen, Workers: 2, AccessLog: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := n.Stop(); err != nil {
			t.Error(err)
		}
		for _, level := range []string{"[emerg]", "[alert]", "[crit]"} {
			if log := n.ErrorLog(); strings.Contains(log, level) {
				t.Errorf("nginx (%s) logged %s:\n%s", l.Mode(), level, log)
				break
			}
		}
	})
	return n
}

// curlFrom fetches url from h with curl and returns the body's SHA-256.
func curlFrom(t *testing.T, l *programs.Launcher, url string, args ...string) [32]byte {
	t.Helper()
	body := filepath.Join(t.TempDir(), "body")
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	args = append([]string{"-sS", "--fail", "--max-time", "20", "-o", body}, append(args, url)...)
	if out, err := l.Command(ctx, "curl", args...).CombinedOutput(); err != nil {
		t.Fatalf("curl %s (%s): %v: %s", url, l.Mode(), err, out)
	}
	b, err := os.ReadFile(body)
	if err != nil {
		t.Fatal(err)
	}
	return sha256.Sum256(b)
}

// TestPreloadNginx serves files from nginx, whose master forks two
// workers, to curl and wrk: bodies intact, no errors under load, and
// the workers keep serving sequential and concurrent connections.
func TestPreloadNginx(t *testing.T) {
	needTools(t, "nginx", "curl", "wrk")
	inModes(t, func(t *testing.T, e *preloadEnv) {
		n := e.startNginx(t)
		peer := programs.Kernel(e.b.Host)
		base := fmt.Sprintf("http://%s", e.a.Addr)
		sums := map[string][32]byte{}
		for name, size := range map[string]int{"empty": 0, "small": 1000, "big": 8 << 20} {
			sum, err := n.WriteFile(name, size)
			if err != nil {
				t.Fatal(err)
			}
			sums[name] = sum
		}
		t.Run("curl", func(t *testing.T) {
			for name, want := range sums {
				if got := curlFrom(t, peer, base+"/"+name); got != want {
					t.Errorf("curl %s: body differs from the file", name)
				}
			}
		})
		t.Run("wrk", func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			w, err := programs.RunWrk(ctx, e.b.Host, "-t2", "-c16", "-d2s", base+"/small")
			if err != nil || w.Requests == 0 {
				t.Fatalf("wrk: %+v, %v", w, err)
			}
			t.Logf("wrk: %d requests, %.0f/s", w.Requests, w.PerSecond)
		})
		t.Run("workers keep serving", func(t *testing.T) {
			const requests = 20
			urls := make([]string, requests)
			for i := range urls {
				urls[i] = fmt.Sprintf("%s/small?%d", base, i)
			}
			// A connection of its own for every request, one after the
			// other and then ten at a time.
			for _, mode := range [][]string{nil, {"--parallel", "--parallel-max", "10"}} {
				ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
				args := append([]string{"-sS", "-H", "Connection: close", "-o", "/dev/null", "-w", "%{http_code}\n"}, mode...)
				out, err := e.b.Command(ctx, "curl", append(args, urls...)...).CombinedOutput()
				cancel()
				if err != nil || strings.Count(string(out), "200\n") != requests {
					t.Fatalf("curl %d requests %v: %v\n%s", requests, mode, err, out)
				}
			}
			served, err := n.WorkersServed()
			if err != nil {
				t.Fatal(err)
			}
			workers := n.Workers()
			for pid := range served {
				if !slices.Contains(workers, pid) {
					t.Errorf("pid %d served requests but is no worker of the master %d (workers %v)", pid, n.Pid, workers)
				}
			}
			t.Logf("requests by worker: %v", served)
		})
		e.carried(t, "tcp")
	})
}

// TestPreloadRedis serves redis from A to redis-cli and redis-benchmark.
func TestPreloadRedis(t *testing.T) {
	needTools(t, "redis-server", "redis-cli", "redis-benchmark")
	inModes(t, func(t *testing.T, e *preloadEnv) {
		const port = 6379
		p, err := programs.StartRedis(e.Launcher, t.TempDir(), e.a.Addr.String(), port)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { p.Stop() })
		cli := func(args ...string) string {
			return strings.TrimSpace(e.b.Exec(t, "redis-cli", append([]string{"-h", e.a.Addr.String(), "-p", fmt.Sprint(port)}, args...)...))
		}
		if got := cli("set", "greeting", "hello from redis"); got != "OK" {
			t.Fatalf("redis-cli set: %q", got)
		}
		if got := cli("get", "greeting"); got != "hello from redis" {
			t.Fatalf("redis-cli get: %q", got)
		}
		rps, err := programs.RedisBenchmark(context.Background(), e.b.Host, e.a.Addr.String(), port, "get,set", 20000, 50)
		if err != nil {
			t.Fatal(err)
		}
		t.Logf("redis-benchmark, 50 clients: %.0f GET/s, %.0f SET/s", rps["GET"], rps["SET"])
		e.carried(t, "tcp")
	})
}

// TestPreloadSSH runs a command over ssh from B through sshd on A,
// which re-executes itself for every connection.
func TestPreloadSSH(t *testing.T) {
	needTools(t, "ssh", "ssh-keygen")
	if _, err := os.Stat("/usr/sbin/sshd"); err != nil {
		t.Skip("needs /usr/sbin/sshd (make deps installs openssh-server)")
	}
	// sshd's privilege separation needs its folder, which the package's
	// service would make.
	if _, err := os.Stat("/run/sshd"); errors.Is(err, os.ErrNotExist) {
		if err := os.Mkdir("/run/sshd", 0o755); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { os.Remove("/run/sshd") })
	}
	inModes(t, func(t *testing.T, e *preloadEnv) {
		dir := t.TempDir()
		hostKey, userKey := filepath.Join(dir, "host_ed25519"), filepath.Join(dir, "user_ed25519")
		for _, key := range []string{hostKey, userKey} {
			if out, err := exec.Command("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", key).CombinedOutput(); err != nil {
				t.Fatalf("ssh-keygen: %v: %s", err, out)
			}
		}
		pub, err := os.ReadFile(userKey + ".pub")
		if err != nil {
			t.Fatal(err)
		}
		authorized := filepath.Join(dir, "authorized_keys")
		os.WriteFile(authorized, pub, 0o600)
		conf := filepath.Join(dir, "sshd_config")
		os.WriteFile(conf, fmt.Appendf(nil, `ListenAddress %s:2222
HostKey %s
PidFile %s/sshd.pid
AuthorizedKeysFile %s
UsePAM no
StrictModes no
PermitRootLogin prohibit-password
PasswordAuthentication no
KbdInteractiveAuthentication no
`, e.a.Addr, hostKey, dir, authorized), 0o600)
		sshd := e.start(t, "/usr/sbin/sshd", "-D", "-e", "-f", conf)
		if err := sshd.WaitOutput("Server listening", 10*time.Second); err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		out, err := e.b.Command(ctx, "ssh", "-F", "/dev/null", "-i", userKey, "-p", "2222",
			"-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null", "-o", "BatchMode=yes", "-o", "ConnectTimeout=10",
			"root@"+e.a.Addr.String(), "echo", "hello").Output()
		if err != nil || string(out) != "hello\n" {
			t.Fatalf("ssh echo hello: %v, %q\nsshd:\n%s", err, out, sshd.Output())
		}
		e.carried(t, "tcp")
	})
}

// TestPreloadCurl fetches a file with curl on A from python3's
// http.server on B.
func TestPreloadCurl(t *testing.T) {
	needTools(t, "curl", "python3")
	inModes(t, func(t *testing.T, e *preloadEnv) {
		dir := t.TempDir()
		body := make([]byte, 4<<20)
		rand.Read(body)
		os.WriteFile(filepath.Join(dir, "file"), body, 0o644)
		server := startProc(t, e.b.Command(context.Background(), "python3", "-u", "-m", "http.server", "8000", "--bind", e.b.Addr.String(), "--directory", dir))
		if err := server.WaitOutput("Serving HTTP", 10*time.Second); err != nil {
			t.Fatal(err)
		}
		if got := curlFrom(t, e.Launcher, fmt.Sprintf("http://%s:8000/file", e.b.Addr)); got != sha256.Sum256(body) {
			t.Fatal("curl from http.server: body differs from the file")
		}
		e.carried(t, "tcp")
	})
}

// birdConf is a BIRD that announces one static route to its one BGP
// neighbour, quick to connect and to retry.
const birdConf = `router id %[1]s;
log stderr all;
protocol device { }
protocol static {
	ipv4;
	route %[2]s blackhole;
}
protocol bgp peer {
	local %[1]s as %[3]d;
	neighbor %[4]s as %[5]d;
	connect delay time 1;
	connect retry time 2;
	error wait time 1, 4;
	ipv4 { import all; export all; };
}
`

// bird runs a BIRD through l with an AS of its own, announcing route to
// its neighbour; stopped when the test ends. It returns its control
// socket.
func startBird(t *testing.T, l *programs.Launcher, as int, route, neighbour string, neighbourAS int) string {
	t.Helper()
	dir := t.TempDir()
	conf, sock := filepath.Join(dir, "bird.conf"), filepath.Join(dir, "bird.ctl")
	os.WriteFile(conf, fmt.Appendf(nil, birdConf, l.Host.Addr, route, as, neighbour, neighbourAS), 0o644)
	startProc(t, l.Command(context.Background(), "bird", "-f", "-c", conf, "-s", sock, "-P", filepath.Join(dir, "bird.pid")))
	return sock
}

// TestPreloadBIRD establishes a BGP session between BIRD on A and BIRD
// on B, each announcing a route that the other then has.
func TestPreloadBIRD(t *testing.T) {
	needTools(t, "bird", "birdc")
	inModes(t, func(t *testing.T, e *preloadEnv) {
		const routeA, routeB = "10.99.1.0/24", "10.99.2.0/24"
		sockA := startBird(t, e.Launcher, 65001, routeA, e.b.Addr.String(), 65002)
		sockB := startBird(t, programs.Kernel(e.b.Host), 65002, routeB, e.a.Addr.String(), 65001)
		birdc := func(h *testutil.Host, sock string, args ...string) string {
			out, _ := h.Command(context.Background(), "birdc", append([]string{"-s", sock}, args...)...).CombinedOutput()
			return string(out)
		}
		var protocols, routesA, routesB string
		for deadline := time.Now().Add(20 * time.Second); ; time.Sleep(200 * time.Millisecond) {
			protocols = birdc(e.a, sockA, "show", "protocols")
			routesA, routesB = birdc(e.a, sockA, "show", "route"), birdc(e.b, sockB, "show", "route")
			if strings.Contains(protocols, "Established") && strings.Contains(routesA, routeB) && strings.Contains(routesB, routeA) {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("no BGP session with both routes after 20s:\nA: %s\nA's routes: %s\nB's routes: %s\nB: %s",
					protocols, routesA, routesB, birdc(e.b, sockB, "show", "protocols", "all", "peer"))
			}
		}
		t.Logf("A's routes:\n%s", routesA)
		e.carried(t, "tcp")
	})
}

// TestPreloadWrongSecret runs python3 servers and clients on A: with a
// namespace's secret they serve; with a wrong one their bind or connect
// fails with an error that says so. On kernel sockets, which have no
// namespaces, a bind to another host's address and a connect to a
// closed port fail the same programs with the kernel's error.
func TestPreloadWrongSecret(t *testing.T) {
	needTools(t, "python3", "nc")
	const server = `import socket, sys
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind((sys.argv[1], int(sys.argv[2])))
s.listen()
print("listening", flush=True)
c, _ = s.accept()
c.sendall(b"hi\n")
c.close()
`
	const client = `import socket, sys
socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=5).close()
`
	inModes(t, func(t *testing.T, e *preloadEnv) {
		badBind, wantBind, wantConnect := "192.0.2.1", "Cannot assign requested address", "Connection refused"
		if e.userstack() {
			mustXdpstack(t, e.root, "ns", "add", e.a.Iface, "blue", "--secret", "blue-s3cret", "--addr", e.a.Addr.String())
			e.Run = []string{"--namespace", "blue", "--secret", "blue-s3cret"}
		}
		p := e.start(t, "python3", "-c", server, e.a.Addr.String(), "9000")
		if err := p.WaitOutput("listening", 10*time.Second); err != nil {
			t.Fatal(err)
		}
		if got := e.b.Exec(t, "nc", "-w", "5", e.a.Addr.String(), "9000"); got != "hi\n" {
			t.Fatalf("nc to the python3 server: %q", got)
		}
		if e.userstack() {
			e.Run = []string{"--namespace", "blue", "--secret", "wrong"}
			badBind, wantBind, wantConnect = e.a.Addr.String(), "secret", "secret"
		}
		for _, tc := range []struct {
			name, script, addr, want string
		}{
			{"bind", server, badBind, wantBind},
			{"connect", client, e.b.Addr.String(), wantConnect},
		} {
			out, err := e.run(10*time.Second, "python3", "-c", tc.script, tc.addr, "9000")
			if err == nil || !strings.Contains(out, tc.want) {
				t.Errorf("python3 %s to %s (%s): %v, %q; want a failure mentioning %q", tc.name, tc.addr, e.Mode(), err, out, tc.want)
			}
		}
	})
}

// TestPreloadPeerGone ends the other side of a transfer in the middle:
// curl on A fetching a big file slowly from nginx on B fails within
// seconds, with no hang. On kernel sockets nginx on B is killed; on the
// userstack, the attach daemon that carries curl's connection.
func TestPreloadPeerGone(t *testing.T) {
	needTools(t, "nginx", "curl")
	inModes(t, func(t *testing.T, e *preloadEnv) {
		n := startNginxOn(t, programs.Kernel(e.b.Host), e.b.Addr.String()+":80")
		if _, err := n.WriteFile("big", 64<<20); err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		// Slow enough to be killed in the middle, fast enough to read what
		// the socket buffers hold by then in well under a second.
		curl := e.Command(ctx, "curl", "-sS", "--limit-rate", "16M", "-o", "/dev/null", fmt.Sprintf("http://%s/big", e.b.Addr))
		p := startProc(t, curl)
		time.Sleep(1500 * time.Millisecond) // into the transfer, 4 s long
		select {
		case <-p.Done():
			t.Fatalf("curl ended before the kill: %v\n%s", p.Err(), p.Output())
		default:
		}
		if e.userstack() {
			e.d.signal(t, syscall.SIGKILL)
		} else {
			// The master first, so that it does not see its workers die.
			for _, pid := range append([]int{n.Pid}, n.Workers()...) {
				syscall.Kill(pid, syscall.SIGKILL)
			}
		}
		killed := time.Now()
		select {
		case <-p.Done():
		case <-time.After(5 * time.Second):
			t.Fatalf("curl still running 5s after the kill: a hang")
		}
		if p.Err() == nil {
			t.Fatalf("curl succeeded although its peer was killed:\n%s", p.Output())
		}
		t.Logf("curl ended %.1fs after the kill: %v: %s", time.Since(killed).Seconds(), p.Err(), strings.TrimSpace(p.Output()))
	})
}
