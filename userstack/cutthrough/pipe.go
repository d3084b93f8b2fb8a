package cutthrough

import (
	"io"
	"net"
	"os"
	"sync"
	"syscall"
	"time"
)

// chunkSize is the unit a pipe buffers in. Buffered bytes sit in a
// queue of chunks taken from a pool, so that a connection holds memory
// only for the bytes in flight, not for its whole buffer.
const chunkSize = 64 << 10

type chunk [chunkSize]byte

var chunks = sync.Pool{New: func() any { return new(chunk) }}

// copyLocked is the largest copy a pipe makes under its lock: for
// fewer bytes, unlocking and locking again costs more than the copy,
// and for more, the reader and the writer should copy at once.
const copyLocked = 4 << 10

// pipe carries one direction of a connection: the bytes one end writes
// and the other reads, at most limit of them at a time.
//
// A reader and a writer copy outside mu, each in a part of the queue
// the other does not touch: the reader in the first chunk up to what
// was written, the writer in the free end of the last chunk. A copy
// made across a discard (the reading end went away) is not counted:
// epoch tells.
type pipe struct {
	// rmu and wmu take the reading and the writing end's calls one at
	// a time, so that each Read and each Write is one piece of the
	// stream, as on a socket.
	rmu, wmu sync.Mutex

	mu sync.Mutex
	// readable wakes a reader waiting for bytes or an end; writable, a
	// writer waiting for room or an end. Each has at most one waiter
	// (rmu, wmu); Close and deadlines wake them all.
	readable, writable       sync.Cond
	readerWaits, writerWaits bool

	// queue holds the bytes written and not read, from queue[0][r:] to
	// the last chunk's [:w]; all chunks but the last are full.
	queue []*chunk
	r, w  int
	n     int
	limit int
	// copying is set while a writer copies into the last chunk outside
	// mu: a reader that empties the queue leaves that chunk in place.
	copying bool
	epoch   uint64
	// carried counts the bytes read.
	carried uint64

	// eof: the writing end shut down writing; readers read io.EOF after
	// the bytes. readErr, when set, comes instead of io.EOF: the writing
	// end reset the connection.
	eof     bool
	readErr error
	// writeErr is what writers get once the reading end has gone:
	// EPIPE or ECONNRESET. readShut: the reading end shut down reading,
	// and the bytes written from then on are dropped.
	writeErr error
	readShut bool
	// readerClosed and writerClosed: that end's app closed it.
	readerClosed, writerClosed bool

	readDeadline, writeDeadline deadline
}

func newPipe(limit int) *pipe {
	p := &pipe{limit: limit}
	p.readable.L = &p.mu
	p.writable.L = &p.mu
	return p
}

// deadline is one end's deadline for reads or writes of a pipe.
type deadline struct {
	timer   *time.Timer
	expired bool
	// set counts the deadlines set, so that a timer that fires after
	// its deadline was replaced does nothing.
	set uint64
}

// setDeadline sets d to t (none when zero) and wakes the waiters when
// it passes.
func (p *pipe) setDeadline(d *deadline, t time.Time) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if d.timer != nil {
		d.timer.Stop()
		d.timer = nil
	}
	d.set++
	d.expired = false
	if t.IsZero() {
		return
	}
	wait := time.Until(t)
	if wait <= 0 {
		d.expired = true
		p.wakeAll()
		return
	}
	set := d.set
	d.timer = time.AfterFunc(wait, func() {
		p.mu.Lock()
		defer p.mu.Unlock()
		if d.set == set {
			d.expired = true
			p.wakeAll()
		}
	})
}

func (p *pipe) wakeAll() {
	p.readable.Broadcast()
	p.writable.Broadcast()
}

// readState says why a read cannot have bytes, in the order a socket
// says it; nil when it can, or may after a wait.
func (p *pipe) readState() error {
	switch {
	case p.readerClosed:
		return net.ErrClosed
	case p.readDeadline.expired:
		return os.ErrDeadlineExceeded
	case p.readShut:
		return io.EOF
	case p.n > 0:
		return nil
	case p.eof:
		return io.EOF
	}
	return p.readErr
}

