package userstack

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"slices"
	"sync"

	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/transport/tcp"
	"gvisor.dev/gvisor/pkg/tcpip/transport/udp"
	"gvisor.dev/gvisor/pkg/waiter"

	"github.com/xdpstack/xdpstack/maps"
	"github.com/xdpstack/xdpstack/userstack/appns"
	"github.com/xdpstack/xdpstack/userstack/cutthrough"
	xtransport "github.com/xdpstack/xdpstack/userstack/transport"
)

// AppOptions say how an application attaches to the userstack.
type AppOptions struct {
	// Name labels the app's sessions in the sessions view; empty leaves
	// them unlabeled.
	Name string
	// Namespace is the application namespace to attach to; empty is
	// the default one.
	Namespace string
	// Secret is the namespace's secret; the default namespace has none.
	Secret string
	// Scope is global (the zero value), local or both.
	Scope appns.Scope
	// Scheme is what the app runs over the netstack's TCP and UDP: its
	// tls and quic sessions show as TLS and Q in the sessions view.
	Scheme xtransport.Scheme
}

// App is an application attached to the userstack through a namespace:
// a transport.Network whose endpoints bind to the namespace's
// addresses and pass its local rules. Close detaches it.
type App struct {
	s     *Stack
	ns    *appns.App
	scope appns.Scope
	label label

	mu sync.Mutex
	// open are the listeners, packet conns and connections the app
	// holds, which Close closes; nil once the app is closed.
	open map[io.Closer]struct{}
}

var _ xtransport.Network = (*App)(nil)

// Attach lets an application into its namespace, if it knows the
// namespace's secret. A refusal is an *appns.Error, counted in the
// namespace registry.
func (s *Stack) Attach(o AppOptions) (*App, error) {
	if o.Scope > appns.ScopeBoth {
		return nil, fmt.Errorf("attach app %s: unknown scope %s", o.Name, o.Scope)
	}
	l := label{app: o.Name}
	switch o.Scheme {
	case xtransport.TLS:
		l.transport = TransportTLS
	case xtransport.QUIC:
		l.transport = TransportQUIC
	}
	ns, err := s.opts.Namespaces.Attach(o.Namespace, o.Secret)
	if err != nil {
		return nil, err
	}
	l.namespace = ns.Namespace()
	return &App{s: s, ns: ns, scope: o.Scope, label: l, open: map[io.Closer]struct{}{}}, nil
}

// Namespace is the name of the app's namespace.
func (a *App) Namespace() string { return a.ns.Namespace() }

// Close closes what the app still holds and detaches it from its
// namespace.
func (a *App) Close() error {
	a.mu.Lock()
	open := a.open
	a.open = nil
	a.mu.Unlock()
	var errs []error
	for c := range open {
		errs = append(errs, c.Close())
	}
	a.ns.Detach()
	return errors.Join(errs...)
}

var errAppClosed = errors.New("the app is closed")

// keep has Close close c; it fails once the app is closed.
func (a *App) keep(c io.Closer) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.open == nil {
		return errAppClosed
	}
	a.open[c] = struct{}{}
	return nil
}

// forget is for c's own Close.
func (a *App) forget(c io.Closer) {
	a.mu.Lock()
	defer a.mu.Unlock()
	delete(a.open, c)
}

// defaultApp is the unlabeled app of the default namespace, in global
// scope, that the Stack's own Listen, ListenPacket and Dial use: it is
// attached at their first use.
func (s *Stack) defaultApp() (*App, error) {
	s.unlabeledOnce.Do(func() { s.unlabeled, s.unlabeledErr = s.Attach(AppOptions{}) })
	return s.unlabeled, s.unlabeledErr
}

// Listen listens for TCP connections on address (HOST:PORT, HOST may be
// empty) in the default namespace and steers them to the userstack
// until the listener closes.
func (s *Stack) Listen(network, address string) (net.Listener, error) {
	a, err := s.defaultApp()
	if err != nil {
		return nil, err
	}
	return a.Listen(network, address)
}

// ListenPacket opens a UDP socket on address in the default namespace
// and steers its datagrams to the userstack until it closes.
func (s *Stack) ListenPacket(network, address string) (net.PacketConn, error) {
	a, err := s.defaultApp()
	if err != nil {
		return nil, err
	}
	return a.ListenPacket(network, address)
}

