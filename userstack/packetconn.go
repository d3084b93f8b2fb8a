package userstack

import (
	"bytes"
	"errors"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/adapters/gonet"
	"gvisor.dev/gvisor/pkg/tcpip/network/ipv6"
	"gvisor.dev/gvisor/pkg/tcpip/stack"
	"gvisor.dev/gvisor/pkg/tcpip/transport/udp"
	"gvisor.dev/gvisor/pkg/waiter"
)

// packetConn is a UDP socket of the netstack: gonet.UDPConn for reads,
// with a WriteTo of its own. gonet's WriteTo registers for "writable" only
// after a write found the send buffer full and then waits without trying
// again, so a buffer that drained in between is never noticed and the
// writer sleeps for good: that stalled QUIC transfers under load.
type packetConn struct {
	*gonet.UDPConn
	ep tcpip.Endpoint
	wq *waiter.Queue
	// unspecified is 0.0.0.0 or ::, what LocalAddr says when bound to
	// no address.
	unspecified net.IP

	mu            sync.Mutex
	writeDeadline time.Time

	release func() error
	once    sync.Once
	closed  atomic.Bool
}

func newPacketConn(s *stack.Stack, laddr tcpip.FullAddress, netProto tcpip.NetworkProtocolNumber) (*packetConn, error) {
	var wq waiter.Queue
	ep, err := s.NewEndpoint(udp.ProtocolNumber, netProto, &wq)
	if err != nil {
		return nil, errors.New(err.String())
	}
	if err := ep.Bind(laddr); err != nil {
		ep.Close()
		return nil, errors.New(err.String())
	}
	unspecified := net.IPv4zero
	if netProto == ipv6.ProtocolNumber {
		unspecified = net.IPv6unspecified
	}
	return &packetConn{UDPConn: gonet.NewUDPConn(&wq, ep), ep: ep, wq: &wq, unspecified: unspecified, release: func() error { return nil }}, nil
}

// dialUDP opens a UDP socket connected to raddr. Connecting binds it to
// a port of the stack's range, which XDP steers to the userstack: the
// peer's replies come back without a listener entry.
func dialUDP(s *stack.Stack, raddr tcpip.FullAddress, netProto tcpip.NetworkProtocolNumber) (*packetConn, error) {
	c, err := newPacketConn(s, tcpip.FullAddress{}, netProto)
	if err != nil {
		return nil, err
	}
	if err := c.ep.Connect(raddr); err != nil {
		c.Close()
		return nil, errors.New(err.String())
	}
	return c, nil
}

// LocalAddr is the address the conn is bound to. Bound to no address, it
// reads 0.0.0.0 or :: as a kernel socket's does, not an empty IP: quic-go's
// qlog tracer panicked on the empty one.
func (c *packetConn) LocalAddr() net.Addr {
	a, ok := c.UDPConn.LocalAddr().(*net.UDPAddr)
	if ok && len(a.IP) == 0 {
		a.IP = c.unspecified
	}
	return a
}

// WriteTo sends b to addr (see write).
func (c *packetConn) WriteTo(b []byte, addr net.Addr) (int, error) {
	ua, ok := addr.(*net.UDPAddr)
	if !ok {
		return 0, &net.OpError{Op: "write", Net: "udp", Addr: addr, Err: errors.New("not a UDP address")}
	}
	ap := ua.AddrPort()
	return c.write(b, tcpip.WriteOptions{To: &tcpip.FullAddress{Addr: tcpip.AddrFromSlice(ap.Addr().Unmap().AsSlice()), Port: ap.Port()}}, addr)
}

// Write sends b to the peer of a connected conn (see write); gonet's
// would stall as its WriteTo does.
func (c *packetConn) Write(b []byte) (int, error) {
	return c.write(b, tcpip.WriteOptions{}, c.RemoteAddr())
}

// write sends b as opts say, waiting while the send buffer is full: the
// waiter is registered before each retry, so no wakeup is lost.
func (c *packetConn) write(b []byte, opts tcpip.WriteOptions, addr net.Addr) (int, error) {
	var r bytes.Reader
	var entry waiter.Entry
	var ready <-chan struct{}
	for {
		r.Reset(b)
		n, err := c.ep.Write(&r, opts)
		if _, full := err.(*tcpip.ErrWouldBlock); !full {
			if err != nil {
				return int(n), &net.OpError{Op: "write", Net: "udp", Addr: addr, Err: errors.New(err.String())}
			}
			return int(n), nil
		}
		if ready == nil {
			entry, ready = waiter.NewChannelEntry(waiter.WritableEvents)
			c.wq.EventRegister(&entry)
			defer c.wq.EventUnregister(&entry)
			continue // the buffer may have drained before registering
		}
		if err := c.wait(ready); err != nil {
			return 0, &net.OpError{Op: "write", Net: "udp", Addr: addr, Err: err}
		}
	}
}

// wait blocks until ready fires or the write deadline passes.
func (c *packetConn) wait(ready <-chan struct{}) error {
	c.mu.Lock()
	deadline := c.writeDeadline
	c.mu.Unlock()
	if deadline.IsZero() {
		<-ready
		return nil
	}
	timer := time.NewTimer(time.Until(deadline))
	defer timer.Stop()
	select {
	case <-ready:
		return nil
	case <-timer.C:
		return os.ErrDeadlineExceeded
	}
}

// SetReadBuffer sets the socket's receive buffer, as on a kernel socket,
// within the netstack's limits. quic-go sizes it (to 7 MiB) and, without
// this method, logged that the conn was not a *net.UDPConn.
func (c *packetConn) SetReadBuffer(bytes int) error {
	opts := c.ep.SocketOptions()
	opts.SetReceiveBufferSize(clamp(int64(bytes), opts.ReceiveBufferLimits), true)
	return nil
}

// SetWriteBuffer sets the socket's send buffer, as SetReadBuffer does.
func (c *packetConn) SetWriteBuffer(bytes int) error {
	opts := c.ep.SocketOptions()
	opts.SetSendBufferSize(clamp(int64(bytes), opts.SendBufferLimits), true)
	return nil
}

func clamp(v int64, limits func() (lo, hi int64)) int64 {
	lo, hi := limits()
	return min(max(v, lo), hi)
}

func (c *packetConn) SetWriteDeadline(t time.Time) error {
	c.mu.Lock()
	c.writeDeadline = t
	c.mu.Unlock()
	return c.UDPConn.SetWriteDeadline(t)
}

func (c *packetConn) SetDeadline(t time.Time) error {
	c.mu.Lock()
	c.writeDeadline = t
	c.mu.Unlock()
	return c.UDPConn.SetDeadline(t)
}

// ReadFrom says net.ErrClosed once the conn is closed, as a kernel
// socket's does, where gonet's says EOF.
func (c *packetConn) ReadFrom(b []byte) (int, net.Addr, error) {
	n, addr, err := c.UDPConn.ReadFrom(b)
	if err != nil && c.closed.Load() {
		return 0, nil, &net.OpError{Op: "read", Net: "udp", Addr: c.LocalAddr(), Err: net.ErrClosed}
	}
	return n, addr, err
}

func (c *packetConn) Close() error {
	var err error
	c.once.Do(func() {
		c.closed.Store(true)
		err = errors.Join(c.release(), c.UDPConn.Close())
	})
	return err
}
