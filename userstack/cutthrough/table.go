// Package cutthrough joins a local-scope connect to a local-scope
// listener of the same application namespace in memory, as VPP's
// session layer does (a cut-through session, [CT] in `show session`):
// no netstack, no packets. Each direction of a connection is a bounded
// queue that the writer copies into and the reader copies out of, or,
// through io.Copy, hands straight to the other side.
//
// A Table holds one interface's local-scope listeners and the
// connections joined to them. It does not check namespaces, secrets,
// addresses or rules: its caller, the userstack's session layer, does,
// and passes concrete addresses and ports.
package cutthrough

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"sync"
	"syscall"
)

const (
	// DefaultBuffer is a receive buffer's size unless told: the
	// userstack's TCP send buffer.
	DefaultBuffer = 4 << 20
	// MaxBuffer bounds a receive buffer, as the userstack's TCP buffers.
	MaxBuffer = 1 << 30
	// DefaultBacklog is a listener's accept queue unless told, as the
	// userstack's TCP listeners'.
	DefaultBacklog = 4096
	// MaxBacklog bounds an accept queue, as the userstack's.
	MaxBacklog = 65535
)

// ErrNoListener is a local-scope dial's error when the namespace has no
// listener for the address: as VPP's, the connect fails rather than
// leave the host.
var ErrNoListener = errors.New("no local listener")

// State is a session's state, by the names of VPP's session layer that
// userstack.SessionState has.
type State string

// The states a cut-through session goes through.
const (
	StateListening State = "listening"
	// StateConnecting: the dialing end waits for room in the accept
	// queue.
	StateConnecting State = "connecting"
	// StateAccepting: the listening app has yet to accept the end.
	StateAccepting State = "accepting"
	StateOpened    State = "opened"
	// StateTransportClosing: the peer shut down writing (CLOSE-WAIT).
	StateTransportClosing State = "transport-closing"
	// StateClosing: this end shut down writing (FIN-WAIT).
	StateClosing State = "closing"
	// StateClosed: both ends shut down writing.
	StateClosed State = "closed"
	// StateTransportClosed: the peer reset the connection.
	StateTransportClosed State = "transport-closed"
)

// ListenOptions are what a listener says of itself; zero fields take
// the defaults.
type ListenOptions struct {
	// App labels the listener and the connections it accepts in the
	// sessions view.
	App string
	// Backlog is how many connections wait to be accepted;
	// DefaultBacklog when 0.
	Backlog int
	// ReceiveBuffer bounds, for each accepted connection, the bytes the
	// dialer has written and the accepted end not read; DefaultBuffer
	// when 0.
	ReceiveBuffer int
}

// DialOptions are what a dialer says of its end; zero fields take the
// defaults.
type DialOptions struct {
	// App labels the dialing end in the sessions view.
	App string
	// ReceiveBuffer bounds the bytes the accepted end has written and
	// the dialing end not read; DefaultBuffer when 0.
	ReceiveBuffer int
}

func checkBuffer(n int) (int, error) {
	if n < 0 || n > MaxBuffer {
		return 0, fmt.Errorf("receive buffer %d: want 1 to %d bytes (0 for %d)", n, MaxBuffer, DefaultBuffer)
	}
	if n == 0 {
		return DefaultBuffer, nil
	}
	return n, nil
}

// Table holds an interface's local-scope listeners and the connections
// joined to them. The zero Table is empty and ready; it is safe for
// concurrent use.
type Table struct {
	mu        sync.Mutex
	listeners map[listenKey]map[netip.Addr]*Listener
	pairs     map[tuple]*pair
	counters  Counters
}

// NewTable makes an empty table.
func NewTable() *Table { return &Table{} }

type listenKey struct {
	namespace string
	port      uint16
}

// tuple names a connection by its dialing end.
type tuple struct {
	namespace     string
	local, remote netip.AddrPort
}

// pair is a connection's two ends.
type pair struct {
	key            tuple
	client, server *Conn
	// stage and open are under Table.mu.
	stage stage
	open  int
}

// stage is how far a dial has come.
type stage int

const (
	connecting stage = iota // waiting for room in the accept queue
	queued                  // in the accept queue
	accepted
)