// waitData waits until there are bytes to read or a reason there will
// be none.
func (p *pipe) waitData() error {
	for {
		if err := p.readState(); err != nil || p.n > 0 {
			return err
		}
		p.readerWaits = true
		p.readable.Wait()
		p.readerWaits = false
	}
}

// head is the first run of bytes to read.
func (p *pipe) head() []byte {
	end := chunkSize
	if len(p.queue) == 1 {
		end = p.w
	}
	return p.queue[0][p.r:end]
}

// consume takes k bytes read off the queue, gives back the chunks they
// emptied and wakes a waiting writer once there is room for a good
// part of the buffer (waking it for every few bytes read costs more
// than it gains, as Linux's sk_stream_write_space knows).
func (p *pipe) consume(k int) {
	p.r += k
	p.n -= k
	p.carried += uint64(k)
	switch {
	case len(p.queue) > 1 && p.r == chunkSize:
		chunks.Put(p.queue[0])
		p.queue[0] = nil
		p.queue = p.queue[1:]
		p.r = 0
	case p.n == 0 && !p.copying:
		chunks.Put(p.queue[0])
		p.queue[0] = nil
		p.queue = p.queue[:0]
		p.r, p.w = 0, 0
	}
	if p.writerWaits && p.limit-p.n >= max(p.limit/2, 1) {
		p.writable.Signal()
	}
}

// read reads what is queued into b, up to len(b), waiting for bytes.
func (p *pipe) read(b []byte) (int, error) {
	p.rmu.Lock()
	defer p.rmu.Unlock()
	p.mu.Lock()
	defer p.mu.Unlock()
	if len(b) == 0 && p.readerClosed {
		return 0, net.ErrClosed
	}
	if len(b) == 0 {
		return 0, nil
	}
	if err := p.waitData(); err != nil {
		return 0, err
	}
	total := 0
	for total < len(b) && p.n > 0 {
		src := p.head()
		k := min(len(src), len(b)-total)
		if k <= copyLocked {
			copy(b[total:], src[:k])
		} else {
			epoch := p.epoch
			p.mu.Unlock()
			copy(b[total:], src[:k])
			p.mu.Lock()
			if epoch != p.epoch {
				break
			}
		}
		p.consume(k)
		total += k
	}
	if total == 0 {
		// Discarded under the copy: the reading end closed.
		return 0, p.readState()
	}
	return total, nil
}

// writeTo writes what is queued to w straight from the queue until the
// writing end shuts down. rerr is the pipe's, werr w's.
func (p *pipe) writeTo(w io.Writer) (total int64, rerr, werr error) {
	p.rmu.Lock()
	defer p.rmu.Unlock()
	p.mu.Lock()
	defer p.mu.Unlock()
	for {
		if err := p.waitData(); err != nil {
			if err == io.EOF {
				err = nil
			}
			return total, err, nil
		}
		src := p.head()
		epoch := p.epoch
		p.mu.Unlock()
		k, err := w.Write(src)
		p.mu.Lock()
		total += int64(k)
		if epoch == p.epoch {
			p.consume(min(k, len(src)))
		}
		if err != nil {
			return total, nil, err
		}
	}
}

// writeState says why a write cannot go on, in the order a socket says
// it; nil when it can.
func (p *pipe) writeState() error {
	switch {
	case p.writerClosed:
		return net.ErrClosed
	case p.writeDeadline.expired:
		return os.ErrDeadlineExceeded
	case p.eof:
		return syscall.EPIPE
	}
	return p.writeErr
}

// waitRoom waits until there is room to write or a reason there will
// be none.
func (p *pipe) waitRoom() error {
	for {
		if err := p.writeState(); err != nil || p.readShut || p.n < p.limit {
			return err
		}
		p.writerWaits = true
		p.writable.Wait()
		p.writerWaits = false
	}
}

// tail is the room to write into at the end of the queue, a chunk
// added when the last is full, at most the buffer's room.
func (p *pipe) tail() []byte {
	if len(p.queue) == 0 || p.w == chunkSize {
		p.queue = append(p.queue, chunks.Get().(*chunk))
		p.w = 0
	}
	return p.queue[len(p.queue)-1][p.w:min(chunkSize, p.w+p.limit-p.n)]
}

