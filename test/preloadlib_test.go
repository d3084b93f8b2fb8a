package test

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/xdpstack/xdpstack/internal/testing/programs"
	"github.com/xdpstack/xdpstack/internal/testing/testutil"
	"github.com/xdpstack/xdpstack/loader"
)

// probe runs testdata/preload_probe.py under `xdpstack run --debug` on
// A: what a program sees of the sockets the library hands it.
type probe struct {
	*programs.Proc
	t *testing.T
}

func startProbe(t *testing.T, l *programs.Launcher, args ...string) *probe {
	t.Helper()
	script, err := filepath.Abs("testdata/preload_probe.py")
	if err != nil {
		t.Fatal(err)
	}
	p, err := programs.Start(l.Command(context.Background(), "python3", append([]string{script}, args...)...))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		p.Stop()
		if t.Failed() {
			t.Logf("preload_probe.py %s:\n%s", strings.Join(args, " "), p.Output())
		}
	})
	return &probe{Proc: p, t: t}
}

// event waits for the probe's JSON line of event and decodes it.
func (p *probe) event(name string) map[string]any {
	p.t.Helper()
	if err := p.WaitOutput(`{"event": "`+name+`"`, 20*time.Second); err != nil {
		p.t.Fatal(err)
	}
	for _, line := range strings.Split(p.Output(), "\n") {
		var ev map[string]any
		dec := json.NewDecoder(strings.NewReader(line))
		dec.UseNumber() // numbers as printed, for wantEqual
		if dec.Decode(&ev) == nil && ev["event"] == name {
			return ev
		}
	}
	p.t.Fatalf("no event %s in:\n%s", name, p.Output())
	return nil
}

func (p *probe) ready() {
	p.t.Helper()
	if err := p.WaitOutput("ready\n", 20*time.Second); err != nil {
		p.t.Fatal(err)
	}
}

// addr is a probe's [host, port] as an AddrPort.
func addr(t *testing.T, v any) netip.AddrPort {
	t.Helper()
	hp, ok := v.([]any)
	if !ok || len(hp) != 2 {
		t.Fatalf("not [host, port]: %v", v)
	}
	ap, err := netip.ParseAddrPort(net.JoinHostPort(fmt.Sprint(hp[0]), fmt.Sprint(hp[1])))
	if err != nil {
		t.Fatal(err)
	}
	return ap
}

func wantEqual(t *testing.T, what string, got, want any) {
	t.Helper()
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("%s = %v, want %v", what, got, want)
	}
}

// The socket options a program reads off a userstack TCP socket: those
// of a kernel AF_INET stream socket.
func wantTCPOptions(t *testing.T, ev map[string]any, listening int) {
	t.Helper()
	wantEqual(t, "SO_DOMAIN", ev["domain"], syscall.AF_INET)
	wantEqual(t, "SO_TYPE", ev["type"], syscall.SOCK_STREAM)
	wantEqual(t, "SO_PROTOCOL", ev["protocol"], syscall.IPPROTO_TCP)
	wantEqual(t, "SO_ACCEPTCONN", ev["acceptconn"], listening)
}

