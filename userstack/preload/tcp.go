package preload

import (
	"errors"
	"io"
	"net"
	"net/netip"
	"sync"

	"golang.org/x/sys/unix"
)

// listen opens a listener and hands the program its end of a
// SOCK_SEQPACKET pair, on which each connection comes as one message.
func (cl *client) listen(req Request) response {
	s := cl.s
	local := req.Local
	if !local.Addr().IsValid() {
		// listen() without bind() binds the wildcard, as the kernel does.
		local = netip.AddrPortFrom(wildcard(req.Flags), 0)
	}
	ln, err := cl.att.net.ListenTCP(local, int(req.Backlog), req.Flags)
	if err != nil {
		return failed(err)
	}
	// A wildcard listener says the address it was asked for, as a
	// kernel socket does: the network's may name none, or the other
	// family's.
	bound := addrPortOf(ln.Addr())
	if bound.Addr().IsUnspecified() || !bound.Addr().IsValid() {
		bound = netip.AddrPortFrom(local.Addr(), bound.Port())
	}
	id := s.newID()
	prog, end, err := s.pair(unix.SOCK_SEQPACKET, Name{Kind: KindListener, Family: family(req.Flags), ID: id, Instance: s.instance, Local: show(bound, req.Flags)})
	if err != nil {
		ln.Close()
		return failed(err)
	}
	l := &listenerSession{att: cl.att, id: id, ln: ln, end: end, flags: req.Flags}
	cl.att.hold()
	if !s.add(id, l, func() { l.serve(s) }) {
		l.close()
		unix.Close(prog.fd)
		return failed(errClosing)
	}
	s.tcpOpened.Add(1)
	return response{Reply: Reply{ID: id, Local: show(bound, req.Flags)}, fd: prog.fd}
}

var errClosing = errors.New("the daemon is stopping")

// listenerSession hands the program each connection its listener
// accepts, until the program closes its end.
type listenerSession struct {
	att   *attachment
	id    uint32
	ln    net.Listener
	end   *net.UnixConn
	flags Flags
	once  sync.Once
}

func (l *listenerSession) close() {
	l.once.Do(func() {
		l.ln.Close()
		l.end.Close()
		l.att.s.remove(l.id)
		l.att.release()
	})
}

func (l *listenerSession) serve(s *Server) {
	defer l.close()
	// The program never writes: a read ends when it closes its end
	// (every process that holds it did).
	go func() {
		buf := make([]byte, 64)
		for {
			if n, err := l.end.Read(buf); err != nil || n == 0 {
				l.ln.Close()
				return
			}
		}
	}()
	for {
		c, err := l.ln.Accept()
		if err != nil {
			return
		}
		// Blocking send: a program that does not accept holds the
		// connections back in the listener's backlog.
		if err := s.handOver(l, c); err != nil {
			s.log.Debug("listener closed", "app", l.att.prog.Name, "err", err)
			return
		}
	}
}

// handOver sends the program an accepted connection as one message:
// its name (struct xs_accept) with its socket.
func (s *Server) handOver(l *listenerSession, c net.Conn) error {
	id := s.newID()
	name := Name{Kind: KindTCP, Family: family(l.flags), ID: id, Instance: s.instance,
		Local: show(addrPortOf(c.LocalAddr()), l.flags), Remote: show(addrPortOf(c.RemoteAddr()), l.flags)}
	prog, end, err := s.pair(unix.SOCK_STREAM, name)
	if err != nil {
		c.Close()
		return err
	}
	defer unix.Close(prog.fd)
	if _, _, err := l.end.WriteMsgUnix(name.Marshal(), unix.UnixRights(prog.fd), nil); err != nil {
		c.Close()
		end.Close()
		return err
	}
	s.joinTCP(l.att, id, prog.id, end, c)
	return nil
}

