package test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	xdaemon "github.com/xdpstack/xdpstack/daemon"
	"github.com/xdpstack/xdpstack/internal/testing/testutil"
	"github.com/xdpstack/xdpstack/loader"
	"github.com/xdpstack/xdpstack/maps"
	"github.com/xdpstack/xdpstack/userstack/preload"
)

// preloadClient speaks the preload protocol as libxdpstack.so does, so
// that the daemon's preload server is tested without the library.
type preloadClient struct {
	// t fails the (sub)test that runs; keep closes the sockets handed
	// over when the whole test ends.
	t    *testing.T
	keep func(func())
	fd   int
}

func dialPreload(t *testing.T, iface string) *preloadClient {
	t.Helper()
	fd, err := unix.Socket(unix.AF_UNIX, unix.SOCK_SEQPACKET|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { unix.Close(fd) })
	if err := unix.Connect(fd, &unix.SockaddrUnix{Name: preload.SocketPath(runDir, iface)}); err != nil {
		t.Fatalf("connect to the preload socket: %v", err)
	}
	return &preloadClient{t: t, keep: t.Cleanup, fd: fd}
}

// do sends req and returns the reply with its socket (-1 for none),
// which the test closes at its end.
func (p *preloadClient) do(req preload.Request) (preload.Reply, int) {
	p.t.Helper()
	if err := unix.Sendmsg(p.fd, req.Marshal(), nil, nil, 0); err != nil {
		p.t.Fatal(err)
	}
	b, fd := p.recv(p.fd, preload.ReplySize)
	r, err := preload.ParseReply(b)
	if err != nil {
		p.t.Fatal(err)
	}
	if fd >= 0 {
		p.keep(func() { unix.Close(fd) })
	}
	return r, fd
}

// recv reads one message of at most size bytes from fd, with its
// descriptor.
func (p *preloadClient) recv(fd, size int) ([]byte, int) {
	p.t.Helper()
	buf := make([]byte, size+1)
	oob := make([]byte, unix.CmsgSpace(4))
	n, oobn, _, _, err := unix.Recvmsg(fd, buf, oob, 0)
	if err != nil {
		p.t.Fatal(err)
	}
	got := -1
	if msgs, _ := unix.ParseSocketControlMessage(oob[:oobn]); len(msgs) == 1 {
		if fds, _ := unix.ParseUnixRights(&msgs[0]); len(fds) == 1 {
			got = fds[0]
		}
	}
	return buf[:n], got
}

// must does req and fails unless its status is want.
func (p *preloadClient) must(req preload.Request, want int32) (preload.Reply, int) {
	p.t.Helper()
	r, fd := p.do(req)
	if r.Status != want {
		p.t.Fatalf("%s %s: status %d (%s), want %d", req.Op, req.Proto, r.Status, r.Message, want)
	}
	return r, fd
}

// accept takes the next connection of a listener the server handed
// over.
func (p *preloadClient) accept(lfd int) (preload.Name, net.Conn) {
	p.t.Helper()
	b, fd := p.recv(lfd, preload.NameSize)
	name, err := preload.ParseName(b)
	if err != nil || fd < 0 {
		p.t.Fatalf("accept: %v, fd %d", err, fd)
	}
	// The connection is the program's alone: closing it closes it.
	c := fdConn(p.t, fd)
	unix.Close(fd)
	return name, c
}

// fdConn is a net.Conn of a copy of a handed-over stream socket.
func fdConn(t *testing.T, fd int) net.Conn {
	t.Helper()
	dup, err := unix.Dup(fd)
	if err != nil {
		t.Fatal(err)
	}
	f := os.NewFile(uintptr(dup), "preloaded")
	defer f.Close()
	c, err := net.FileConn(f)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	c.SetDeadline(time.Now().Add(30 * time.Second))
	return c
}

