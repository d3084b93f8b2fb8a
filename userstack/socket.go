package userstack

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"slices"

	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/transport/tcp"
	"gvisor.dev/gvisor/pkg/waiter"

	"github.com/xdpstack/xdpstack/maps"
	"github.com/xdpstack/xdpstack/userstack/appns"
	"github.com/xdpstack/xdpstack/userstack/cutthrough"
)

// The calls of this file bind as a kernel socket does, for the
// programs that package preload serves: the unspecified address of a
// family is that family's, an explicit local address is bound before a
// connect, and errors unwrap to the errno a kernel socket would say.

// SocketOptions are the options of a program's socket that change how
// it binds.
type SocketOptions struct {
	// V6Only keeps a socket bound to :: to IPv6, as IPV6_V6ONLY does.
	V6Only bool
	// ReuseAddr lets a connect bind to a port that another socket of
	// the address holds, as SO_REUSEADDR does. Listeners always may
	// (see App.listen).
	ReuseAddr bool
	// Backlog bounds a listener's accept queue; 0 or more than
	// Options.TCP.Backlog is that.
	Backlog int
}

// socketBind is how a listen binds: as Listen and ListenPacket have it
// (the zero value), or exactly as a program's socket (see bindOptions).
type socketBind struct {
	SocketOptions
	exact bool
}

func (o socketBind) setup(ep tcpip.Endpoint) {
	if o.V6Only {
		ep.SocketOptions().SetV6Only(true)
	}
	if o.ReuseAddr {
		ep.SocketOptions().SetReuseAddress(true)
	}
}

func (o socketBind) backlog(most int) int {
	if o.Backlog > 0 && o.Backlog < most {
		return o.Backlog
	}
	return most
}

// Scope is the app's scope.
func (a *App) Scope() appns.Scope { return a.scope }

// ListenTCP listens on local as a kernel socket bound there would, in
// the app's namespace (see Listen).
func (a *App) ListenTCP(local netip.AddrPort, o SocketOptions) (net.Listener, error) {
	ln, err := a.listen(unmap(local), socketBind{o, true})
	if err != nil {
		return nil, fmt.Errorf("listen tcp %s: %w", local, err)
	}
	return ln, nil
}

// ListenUDP opens a UDP socket on local as a kernel socket bound there
// would, in the app's namespace (see ListenPacket).
func (a *App) ListenUDP(local netip.AddrPort, o SocketOptions) (net.PacketConn, error) {
	pc, err := a.listenPacket(unmap(local), socketBind{o, true})
	if err != nil {
		return nil, fmt.Errorf("listen udp %s: %w", local, err)
	}
	return pc, nil
}

// Reaches says why the userstack does not reach remote: an error that
// unwraps to ENETUNREACH when no route to it goes through the
// interface.
func (s *Stack) Reaches(remote netip.Addr) error {
	remote = remote.Unmap()
	r, terr := s.stack.FindRoute(nicID, tcpip.Address{}, tcpAddr(remote), addrProto(remote), false)
	if terr != nil {
		return fmt.Errorf("no route to %s through %s: %w", remote, s.iface.Name, &stackError{terr})
	}
	r.Release()
	return nil
}

// Source is the address a connect to remote leaves from, as Dial picks
// it; an error when the userstack does not reach remote (Reaches).
func (a *App) Source(remote netip.Addr) (netip.Addr, error) {
	if err := a.s.Reaches(remote); err != nil {
		return netip.Addr{}, err
	}
	return a.source(remote.Unmap())
}

// LocalListener tells whether a connect of the app to remote would
// find a local listener of its namespace (cut-through): only an app of
// scope local or both looks for one.
func (a *App) LocalListener(remote netip.AddrPort) bool {
	return a.scope.Local() && a.s.local.Listening(a.Namespace(), remote)
}

// PendingConn is a TCP connection bound to its local address, whose
// handshake Connect makes.
type PendingConn struct {
	local   netip.AddrPort
	connect func(context.Context) (net.Conn, error)
	abandon func()
}

// LocalAddr is the address the connection is bound to.
func (p *PendingConn) LocalAddr() netip.AddrPort { return p.local }

// Connect makes the handshake, until ctx is done; the error unwraps to
// the errno a kernel socket would say (ECONNREFUSED, ETIMEDOUT...).
func (p *PendingConn) Connect(ctx context.Context) (net.Conn, error) { return p.connect(ctx) }

// Close abandons a connection that Connect was not called for.
func (p *PendingConn) Close() { p.abandon() }

