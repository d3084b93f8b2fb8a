package preload

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/xdpstack/xdpstack/maps"
)

func init() { aliveEvery = 50 * time.Millisecond }

// startServer serves a kernelBackend until the test ends.
func startServer(t *testing.T) (*Server, *kernelBackend) {
	t.Helper()
	b := newKernelBackend()
	s, err := Listen(filepath.Join(t.TempDir(), "lo.preload"), b)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s, b
}

// program speaks the protocol as the library does, with raw
// sendmsg/recvmsg on a SOCK_SEQPACKET socket.
type program struct {
	t  *testing.T
	fd int
}

func connect(t *testing.T, s *Server) *program {
	t.Helper()
	fd, err := unix.Socket(unix.AF_UNIX, unix.SOCK_SEQPACKET|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	if err := unix.Connect(fd, &unix.SockaddrUnix{Name: s.Path()}); err != nil {
		t.Fatal(err)
	}
	p := &program{t: t, fd: fd}
	t.Cleanup(p.close)
	return p
}

func (p *program) close() { unix.Close(p.fd) }

// send sends one message as it is and reads the reply, with its
// descriptor (-1 for none), which the test closes at its end.
func (p *program) send(msg []byte) (Reply, int) {
	p.t.Helper()
	if err := unix.Sendmsg(p.fd, msg, nil, nil, 0); err != nil {
		p.t.Fatalf("sendmsg: %v", err)
	}
	buf := make([]byte, ReplySize+1)
	oob := make([]byte, unix.CmsgSpace(4))
	n, oobn, _, _, err := unix.Recvmsg(p.fd, buf, oob, 0)
	if err != nil {
		p.t.Fatalf("recvmsg: %v", err)
	}
	r, err := ParseReply(buf[:n])
	if err != nil {
		p.t.Fatal(err)
	}
	return r, p.rights(oob[:oobn])
}

func (p *program) rights(oob []byte) int {
	p.t.Helper()
	msgs, err := unix.ParseSocketControlMessage(oob)
	if err != nil || len(msgs) == 0 {
		return -1
	}
	fds, err := unix.ParseUnixRights(&msgs[0])
	if err != nil || len(fds) != 1 {
		p.t.Fatalf("rights: %v, %v", fds, err)
	}
	p.t.Cleanup(func() { unix.Close(fds[0]) })
	return fds[0]
}

func (p *program) do(req Request) (Reply, int) {
	p.t.Helper()
	return p.send(req.Marshal())
}

// ok does req and fails the test unless its status is want.
func (p *program) ok(req Request, want int32) (Reply, int) {
	p.t.Helper()
	r, fd := p.do(req)
	if r.Status != want {
		p.t.Fatalf("%s %+v: status %d (%s), want %d", req.Op, req, r.Status, r.Message, want)
	}
	return r, fd
}

func (p *program) hello(namespace, secret string) Reply {
	p.t.Helper()
	r, _ := p.do(Request{Op: OpHello, Text: namespace + "\x00" + secret + "\x00\x00test\x00"})
	return r
}

func ap(s string) netip.AddrPort { return netip.MustParseAddrPort(s) }

// TestHello: a wrong secret is refused with EACCES and a message; the
// app is named comm[pid]; a request before hello, or a second hello, is
// refused; none of that spoils the connection.
func TestHello(t *testing.T) {
	s, b := startServer(t)
	p := connect(t, s)
	if r, _ := p.do(Request{Op: OpBind, Proto: maps.TCP, Local: ap("127.0.0.1:80")}); r.Status != int32(unix.EINVAL) || !strings.Contains(r.Message, "say hello first") {
		t.Errorf("bind before hello: %+v", r)
	}
	if r := p.hello("locked", "wrong"); r.Status != int32(unix.EACCES) || !strings.Contains(r.Message, "wrong secret") {
		t.Errorf("hello with a wrong secret: %+v", r)
	}
	if r := p.hello("nosuch", ""); r.Status != int32(unix.EACCES) || !strings.Contains(r.Message, "no such namespace") {
		t.Errorf("hello to an unknown namespace: %+v", r)
	}
	// Refused, the program learns which of its calls the network would
	// have taken: those fail with the refusal, the rest are libc's.
	for _, tc := range []struct {
		req    Request
		status int32
	}{
		{Request{Op: OpBind, Proto: maps.TCP, Local: ap("127.0.0.1:80")}, int32(unix.EACCES)},
		{Request{Op: OpBind, Proto: maps.UDP, Local: ap("0.0.0.0:53")}, int32(unix.EACCES)},
		{Request{Op: OpConnect, Proto: maps.TCP, Remote: ap("127.0.0.1:80")}, int32(unix.EACCES)},
		{Request{Op: OpBind, Proto: maps.TCP, Local: ap("192.0.2.1:80")}, StatusDeclined},
		{Request{Op: OpConnect, Proto: maps.UDP, Remote: ap("192.0.2.1:53")}, StatusDeclined},
	} {
		r, fd := p.do(tc.req)
		if r.Status != tc.status || fd != -1 || tc.status == int32(unix.EACCES) && !strings.Contains(r.Message, "no such namespace") {
			t.Errorf("%s %s after a refused hello: %+v, fd %d; want status %d", tc.req.Op, tc.req.Proto, r, fd, tc.status)
		}
	}
	if r := p.hello("locked", "s"); r.Status != 0 || !strings.Contains(r.Message, "namespace locked") {
		t.Fatalf("hello: %+v", r)
	}
	if r := p.hello("locked", "s"); r.Status != int32(unix.EINVAL) {
		t.Errorf("second hello: %+v", r)
	}
	comm, _ := os.ReadFile("/proc/self/comm")
	want := fmt.Sprintf("%s[%d]", strings.TrimSpace(string(comm)), os.Getpid())
	if progs := b.programs(); len(progs) != 1 || progs[0].Name != want || progs[0].Namespace != "locked" {
		t.Errorf("attached %+v, want one named %s", progs, want)
	}
	if c := s.Counters(); c.Programs != 1 {
		t.Errorf("Counters: %+v", c)
	}
	p.ok(Request{Op: OpBind, Proto: maps.TCP, Local: ap("127.0.0.1:80")}, 0)
}

// TestBadRequests: each bad request gets EINVAL and a message in one
// line, and the connection serves the next.
func TestBadRequests(t *testing.T) {
	s, _ := startServer(t)
	p := connect(t, s)
	p.hello("", "")
	good := Request{Op: OpBind, Proto: maps.TCP, Local: ap("127.0.0.1:80")}.Marshal()
	change := func(at int, v byte) []byte {
		b := bytes.Clone(good)
		b[at] = v
		return b
	}
	for _, tc := range []struct {
		name string
		msg  []byte
		want string
	}{
		{"short", good[:RequestSize-1], "request of 575 bytes"},
		{"long", append(bytes.Clone(good), 0), "request of 577 bytes"},
		{"version", change(0, 9), "protocol version 9"},
		{"family", change(reqLocal, 7), "local address family 7"},
		{"op", change(4, 99), "unknown op 99"},
		{"proto", change(8, 1), "bind: protocol 1"},
		{"bind no address", Request{Op: OpBind, Proto: maps.TCP}.Marshal(), "bind: no address"},
		{"listen udp", Request{Op: OpListen, Proto: maps.UDP, Local: ap("127.0.0.1:0")}.Marshal(), "listen: protocol 17"},
		{"connect port 0", Request{Op: OpConnect, Proto: maps.TCP, Remote: ap("127.0.0.1:0")}.Marshal(), "connect: remote 127.0.0.1:0"},
		{"udp connect unknown", Request{Op: OpUDPConnect, Proto: maps.UDP, ID: 12345, Remote: ap("127.0.0.1:9")}.Marshal(), "no udp session 12345"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r, fd := p.send(tc.msg)
			if r.Status != int32(unix.EINVAL) || !strings.Contains(r.Message, tc.want) || strings.Contains(r.Message, "\n") || fd != -1 {
				t.Errorf("got %+v, fd %d; want EINVAL with %q", r, fd, tc.want)
			}
			p.ok(Request{Op: OpBind, Proto: maps.TCP, Local: ap("127.0.0.1:80")}, 0)
		})
	}
	if len(s.sessions) != 0 {
		t.Errorf("sessions left: %v", s.sessions)
	}
}

