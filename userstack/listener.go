package userstack

import (
	"errors"
	"log/slog"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"

	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/adapters/gonet"
	"gvisor.dev/gvisor/pkg/waiter"

	"github.com/xdpstack/xdpstack/maps"
	"github.com/xdpstack/xdpstack/userstack/cutthrough"
)

// listener accepts the TCP connections of what listens on one port for
// an app: netstack endpoints (one, or one per address of the app's
// namespace), which share a wait queue, and local listeners.
type listener struct {
	app   *App
	eps   []tcpip.Endpoint
	wq    *waiter.Queue
	addr  net.Addr
	steer []maps.Listener
	// steerUsers are the listener and the connections it accepted,
	// which XDP steers by its entries: the last to close removes them,
	// so that a listener closed before its connections (a program that
	// execs, a server that stops listening) does not leave them to the
	// kernel, which would reset them.
	steerUsers atomic.Int32
	// locals are the listeners in the cut-through table, whose
	// connections come through fromLocal.
	locals    []*cutthrough.Listener
	fromLocal chan *cutthrough.Conn
	// next is the endpoint Accept tries first, in turn.
	next atomic.Uint32

	closing  chan struct{}
	once     sync.Once
	closeErr error
}

// Accept returns the next connection that the app's namespace admits:
// one to another namespace's address (which a wildcard listener opened
// before the namespace claimed it takes), or that the local rules deny,
// is reset and counted. Once the listener is closed it says
// net.ErrClosed, as the net package's listeners do.
func (l *listener) Accept() (net.Conn, error) {
	var ready <-chan struct{}
	for {
		select {
		case <-l.closing:
			return nil, l.closedError()
		case lc := <-l.fromLocal:
			if c := l.admitLocal(lc); c != nil {
				return c, nil
			}
			continue
		default:
		}
		c, ok, err := l.acceptOne()
		if ok {
			if err != nil {
				return nil, err
			}
			if c != nil {
				return c, nil
			}
			continue // refused: look for the next
		}
		if ready == nil {
			var entry waiter.Entry
			entry, ready = waiter.NewChannelEntry(waiter.ReadableEvents)
			l.wq.EventRegister(&entry)
			defer l.wq.EventUnregister(&entry)
			continue // one may have come before registering
		}
		select {
		case <-l.closing:
			return nil, l.closedError()
		case <-ready:
		case lc := <-l.fromLocal:
			if c := l.admitLocal(lc); c != nil {
				return c, nil
			}
		}
	}
}

// acceptLocal hands Accept the connections of a local listener until
// it closes.
func (l *listener) acceptLocal(ll *cutthrough.Listener) {
	for {
		c, err := ll.AcceptConn()
		if err != nil {
			return
		}
		select {
		case l.fromLocal <- c:
		case <-l.closing:
			c.Close()
			return
		}
	}
}

// admitLocal is a cut-through connection the namespace admits, held for
// the app; nil for one it refused (closed, and counted).
func (l *listener) admitLocal(lc *cutthrough.Conn) net.Conn {
	local, _ := lc.LocalAddr().(*net.TCPAddr)
	remote, _ := lc.RemoteAddr().(*net.TCPAddr)
	if local == nil || remote == nil {
		lc.Close()
		return nil
	}
	session := maps.RulePacket{Protocol: maps.TCP, Local: unmap(local.AddrPort()), Remote: unmap(remote.AddrPort())}
	if err := l.app.ns.Admit(session); err != nil {
		slog.Debug("closed a local connection the namespace refused", "err", err)
		lc.Close()
		return nil
	}
	c, err := l.app.holdLocal(lc)
	if err != nil {
		return nil
	}
	return c
}

func unmap(ap netip.AddrPort) netip.AddrPort {
	return netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())
}

// acceptOne takes a connection from the first endpoint that has one;
// ok is false when none has. A refused connection is (nil, true, nil).
func (l *listener) acceptOne() (net.Conn, bool, error) {
	start := 0
	if len(l.eps) > 1 {
		start = int(l.next.Add(1))
	}
	for i := range l.eps {
		ep := l.eps[(start+i)%len(l.eps)]
		n, wq, terr := ep.Accept(nil)
		switch terr.(type) {
		case nil:
		case *tcpip.ErrWouldBlock:
			continue
		default:
			select {
			case <-l.closing:
				return nil, true, l.closedError()
			default:
			}
			return nil, true, &net.OpError{Op: "accept", Net: "tcp", Addr: l.addr, Err: errors.New(terr.String())}
		}
		local, _ := n.GetLocalAddress()
		remote, _ := n.GetRemoteAddress()
		session := maps.RulePacket{Protocol: maps.TCP, Local: addrPort(local.Addr, local.Port), Remote: addrPort(remote.Addr, remote.Port)}
		if err := l.app.ns.Admit(session); err != nil {
			slog.Debug("reset a connection the namespace refused", "err", err)
			n.Abort()
			return nil, true, nil
		}
		l.steerUsers.Add(1)
		c, err := l.app.hold(n, wq, l.unsteer)
		if err != nil {
			return nil, true, l.closedError()
		}
		return c, true, nil
	}
	return nil, false, nil
}

func (l *listener) closedError() error {
	return &net.OpError{Op: "accept", Net: "tcp", Addr: l.addr, Err: net.ErrClosed}
}

func (l *listener) Addr() net.Addr { return l.addr }

// unsteer lets go of one user of the listener's steering entries.
func (l *listener) unsteer() error {
	if l.steerUsers.Add(-1) != 0 {
		return nil
	}
	return l.app.s.unsteer(l.steer)
}

// Close stops steering first when no connection it accepted is open,
// so that new connections meet the kernel's refusal instead of a closed
// listener; else the userstack refuses them.
func (l *listener) Close() error {
	l.once.Do(func() {
		errs := []error{l.unsteer()}
		close(l.closing)
		for _, ep := range l.eps {
			l.app.s.held.remove(ep)
			ep.Close()
		}
		for _, ll := range l.locals {
			errs = append(errs, ll.Close())
		}
		l.app.forget(l)
		l.closeErr = errors.Join(errs...)
	})
	return l.closeErr
}

// conn is a TCP connection the app holds: closing it lets the view and
// the app forget it.
type conn struct {
	*gonet.TCPConn
	release func()
	once    sync.Once
}

func (c *conn) Close() error {
	c.once.Do(c.release)
	return c.TCPConn.Close()
}

// hold makes a connected endpoint the app's: in the sessions view, and
// closed with the app. closed, if not nil, runs when it is closed.
func (a *App) hold(ep tcpip.Endpoint, wq *waiter.Queue, closed func() error) (net.Conn, error) {
	a.s.held.add(ep, a.label)
	c := &conn{TCPConn: gonet.NewTCPConn(wq, ep)}
	c.release = func() {
		a.s.held.remove(ep)
		a.forget(c)
		if closed != nil {
			if err := closed(); err != nil {
				slog.Warn("stop steering a closed listener's port", "err", err)
			}
		}
	}
	if err := a.keep(c); err != nil {
		c.Close()
		return nil, err
	}
	return c, nil
}