// Counters are a table's totals since it was made.
type Counters struct {
	// Opened counts connections joined to a listener.
	Opened uint64
	// NoListener counts dials that found no listener.
	NoListener uint64
	// Bytes counts the bytes carried: written by one end and read by
	// the other.
	Bytes uint64
}

// Session is a listener or an end of a connection, as the sessions
// view shows it. Each connection shows twice, once from each end.
type Session struct {
	Namespace string
	// App is the label of the app that opened the listener or the end
	// (an accepted end has its listener's).
	App   string
	Local netip.AddrPort
	// Remote is unset for a listener.
	Remote netip.AddrPort
	State  State
	// RxFifo are the bytes the peer sent that this end has not read;
	// TxFifo, those this end sent that the peer has not read.
	RxFifo, TxFifo int
}

func checkNamespace(namespace string) error {
	if namespace == "" {
		return errors.New("no namespace (the caller names one: default at least)")
	}
	return nil
}

// Listen listens on addr in namespace. An unspecified address listens
// on all the namespace's addresses, 0.0.0.0 on its IPv4 ones and :: on
// all, as a dual-stack socket does. As in VPP's session table, a
// listener on an address and one on all addresses share a port (a dial
// finds the first first); two on one address, or 0.0.0.0 and ::, do
// not.
func (t *Table) Listen(namespace string, addr netip.AddrPort, opts ListenOptions) (*Listener, error) {
	addr = netip.AddrPortFrom(addr.Addr().Unmap(), addr.Port())
	fail := func(err error) (*Listener, error) {
		return nil, fmt.Errorf("listen %s in namespace %s: %w", addr, namespace, err)
	}
	if err := checkNamespace(namespace); err != nil {
		return fail(err)
	}
	switch {
	case !addr.Addr().IsValid():
		return fail(errors.New("no address (give one of the namespace's, or 0.0.0.0 or ::)"))
	case addr.Port() == 0:
		return fail(errors.New("port 0 (the caller picks the port)"))
	case opts.Backlog < 0 || opts.Backlog > MaxBacklog:
		return fail(fmt.Errorf("backlog %d: want 1 to %d (0 for %d)", opts.Backlog, MaxBacklog, DefaultBacklog))
	}
	buf, err := checkBuffer(opts.ReceiveBuffer)
	if err != nil {
		return fail(err)
	}
	opts.ReceiveBuffer = buf
	if opts.Backlog == 0 {
		opts.Backlog = DefaultBacklog
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	key := listenKey{namespace, addr.Port()}
	for a, l := range t.listeners[key] {
		if overlap(a, addr.Addr()) {
			return fail(fmt.Errorf("address in use by the listener on %s (close it first)", l.addr))
		}
	}
	l := &Listener{
		table:     t,
		namespace: namespace,
		addr:      addr,
		tcpAddr:   net.TCPAddrFromAddrPort(addr),
		opts:      opts,
		queue:     make(chan *Conn, opts.Backlog),
		done:      make(chan struct{}),
	}
	if t.listeners == nil {
		t.listeners = map[listenKey]map[netip.Addr]*Listener{}
	}
	if t.listeners[key] == nil {
		t.listeners[key] = map[netip.Addr]*Listener{}
	}
	t.listeners[key][addr.Addr()] = l
	return l, nil
}

// overlap says whether listeners on a and b, on one port, would take
// the same dials.
func overlap(a, b netip.Addr) bool {
	return a == b || a.IsUnspecified() && b.IsUnspecified()
}

// lookup finds the listener in namespace for remote: on its address
// first, then on all.
func (t *Table) lookup(namespace string, remote netip.AddrPort) *Listener {
	byAddr := t.listeners[listenKey{namespace, remote.Port()}]
	if l, ok := byAddr[remote.Addr()]; ok {
		return l
	}
	if l, ok := byAddr[netip.IPv4Unspecified()]; ok && remote.Addr().Is4() {
		return l
	}
	return byAddr[netip.IPv6Unspecified()]
}

// Listening tells whether a Dial to remote in namespace would find a
// listener.
func (t *Table) Listening(namespace string, remote netip.AddrPort) bool {
	remote = netip.AddrPortFrom(remote.Addr().Unmap(), remote.Port())
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.lookup(namespace, remote) != nil
}

func (t *Table) removeListener(l *Listener) {
	t.mu.Lock()
	defer t.mu.Unlock()
	key := listenKey{l.namespace, l.addr.Port()}
	delete(t.listeners[key], l.addr.Addr())
	if len(t.listeners[key]) == 0 {
		delete(t.listeners, key)
	}
}

// Dial joins local to the listener for remote in namespace (on
// remote's address, else on all addresses) and returns the dialing end;
// the listener's Accept returns the other. local is the dialing end's
// address, which the caller picks (a port unique for the pair of
// addresses): LocalAddr shows it, and the accepted end's RemoteAddr.
//
// With no listener it fails with ErrNoListener. With the listener's
// accept queue full, it waits for room, as a TCP connect's SYNs do,
// until ctx is done or the listener closes (ECONNREFUSED).
func (t *Table) Dial(ctx context.Context, namespace string, local, remote netip.AddrPort, opts DialOptions) (*Conn, error) {
	local = netip.AddrPortFrom(local.Addr().Unmap(), local.Port())
	remote = netip.AddrPortFrom(remote.Addr().Unmap(), remote.Port())
	fail := func(err error) (*Conn, error) {
		return nil, fmt.Errorf("dial %s in namespace %s: %w", remote, namespace, err)
	}
	if err := checkNamespace(namespace); err != nil {
		return fail(err)
	}
	for _, end := range []struct {
		name string
		ap   netip.AddrPort
	}{{"remote", remote}, {"local", local}} {
		if !end.ap.Addr().IsValid() || end.ap.Addr().IsUnspecified() || end.ap.Port() == 0 {
			return fail(fmt.Errorf("%s address %s: want a unicast address and a port", end.name, end.ap))
		}
	}
	buf, err := checkBuffer(opts.ReceiveBuffer)
	if err != nil {
		return fail(err)
	}
	if err := ctx.Err(); err != nil {
		return fail(err)
	}
	key := tuple{namespace, local, remote}
	t.mu.Lock()
	l := t.lookup(namespace, remote)
	if l == nil {
		t.counters.NoListener++
		t.mu.Unlock()
		return fail(ErrNoListener)
	}
	if _, ok := t.pairs[key]; ok {
		t.mu.Unlock()
		return fail(fmt.Errorf("local address %s is connected there already (pick another port)", local))
	}
	p := t.newPair(key, l, opts.App, buf)
	t.mu.Unlock()
	if err := l.enqueue(ctx, p.server); err != nil {
		t.mu.Lock()
		delete(t.pairs, key)
		t.mu.Unlock()
		return fail(err)
	}
	return p.client, nil
}

// newPair makes a connection's ends and lists them; under t.mu.
func (t *Table) newPair(key tuple, l *Listener, app string, clientBuffer int) *pair {
	toServer, toClient := newPipe(l.opts.ReceiveBuffer), newPipe(clientBuffer)
	p := &pair{key: key, open: 2}
	laddr, raddr := net.TCPAddrFromAddrPort(key.local), net.TCPAddrFromAddrPort(key.remote)
	p.client = &Conn{table: t, pair: p, rx: toClient, tx: toServer, local: key.local, remote: key.remote, laddr: laddr, raddr: raddr, app: app}
	p.server = &Conn{table: t, pair: p, rx: toServer, tx: toClient, local: key.remote, remote: key.local, laddr: raddr, raddr: laddr, app: l.opts.App, server: true}
	if t.pairs == nil {
		t.pairs = map[tuple]*pair{}
	}
	t.pairs[key] = p
	return p
}

// advance moves p on to s, unless it is there already: the accept may
// come before the dialer sees its connection queued.
func (t *Table) advance(p *pair, s stage) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if s == queued && p.stage == connecting {
		t.counters.Opened++
	}
	p.stage = max(p.stage, s)
}