// TestDeclined: what the network does not take goes back to libc, with
// the reason.
func TestDeclined(t *testing.T) {
	s, _ := startServer(t)
	p := connect(t, s)
	p.hello("", "")
	for _, req := range []Request{
		{Op: OpBind, Proto: maps.TCP, Local: ap("192.0.2.1:80")},
		{Op: OpBind, Proto: maps.UDP, Local: ap("192.0.2.1:53")},
		{Op: OpConnect, Proto: maps.TCP, Remote: ap("192.0.2.1:80")},
		{Op: OpConnect, Proto: maps.UDP, Remote: ap("192.0.2.1:53")},
	} {
		if r, fd := p.do(req); r.Status != StatusDeclined || r.Message != "192.0.2.1 is not loopback" || fd != -1 {
			t.Errorf("%s %s: %+v, fd %d", req.Op, req.Proto, r, fd)
		}
	}
}

func soType(t *testing.T, fd int) int {
	t.Helper()
	typ, err := unix.GetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_TYPE)
	if err != nil {
		t.Fatal(err)
	}
	return typ
}

// fileConn is a net.Conn of a handed-over stream socket (a copy).
func fileConn(t *testing.T, fd int) *net.UnixConn {
	t.Helper()
	dup, err := unix.Dup(fd)
	if err != nil {
		t.Fatal(err)
	}
	f := os.NewFile(uintptr(dup), "handed over")
	defer f.Close()
	c, err := net.FileConn(f)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c.(*net.UnixConn)
}

