package gateway

import (
	"net/netip"

	"github.com/xdpstack/xdpstack/userstack/link"
)

var _ link.Secure = (*Gateway)(nil)

// rxBatch is decrypted packets to write to the TUN device together,
// which coalesces a flow's TCP segments (GRO).
type rxBatch struct {
	bufs [][]byte
	n    int
}

const (
	// rxBatchSize is how many packets a write to the TUN device takes
	// at most: the most one receive batch hands over.
	rxBatchSize = 64
	// rxBatches is how many batches a queue has: one filling, the
	// others written meanwhile.
	rxBatches = 3
)

// rxQueue is one queue's receiving: its receive loop decrypts into a
// batch that a writer goroutine then writes to the TUN device, so that
// the loop returns frames to the fill ring while the kernel takes in
// the last batch. Written inline, the fill ring ran dry under a TCP
// transfer and 2% of the packets were lost.
type rxQueue struct {
	cur        *rxBatch
	free, full chan *rxBatch
}

func newRxQueue() *rxQueue {
	q := &rxQueue{free: make(chan *rxBatch, rxBatches), full: make(chan *rxBatch, rxBatches)}
	for range rxBatches {
		b := &rxBatch{bufs: make([][]byte, rxBatchSize)}
		for i := range b.bufs {
			b.bufs[i] = make([]byte, bufSize)
		}
		q.free <- b
	}
	return q
}

// Received decrypts a frame of UDP to port 1000 and, if the ACL lets
// its inner packet in, keeps that for the batch's write to the TUN
// device. The PSP device counts what does not decrypt.
func (g *Gateway) Received(queue int, frame []byte) {
	q := g.rx[queue]
	if q.cur == nil {
		select {
		case q.cur = <-q.free:
		case <-g.done:
			return
		}
	}
	b := q.cur
	buf := b.bufs[b.n]
	buf = buf[:cap(buf)]
	n, hdr, err := g.opts.Device.Decrypt(buf[tunOffset-ethLen:], frame)
	if err != nil {
		return
	}
	ip := buf[tunOffset : tunOffset-ethLen+n]
	src, dst, ok := addrs(ip)
	if !ok {
		g.counters.notIP.Add(1)
		return
	}
	if !g.opts.DisableIngressACL && !g.opts.ACL.Check(hdr.SPI, hdr.Version, src) {
		g.counters.aclDenied.Add(1)
		return
	}
	if !g.local(dst) {
		g.counters.notLocal.Add(1)
		return
	}
	if tap := g.tap.Load(); tap != nil {
		tap.Tapped(hdr.SPI, false, hdr.Sample, ip)
	}
	b.bufs[b.n] = buf[:tunOffset+len(ip)]
	if b.n++; b.n == len(b.bufs) {
		g.Flush(queue)
	}
}

// local tells whether dst is one of this host's virtual addresses: a
// peer's packets go to them only, never on through the host.
func (g *Gateway) local(dst netip.Addr) bool {
	for _, p := range g.opts.Local {
		if p.Addr() == dst {
			return true
		}
	}
	return false
}

// Flush hands the batch to the queue's writer.
func (g *Gateway) Flush(queue int) {
	q := g.rx[queue]
	if q.cur == nil || q.cur.n == 0 {
		return
	}
	select {
	case q.full <- q.cur:
	case <-g.done:
	}
	q.cur = nil
}

// write writes q's batches to the TUN device until the gateway closes.
func (g *Gateway) write(q *rxQueue) {
	defer g.wg.Done()
	for {
		select {
		case b := <-q.full:
			if _, err := g.tun.Write(b.bufs[:b.n], tunOffset); err != nil && !g.closed.Load() {
				g.counters.tunErrors.Add(1)
			}
			b.n = 0
			q.free <- b
		case <-g.done:
			return
		}
	}
}