// DialTCP binds a TCP connection to remote from local, as a bind before
// a connect does: the invalid or unspecified address is the one Dial
// would leave from, port 0 one of the userstack's range. It returns the
// connection before its handshake, with its local address, so that a
// non-blocking connect can say it. An app of scope local, or both with
// a local listener for remote, is joined to the listener (cut-through).
// The namespace's local rules may refuse the connection.
func (a *App) DialTCP(local, remote netip.AddrPort, o SocketOptions) (*PendingConn, error) {
	local, remote = unmap(local), unmap(remote)
	p, err := a.dialTCP(local, remote, o)
	if err != nil {
		return nil, fmt.Errorf("connect tcp %s: %w", remote, err)
	}
	return p, nil
}

func (a *App) dialTCP(local, remote netip.AddrPort, o SocketOptions) (*PendingConn, error) {
	if !remote.Addr().IsValid() || remote.Addr().IsUnspecified() || remote.Port() == 0 {
		return nil, errors.New("want the address and port of a peer")
	}
	src := local.Addr()
	if src.IsValid() && !src.IsUnspecified() {
		if _, err := a.ns.BindAddrs(src); err != nil {
			return nil, err
		}
	} else {
		var err error
		if src, err = a.source(remote.Addr()); err != nil {
			return nil, err
		}
	}
	if a.scope == appns.ScopeLocal || a.LocalListener(remote) {
		return a.dialTCPLocal(netip.AddrPortFrom(src, local.Port()), remote)
	}
	var wq waiter.Queue
	ep, terr := a.s.stack.NewEndpoint(tcp.ProtocolNumber, addrProto(src), &wq)
	if terr != nil {
		return nil, &stackError{terr}
	}
	socketBind{SocketOptions: o}.setup(ep)
	if terr := ep.Bind(tcpip.FullAddress{Addr: tcpAddr(src), Port: local.Port()}); terr != nil {
		ep.Close()
		return nil, &bindError{netip.AddrPortFrom(src, local.Port()), terr}
	}
	bound, _ := ep.GetLocalAddress()
	from := netip.AddrPortFrom(src, bound.Port)
	if err := a.ns.Check(maps.RulePacket{Protocol: maps.TCP, Local: from, Remote: remote}); err != nil {
		ep.Close()
		return nil, err
	}
	to := tcpip.FullAddress{Addr: tcpAddr(remote.Addr()), Port: remote.Port()}
	return &PendingConn{
		local: from,
		connect: func(ctx context.Context) (net.Conn, error) {
			if terr := connectTCP(ctx, ep, &wq, to); terr != nil {
				ep.Close()
				if ctx.Err() != nil {
					return nil, ctx.Err()
				}
				return nil, &net.OpError{Op: "connect", Net: "tcp", Addr: netTCPAddr(remote), Err: &stackError{terr}}
			}
			return a.hold(ep, &wq, nil)
		},
		abandon: func() { ep.Close() },
	}, nil
}

// dialTCPLocal is DialTCP's connect to a local listener, from local
// (port 0: the next of the userstack's range).
func (a *App) dialTCPLocal(local, remote netip.AddrPort) (*PendingConn, error) {
	if local.Port() == 0 {
		local = netip.AddrPortFrom(local.Addr(), a.s.nextLocalPort())
	}
	if err := a.ns.Check(maps.RulePacket{Protocol: maps.TCP, Local: local, Remote: remote}); err != nil {
		return nil, err
	}
	return &PendingConn{
		local: local,
		connect: func(ctx context.Context) (net.Conn, error) {
			c, err := a.s.local.Dial(ctx, a.Namespace(), local, remote, cutthrough.DialOptions{App: a.label.app})
			if errors.Is(err, cutthrough.ErrNoListener) {
				return nil, &net.OpError{Op: "connect", Net: "tcp", Addr: netTCPAddr(remote), Err: &stackError{&tcpip.ErrConnectionRefused{}}}
			}
			if err != nil {
				return nil, err
			}
			return a.holdLocal(c)
		},
		abandon: func() {},
	}, nil
}

// Serves tells whether addr is one of the interface's addresses that
// the userstack serves.
func (s *Stack) Serves(addr netip.Addr) bool {
	return slices.Contains(s.servedAddrs(), addr.Unmap())
}

// MayBind says why the app may not bind to addr: an *appns.Error when
// the address is another namespace's, or not one of its own.
func (a *App) MayBind(addr netip.Addr) error {
	_, err := a.ns.BindAddrs(addr)
	return err
}
