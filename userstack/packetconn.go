package userstack

import (
	"bytes"
	"errors"
	"io"
	"net"
	"net/netip"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/network/ipv6"
	"gvisor.dev/gvisor/pkg/tcpip/stack"
	"gvisor.dev/gvisor/pkg/waiter"
)

// packetConn is a UDP socket of the netstack: one endpoint or, for a
// bind to the unspecified address in a namespace, one per address of
// the namespace on one port, sharing a wait queue. It reads and writes
// the endpoints itself: gonet.UDPConn's WriteTo registers for
// "writable" only after a write found the send buffer full and then
// waits without trying again, so a buffer that drained in between is
// never noticed and the writer sleeps for good: that stalled QUIC
// transfers under load.
type packetConn struct {
	eps []tcpip.Endpoint
	// addrs are the addresses the endpoints are bound to.
	addrs []netip.Addr
	wq    *waiter.Queue
	// local is what LocalAddr says; remote, the peer of a connected conn.
	local, remote *net.UDPAddr
	// next is the endpoint a read tries first, in turn.
	next atomic.Uint32
	// replies are the endpoints peers last wrote to, for the answers.
	replies replyRoutes

	// readDeadline and writeDeadline are Unix nanoseconds; 0 is none.
	readDeadline, writeDeadline atomic.Int64
	mu                          sync.Mutex
	// deadlineSet is closed, and replaced, when a deadline changes: it
	// wakes the reads and writes that wait, to wait again until the new
	// deadline.
	deadlineSet chan struct{}

	release func() error
	once    sync.Once
	closed  chan struct{}
}

func newPacketConn(eps []tcpip.Endpoint, addrs []netip.Addr, wq *waiter.Queue) *packetConn {
	c := &packetConn{eps: eps, addrs: addrs, wq: wq, deadlineSet: make(chan struct{}), closed: make(chan struct{}), release: func() error { return nil }}
	bound, _ := eps[0].GetLocalAddress()
	c.local = netUDPAddr(addrPort(bound.Addr, bound.Port))
	if bound.Addr.BitLen() == 0 {
		// Bound to no address, it reads 0.0.0.0 or :: as a kernel
		// socket's does, not an empty IP: quic-go's qlog tracer
		// panicked on the empty one.
		c.local.IP = net.IPv4zero
		if eps[0].Info().(*stack.TransportEndpointInfo).NetProto == ipv6.ProtocolNumber {
			c.local.IP = net.IPv6unspecified
		}
	}
	return c
}

func (c *packetConn) LocalAddr() net.Addr { return c.local }

// RemoteAddr is the peer of a connected conn, else nil.
func (c *packetConn) RemoteAddr() net.Addr {
	if c.remote == nil {
		return nil
	}
	return c.remote
}

// ReadFrom reads the next datagram of any of the endpoints. Once the
// conn is closed it says net.ErrClosed, as a kernel socket's does.
func (c *packetConn) ReadFrom(b []byte) (int, net.Addr, error) {
	n, from, err := c.read(b)
	if err != nil {
		return 0, nil, err
	}
	return n, from, nil
}

// Read reads a connected conn's next datagram.
func (c *packetConn) Read(b []byte) (int, error) {
	n, _, err := c.read(b)
	return n, err
}

func (c *packetConn) read(b []byte) (int, *net.UDPAddr, error) {
	var ready <-chan struct{}
	for {
		if err := c.expired(&c.readDeadline); err != nil {
			return 0, nil, c.opError("read", nil, err)
		}
		start := 0
		if len(c.eps) > 1 {
			start = int(c.next.Add(1))
		}
		for i := range c.eps {
			at := (start + i) % len(c.eps)
			w := tcpip.SliceWriter(b)
			res, terr := c.eps[at].Read(&w, tcpip.ReadOptions{NeedRemoteAddr: true})
			switch terr.(type) {
			case nil:
				from := addrPort(res.RemoteAddr.Addr, res.RemoteAddr.Port)
				if len(c.eps) > 1 {
					c.replies.set(from, at)
				}
				return res.Count, netUDPAddr(from), nil
			case *tcpip.ErrWouldBlock:
				continue
			case *tcpip.ErrClosedForReceive:
				if c.isClosed() {
					return 0, nil, c.opError("read", nil, net.ErrClosed)
				}
				return 0, nil, io.EOF
			default:
				return 0, nil, c.opError("read", nil, errors.New(terr.String()))
			}
		}
		if ready == nil {
			var entry waiter.Entry
			entry, ready = waiter.NewChannelEntry(waiter.ReadableEvents)
			c.wq.EventRegister(&entry)
			defer c.wq.EventUnregister(&entry)
			continue // a datagram may have come before registering
		}
		if err := c.wait(ready, &c.readDeadline); err != nil {
			return 0, nil, c.opError("read", nil, err)
		}
	}
}

// WriteTo sends b to addr from the endpoint addr last wrote to, else
// the first of addr's family (see write).
func (c *packetConn) WriteTo(b []byte, addr net.Addr) (int, error) {
	ua, ok := addr.(*net.UDPAddr)
	if !ok {
		return 0, c.opError("write", addr, errors.New("not a UDP address"))
	}
	to := unmap(ua.AddrPort())
	return c.write(c.endpointFor(to), b, tcpip.WriteOptions{To: &tcpip.FullAddress{Addr: tcpAddr(to.Addr()), Port: to.Port()}}, addr)
}

func (c *packetConn) endpointFor(to netip.AddrPort) tcpip.Endpoint {
	if len(c.eps) == 1 {
		return c.eps[0]
	}
	if i, ok := c.replies.get(to); ok {
		return c.eps[i]
	}
	for i, a := range c.addrs {
		if a.Is4() == to.Addr().Is4() {
			return c.eps[i]
		}
	}
	return c.eps[0]
}