// release forgets c once its app closed it, and the connection once
// both ends are closed.
func (t *Table) release(c *Conn) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if c.released {
		return
	}
	c.released = true
	p := c.pair
	if p.open--; p.open == 0 {
		delete(t.pairs, p.key)
		t.counters.Bytes += p.carried()
	}
}

// carried is the bytes the pair carried.
func (p *pair) carried() uint64 {
	var n uint64
	for _, pp := range []*pipe{p.client.tx, p.server.tx} {
		pp.mu.Lock()
		n += pp.carried
		pp.mu.Unlock()
	}
	return n
}

// Counters returns the table's counters.
func (t *Table) Counters() Counters {
	t.mu.Lock()
	defer t.mu.Unlock()
	c := t.counters
	for _, p := range t.pairs {
		c.Bytes += p.carried()
	}
	return c
}

// Sessions lists the listeners, then the connections' ends, by
// namespace and address.
func (t *Table) Sessions() []Session {
	t.mu.Lock()
	defer t.mu.Unlock()
	var all []Session
	for _, byAddr := range t.listeners {
		for _, l := range byAddr {
			all = append(all, Session{Namespace: l.namespace, App: l.opts.App, Local: l.addr, State: StateListening})
		}
	}
	for _, p := range t.pairs {
		for _, c := range []*Conn{p.client, p.server} {
			if c.released || c.server && p.stage == connecting {
				continue
			}
			all = append(all, Session{
				Namespace: p.key.namespace, App: c.app, Local: c.local, Remote: c.remote,
				State: c.state(p.stage), RxFifo: c.rx.unread(), TxFifo: c.tx.unread(),
			})
		}
	}
	slices.SortFunc(all, func(a, b Session) int {
		return cmp.Or(boolOrder(a.State != StateListening, b.State != StateListening),
			cmp.Compare(a.Namespace, b.Namespace), a.Local.Compare(b.Local), a.Remote.Compare(b.Remote))
	})
	return all
}