// accept takes the next connection of a handed-over listener, as the
// library's accept does.
func accept(t *testing.T, lfd int) (Name, int) {
	t.Helper()
	waitFor(t, lfd, unix.POLLIN)
	buf := make([]byte, NameSize+1)
	oob := make([]byte, unix.CmsgSpace(4))
	n, oobn, _, _, err := unix.Recvmsg(lfd, buf, oob, 0)
	if err != nil {
		t.Fatalf("accept: %v", err)
	}
	name, err := ParseName(buf[:n])
	if err != nil {
		t.Fatal(err)
	}
	p := &program{t: t}
	return name, p.rights(oob[:oobn])
}

// waitFor polls fd until one of events, for 5 seconds; it returns the
// events seen.
func waitFor(t *testing.T, fd int, events int16) int16 {
	t.Helper()
	fds := []unix.PollFd{{Fd: int32(fd), Events: events}}
	n, err := unix.Poll(fds, 5000)
	if err != nil || n == 0 {
		t.Fatalf("poll(%d, %#x): %d, %v", fd, events, n, err)
	}
	return fds[0].Revents
}

func ready(fd int, events int16, ms int) bool {
	fds := []unix.PollFd{{Fd: int32(fd), Events: events}}
	n, _ := unix.Poll(fds, ms)
	return n > 0 && fds[0].Revents&events != 0
}