// Write sends b to the peer of a connected conn (see write).
func (c *packetConn) Write(b []byte) (int, error) {
	return c.write(c.eps[0], b, tcpip.WriteOptions{}, c.RemoteAddr())
}

// write sends b as opts say, waiting while the send buffer is full: the
// waiter is registered before each retry, so no wakeup is lost.
func (c *packetConn) write(ep tcpip.Endpoint, b []byte, opts tcpip.WriteOptions, addr net.Addr) (int, error) {
	var r bytes.Reader
	var ready <-chan struct{}
	for {
		if err := c.expired(&c.writeDeadline); err != nil {
			return 0, c.opError("write", addr, err)
		}
		r.Reset(b)
		n, terr := ep.Write(&r, opts)
		if _, full := terr.(*tcpip.ErrWouldBlock); !full {
			if terr != nil {
				return int(n), c.opError("write", addr, errors.New(terr.String()))
			}
			return int(n), nil
		}
		if ready == nil {
			var entry waiter.Entry
			entry, ready = waiter.NewChannelEntry(waiter.WritableEvents)
			c.wq.EventRegister(&entry)
			defer c.wq.EventUnregister(&entry)
			continue // the buffer may have drained before registering
		}
		if err := c.wait(ready, &c.writeDeadline); err != nil {
			return 0, c.opError("write", addr, err)
		}
	}
}

func (c *packetConn) opError(op string, addr net.Addr, err error) error {
	if addr == nil {
		addr = c.local
	}
	return &net.OpError{Op: op, Net: "udp", Addr: addr, Err: err}
}

func (c *packetConn) isClosed() bool {
	select {
	case <-c.closed:
		return true
	default:
		return false
	}
}

// expired says os.ErrDeadlineExceeded once deadline has passed, and
// net.ErrClosed once the conn is closed.
func (c *packetConn) expired(deadline *atomic.Int64) error {
	if c.isClosed() {
		return net.ErrClosed
	}
	if d := deadline.Load(); d != 0 && time.Now().UnixNano() >= d {
		return os.ErrDeadlineExceeded
	}
	return nil
}

// wait blocks until ready fires, deadline passes or the conn closes.
func (c *packetConn) wait(ready <-chan struct{}, deadline *atomic.Int64) error {
	for {
		c.mu.Lock()
		changed := c.deadlineSet
		c.mu.Unlock()
		d := deadline.Load()
		var timer *time.Timer
		var timeout <-chan time.Time
		if d != 0 {
			left := time.Until(time.Unix(0, d))
			if left <= 0 {
				return os.ErrDeadlineExceeded
			}
			timer = time.NewTimer(left)
			timeout = timer.C
		}
		var err error
		again := false
		select {
		case <-ready:
		case <-timeout:
			err = os.ErrDeadlineExceeded
		case <-c.closed:
			err = net.ErrClosed
		case <-changed:
			again = true
		}
		if timer != nil {
			timer.Stop()
		}
		if !again {
			return err
		}
	}
}

func (c *packetConn) setDeadlines(read, write bool, t time.Time) error {
	var d int64
	if !t.IsZero() {
		d = max(t.UnixNano(), 1)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if read {
		c.readDeadline.Store(d)
	}
	if write {
		c.writeDeadline.Store(d)
	}
	close(c.deadlineSet)
	c.deadlineSet = make(chan struct{})
	return nil
}

func (c *packetConn) SetDeadline(t time.Time) error      { return c.setDeadlines(true, true, t) }
func (c *packetConn) SetReadDeadline(t time.Time) error  { return c.setDeadlines(true, false, t) }
func (c *packetConn) SetWriteDeadline(t time.Time) error { return c.setDeadlines(false, true, t) }

// SetReadBuffer sets the socket's receive buffer, as on a kernel socket,
// within the netstack's limits. quic-go sizes it (to 7 MiB) and, without
// this method, logged that the conn was not a *net.UDPConn.
func (c *packetConn) SetReadBuffer(bytes int) error {
	for _, ep := range c.eps {
		opts := ep.SocketOptions()
		opts.SetReceiveBufferSize(clamp(int64(bytes), opts.ReceiveBufferLimits), true)
	}
	return nil
}

// SetWriteBuffer sets the socket's send buffer, as SetReadBuffer does.
func (c *packetConn) SetWriteBuffer(bytes int) error {
	for _, ep := range c.eps {
		opts := ep.SocketOptions()
		opts.SetSendBufferSize(clamp(int64(bytes), opts.SendBufferLimits), true)
	}
	return nil
}

func clamp(v int64, limits func() (lo, hi int64)) int64 {
	lo, hi := limits()
	return min(max(v, lo), hi)
}

func (c *packetConn) Close() error {
	var err error
	c.once.Do(func() {
		close(c.closed)
		err = c.release()
		for _, ep := range c.eps {
			ep.Close()
		}
	})
	return err
}

// maxReplyRoutes bounds the peers a conn of several endpoints
// remembers; past it, it forgets them all and learns again.
const maxReplyRoutes = 1 << 16

// replyRoutes remember which endpoint each peer last wrote to.
type replyRoutes struct {
	mu   sync.Mutex
	byTo map[netip.AddrPort]int
}

func (r *replyRoutes) set(peer netip.AddrPort, ep int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.byTo == nil || len(r.byTo) >= maxReplyRoutes {
		r.byTo = map[netip.AddrPort]int{}
	}
	r.byTo[peer] = ep
}

func (r *replyRoutes) get(peer netip.AddrPort) (int, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	ep, ok := r.byTo[peer]
	return ep, ok
}