// commit queues the k bytes written at the tail, or drops them if the
// reading end shut down reading, and wakes a waiting reader.
func (p *pipe) commit(k int) {
	if p.readShut || p.readerClosed {
		return
	}
	p.w += k
	p.n += k
	if p.readerWaits {
		p.readable.Signal()
	}
}

// write queues all of b, waiting for room as the reader makes it.
func (p *pipe) write(b []byte) (int, error) {
	p.wmu.Lock()
	defer p.wmu.Unlock()
	p.mu.Lock()
	defer p.mu.Unlock()
	if len(b) == 0 {
		return 0, p.writeState()
	}
	total := 0
	for total < len(b) {
		if err := p.waitRoom(); err != nil {
			return total, err
		}
		if p.readShut {
			return len(b), nil
		}
		dst := p.tail()
		k := min(len(dst), len(b)-total)
		if k <= copyLocked {
			copy(dst, b[total:total+k])
			p.commit(k)
		} else {
			epoch := p.epoch
			p.copying = true
			p.mu.Unlock()
			copy(dst, b[total:total+k])
			p.mu.Lock()
			p.copying = false
			if epoch == p.epoch {
				p.commit(k)
			}
		}
		total += k
	}
	return total, nil
}

// readFrom queues what r reads, reading it straight into the queue,
// until r says io.EOF. werr is the pipe's, rerr r's.
func (p *pipe) readFrom(r io.Reader) (total int64, werr, rerr error) {
	p.wmu.Lock()
	defer p.wmu.Unlock()
	p.mu.Lock()
	defer p.mu.Unlock()
	for {
		if err := p.waitRoom(); err != nil {
			return total, err, nil
		}
		dst := p.tail()
		epoch := p.epoch
		p.copying = true
		p.mu.Unlock()
		k, err := r.Read(dst)
		p.mu.Lock()
		p.copying = false
		k = min(max(k, 0), len(dst))
		if epoch == p.epoch {
			p.commit(k)
		}
		total += int64(k)
		if err == io.EOF {
			return total, nil, nil
		}
		if err != nil {
			return total, nil, err
		}
	}
}

// discard drops the queue, for a reading end that went away. Its
// chunks go to the collector, not the pool: a copy may be under way.
func (p *pipe) discard() {
	clear(p.queue)
	p.queue = p.queue[:0]
	p.r, p.w, p.n = 0, 0, 0
	p.epoch++
	p.wakeAll()
}

// shutRead is the reading end's CloseRead: reads say io.EOF, and what
// was and will be written is dropped.
func (p *pipe) shutRead() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.readShut = true
	p.discard()
}

// shutWrite is the writing end's CloseWrite: the reader reads io.EOF
// after the bytes, and writes say EPIPE.
func (p *pipe) shutWrite() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.eof = true
	p.wakeAll()
}

// closeReader is the reading end's Close: its reads say net.ErrClosed.
// It resets the connection when asked or when bytes are left unread:
// the writer's writes then say ECONNRESET, else EPIPE.
func (p *pipe) closeReader(reset bool) (wasReset bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	reset = reset || p.n > 0
	p.readerClosed = true
	if p.writeErr == nil {
		p.writeErr = syscall.EPIPE
		if reset {
			p.writeErr = syscall.ECONNRESET
		}
	}
	p.stopTimer(&p.readDeadline)
	p.discard()
	return reset
}

// closeWriter is the writing end's Close: its writes say
// net.ErrClosed; the reader reads the bytes, then io.EOF or, when
// reset, ECONNRESET.
func (p *pipe) closeWriter(reset bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.writerClosed = true
	if reset {
		p.readErr = syscall.ECONNRESET
	} else {
		p.eof = true
	}
	p.stopTimer(&p.writeDeadline)
	p.wakeAll()
}

func (p *pipe) stopTimer(d *deadline) {
	if d.timer != nil {
		d.timer.Stop()
		d.timer = nil
	}
}

// unread is how many bytes wait to be read.
func (p *pipe) unread() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.n
}
