package preload

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	xmaps "github.com/xdpstack/xdpstack/maps"
	"github.com/xdpstack/xdpstack/userstack/appns"
)

// Backend attaches the programs that say hello to the network their
// sockets become sessions of.
type Backend interface {
	Attach(p Program) (Network, error)
	// Takes says whether the network would take a bind of proto to
	// local (remote invalid) or a connect to remote, whoever asks: nil,
	// or a *Declined. It judges for a program whose hello was refused,
	// whose calls the network would take fail with the refusal.
	Takes(proto xmaps.Protocol, local, remote netip.AddrPort) error
}

// Program is a process that said hello.
type Program struct {
	// Name is "comm[pid]", the app's name in the sessions view.
	Name      string
	Namespace string
	Secret    string
	Scope     appns.Scope
}

// Network is what the server asks of a stack for one program. An error
// that is a *Declined leaves the call to libc; an *appns.Error is the
// program's EACCES; one that wraps a syscall.Errno, that errno; any
// other, EINVAL. The message of each goes to the program.
type Network interface {
	// CheckBind says whether a bind of proto to local (the unspecified
	// address: all; port 0: any) is the network's, keeping nothing.
	CheckBind(proto xmaps.Protocol, local netip.AddrPort) error
	ListenTCP(local netip.AddrPort, backlog int, flags Flags) (net.Listener, error)
	// ListenUDP opens an unconnected UDP socket; the server sorts its
	// datagrams among the sessions that share it.
	ListenUDP(local netip.AddrPort, flags Flags) (net.PacketConn, error)
	// DialTCP binds a connection to remote from local (the invalid
	// address: the network's pick; port 0: any port) and returns it
	// before the handshake.
	DialTCP(local, remote netip.AddrPort, flags Flags) (Dialing, error)
	// Source is the address a UDP connect to remote leaves from.
	Source(remote netip.Addr) (netip.Addr, error)
	// Close ends the program's attachment, once its sessions are gone.
	Close() error
}

// Dialing is a TCP connection bound to its local address, before its
// handshake.
type Dialing interface {
	LocalAddr() netip.AddrPort
	Connect(ctx context.Context) (net.Conn, error)
	// Close abandons a connection that Connect was not called for.
	Close()
}

// Declined is a Network's answer for what is not its own: the library
// leaves the call to libc, and says why in its debug log.
type Declined struct{ Why string }

func (d *Declined) Error() string { return d.Why }

// Decline is a *Declined that says why.
func Decline(format string, args ...any) error {
	return &Declined{Why: fmt.Sprintf(format, args...)}
}

// Server serves the preloaded programs on a SOCK_SEQPACKET Unix socket.
type Server struct {
	path    string
	ln      *net.UnixListener
	inode   uint64
	backend Backend
	// instance is in every socket name, so that the names of two
	// servers (or of one before and after a restart) differ.
	instance uint32
	nextID   atomic.Uint32
	log      *slog.Logger
	// ctx ends the handshakes in progress when the server closes.
	ctx  context.Context
	stop context.CancelFunc

	programs             atomic.Int64
	tcpOpened, udpOpened atomic.Uint64

	mu       sync.Mutex
	closed   bool
	conns    map[*net.UnixConn]struct{}
	sessions map[uint32]session
	sockErrs map[uint32]sockErr
	// endpoints are the UDP sockets that sessions share, by program and
	// local address.
	endpoints map[endpointKey]*udpEndpoint
	alive     *liveness
	wg        sync.WaitGroup
}

// session is a socket the server handed over.
type session interface {
	close()
}

// sockErr is the pending error of a TCP connect that failed in the
// background, until XS_SOCKERR reads it or it is sockErrTTL old.
type sockErr struct {
	errno syscall.Errno
	at    time.Time
}

const sockErrTTL = 60 * time.Second

// SocketPath is the preload socket of the daemon on iface, beside its
// control socket (IFACE.sock) in dir.
func SocketPath(dir, iface string) string { return filepath.Join(dir, iface+".preload") }

