package userstack

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"sync"

	"github.com/xdpstack/xdpstack/maps"
	"github.com/xdpstack/xdpstack/userstack/appns"
	"github.com/xdpstack/xdpstack/userstack/cutthrough"
)

// listenLocal listens in the local table on each address of addrs, for
// ln.
func (a *App) listenLocal(ln *listener, addrs []netip.Addr, port uint16) error {
	if port == 0 {
		return fmt.Errorf("scope %s: want a port (a local listener is found by its port)", a.scope)
	}
	for _, addr := range addrs {
		if !addr.IsValid() {
			addr = netip.IPv6Unspecified() // every address, as the netstack's dual-stack wildcard
		}
		ll, err := a.s.local.Listen(a.Namespace(), netip.AddrPortFrom(addr, port), cutthrough.ListenOptions{App: a.label.app})
		if err != nil {
			return err
		}
		ln.locals = append(ln.locals, ll)
	}
	return nil
}

// dialLocal connects to a local listener of the namespace, from the
// address a connect over the network would leave from and the next
// port of the userstack's range in turn (which, within a pair of
// addresses, only a range's worth of connections at once could reuse).
func (a *App) dialLocal(ctx context.Context, remote netip.AddrPort) (net.Conn, error) {
	src, err := a.source(remote.Addr())
	if err != nil {
		return nil, err
	}
	local := netip.AddrPortFrom(src, a.s.nextLocalPort())
	if err := a.ns.Check(maps.RulePacket{Protocol: maps.TCP, Local: local, Remote: remote}); err != nil {
		return nil, err
	}
	c, err := a.s.local.Dial(ctx, a.Namespace(), local, remote, cutthrough.DialOptions{App: a.label.app})
	if errors.Is(err, cutthrough.ErrNoListener) {
		hint := "(listen there with scope local or both)"
		if a.scope == appns.ScopeLocal {
			hint = "(listen there with scope local or both, or connect with scope both or global)"
		}
		return nil, fmt.Errorf("no local listener for %s in namespace %s %s: %w", remote, a.Namespace(), hint, cutthrough.ErrNoListener)
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
	*cutthrough.Conn
	release func()
	once    sync.Once
}

func (c *heldLocal) Close() error {
	c.once.Do(c.release)
	return c.Conn.Close()
}

// holdLocal makes a cut-through end the app's: closed with the app.
func (a *App) holdLocal(lc *cutthrough.Conn) (net.Conn, error) {
	c := &heldLocal{Conn: lc}
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
	var out []Session
	for _, ls := range s.local.Sessions() {
		out = append(out, Session{
			Transport: TransportCutThrough, Protocol: "tcp", Local: ls.Local, Remote: ls.Remote, State: SessionState(ls.State),
			RxFifo: ls.RxFifo, TxFifo: ls.TxFifo, Namespace: ls.Namespace, App: ls.App,
		})
	}
	return out
}