// Dial connects over TCP, or opens a UDP socket connected to one peer,
// from the default namespace and the userstack's port range.
func (s *Stack) Dial(ctx context.Context, network, address string) (net.Conn, error) {
	a, err := s.defaultApp()
	if err != nil {
		return nil, err
	}
	return a.Dial(ctx, network, address)
}

// bindAddrs are the addresses a bind to addr stands for in the app's
// namespace: addr itself where the namespaces claim no address.
func (a *App) bindAddrs(addr netip.Addr) ([]netip.Addr, error) {
	addrs, err := a.ns.BindAddrs(addr)
	if err != nil {
		return nil, err
	}
	if addrs == nil {
		return []netip.Addr{addr}, nil
	}
	return addrs, nil
}

// Listen listens for TCP connections on address (HOST:PORT, HOST may be
// empty): on the namespace's addresses, one netstack endpoint each, with
// one steering entry each, so that XDP steers only the namespace's
// addresses to it.
func (a *App) Listen(network, address string) (net.Listener, error) {
	ap, proto, err := parseAddr(network, address)
	if err == nil && proto != maps.TCP {
		err = errors.New("use ListenPacket for udp")
	}
	if err == nil {
		var ln net.Listener
		if ln, err = a.listen(ap, socketBind{}); err == nil {
			return ln, nil
		}
	}
	return nil, fmt.Errorf("listen %s %s: %w", network, address, err)
}

func (a *App) listen(ap netip.AddrPort, o socketBind) (net.Listener, error) {
	s := a.s
	addrs, err := a.bindAddrs(ap.Addr())
	if err != nil {
		return nil, err
	}
	ln := &listener{app: a, wq: &waiter.Queue{}, closing: make(chan struct{}), fromLocal: make(chan *cutthrough.Conn)}
	ln.steerUsers.Store(1)
	port := ap.Port()
	if a.scope.Global() {
		// Reuse: a namespace that claimed an address after a wildcard
		// listener of another opened on the port may listen on it too;
		// the netstack's more specific listener takes its connections.
		setup := func(ep tcpip.Endpoint) {
			ep.SocketOptions().SetReuseAddress(true)
			o.setup(ep)
		}
		if ln.eps, port, err = s.bindAll(tcp.ProtocolNumber, addrs, port, ln.wq, bindOptions{setup: setup, exact: o.exact}); err != nil {
			return nil, err
		}
		for _, ep := range ln.eps {
			s.held.add(ep, a.label)
		}
		err = ln.listenNetstack(addrs, port, o.backlog(s.opts.TCP.Backlog))
	}
	if err == nil && a.scope.Local() {
		err = a.listenLocal(ln, addrs, port)
	}
	if err == nil {
		err = a.keep(ln)
	}
	if err != nil {
		ln.Close()
		return nil, err
	}
	ln.addr = netTCPAddr(netip.AddrPortFrom(ap.Addr(), port))
	if len(ln.eps) == 1 {
		bound, _ := ln.eps[0].GetLocalAddress()
		ln.addr = netTCPAddr(addrPort(bound.Addr, bound.Port))
	}
	for _, ll := range ln.locals {
		go ln.acceptLocal(ll)
	}
	return ln, nil
}

// listenNetstack makes ln's bound endpoints listen, and steers their
// addresses to them.
func (ln *listener) listenNetstack(addrs []netip.Addr, port uint16, backlog int) error {
	s := ln.app.s
	for _, ep := range ln.eps {
		if terr := ep.Listen(backlog); terr != nil {
			return errors.New(terr.String())
		}
	}
	var err error
	ln.steer, err = s.steer(maps.TCP, addrs, port)
	return err
}

// bindError is a bind the netstack refused.
type bindError struct {
	addr netip.AddrPort
	err  tcpip.Error
}

// Unwrap is the errno a kernel socket's bind would have said.
func (e *bindError) Unwrap() error { return errnoOf(e.err) }

func (e *bindError) Error() string {
	if !e.addr.Addr().IsValid() {
		return fmt.Sprintf("bind: %s", e.err)
	}
	return fmt.Sprintf("bind to %s: %s", e.addr, e.err)
}

// bindTries bounds the ports tried for a bind of several addresses to
// port 0: another bind may take the port picked before it is bound on
// every address.
const bindTries = 16