// Listen binds the server's socket at path (0600): one a live daemon
// answers on is an error, a stale one is replaced. It serves at once.
func Listen(path string, backend Backend) (*Server, error) {
	if err := checkStale(path); err != nil {
		return nil, err
	}
	// Bound and given its mode under a temporary name, the socket
	// appears at path whole, as the control socket does.
	tmp := fmt.Sprintf("%s.%d.tmp", path, os.Getpid())
	os.Remove(tmp)
	ln, err := net.ListenUnix("unixpacket", &net.UnixAddr{Name: tmp, Net: "unixpacket"})
	if err != nil {
		return nil, fmt.Errorf("preload socket: %w", err)
	}
	ln.SetUnlinkOnClose(false)
	var fi os.FileInfo
	err = os.Chmod(tmp, 0o600)
	if err == nil {
		fi, err = os.Stat(tmp)
	}
	if err == nil {
		err = os.Rename(tmp, path)
	}
	if err != nil {
		ln.Close()
		os.Remove(tmp)
		return nil, fmt.Errorf("preload socket %s: %w", path, err)
	}
	var instance [4]byte
	rand.Read(instance[:])
	s := &Server{
		path: path, ln: ln, inode: fi.Sys().(*syscall.Stat_t).Ino, backend: backend,
		instance: binary.LittleEndian.Uint32(instance[:]), log: slog.With("preload", path),
		conns: map[*net.UnixConn]struct{}{}, sessions: map[uint32]session{}, sockErrs: map[uint32]sockErr{},
		endpoints: map[endpointKey]*udpEndpoint{},
	}
	s.ctx, s.stop = context.WithCancel(context.Background())
	s.alive = newLiveness(s.log)
	s.wg.Add(1)
	go s.accept()
	return s, nil
}

// checkStale fails when a daemon answers on path, and removes a socket
// nobody answers on.
func checkStale(path string) error {
	fi, err := os.Lstat(path)
	switch {
	case errors.Is(err, os.ErrNotExist):
		return nil
	case err != nil:
		return fmt.Errorf("preload socket: %w", err)
	case fi.Mode().Type() != os.ModeSocket:
		return fmt.Errorf("preload socket %s: a file that is not a socket is in the way (remove it)", path)
	}
	if c, err := net.DialTimeout("unixpacket", path, time.Second); err == nil {
		c.Close()
		return fmt.Errorf("preload socket %s: a daemon answers on it (stop it first)", path)
	}
	if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("preload socket: remove the stale %s: %w", path, err)
	}
	return nil
}

// Path is where the server listens.
func (s *Server) Path() string { return s.path }

// Counters say what the server serves.
type Counters struct {
	// Programs are the processes attached now.
	Programs int64
	// Sessions count the sockets handed over since the start, by
	// protocol: listeners and connections for tcp.
	Sessions map[xmaps.Protocol]uint64
}

// Counters reads the counters.
func (s *Server) Counters() Counters {
	return Counters{Programs: s.programs.Load(), Sessions: map[xmaps.Protocol]uint64{
		xmaps.TCP: s.tcpOpened.Load(), xmaps.UDP: s.udpOpened.Load(),
	}}
}

// Close stops serving: it closes the socket, every program's
// connection and every session (the programs read EOF), and removes
// the socket file unless another server's has taken its place.
func (s *Server) Close() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	conns, sessions := maps.Clone(s.conns), maps.Clone(s.sessions)
	s.mu.Unlock()
	err := s.ln.Close()
	s.stop()
	for c := range conns {
		c.Close()
	}
	for _, sess := range sessions {
		sess.close()
	}
	s.wg.Wait()
	s.alive.close()
	if fi, serr := os.Stat(s.path); serr == nil && fi.Sys().(*syscall.Stat_t).Ino == s.inode {
		err = errors.Join(err, os.Remove(s.path))
	}
	return err
}

func (s *Server) accept() {
	defer s.wg.Done()
	for {
		c, err := s.ln.AcceptUnix()
		if err != nil {
			return
		}
		s.mu.Lock()
		if s.closed {
			s.mu.Unlock()
			c.Close()
			return
		}
		s.conns[c] = struct{}{}
		s.wg.Add(1)
		s.mu.Unlock()
		go s.serveConn(c)
	}
}

// add registers a session, unless the server is closing; run, if
// given, then starts it under the server's wait group.
func (s *Server) add(id uint32, sess session, run func()) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return false
	}
	s.sessions[id] = sess
	if run != nil {
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			run()
		}()
	}
	return true
}

func (s *Server) remove(id uint32) {
	s.mu.Lock()
	delete(s.sessions, id)
	s.mu.Unlock()
}

func (s *Server) newID() uint32 {
	for {
		if id := s.nextID.Add(1); id != 0 {
			return id
		}
	}
}

// attachment is a program's Network, which lives while the program's
// connection or any of its sessions does: a forked worker's sockets
// outlive the process that made them.
type attachment struct {
	s    *Server
	net  Network
	prog Program
	refs atomic.Int32
}

func (a *attachment) hold() { a.refs.Add(1) }

func (a *attachment) release() {
	if a.refs.Add(-1) != 0 {
		return
	}
	a.s.programs.Add(-1)
	if err := a.net.Close(); err != nil {
		a.s.log.Warn("detach a program", "app", a.prog.Name, "err", err)
	}
}

// client is one program's connection.
type client struct {
	s    *Server
	conn *net.UnixConn
	pid  int
	att  *attachment
	// refusal is why the last hello was refused (EACCES), if it was.
	refusal string
}