// TestPreloadLibrary checks what a program under `xdpstack run` sees of
// its sockets, one behaviour at a time, with python3 as the program on
// A and kernel sockets on B as its peer: names and options, half-close,
// a connection passed across exec, a listener shared by forked workers,
// non-blocking and blocking connects (and a second connect, as BIRD
// makes it), a namespace's local rule refusing a connect, --procname
// leaving other processes alone, UDP unconnected, connected and through a dup, loopback left
// to the kernel, and a daemon that dies under blocked reads.
func TestPreloadLibrary(t *testing.T) {
	requirePreload(t)
	a, b := testutil.HostPair(t, 1)
	root := testutil.PinRoot(t)
	d := startDaemon(t, a, root)
	run := programs.Preloaded(a.Host, binary, "--pin-root", root)
	run.Run = []string{"--debug"}
	ctx := context.Background()
	dialA := func(t *testing.T, port uint16) net.Conn {
		t.Helper()
		c, err := b.Dial(ctx, "tcp", netip.AddrPortFrom(a.Addr, port).String())
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		c.SetDeadline(time.Now().Add(20 * time.Second))
		return c
	}

	t.Run("server", func(t *testing.T) {
		p := startProbe(t, run, "server", a.Addr.String(), "7101")
		p.ready()
		ev := p.event("listening")
		wantEqual(t, "listener's address", addr(t, ev["local"]), netip.AddrPortFrom(a.Addr, 7101))
		wantTCPOptions(t, ev, 1)

		c := dialA(t, 7101)
		data := make([]byte, 1<<20)
		rand.Read(data)
		if _, err := c.Write(data); err != nil {
			t.Fatal(err)
		}
		c.(*net.TCPConn).CloseWrite()
		got, err := io.ReadAll(c)
		if err != nil {
			t.Fatal(err)
		}
		sum := sha256.Sum256(data)
		wantEqual(t, "the program's sha256 of what it read to EOF", string(got), hex.EncodeToString(sum[:]))
		ev = p.event("accepted")
		peer := netip.MustParseAddrPort(c.LocalAddr().String())
		wantEqual(t, "accept's address", addr(t, ev["peer"]), peer)
		wantEqual(t, "getpeername", addr(t, ev["remote"]), peer)
		wantEqual(t, "getsockname", addr(t, ev["local"]), netip.AddrPortFrom(a.Addr, 7101))
		wantEqual(t, "bytes", ev["bytes"], len(data))
		wantEqual(t, "TCP_MAXSEG", ev["mss"], 1448)
		wantTCPOptions(t, ev, 0)
		if !strings.Contains(p.Output(), "bind "+a.Addr.String()+":7101/tcp: userstack") {
			t.Errorf("the debug log says nothing of the userstack taking the bind")
		}
	})

	t.Run("exec", func(t *testing.T) {
		p := startProbe(t, run, "exec-server", a.Addr.String(), "7102")
		p.ready()
		c := dialA(t, 7102)
		got, err := io.ReadAll(c)
		if err != nil {
			t.Fatal(err)
		}
		wantEqual(t, "what the exec'd program wrote", string(got), "hello from after exec")
		ev := p.event("after-exec")
		wantEqual(t, "getpeername after exec", addr(t, ev["remote"]), netip.MustParseAddrPort(c.LocalAddr().String()))
		wantEqual(t, "getsockname after exec", addr(t, ev["local"]), netip.AddrPortFrom(a.Addr, 7102))
		wantTCPOptions(t, ev, 0)
	})

	t.Run("fork", func(t *testing.T) {
		p := startProbe(t, run, "fork-server", a.Addr.String(), "7103")
		p.ready()
		answers := map[string]bool{}
		for range 2 {
			got, err := io.ReadAll(dialA(t, 7103))
			if err != nil {
				t.Fatal(err)
			}
			answers[string(got)] = true
		}
		if len(answers) != 2 {
			t.Errorf("two connections were answered by %v, want two workers", answers)
		}
		p.event("workers-done")
	})

	t.Run("client", func(t *testing.T) {
		ln, err := b.Listen("tcp", netip.AddrPortFrom(b.Addr, 7104).String())
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { ln.Close() })
		go testutil.Serve(ln, func(c net.Conn) {
			buf := make([]byte, 4)
			if _, err := io.ReadFull(c, buf); err == nil {
				c.Write(append([]byte("pong:"), buf...))
			}
		})
		p := startProbe(t, run, "client", b.Addr.String(), "7104", "7105")
		ev := p.event("connected")
		wantEqual(t, "non-blocking connect", ev["first"], "EINPROGRESS")
		wantEqual(t, "writable once connected", ev["writable"], true)
		wantEqual(t, "SO_ERROR once connected", ev["so_error"], 0)
		wantEqual(t, "a second connect", ev["again"], "EISCONN")
		wantEqual(t, "getpeername", addr(t, ev["remote"]), netip.AddrPortFrom(b.Addr, 7104))
		local := addr(t, ev["local"])
		if local.Addr() != a.Addr || !loader.DefaultUserPorts.Contains(local.Port()) {
			t.Errorf("getsockname = %v, want %v and a port of the userstack's range %s", local, a.Addr, loader.DefaultUserPorts)
		}
		wantEqual(t, "the reply", ev["reply"], "pong:ping")
		ev = p.event("refused-nonblocking")
		wantEqual(t, "non-blocking connect to a closed port", ev["first"], "EINPROGRESS")
		wantEqual(t, "its SO_ERROR", ev["so_error"], "ECONNREFUSED")
		ev = p.event("refused-blocking")
		wantEqual(t, "blocking connect to a closed port", ev["error"], "ECONNREFUSED")
	})

	t.Run("namespace rule", func(t *testing.T) {
		ln, err := b.Listen("tcp", netip.AddrPortFrom(b.Addr, 7110).String())
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { ln.Close() })
		go testutil.Serve(ln, func(net.Conn) {})
		secret := filepath.Join(t.TempDir(), "web.secret")
		if err := os.WriteFile(secret, []byte("web-secret\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		xdpstack := func(args ...string) {
			t.Helper()
			if out, err := exec.Command(binary, append([]string{"--pin-root", root}, args...)...).CombinedOutput(); err != nil {
				t.Fatalf("xdpstack %s: %v\n%s", strings.Join(args, " "), err, out)
			}
		}
		xdpstack("ns", "add", a.Iface, "web", "--secret-file", secret)
		t.Cleanup(func() { exec.Command(binary, "--pin-root", root, "ns", "del", a.Iface, "web").Run() })
		xdpstack("rules", "add", a.Iface, "--namespace", "web", "--proto", "tcp", "--remote", b.Addr.String()+":7110", "--action", "deny", "--tag", "no-7110")
		web := *run
		web.Run = []string{"--namespace", "web", "--secret", "web-secret"}
		p := startProbe(t, &web, "connect", b.Addr.String(), "7110")
		wantEqual(t, "a connect that the namespace's local rule denies", p.event("connect")["result"], "EACCES")
		if !strings.Contains(p.Output(), "no-7110") {
			t.Errorf("the program's stderr does not name the rule that denied it")
		}
		p = startProbe(t, run, "connect", b.Addr.String(), "7110")
		wantEqual(t, "the same connect from the default namespace", p.event("connect")["result"], "connected")
	})

	t.Run("udp", func(t *testing.T) {
		p := startProbe(t, run, "udp", a.Addr.String(), "7106")
		p.ready()
		pc, err := b.ListenPacket("udp", netip.AddrPortFrom(b.Addr, 0).String())
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { pc.Close() })
		pc.SetDeadline(time.Now().Add(20 * time.Second))
		to := net.UDPAddrFromAddrPort(netip.AddrPortFrom(a.Addr, 7106))
		if _, err := pc.WriteTo([]byte("first"), to); err != nil {
			t.Fatal(err)
		}
		buf := make([]byte, 100)
		for _, want := range []string{"re:first", "connected"} {
			n, from, err := pc.ReadFrom(buf)
			if err != nil {
				t.Fatal(err)
			}
			wantEqual(t, "datagram", string(buf[:n]), want)
			wantEqual(t, "its source", from.String(), to.String())
		}
		if _, err := pc.WriteTo([]byte("second"), to); err != nil {
			t.Fatal(err)
		}
		ev := p.event("udp")
		me := netip.MustParseAddrPort(pc.LocalAddr().String())
		wantEqual(t, "recvfrom's sender", addr(t, ev["peer"]), me)
		wantEqual(t, "what the dup received", ev["second"], "second")
		wantEqual(t, "getsockname", addr(t, ev["local"]), netip.AddrPortFrom(a.Addr, 7106))
		wantEqual(t, "getpeername of the dup", addr(t, ev["remote"]), me)
		wantEqual(t, "SO_TYPE", ev["type"], syscall.SOCK_DGRAM)
	})

	t.Run("loopback", func(t *testing.T) {
		p := startProbe(t, run, "loopback", "7107")
		ev := p.event("loopback")
		wantEqual(t, "what a kernel client sent over loopback", ev["got"], "kernel")
		if !strings.Contains(p.Output(), "bind 127.0.0.1:7107/tcp: kernel (loopback)") {
			t.Errorf("the debug log does not say loopback stays with the kernel")
		}
	})

	t.Run("procname", func(t *testing.T) {
		others := *run
		others.Run = []string{"--debug", "--procname", "nginx,sshd"}
		p := startProbe(t, &others, "bind", a.Addr.String(), "7111")
		ev := p.event("bound")
		wantEqual(t, "getsockname of a kernel socket", addr(t, ev["local"]), netip.AddrPortFrom(a.Addr, 7111))
		if !strings.Contains(p.Output(), "not in XDPSTACK_PROCNAMES") {
			t.Errorf("the debug log does not say python3 is left alone")
		}
		sessions, err := exec.Command(binary, "--pin-root", root, "sessions", a.Iface).CombinedOutput()
		if err != nil {
			t.Fatalf("xdpstack sessions: %v\n%s", err, sessions)
		}
		if strings.Contains(string(sessions), ":7111") {
			t.Errorf("a process not named in --procname has a userstack session:\n%s", sessions)
		}
	})

	// Last: it kills the daemon.
	t.Run("daemon gone", func(t *testing.T) {
		p := startProbe(t, run, "wait-gone", a.Addr.String(), "7108", "7109")
		p.ready()
		c := dialA(t, 7108)
		time.Sleep(200 * time.Millisecond) // accepted, blocked in recv
		d.cmd.Process.Kill()
		start := time.Now()
		ev := p.event("gone")
		if took := time.Since(start); took > 5*time.Second {
			t.Errorf("the program saw the daemon gone after %v", took)
		}
		wantEqual(t, "a blocked TCP recv", ev["tcp"], "eof")
		wantEqual(t, "a blocked UDP recvfrom", ev["udp"], "ECONNRESET")
		c.Close()
	})
}