// bindOptions say how bindAll binds each endpoint.
type bindOptions struct {
	// setup sets an endpoint's options before it binds.
	setup func(tcpip.Endpoint)
	// exact binds an unspecified address to its own family, as a kernel
	// socket does: 0.0.0.0 is IPv4's wildcard, :: both families' (unless
	// setup makes it v6-only). Else either stands for every address of
	// the interface (see fullAddr).
	exact bool
}

// bindAll binds one endpoint per address (the invalid or unspecified
// address: every address) to port, all sharing wq. Port 0 on several
// addresses takes a port free on all of them.
func (s *Stack) bindAll(proto tcpip.TransportProtocolNumber, addrs []netip.Addr, port uint16, wq *waiter.Queue, o bindOptions) ([]tcpip.Endpoint, uint16, error) {
	if port != 0 || len(addrs) == 1 {
		return s.tryBind(proto, addrs, port, wq, o)
	}
	var err error
	for range bindTries {
		if port, err = s.freePort(proto); err != nil {
			return nil, 0, err
		}
		var eps []tcpip.Endpoint
		if eps, _, err = s.tryBind(proto, addrs, port, wq, o); err == nil {
			return eps, port, nil
		}
		var be *bindError
		if !errors.As(err, &be) {
			return nil, 0, err
		}
		if _, inUse := be.err.(*tcpip.ErrPortInUse); !inUse {
			return nil, 0, err
		}
	}
	return nil, 0, err
}

// freePort is a port that is free on every address: one the netstack
// picks for a bind to the unspecified address.
func (s *Stack) freePort(proto tcpip.TransportProtocolNumber) (uint16, error) {
	fa, netProto := s.fullAddr(netip.AddrPort{})
	var wq waiter.Queue
	ep, terr := s.stack.NewEndpoint(proto, netProto, &wq)
	if terr != nil {
		return 0, errors.New(terr.String())
	}
	defer ep.Close()
	if terr := ep.Bind(fa); terr != nil {
		return 0, &bindError{err: terr}
	}
	bound, _ := ep.GetLocalAddress()
	return bound.Port, nil
}

func (s *Stack) tryBind(proto tcpip.TransportProtocolNumber, addrs []netip.Addr, port uint16, wq *waiter.Queue, o bindOptions) ([]tcpip.Endpoint, uint16, error) {
	var eps []tcpip.Endpoint
	fail := func(err error) ([]tcpip.Endpoint, uint16, error) {
		for _, ep := range eps {
			ep.Close()
		}
		return nil, 0, err
	}
	for _, addr := range addrs {
		fa, netProto := s.fullAddr(netip.AddrPortFrom(addr, port))
		if o.exact && addr.IsUnspecified() {
			netProto = addrProto(addr)
		}
		ep, terr := s.stack.NewEndpoint(proto, netProto, wq)
		if terr != nil {
			return fail(errors.New(terr.String()))
		}
		eps = append(eps, ep)
		if o.setup != nil {
			o.setup(ep)
		}
		if terr := ep.Bind(fa); terr != nil {
			return fail(&bindError{netip.AddrPortFrom(addr, port), terr})
		}
		if port == 0 {
			bound, _ := ep.GetLocalAddress()
			port = bound.Port
		}
	}
	return eps, port, nil
}

// steer steers proto's port on each address to the userstack.
func (s *Stack) steer(proto maps.Protocol, addrs []netip.Addr, port uint16) ([]maps.Listener, error) {
	var steer []maps.Listener
	for _, addr := range addrs {
		if addr.IsUnspecified() {
			addr = netip.Addr{}
		}
		l := maps.Listener{Protocol: proto, Addr: addr, Port: port}
		add := s.sessions.Add
		if !addr.IsValid() {
			add = s.sessions.AddShared // see AddShared
		}
		if _, err := add(l); err != nil {
			return nil, errors.Join(err, s.unsteer(steer))
		}
		steer = append(steer, l)
	}
	return steer, nil
}

func (s *Stack) unsteer(steer []maps.Listener) error {
	var errs []error
	for _, l := range steer {
		errs = append(errs, s.sessions.Remove(l))
	}
	return errors.Join(errs...)
}