func boolOrder(a, b bool) int {
	switch {
	case a == b:
		return 0
	case a:
		return 1
	}
	return -1
}

// Listener is a local-scope listener: a net.Listener whose Accept
// returns *Conn.
type Listener struct {
	table     *Table
	namespace string
	addr      netip.AddrPort
	tcpAddr   *net.TCPAddr
	opts      ListenOptions
	queue     chan *Conn
	done      chan struct{}
	closeOnce sync.Once
}

var _ net.Listener = (*Listener)(nil)

// Addr is the address listened on, as Listen was given it.
func (l *Listener) Addr() net.Addr { return l.tcpAddr }

// Accept waits for a connection and returns its accepted end, a *Conn.
// Once the listener is closed it says net.ErrClosed.
func (l *Listener) Accept() (net.Conn, error) {
	c, err := l.AcceptConn()
	if err != nil {
		return nil, err
	}
	return c, nil
}

// AcceptConn is Accept for callers that want the *Conn.
func (l *Listener) AcceptConn() (*Conn, error) {
	select {
	case <-l.done:
		return nil, l.closedError()
	default:
	}
	select {
	case c := <-l.queue:
		l.table.advance(c.pair, accepted)
		return c, nil
	case <-l.done:
		return nil, l.closedError()
	}
}

func (l *Listener) closedError() error {
	return &net.OpError{Op: "accept", Net: "tcp", Addr: l.tcpAddr, Err: net.ErrClosed}
}

// Close stops the listener and resets the connections not yet
// accepted: their dialers read ECONNRESET.
func (l *Listener) Close() error {
	first := false
	l.closeOnce.Do(func() {
		first = true
		l.table.removeListener(l)
		close(l.done)
		l.resetQueued()
	})
	if !first {
		return &net.OpError{Op: "close", Net: "tcp", Addr: l.tcpAddr, Err: net.ErrClosed}
	}
	return nil
}

func (l *Listener) resetQueued() {
	for {
		select {
		case c := <-l.queue:
			c.reset()
		default:
			return
		}
	}
}

// enqueue puts c in the accept queue, waiting for room.
func (l *Listener) enqueue(ctx context.Context, c *Conn) error {
	refused := fmt.Errorf("%w (the listener closed)", syscall.ECONNREFUSED)
	select {
	case <-l.done:
		return refused
	default:
	}
	select {
	case l.queue <- c:
	case <-l.done:
		return refused
	case <-ctx.Done():
		return ctx.Err()
	}
	select {
	case <-l.done:
		// Queued as the listener closed, maybe after it emptied the
		// queue: empty it again, so that no connection waits for an
		// Accept that will not come, and refuse this one if it went.
		l.resetQueued()
		if c.closed.Load() {
			return refused
		}
	default:
	}
	l.table.advance(c.pair, queued)
	return nil
}