// response is a reply and the socket it carries, if any: the program's
// end, which the server closes once sent.
type response struct {
	Reply
	fd int
}

func failed(err error) response {
	status, msg := statusOf(err)
	return response{Reply: Reply{Status: status, Message: msg}, fd: -1}
}

func invalid(format string, args ...any) response {
	return response{Reply: Reply{Status: int32(unix.EINVAL), Message: fmt.Sprintf(format, args...)}, fd: -1}
}

// statusOf is the status and message of an error (see Network).
func statusOf(err error) (int32, string) {
	msg := strings.ReplaceAll(err.Error(), "\n", " ")
	var declined *Declined
	var refused *appns.Error
	var errno syscall.Errno
	switch {
	case errors.As(err, &declined):
		return StatusDeclined, msg
	case errors.As(err, &refused):
		return int32(unix.EACCES), msg
	case errors.As(err, &errno):
		return int32(errno), msg
	case errors.Is(err, context.Canceled):
		return int32(unix.ECONNABORTED), msg
	}
	return int32(unix.EINVAL), msg
}

func (s *Server) serveConn(c *net.UnixConn) {
	defer s.wg.Done()
	cl := &client{s: s, conn: c}
	defer func() {
		s.mu.Lock()
		delete(s.conns, c)
		s.mu.Unlock()
		c.Close()
		if cl.att != nil {
			cl.att.release()
		}
	}()
	if rc, err := c.SyscallConn(); err == nil {
		rc.Control(func(fd uintptr) {
			if cred, err := unix.GetsockoptUcred(int(fd), unix.SOL_SOCKET, unix.SO_PEERCRED); err == nil {
				cl.pid = int(cred.Pid)
			}
		})
	}
	buf := make([]byte, RequestSize+1) // one more: a longer message shows
	oob := make([]byte, unix.CmsgSpace(4*16))
	for {
		n, oobn, flags, _, err := c.ReadMsgUnix(buf, oob)
		if err != nil || n == 0 {
			return
		}
		closeRights(oob[:oobn])
		var r response
		if flags&unix.MSG_TRUNC != 0 {
			n = len(buf)
		}
		if req, err := ParseRequest(buf[:n]); err != nil {
			r = invalid("%v", err)
		} else {
			r = cl.handle(req)
		}
		var rights []byte
		if r.fd >= 0 {
			rights = unix.UnixRights(r.fd)
		}
		_, _, err = c.WriteMsgUnix(r.Reply.Marshal(), rights, nil)
		if r.fd >= 0 {
			unix.Close(r.fd)
		}
		if err != nil {
			return
		}
	}
}

// closeRights closes the descriptors a request carried: none should.
func closeRights(oob []byte) {
	msgs, err := unix.ParseSocketControlMessage(oob)
	if err != nil {
		return
	}
	for _, m := range msgs {
		fds, _ := unix.ParseUnixRights(&m)
		for _, fd := range fds {
			unix.Close(fd)
		}
	}
}

func (cl *client) handle(req Request) response {
	if req.Op == OpHello {
		return cl.hello(req)
	}
	if err := check(req); err != nil {
		return invalid("%v", err)
	}
	req.Local, req.Remote = unmap(req.Local), unmap(req.Remote)
	if cl.att == nil {
		if cl.refusal == "" {
			return invalid("%s: say hello first", req.Op)
		}
		return cl.judge(req)
	}
	switch req.Op {
	case OpBind:
		if req.Proto == xmaps.UDP {
			return cl.bindUDP(req)
		}
		if err := cl.att.net.CheckBind(xmaps.TCP, req.Local); err != nil {
			return failed(err)
		}
		return response{Reply: Reply{Local: show(req.Local, req.Flags)}, fd: -1}
	case OpListen:
		return cl.listen(req)
	case OpConnect:
		if req.Proto == xmaps.UDP {
			return cl.connectUDP(req)
		}
		return cl.connectTCP(req)
	case OpUDPConnect:
		return cl.udpConnect(req)
	}
	return response{Reply: Reply{Status: int32(cl.s.takeSockErr(req.ID)), ID: req.ID}, fd: -1} // OpSockErr
}

// check says what is wrong with a request, but for hello.
func check(req Request) error {
	switch req.Op {
	case OpBind, OpListen, OpConnect:
		if req.Proto != xmaps.TCP && req.Proto != xmaps.UDP || req.Op == OpListen && req.Proto != xmaps.TCP {
			return fmt.Errorf("%s: protocol %d (want tcp, or udp but for listen)", req.Op, req.Proto)
		}
	case OpUDPConnect, OpSockErr:
		return nil
	default:
		return fmt.Errorf("unknown op %d", uint32(req.Op))
	}
	switch {
	case req.Op == OpBind && !req.Local.Addr().IsValid():
		return errors.New("bind: no address")
	case req.Op == OpConnect && (!req.Remote.Addr().IsValid() || req.Remote.Addr().IsUnspecified() || req.Remote.Port() == 0):
		return fmt.Errorf("connect: remote %s (want the address and port of a peer)", req.Remote)
	}
	return nil
}