// errLocalTCPOnly refuses UDP to an app of local scope only: a local
// session joins two streams.
var errLocalTCPOnly = errors.New("scope local: local sessions carry tcp only (use scope global or both)")

// ListenPacket opens a UDP socket on address: on the namespace's
// addresses, one netstack endpoint each, as Listen does. A datagram is
// answered from the address it was sent to. UDP has no local scope:
// for an app of scope both it is global.
func (a *App) ListenPacket(network, address string) (net.PacketConn, error) {
	ap, proto, err := parseAddr(network, address)
	if err == nil && proto != maps.UDP {
		err = errors.New("use Listen for tcp")
	}
	if err == nil {
		var pc net.PacketConn
		if pc, err = a.listenPacket(ap, socketBind{}); err == nil {
			return pc, nil
		}
	}
	return nil, fmt.Errorf("listen %s %s: %w", network, address, err)
}

func (a *App) listenPacket(ap netip.AddrPort, o socketBind) (net.PacketConn, error) {
	s := a.s
	if a.scope == appns.ScopeLocal {
		return nil, errLocalTCPOnly
	}
	addrs, err := a.bindAddrs(ap.Addr())
	if err != nil {
		return nil, err
	}
	var wq waiter.Queue
	eps, port, err := s.bindAll(udp.ProtocolNumber, addrs, ap.Port(), &wq, bindOptions{setup: o.setup, exact: o.exact})
	if err != nil {
		return nil, err
	}
	c := newPacketConn(eps, addrs, &wq)
	if len(eps) > 1 {
		// What the app asked for, as a kernel socket bound to the
		// unspecified address says.
		c.local = netUDPAddr(netip.AddrPortFrom(ap.Addr(), port))
		if !ap.Addr().IsValid() {
			c.local.IP = net.IPv6unspecified
		}
	}
	steer, err := s.steer(maps.UDP, addrs, port)
	if err != nil {
		c.Close()
		return nil, err
	}
	for _, ep := range eps {
		s.held.add(ep, a.label)
	}
	c.release = func() error {
		for _, ep := range eps {
			s.held.remove(ep)
		}
		a.forget(c)
		return s.unsteer(steer)
	}
	if err := a.keep(c); err != nil {
		c.Close()
		return nil, err
	}
	return c, nil
}

// Dial connects over TCP, or opens a UDP socket connected to one peer,
// from the userstack's port range and an address of the namespace. The
// namespace's local rules may refuse it: the error names the rule. An
// app of local scope connects only to the namespace's local listeners
// (cut-through); one of scope both, to one of them if there is one.
func (a *App) Dial(ctx context.Context, network, address string) (net.Conn, error) {
	ap, proto, err := parseAddr(network, address)
	if err == nil && (!ap.Addr().IsValid() || ap.Addr().IsUnspecified() || ap.Port() == 0) {
		err = errors.New("want HOST:PORT of a peer")
	}
	if err != nil {
		return nil, fmt.Errorf("dial %s %s: %w", network, address, err)
	}
	c, err := a.dial(ctx, proto, ap)
	var opErr *net.OpError
	if err != nil && !errors.As(err, &opErr) {
		err = fmt.Errorf("dial %s %s: %w", network, address, err)
	}
	return c, err
}

// dial connects to a local listener first, for an app of local scope
// or both; over the network if it finds none, for both.
func (a *App) dial(ctx context.Context, proto maps.Protocol, remote netip.AddrPort) (net.Conn, error) {
	switch {
	case proto == maps.UDP && a.scope == appns.ScopeLocal:
		return nil, errLocalTCPOnly
	case proto == maps.TCP && a.scope.Local():
		c, err := a.dialLocal(ctx, remote)
		if a.scope == appns.ScopeLocal || !errors.Is(err, cutthrough.ErrNoListener) {
			return c, err
		}
	}
	return a.dialNetstack(ctx, proto, remote)
}

