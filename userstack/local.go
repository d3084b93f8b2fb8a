package userstack

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"sync"

	"github.com/xdpstack/xdpstack/maps"
	"github.com/xdpstack/xdpstack/userstack/appns"
)

// localTable joins local-scope connects to local-scope listeners of the
// same namespace in memory, with no netstack and no packets: the
// cut-through sessions of VPP's session layer (package cutthrough). It
// checks no namespace, address or rule: the apps do.
type localTable interface {
	// Listen listens on addr in namespace: on a concrete address, or on
	// all the namespace's (0.0.0.0 on its IPv4 ones, :: on all).
	Listen(namespace string, addr netip.AddrPort, app string) (localListener, error)
	// Dial joins local to namespace's listener for remote (on remote's
	// address, else on all); without one it fails with an error that
	// is errNoLocalListener.
	Dial(ctx context.Context, namespace string, local, remote netip.AddrPort, app string) (localConn, error)
	// Sessions lists the listeners and both ends of each connection.
	Sessions() []localSession
}

type localListener interface {
	Accept() (localConn, error)
	Close() error
}

// localConn is an end of a cut-through connection: it shuts down a
// direction as TCP does, and copies straight to and from the other side
// of an io.Copy.
type localConn interface {
	net.Conn
	CloseWrite() error
	CloseRead() error
	io.WriterTo
	io.ReaderFrom
}

// localSession is a cut-through listener or connection end.
type localSession struct {
	Namespace, App string
	Local, Remote  netip.AddrPort
	State          SessionState
	RxFifo, TxFifo int
}

var errNoLocalListener = errors.New("no local listener")

// listenLocal listens in the local table on each address of addrs, for
// ln.
func (a *App) listenLocal(ln *listener, addrs []netip.Addr, port uint16) error {
	if a.s.local == nil {
		return errNoLocalTable
	}
	if port == 0 {
		return fmt.Errorf("scope %s: want a port (a local listener is found by its port)", a.scope)
	}
	for _, addr := range addrs {
		if !addr.IsValid() {
			addr = netip.IPv6Unspecified() // every address, as the netstack's dual-stack wildcard
		}
		ll, err := a.s.local.Listen(a.Namespace(), netip.AddrPortFrom(addr, port), a.label.app)
		if err != nil {
			return err
		}
		ln.locals = append(ln.locals, ll)
	}
	return nil
}

var errNoLocalTable = errors.New("local scope: this userstack has no cut-through table (use scope global)")

// dialLocal connects to a local listener of the namespace, from the
// address a connect over the network would leave from and the next
// port of the userstack's range in turn (which, within a pair of
// addresses, only a range's worth of connections at once could reuse).
func (a *App) dialLocal(ctx context.Context, remote netip.AddrPort) (net.Conn, error) {
	if a.s.local == nil {
		return nil, errNoLocalTable
	}
	src, err := a.source(remote.Addr())
	if err != nil {
		return nil, err
	}
	local := netip.AddrPortFrom(src, a.s.nextLocalPort())
	if err := a.ns.Check(maps.RulePacket{Protocol: maps.TCP, Local: local, Remote: remote}); err != nil {
		return nil, err
	}
	c, err := a.s.local.Dial(ctx, a.Namespace(), local, remote, a.label.app)
	if errors.Is(err, errNoLocalListener) {
		hint := "(listen there with scope local or both)"
		if a.scope == appns.ScopeLocal {
			hint = "(listen there with scope local or both, or connect with scope both or global)"
		}
		return nil, fmt.Errorf("%w for %s in namespace %s %s", errNoLocalListener, remote, a.Namespace(), hint)
	}
	if err != nil {
		return nil, err
	}
	return a.holdLocal(c)
}

// nextLocalPort is the port of the next cut-through connect.
func (s *Stack) nextLocalPort() uint16 {
	n := uint32(s.ports.Max) - uint32(s.ports.Min) + 1
	return s.ports.Min + uint16(s.localPorts.Add(1)%n)
}

// heldLocal is a cut-through connection end the app holds.
type heldLocal struct {
	localConn
	release func()
	once    sync.Once
}

func (c *heldLocal) Close() error {
	c.once.Do(c.release)
	return c.localConn.Close()
}

// holdLocal makes a cut-through end the app's: closed with the app.
func (a *App) holdLocal(lc localConn) (net.Conn, error) {
	c := &heldLocal{localConn: lc}
	c.release = func() { a.forget(c) }
	if err := a.keep(c); err != nil {
		c.Close()
		return nil, err
	}
	return c, nil
}

// localSessions are the cut-through sessions, as the sessions view
// shows them.
func (s *Stack) localSessions() []Session {
	if s.local == nil {
		return nil
	}
	var out []Session
	for _, ls := range s.local.Sessions() {
		out = append(out, Session{
			Transport: TransportCutThrough, Protocol: "tcp", Local: ls.Local, Remote: ls.Remote, State: ls.State,
			RxFifo: ls.RxFifo, TxFifo: ls.TxFifo, Namespace: ls.Namespace, App: ls.App,
		})
	}
	return out
}