// judge answers a program whose hello was refused: what the network
// would take fails with the refusal (EACCES), as the library expects,
// and the rest is declined, for libc.
func (cl *client) judge(req Request) response {
	refused := response{Reply: Reply{Status: int32(unix.EACCES), Message: cl.refusal}, fd: -1}
	var local, remote netip.AddrPort
	switch req.Op {
	case OpBind:
		local = req.Local
	case OpConnect:
		remote = req.Remote
	default:
		return refused
	}
	if err := cl.s.backend.Takes(req.Proto, local, remote); err != nil {
		return failed(err)
	}
	return refused
}

// hello attaches the program to the backend with what it says.
func (cl *client) hello(req Request) response {
	if cl.att != nil {
		return invalid("hello: said already, as %s", cl.att.prog.Name)
	}
	h := parseHello(req.Text)
	scope := appns.ScopeGlobal
	if h.scope != "" {
		var err error
		if scope, err = appns.ParseScope(h.scope); err != nil {
			return invalid("hello: %v", err)
		}
	}
	prog := Program{Name: programName(cl.pid, h.procname), Namespace: h.namespace, Secret: h.secret, Scope: scope}
	n, err := cl.s.backend.Attach(prog)
	if err != nil {
		r := failed(err)
		if r.Status == int32(unix.EACCES) {
			cl.refusal = r.Message
		}
		return r
	}
	cl.att = &attachment{s: cl.s, net: n, prog: prog}
	cl.att.hold()
	cl.s.programs.Add(1)
	ns := h.namespace
	if ns == "" {
		ns = appns.Default
	}
	cl.s.log.Debug("program attached", "app", prog.Name, "namespace", ns, "scope", scope)
	return response{Reply: Reply{Message: fmt.Sprintf("%s attached to namespace %s, scope %s", prog.Name, ns, scope)}, fd: -1}
}

// programName is "comm[pid]": the process's name from /proc, else what
// it said, else "pid".
func programName(pid int, said string) string {
	comm, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/comm")
	name := strings.TrimSpace(string(comm))
	if err != nil || name == "" {
		name = said
	}
	if name == "" {
		name = "pid"
	}
	return fmt.Sprintf("%s[%d]", name, pid)
}

// unmap makes an IPv4-mapped address IPv4: the server works in plain
// addresses, and show maps them back for an AF_INET6 socket.
func unmap(ap netip.AddrPort) netip.AddrPort {
	if !ap.Addr().IsValid() {
		return ap
	}
	return netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())
}

// show is an address as the program's socket says it: IPv4 addresses
// come v4-mapped to an AF_INET6 socket.
func show(ap netip.AddrPort, flags Flags) netip.AddrPort {
	if flags&FlagInet6 != 0 && ap.Addr().Is4() {
		return netip.AddrPortFrom(netip.AddrFrom16(ap.Addr().As16()), ap.Port())
	}
	return ap
}

func family(flags Flags) uint8 {
	if flags&FlagInet6 != 0 {
		return 6
	}
	return 4
}

// wildcard is the unspecified address of the program's socket's family.
func wildcard(flags Flags) netip.Addr {
	if flags&FlagInet6 != 0 {
		return netip.IPv6Unspecified()
	}
	return netip.IPv4Unspecified()
}

func (s *Server) setSockErr(id uint32, errno syscall.Errno) {
	s.mu.Lock()
	defer s.mu.Unlock()
	now := time.Now()
	for old, e := range s.sockErrs {
		if now.Sub(e.at) > sockErrTTL {
			delete(s.sockErrs, old)
		}
	}
	s.sockErrs[id] = sockErr{errno, now}
}

func (s *Server) takeSockErr(id uint32) syscall.Errno {
	s.mu.Lock()
	defer s.mu.Unlock()
	e, ok := s.sockErrs[id]
	delete(s.sockErrs, id)
	if !ok || time.Since(e.at) > sockErrTTL {
		return 0
	}
	return e.errno
}

// errnoOf is the errno a failed connect says in SO_ERROR.
func errnoOf(err error) syscall.Errno {
	status, _ := statusOf(err)
	if status <= 0 {
		return unix.ECONNREFUSED
	}
	return syscall.Errno(status)
}

func addrPortOf(a net.Addr) netip.AddrPort {
	switch a := a.(type) {
	case *net.TCPAddr:
		return unmap(a.AddrPort())
	case *net.UDPAddr:
		return unmap(a.AddrPort())
	}
	return netip.AddrPort{}
}