// TestListenAccept: a listener comes as a SOCK_SEQPACKET socket named
// with its address, readable when a connection waits; each connection
// as its name with its stream socket; the bytes go both ways, and each
// way closes on its own.
func TestListenAccept(t *testing.T) {
	s, _ := startServer(t)
	p := connect(t, s)
	p.hello("", "")
	bound, _ := p.ok(Request{Op: OpBind, Proto: maps.TCP, Local: ap("127.0.0.1:0")}, 0)
	if bound.Local != ap("127.0.0.1:0") {
		t.Errorf("bind said %s", bound.Local)
	}
	r, lfd := p.ok(Request{Op: OpListen, Proto: maps.TCP, Local: ap("127.0.0.1:0"), Backlog: 8}, 0)
	if soType(t, lfd) != unix.SOCK_SEQPACKET {
		t.Errorf("listener of type %d", soType(t, lfd))
	}
	ln := nameOf(t, lfd)
	if ln.Kind != KindListener || ln.Family != 4 || ln.ID != r.ID || ln.Instance != s.instance || ln.Local != r.Local || ln.Local.Port() == 0 || ln.Remote.IsValid() {
		t.Fatalf("listener named %+v, reply %+v", ln, r)
	}
	if ready(lfd, unix.POLLIN, 50) {
		t.Fatal("listener readable with no connection")
	}
	peer, err := net.Dial("tcp", ln.Local.String())
	if err != nil {
		t.Fatal(err)
	}
	defer peer.Close()
	name, cfd := accept(t, lfd)
	if name != nameOf(t, cfd) || name.Kind != KindTCP || name.Local != ln.Local || name.Remote != unmap(peer.LocalAddr().(*net.TCPAddr).AddrPort()) {
		t.Fatalf("accepted %+v, named %+v, peer %s", name, nameOf(t, cfd), peer.LocalAddr())
	}
	if soType(t, cfd) != unix.SOCK_STREAM {
		t.Errorf("connection of type %d", soType(t, cfd))
	}
	c := fileConn(t, cfd)
	unix.Close(cfd)
	// The peer says something and closes its side: the program reads
	// it all, then EOF, and can still answer.
	peer.Write([]byte("question"))
	peer.(*net.TCPConn).CloseWrite()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	if b, err := io.ReadAll(c); string(b) != "question" || err != nil {
		t.Fatalf("program read %q, %v", b, err)
	}
	c.Write([]byte("answer"))
	c.CloseWrite()
	peer.SetDeadline(time.Now().Add(5 * time.Second))
	if b, err := io.ReadAll(peer); string(b) != "answer" || err != nil {
		t.Fatalf("peer read %q, %v", b, err)
	}
	if got := s.Counters().Sessions[maps.TCP]; got != 2 {
		t.Errorf("tcp sessions: %d, want 2 (listener, connection)", got)
	}
}

// TestListenV6: an AF_INET6 program's listener takes IPv4 peers, whose
// addresses come v4-mapped; listen() without bind() binds the wildcard.
func TestListenV6(t *testing.T) {
	s, _ := startServer(t)
	p := connect(t, s)
	p.hello("", "")
	_, lfd := p.ok(Request{Op: OpListen, Proto: maps.TCP, Flags: FlagInet6}, 0)
	ln := nameOf(t, lfd)
	if ln.Family != 6 || ln.Local.Addr() != netip.IPv6Unspecified() {
		t.Fatalf("listener named %+v", ln)
	}
	peer, err := net.Dial("tcp4", fmt.Sprintf("127.0.0.1:%d", ln.Local.Port()))
	if err != nil {
		t.Fatal(err)
	}
	defer peer.Close()
	name, _ := accept(t, lfd)
	if name.Remote.Addr() != netip.MustParseAddr("::ffff:127.0.0.1") || name.Local.Addr() != netip.MustParseAddr("::ffff:127.0.0.1") {
		t.Errorf("accepted %+v", name)
	}
}

// TestClosedListener: the program closing its listener closes the
// network's, and a new connect is refused.
func TestClosedListener(t *testing.T) {
	s, b := startServer(t)
	p := connect(t, s)
	p.hello("", "")
	_, lfd := p.ok(Request{Op: OpListen, Proto: maps.TCP, Local: ap("127.0.0.1:0")}, 0)
	addr := nameOf(t, lfd).Local.String()
	unix.Close(lfd)
	eventually(t, "the listener closes", func() bool {
		c, err := net.Dial("tcp", addr)
		if err == nil {
			c.Close()
		}
		return errors.Is(err, syscall.ECONNREFUSED)
	})
	// The program's connection holds the attachment; once it goes too,
	// the network is closed.
	p.close()
	eventually(t, "the program detaches", func() bool { _, d := b.counts(); return d == 1 })
}