// TestPreloadServer attaches plainly (no app: the first program's hello
// starts the userstack) and drives the preload server as a preloaded
// program would, against kernel peers in another namespace: a listener
// and its accepted connection, blocking and non-blocking connects, a
// UDP socket, what it declines, the sessions view and the metrics; a
// daemon that stops leaves the program EOF on its sockets.
func TestPreloadServer(t *testing.T) {
	a, b := testutil.HostPair(t, 1)
	root := testutil.PinRoot(t)
	d := startDaemon(t, a, root, "--metrics-addr", "127.0.0.1:0")
	p := dialPreload(t, a.Iface)
	p.must(preload.Request{Op: preload.OpHello, Text: "\x00\x00global\x00test\x00"}, 0)
	local := func(port uint16) netip.AddrPort { return netip.AddrPortFrom(a.Addr, port) }

	t.Run("listen", func(t *testing.T) {
		p.t = t
		r, lfd := p.must(preload.Request{Op: preload.OpListen, Proto: maps.TCP, Local: local(8080)}, 0)
		if r.Local != local(8080) {
			t.Errorf("listening on %s", r.Local)
		}
		done := make(chan error, 1)
		go func() {
			c, err := b.Dial(context.Background(), "tcp", local(8080).String())
			if err == nil {
				defer c.Close()
				c.SetDeadline(time.Now().Add(10 * time.Second))
				c.Write([]byte("ping"))
				var got []byte
				if got, err = io.ReadAll(c); err == nil && string(got) != "pong" {
					err = fmt.Errorf("peer read %q", got)
				}
			}
			done <- err
		}()
		name, c := p.accept(lfd) // the listener stays, for the sessions view
		if name.Kind != preload.KindTCP || name.Local != local(8080) || name.Remote.Addr() != b.Addr {
			t.Errorf("accepted %+v", name)
		}
		buf := make([]byte, 4)
		if _, err := io.ReadFull(c, buf); err != nil || string(buf) != "ping" {
			t.Fatalf("program read %q, %v", buf, err)
		}
		c.Write([]byte("pong"))
		c.Close()
		if err := <-done; err != nil {
			t.Fatal(err)
		}
	})

	echo := b.KernelEcho(t, fmt.Sprintf("%s:9090", b.Addr))
	for _, flags := range []preload.Flags{0, preload.FlagNonblock} {
		t.Run(fmt.Sprintf("connect flags %d", flags), func(t *testing.T) {
			p.t = t
			want := int32(0)
			if flags&preload.FlagNonblock != 0 {
				want = int32(unix.EINPROGRESS)
			}
			r, fd := p.must(preload.Request{Op: preload.OpConnect, Proto: maps.TCP, Flags: flags, Remote: netip.MustParseAddrPort(echo)}, want)
			if r.Local.Addr() != a.Addr || !loader.DefaultUserPorts.Contains(r.Local.Port()) {
				t.Errorf("connecting from %s", r.Local)
			}
			fds := []unix.PollFd{{Fd: int32(fd), Events: unix.POLLOUT}}
			if n, err := unix.Poll(fds, 10000); n != 1 || err != nil || fds[0].Revents&unix.POLLHUP != 0 {
				t.Fatalf("poll: %d, %v, %#x", n, err, fds[0].Revents)
			}
			if err := testutil.RoundTrip(fdConn(t, fd), 1<<20); err != nil {
				t.Fatal(err)
			}
		})
	}

	t.Run("udp", func(t *testing.T) {
		p.t = t
		r, fd := p.must(preload.Request{Op: preload.OpBind, Proto: maps.UDP, Local: local(5353)}, 0)
		if r.Local != local(5353) {
			t.Errorf("bound to %s", r.Local)
		}
		peer, err := b.ListenPacket("udp", fmt.Sprintf("%s:0", b.Addr))
		if err != nil {
			t.Fatal(err)
		}
		defer peer.Close()
		peer.SetDeadline(time.Now().Add(10 * time.Second))
		if _, err := peer.WriteTo([]byte("query"), net.UDPAddrFromAddrPort(local(5353))); err != nil {
			t.Fatal(err)
		}
		buf := make([]byte, 2048)
		fds := []unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN}}
		if n, _ := unix.Poll(fds, 10000); n != 1 {
			t.Fatal("no datagram for the program")
		}
		n, err := unix.Read(fd, buf)
		if err != nil || n != preload.DgramSize+5 || string(buf[preload.DgramSize:n]) != "query" {
			t.Fatalf("program read %q, %v", buf[:n], err)
		}
		// The header's peer, sent back, addresses the answer.
		copy(buf[preload.DgramSize:], "answer")
		if _, err := unix.Write(fd, buf[:preload.DgramSize+6]); err != nil {
			t.Fatal(err)
		}
		n, from, err := peer.ReadFrom(buf)
		if err != nil || string(buf[:n]) != "answer" || from.String() != local(5353).String() {
			t.Fatalf("peer read %q from %v, %v", buf[:n], from, err)
		}
	})

	t.Run("declined", func(t *testing.T) {
		p.t = t
		for _, req := range []preload.Request{
			{Op: preload.OpBind, Proto: maps.TCP, Local: netip.MustParseAddrPort("127.0.0.1:80")},
			{Op: preload.OpConnect, Proto: maps.TCP, Remote: netip.MustParseAddrPort("127.0.0.1:80")},
			{Op: preload.OpConnect, Proto: maps.TCP, Remote: local(22)},
			{Op: preload.OpConnect, Proto: maps.UDP, Remote: netip.MustParseAddrPort("198.51.100.1:53")},
		} {
			if r, fd := p.do(req); r.Status != preload.StatusDeclined || r.Message == "" || fd != -1 {
				t.Errorf("%s %s %s %s: %+v", req.Op, req.Proto, req.Local, req.Remote, r)
			}
		}
	})

	t.Run("sessions", func(t *testing.T) {
		comm, _ := os.ReadFile("/proc/self/comm")
		app := fmt.Sprintf("%s[%d]", strings.TrimSpace(string(comm)), os.Getpid())
		out := mustXdpstack(t, root, "sessions", a.Iface, "--json", "--verbose")
		var reply xdaemon.SessionsReply
		if err := json.Unmarshal([]byte(out), &reply); err != nil {
			t.Fatal(err)
		}
		var listening, udp bool
		for _, s := range reply.Sessions {
			if s.App != app {
				continue
			}
			listening = listening || s.Local == local(8080) && s.Protocol == "tcp"
			udp = udp || s.Local == local(5353) && s.Protocol == "udp"
		}
		if !listening || !udp || !reply.Userstack {
			t.Errorf("sessions of %s: listener %v, udp %v in:\n%s", app, listening, udp, out)
		}
	})

	t.Run("metrics", func(t *testing.T) {
		out, err := a.Command(context.Background(), "curl", "-sf", "http://"+d.ready.MetricsAddr+"/metrics").Output()
		if err != nil {
			t.Fatal(err)
		}
		for _, want := range []string{
			fmt.Sprintf("xdpstack_preload_programs{iface=%q} 1", a.Iface),
			fmt.Sprintf("xdpstack_preload_sessions_total{iface=%q,proto=\"udp\"} 1", a.Iface),
			"xdpstack_userstack_tcp_connections_total{", // the userstack's, started by the hello
		} {
			if !strings.Contains(string(out), want) {
				t.Errorf("metrics lack %q", want)
			}
		}
	})

	t.Run("daemon stops", func(t *testing.T) {
		p.t = t
		_, fd := p.must(preload.Request{Op: preload.OpConnect, Proto: maps.TCP, Remote: netip.MustParseAddrPort(echo)}, 0)
		d.signal(t, syscall.SIGTERM)
		for _, fd := range []int{fd, p.fd} {
			fds := []unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN}}
			if n, _ := unix.Poll(fds, 10000); n != 1 {
				t.Fatalf("fd %d: nothing within 10s of the daemon's stop", fd)
			}
			if n, err := unix.Read(fd, make([]byte, 1)); n != 0 || err != nil {
				t.Errorf("fd %d: read %d, %v; want EOF", fd, n, err)
			}
		}
	})
}
