package cutthrough

import (
	"io"
	"net"
	"net/netip"
	"sync/atomic"
	"syscall"
	"time"
)

// Conn is one end of a cut-through connection, a net.Conn that behaves
// as a TCP socket does where apps can tell:
//
//   - Read and Write block, with deadlines (os.ErrDeadlineExceeded);
//     each Write is queued whole, in order with the end's other Writes.
//   - Each direction buffers at most the reading end's receive buffer
//     (ListenOptions and DialOptions): a writer waits for the reader.
//   - CloseWrite is a FIN: the peer reads the bytes, then io.EOF, and
//     can still write back; this end's writes then say EPIPE.
//   - CloseRead drops what came and what comes; this end's reads say
//     io.EOF, and the peer's writes go on, as on BSD (on Linux they
//     would fill a window no one empties).
//   - Close with nothing left unread is a FIN too: the peer reads the
//     bytes, then io.EOF; its writes say EPIPE, as Linux says in
//     CLOSE-WAIT once the peer's RST came back (here no write has to
//     draw it first: the peer is known gone).
//   - Close with bytes unread resets, as TCP does: the peer reads what
//     it was sent, then ECONNRESET, and its writes say ECONNRESET.
//   - This end's calls after Close say net.ErrClosed.
//
// Errors are *net.OpError with Net "tcp" and the syscall.Errno or
// net.ErrClosed inside, as the net package's are.
//
// WriteTo and ReadFrom move bytes between the queue and the other side
// of an io.Copy with no buffer in between.
type Conn struct {
	table *Table
	pair  *pair
	// rx carries what the peer writes to this end, tx what this end
	// writes.
	rx, tx        *pipe
	local, remote netip.AddrPort
	laddr, raddr  *net.TCPAddr
	app           string
	server        bool
	closed        atomic.Bool
	// released is set, under table.mu, once the table no longer lists
	// this end.
	released bool
}

var (
	_ net.Conn      = (*Conn)(nil)
	_ io.WriterTo   = (*Conn)(nil)
	_ io.ReaderFrom = (*Conn)(nil)
)

// LocalAddr is this end's address: for the dialing end, the local
// address the dialer gave; for the accepted end, the address it dialed.
func (c *Conn) LocalAddr() net.Addr { return c.laddr }

// RemoteAddr is the other end's LocalAddr.
func (c *Conn) RemoteAddr() net.Addr { return c.raddr }

func (c *Conn) Read(b []byte) (int, error) {
	n, err := c.rx.read(b)
	return n, c.opError("read", err)
}

func (c *Conn) Write(b []byte) (int, error) {
	n, err := c.tx.write(b)
	return n, c.opError("write", err)
}

// WriteTo writes what the peer sends to w until the peer shuts down
// writing, straight from this end's receive queue.
func (c *Conn) WriteTo(w io.Writer) (int64, error) {
	n, rerr, werr := c.rx.writeTo(w)
	if werr != nil {
		return n, werr
	}
	return n, c.opError("read", rerr)
}

// ReadFrom sends what r reads until io.EOF, reading it straight into
// the peer's receive queue.
func (c *Conn) ReadFrom(r io.Reader) (int64, error) {
	n, werr, rerr := c.tx.readFrom(r)
	if rerr != nil {
		return n, rerr
	}
	return n, c.opError("write", werr)
}

// CloseWrite shuts down writing: the peer reads io.EOF after the bytes.
func (c *Conn) CloseWrite() error {
	if c.closed.Load() {
		return c.opError("close", net.ErrClosed)
	}
	c.tx.shutWrite()
	return nil
}

// CloseRead shuts down reading: reads say io.EOF, and what the peer
// sent and sends is dropped.
func (c *Conn) CloseRead() error {
	if c.closed.Load() {
		return c.opError("close", net.ErrClosed)
	}
	c.rx.shutRead()
	return nil
}

// Close closes both directions; it resets the connection when bytes
// the peer sent are left unread (see Conn).
func (c *Conn) Close() error {
	if !c.closed.CompareAndSwap(false, true) {
		return c.opError("close", net.ErrClosed)
	}
	c.tx.closeWriter(c.rx.closeReader(false))
	c.table.release(c)
	return nil
}

// reset closes the end and resets the connection, for the listener
// that closes with it unaccepted.
func (c *Conn) reset() {
	if !c.closed.CompareAndSwap(false, true) {
		return
	}
	c.tx.closeWriter(c.rx.closeReader(true))
	c.table.release(c)
}

func (c *Conn) SetDeadline(t time.Time) error {
	c.SetReadDeadline(t)
	return c.SetWriteDeadline(t)
}

func (c *Conn) SetReadDeadline(t time.Time) error {
	if c.closed.Load() {
		return c.opError("set", net.ErrClosed)
	}
	c.rx.setDeadline(&c.rx.readDeadline, t)
	return nil
}

func (c *Conn) SetWriteDeadline(t time.Time) error {
	if c.closed.Load() {
		return c.opError("set", net.ErrClosed)
	}
	c.tx.setDeadline(&c.tx.writeDeadline, t)
	return nil
}

// opError wraps err as the net package does; io.EOF stays itself.
func (c *Conn) opError(op string, err error) error {
	if err == nil || err == io.EOF {
		return err
	}
	return &net.OpError{Op: op, Net: "tcp", Source: c.laddr, Addr: c.raddr, Err: err}
}

// state is the end's session state, by VPP's names; stage is its
// pair's, read under table.mu.
func (c *Conn) state(stage stage) State {
	c.rx.mu.Lock()
	peerShut, peerReset := c.rx.eof, c.rx.readErr != nil
	c.rx.mu.Unlock()
	c.tx.mu.Lock()
	shut, peerGone := c.tx.eof, c.tx.writeErr
	c.tx.mu.Unlock()
	switch {
	case !c.server && stage == connecting:
		return StateConnecting
	case c.server && stage != accepted:
		return StateAccepting
	case peerReset || peerGone == syscall.ECONNRESET:
		return StateTransportClosed
	case shut && peerShut:
		return StateClosed
	case shut:
		return StateClosing
	case peerShut || peerGone != nil:
		return StateTransportClosing
	}
	return StateOpened
}