func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within 5s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// kernelPeer listens on loopback and hands over each connection.
func kernelPeer(t *testing.T) (net.Listener, chan net.Conn) {
	t.Helper()
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	conns := make(chan net.Conn, 4)
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			t.Cleanup(func() { c.Close() })
			conns <- c
		}
	}()
	return ln, conns
}

// TestConnect: a blocking connect replies once connected, with the
// socket named by both ends; the peer closing shows as EOF; a refused
// connect says ECONNREFUSED and hands nothing over.
func TestConnect(t *testing.T) {
	s, _ := startServer(t)
	p := connect(t, s)
	p.hello("", "")
	ln, conns := kernelPeer(t)
	remote := unmap(ln.Addr().(*net.TCPAddr).AddrPort())
	r, fd := p.ok(Request{Op: OpConnect, Proto: maps.TCP, Remote: remote}, 0)
	name := nameOf(t, fd)
	peer := <-conns
	if name.Kind != KindTCP || name.Remote != remote || name.Local != r.Local || name.Local != unmap(peer.RemoteAddr().(*net.TCPAddr).AddrPort()) {
		t.Fatalf("connected %+v, reply %+v, peer sees %s", name, r, peer.RemoteAddr())
	}
	c := fileConn(t, fd)
	unix.Close(fd)
	c.Write([]byte("hello"))
	buf := make([]byte, 5)
	peer.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.ReadFull(peer, buf); err != nil || string(buf) != "hello" {
		t.Fatalf("peer read %q, %v", buf, err)
	}
	peer.Close()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	if n, err := c.Read(buf); err != io.EOF {
		t.Errorf("program read %d, %v after the peer closed; want EOF", n, err)
	}

	closed := ap(fmt.Sprintf("127.0.0.1:%d", freePort(t)))
	if r, fd := p.do(Request{Op: OpConnect, Proto: maps.TCP, Remote: closed}); r.Status != int32(unix.ECONNREFUSED) || fd != -1 {
		t.Errorf("connect to a closed port: %+v, fd %d", r, fd)
	}
	// A bind before connect: from the address and port given.
	from := ap(fmt.Sprintf("127.0.0.1:%d", freePort(t)))
	r, _ = p.ok(Request{Op: OpConnect, Proto: maps.TCP, Local: from, Remote: remote}, 0)
	if peer := <-conns; r.Local != from || peer.RemoteAddr().String() != from.String() {
		t.Errorf("connect from %s: reply %s, peer sees %s", from, r.Local, peer.RemoteAddr())
	}
}

// freePort is a TCP port of 127.0.0.1 nobody listens on.
func freePort(t *testing.T) uint16 {
	t.Helper()
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return uint16(ln.Addr().(*net.TCPAddr).Port)
}