// connectTCP connects, at once or in the background (XS_NONBLOCK).
func (cl *client) connectTCP(req Request) response {
	s := cl.s
	d, err := cl.att.net.DialTCP(req.Local, req.Remote, req.Flags)
	if err != nil {
		return failed(err)
	}
	id := s.newID()
	bound := d.LocalAddr()
	prog, end, err := s.pair(unix.SOCK_STREAM, Name{Kind: KindTCP, Family: family(req.Flags), ID: id, Instance: s.instance,
		Local: show(bound, req.Flags), Remote: show(req.Remote, req.Flags)})
	if err != nil {
		d.Close()
		return failed(err)
	}
	reply := Reply{ID: id, Local: show(bound, req.Flags)}
	if req.Flags&FlagNonblock == 0 {
		c, err := d.Connect(s.ctx)
		if err != nil {
			unix.Close(prog.fd)
			end.Close()
			return failed(err)
		}
		s.joinTCP(cl.att, id, prog.id, end, c)
		return response{Reply: reply, fd: prog.fd}
	}
	filler, err := fill(prog.fd)
	if err != nil {
		d.Close()
		unix.Close(prog.fd)
		end.Close()
		return failed(err)
	}
	att := cl.att
	att.hold()
	pending := &pendingSession{end: end}
	started := s.add(id, pending, func() {
		defer att.release()
		c, err := d.Connect(s.ctx)
		if err == nil {
			err = discard(end, filler)
			if err != nil {
				c.Close()
			}
		}
		if err != nil {
			// Recorded before the close that wakes the program, which
			// then asks for it.
			s.setSockErr(id, errnoOf(err))
			s.remove(id)
			end.Close()
			return
		}
		s.remove(id)
		s.joinTCP(att, id, prog.id, end, c)
	})
	if !started {
		att.release()
		d.Close()
		unix.Close(prog.fd)
		end.Close()
		return failed(errClosing)
	}
	reply.Status = int32(unix.EINPROGRESS)
	return response{Reply: reply, fd: prog.fd}
}

// pendingSession is a connect in the background: closing its end ends
// the wait for the filler.
type pendingSession struct{ end *net.UnixConn }

func (p *pendingSession) close() { p.end.Close() }

// tcpSession copies a connection's bytes between the daemon's end of
// the pair and the network, both ways, each way half-closed on its own.
type tcpSession struct {
	att  *attachment
	id   uint32
	prog socketID
	conn net.Conn
	end  *net.UnixConn
	once sync.Once
}

func (s *Server) joinTCP(att *attachment, id uint32, prog socketID, end *net.UnixConn, c net.Conn) {
	t := &tcpSession{att: att, id: id, prog: prog, conn: c, end: end}
	att.hold()
	if !s.add(id, t, t.run) {
		t.close()
		return
	}
	s.tcpOpened.Add(1)
}

func (t *tcpSession) close() {
	t.once.Do(func() {
		t.att.s.alive.unwatch(t.prog)
		t.conn.Close()
		t.end.Close()
		t.att.s.remove(t.id)
		t.att.release()
	})
}

// copyBuffer is each way's: larger than io.Copy's 32 KiB, for the
// userstack's large segments.
const copyBuffer = 128 << 10

func (t *tcpSession) run() {
	defer t.close()
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		if !relay(t.conn, t.end) {
			t.close()
			return
		}
		closeWrite(t.conn)
		// The program shut its end down: if it closes it too, nothing
		// on the pair says so while the peer stays silent.
		t.att.s.alive.watch(t.prog, t.close)
	}()
	if !relay(t.end, t.conn) {
		t.close()
	}
	t.end.CloseWrite()
	wg.Wait()
}

// relay copies src to dst until src ends: true at EOF, false at an
// error either side.
func relay(dst io.Writer, src io.Reader) bool {
	buf := make([]byte, copyBuffer)
	for {
		n, err := src.Read(buf)
		if n > 0 {
			if _, werr := dst.Write(buf[:n]); werr != nil {
				return false
			}
		}
		if err == io.EOF {
			return true
		}
		if err != nil {
			return false
		}
	}
}

func closeWrite(c net.Conn) {
	if cw, ok := c.(interface{ CloseWrite() error }); ok {
		cw.CloseWrite()
		return
	}
	c.Close()
}