func (a *App) dialNetstack(ctx context.Context, proto maps.Protocol, remote netip.AddrPort) (net.Conn, error) {
	src, err := a.source(remote.Addr())
	if err != nil {
		return nil, err
	}
	netProto := addrProto(src)
	var wq waiter.Queue
	transProto := tcp.ProtocolNumber
	if proto == maps.UDP {
		transProto = udp.ProtocolNumber
	}
	ep, terr := a.s.stack.NewEndpoint(transProto, netProto, &wq)
	if terr != nil {
		return nil, errors.New(terr.String())
	}
	if terr := ep.Bind(tcpip.FullAddress{Addr: tcpAddr(src)}); terr != nil {
		ep.Close()
		return nil, &bindError{netip.AddrPortFrom(src, 0), terr}
	}
	bound, _ := ep.GetLocalAddress()
	if err := a.ns.Check(maps.RulePacket{Protocol: proto, Local: netip.AddrPortFrom(src, bound.Port), Remote: remote}); err != nil {
		ep.Close()
		return nil, err
	}
	to := tcpip.FullAddress{Addr: tcpAddr(remote.Addr()), Port: remote.Port()}
	if proto == maps.UDP {
		return a.connectUDP(ep, &wq, src, to)
	}
	if terr := connectTCP(ctx, ep, &wq, to); terr != nil {
		ep.Close()
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		return nil, &net.OpError{Op: "connect", Net: "tcp", Addr: netTCPAddr(remote), Err: errors.New(terr.String())}
	}
	return a.hold(ep, &wq, nil)
}

// connectTCP connects ep, waiting for the handshake or ctx.
func connectTCP(ctx context.Context, ep tcpip.Endpoint, wq *waiter.Queue, to tcpip.FullAddress) tcpip.Error {
	entry, connected := waiter.NewChannelEntry(waiter.WritableEvents)
	wq.EventRegister(&entry)
	defer wq.EventUnregister(&entry)
	terr := ep.Connect(to)
	if _, started := terr.(*tcpip.ErrConnectStarted); started {
		select {
		case <-ctx.Done():
			return &tcpip.ErrAborted{}
		case <-connected:
		}
		terr = ep.LastError()
	}
	return terr
}

// connectUDP connects a bound UDP endpoint: XDP steers the peer's
// replies to it by the userstack's port range, with no listener entry.
func (a *App) connectUDP(ep tcpip.Endpoint, wq *waiter.Queue, src netip.Addr, to tcpip.FullAddress) (net.Conn, error) {
	c := newPacketConn([]tcpip.Endpoint{ep}, []netip.Addr{src}, wq)
	if terr := ep.Connect(to); terr != nil {
		c.Close()
		return nil, errors.New(terr.String())
	}
	c.remote = netUDPAddr(addrPort(to.Addr, to.Port))
	a.s.held.add(ep, a.label)
	c.release = func() error {
		a.s.held.remove(ep)
		a.forget(c)
		return nil
	}
	if err := a.keep(c); err != nil {
		c.Close()
		return nil, err
	}
	return c, nil
}

// source picks the address a connect to remote leaves from: the one the
// netstack's route to remote would, unless the namespace has addresses
// of its own and that is not one of them; then the namespace's first of
// remote's family.
func (a *App) source(remote netip.Addr) (netip.Addr, error) {
	unspecified := netip.IPv4Unspecified()
	if remote.Is6() {
		unspecified = netip.IPv6Unspecified()
	}
	mine, err := a.ns.BindAddrs(unspecified)
	if err != nil {
		return netip.Addr{}, err
	}
	r, terr := a.s.stack.FindRoute(nicID, tcpip.Address{}, tcpAddr(remote), addrProto(remote), false)
	if terr != nil {
		if len(mine) > 0 {
			return mine[0], nil
		}
		return netip.Addr{}, &net.OpError{Op: "connect", Net: "ip", Addr: &net.IPAddr{IP: remote.AsSlice()}, Err: errors.New(terr.String())}
	}
	local := r.LocalAddress()
	routed, _ := netip.AddrFromSlice(local.AsSlice())
	r.Release()
	if mine == nil || slices.Contains(mine, routed) {
		return routed, nil
	}
	return mine[0], nil
}

func netTCPAddr(ap netip.AddrPort) *net.TCPAddr {
	var ip net.IP
	if ap.Addr().IsValid() {
		ip = ap.Addr().AsSlice()
	}
	return &net.TCPAddr{IP: ip, Port: int(ap.Port())}
}

func netUDPAddr(ap netip.AddrPort) *net.UDPAddr {
	var ip net.IP
	if ap.Addr().IsValid() {
		ip = ap.Addr().AsSlice()
	}
	return &net.UDPAddr{IP: ip, Port: int(ap.Port())}
}