// TestConnectNonblocking: EINPROGRESS at once with the local address;
// the socket is not writable until the handshake completes, then is,
// with SO_ERROR 0; a refused one turns writable and hung up, and says
// ECONNREFUSED once.
func TestConnectNonblocking(t *testing.T) {
	s, b := startServer(t)
	p := connect(t, s)
	p.hello("", "")
	ln, conns := kernelPeer(t)
	remote := unmap(ln.Addr().(*net.TCPAddr).AddrPort())
	b.mu.Lock()
	b.gate = make(chan struct{})
	b.mu.Unlock()
	r, fd := p.ok(Request{Op: OpConnect, Proto: maps.TCP, Flags: FlagNonblock, Remote: remote}, int32(unix.EINPROGRESS))
	if r.Local.Port() == 0 || nameOf(t, fd).Local != r.Local {
		t.Fatalf("reply %+v, named %+v", r, nameOf(t, fd))
	}
	if ready(fd, unix.POLLOUT|unix.POLLIN, 100) {
		t.Fatal("writable or readable before the handshake")
	}
	if r, _ := p.do(Request{Op: OpSockErr, ID: r.ID}); r.Status != 0 {
		t.Errorf("SO_ERROR while connecting: %d", r.Status)
	}
	close(b.gate)
	if ev := waitFor(t, fd, unix.POLLOUT); ev&unix.POLLHUP != 0 {
		t.Fatalf("connected, but hung up: %#x", ev)
	}
	if r, _ := p.do(Request{Op: OpSockErr, ID: r.ID}); r.Status != 0 {
		t.Errorf("SO_ERROR once connected: %d", r.Status)
	}
	c := fileConn(t, fd)
	c.Write([]byte("ping"))
	peer := <-conns
	buf := make([]byte, 4)
	peer.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.ReadFull(peer, buf); err != nil || string(buf) != "ping" {
		t.Fatalf("peer read %q, %v: the filler leaked?", buf, err)
	}
	peer.Write([]byte("pong"))
	c.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.ReadFull(c, buf); err != nil || string(buf) != "pong" {
		t.Fatalf("program read %q, %v", buf, err)
	}

	closed := ap(fmt.Sprintf("127.0.0.1:%d", freePort(t)))
	r, fd = p.ok(Request{Op: OpConnect, Proto: maps.TCP, Flags: FlagNonblock, Remote: closed}, int32(unix.EINPROGRESS))
	if ev := waitFor(t, fd, unix.POLLOUT); ev&unix.POLLHUP == 0 {
		t.Errorf("refused: events %#x, want POLLOUT|POLLHUP", ev)
	}
	if r, _ := p.do(Request{Op: OpSockErr, ID: r.ID}); r.Status != int32(unix.ECONNREFUSED) {
		t.Errorf("SO_ERROR of a refused connect: %d", r.Status)
	}
	if r, _ := p.do(Request{Op: OpSockErr, ID: r.ID}); r.Status != 0 {
		t.Errorf("SO_ERROR read twice: %d", r.Status)
	}
}

// TestProgramCloses: closing the program's socket closes the session:
// the peer reads EOF, also after the program only shut down its side
// first and the peer stays silent.
func TestProgramCloses(t *testing.T) {
	s, _ := startServer(t)
	p := connect(t, s)
	p.hello("", "")
	ln, conns := kernelPeer(t)
	remote := unmap(ln.Addr().(*net.TCPAddr).AddrPort())
	for _, shutFirst := range []bool{false, true} {
		_, fd := p.ok(Request{Op: OpConnect, Proto: maps.TCP, Remote: remote}, 0)
		peer := <-conns
		if shutFirst {
			unix.Shutdown(fd, unix.SHUT_WR)
			peer.SetDeadline(time.Now().Add(5 * time.Second))
			if n, err := peer.Read(make([]byte, 1)); err != io.EOF {
				t.Fatalf("after shutdown: peer read %d, %v", n, err)
			}
		}
		unix.Close(fd)
		eventually(t, "the session closes", func() bool {
			s.mu.Lock()
			defer s.mu.Unlock()
			return len(s.sessions) == 0
		})
		// The peer's write now meets a reset or a closed socket.
		peer.SetDeadline(time.Now().Add(5 * time.Second))
		io.ReadAll(peer)
	}
}

// udpPeer is a kernel UDP socket on loopback.
func udpPeer(t *testing.T) *net.UDPConn {
	t.Helper()
	c, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	c.SetDeadline(time.Now().Add(5 * time.Second))
	return c
}

func dgram(to netip.AddrPort, payload string) []byte {
	b := make([]byte, DgramSize+len(payload))
	putDgram(b, to)
	copy(b[DgramSize:], payload)
	return b
}

// recvDgram reads a datagram of a handed-over UDP socket.
func recvDgram(t *testing.T, fd int) (netip.AddrPort, string) {
	t.Helper()
	waitFor(t, fd, unix.POLLIN)
	buf := make([]byte, 2048)
	n, err := unix.Read(fd, buf)
	if err != nil {
		t.Fatal(err)
	}
	from, payload, err := readDgram(buf[:n])
	if err != nil {
		t.Fatal(err)
	}
	return from, string(payload)
}

func (c *program) udpAddr(u *net.UDPConn) netip.AddrPort {
	return unmap(u.LocalAddr().(*net.UDPAddr).AddrPort())
}

// TestUDP: a bound UDP socket gets each datagram behind its sender's
// address and sends to the address before each; a connected one sends
// to its peer by default.
func TestUDP(t *testing.T) {
	s, _ := startServer(t)
	p := connect(t, s)
	p.hello("", "")
	peer := udpPeer(t)
	peerAddr := p.udpAddr(peer)
	r, fd := p.ok(Request{Op: OpBind, Proto: maps.UDP, Local: ap("127.0.0.1:0")}, 0)
	name := nameOf(t, fd)
	if soType(t, fd) != unix.SOCK_SEQPACKET || name.Kind != KindUDP || name.Local != r.Local || r.Local.Port() == 0 {
		t.Fatalf("bound %+v, named %+v", r, name)
	}
	peer.WriteToUDPAddrPort([]byte("to program"), r.Local)
	if from, got := recvDgram(t, fd); from != peerAddr || got != "to program" {
		t.Errorf("program read %q from %s", got, from)
	}
	if _, err := unix.Write(fd, dgram(peerAddr, "to peer")); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 100)
	n, from, err := peer.ReadFromUDPAddrPort(buf)
	if err != nil || string(buf[:n]) != "to peer" || unmap(from) != r.Local {
		t.Fatalf("peer read %q from %s, %v", buf[:n], from, err)
	}
	// A connect without a bind: from the address the network picks.
	r, fd = p.ok(Request{Op: OpConnect, Proto: maps.UDP, Remote: peerAddr}, 0)
	if name := nameOf(t, fd); name.Remote != peerAddr || name.Local != r.Local {
		t.Fatalf("connected %+v, reply %+v", name, r)
	}
	unix.Write(fd, dgram(netip.AddrPort{}, "default"))
	n, from, err = peer.ReadFromUDPAddrPort(buf)
	if err != nil || string(buf[:n]) != "default" || unmap(from) != r.Local {
		t.Fatalf("peer read %q from %s, %v", buf[:n], from, err)
	}
	if got := s.Counters().Sessions[maps.UDP]; got != 2 {
		t.Errorf("udp sessions: %d, want 2", got)
	}
}

// TestUDPSamePort: iperf3's server: the socket of the first client is
// connected to it, a second socket binds the same port for the next
// client (SO_REUSEADDR), and each gets its own client's datagrams. A
// bind without SO_REUSEADDR to a port in use is refused. Closing the
// sockets closes the network's once the last goes.
func TestUDPSamePort(t *testing.T) {
	s, _ := startServer(t)
	p := connect(t, s)
	p.hello("", "")
	first, second := udpPeer(t), udpPeer(t)
	r, fd1 := p.ok(Request{Op: OpBind, Proto: maps.UDP, Flags: FlagReuseAddr, Local: ap("127.0.0.1:0")}, 0)
	port := r.Local
	// Bound to port 0, the socket shares the port it took.
	first.WriteToUDPAddrPort([]byte("1"), port)
	if from, _ := recvDgram(t, fd1); from != p.udpAddr(first) {
		t.Fatalf("first datagram from %s", from)
	}
	p.ok(Request{Op: OpUDPConnect, Proto: maps.UDP, ID: r.ID, Remote: p.udpAddr(first)}, 0)
	if r, _ := p.do(Request{Op: OpBind, Proto: maps.UDP, Local: port}); r.Status != int32(unix.EADDRINUSE) {
		t.Errorf("bind to a port in use without SO_REUSEADDR: %+v", r)
	}
	// The port's key is what the program bound to: the same address.
	_, fd2 := p.ok(Request{Op: OpBind, Proto: maps.UDP, Flags: FlagReuseAddr, Local: port}, 0)
	for range 3 {
		second.WriteToUDPAddrPort([]byte("2"), port)
		first.WriteToUDPAddrPort([]byte("1"), port)
	}
	for range 3 {
		if from, got := recvDgram(t, fd2); got != "2" || from != p.udpAddr(second) {
			t.Errorf("second socket read %q from %s", got, from)
		}
		if from, got := recvDgram(t, fd1); got != "1" || from != p.udpAddr(first) {
			t.Errorf("first socket read %q from %s", got, from)
		}
	}
	unix.Close(fd1)
	unix.Close(fd2)
	eventually(t, "both sessions close, and the port with them", func() bool {
		c, err := net.ListenUDP("udp4", net.UDPAddrFromAddrPort(port))
		if err == nil {
			c.Close()
		}
		return err == nil
	})
}

// TestAttachmentOutlivesConnection: a forked worker's sockets outlive
// the connection that made them: the network is closed with the last.
func TestAttachmentOutlivesConnection(t *testing.T) {
	s, b := startServer(t)
	p := connect(t, s)
	p.hello("", "")
	_, fd := p.ok(Request{Op: OpBind, Proto: maps.UDP, Local: ap("127.0.0.1:0")}, 0)
	_, lfd := p.ok(Request{Op: OpListen, Proto: maps.TCP, Local: ap("127.0.0.1:0")}, 0)
	p.close()
	time.Sleep(100 * time.Millisecond)
	if _, d := b.counts(); d != 0 {
		t.Fatal("detached while its sockets are open")
	}
	unix.Close(fd)
	time.Sleep(100 * time.Millisecond)
	if _, d := b.counts(); d != 0 {
		t.Fatal("detached while its listener is open")
	}
	unix.Close(lfd)
	eventually(t, "the program detaches", func() bool { _, d := b.counts(); return d == 1 })
	eventually(t, "no program counted", func() bool { return s.Counters().Programs == 0 })
}

// TestServerClose: closing the server closes every session (the
// program reads EOF) and removes the socket file.
func TestServerClose(t *testing.T) {
	s, b := startServer(t)
	p := connect(t, s)
	p.hello("", "")
	ln, _ := kernelPeer(t)
	_, cfd := p.ok(Request{Op: OpConnect, Proto: maps.TCP, Remote: unmap(ln.Addr().(*net.TCPAddr).AddrPort())}, 0)
	_, lfd := p.ok(Request{Op: OpListen, Proto: maps.TCP, Local: ap("127.0.0.1:0")}, 0)
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	for _, fd := range []int{cfd, lfd, p.fd} {
		if ev := waitFor(t, fd, unix.POLLIN); ev&(unix.POLLHUP|unix.POLLIN) == 0 {
			t.Errorf("fd %d: events %#x after Close", fd, ev)
		}
		if n, err := unix.Read(fd, make([]byte, 10)); n != 0 || err != nil {
			t.Errorf("fd %d: read %d, %v after Close; want EOF", fd, n, err)
		}
	}
	if _, err := os.Stat(s.Path()); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("socket file after Close: %v", err)
	}
	if _, d := b.counts(); d != 1 {
		t.Errorf("detached %d programs, want 1", d)
	}
}

// TestListenSocketFile: a live server's socket is not taken over; a
// stale one is replaced; the socket is its owner's only.
func TestListenSocketFile(t *testing.T) {
	s, _ := startServer(t)
	if fi, err := os.Stat(s.Path()); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("socket file: %v, %v", fi.Mode(), err)
	}
	if _, err := Listen(s.Path(), newKernelBackend()); err == nil || !strings.Contains(err.Error(), "a daemon answers on it") {
		t.Errorf("Listen on a live server's socket: %v", err)
	}
	stale := filepath.Join(t.TempDir(), "stale.preload")
	fd, _ := unix.Socket(unix.AF_UNIX, unix.SOCK_SEQPACKET, 0)
	unix.Bind(fd, &unix.SockaddrUnix{Name: stale})
	unix.Close(fd)
	s2, err := Listen(stale, newKernelBackend())
	if err != nil {
		t.Fatalf("Listen over a stale socket: %v", err)
	}
	s2.Close()
	notSocket := filepath.Join(t.TempDir(), "file")
	os.WriteFile(notSocket, nil, 0o600)
	if _, err := Listen(notSocket, newKernelBackend()); err == nil || !strings.Contains(err.Error(), "not a socket") {
		t.Errorf("Listen over a file: %v", err)
	}
}
