package gateway

import "github.com/xdpstack/xdpstack/userstack/link"

var _ link.Secure = (*Gateway)(nil)

// rxBatch is one queue's decrypted packets, waiting for the end of the
// batch to be written to the TUN device together, which coalesces a
// flow's TCP segments (GRO).
type rxBatch struct {
	bufs [][]byte
	n    int
}

// rxBatchSize is how many packets a write to the TUN device takes at
// most: the most one receive batch hands over.
const rxBatchSize = 64

func newRxBatch() *rxBatch {
	b := &rxBatch{bufs: make([][]byte, rxBatchSize)}
	for i := range b.bufs {
		b.bufs[i] = make([]byte, bufSize)
	}
	return b
}

// Received decrypts a frame of UDP to port 1000 and, if the ACL lets
// its inner packet in, keeps that for the batch's write to the TUN
// device. The PSP device counts what does not decrypt.
func (g *Gateway) Received(queue int, frame []byte) {
	b := g.rx[queue]
	if b.n == len(b.bufs) {
		g.Flush(queue)
	}
	buf := b.bufs[b.n]
	buf = buf[:cap(buf)]
	n, hdr, err := g.opts.Device.Decrypt(buf[tunOffset-ethLen:], frame)
	if err != nil {
		return
	}
	ip := buf[tunOffset : tunOffset-ethLen+n]
	src, _, ok := addrs(ip)
	if !ok {
		g.counters.notIP.Add(1)
		return
	}
	if !g.opts.DisableIngressACL && !g.opts.ACL.Check(hdr.SPI, hdr.Version, src) {
		g.counters.aclDenied.Add(1)
		return
	}
	if tap := g.tap.Load(); tap != nil {
		tap.Tapped(hdr.SPI, false, ip)
	}
	b.bufs[b.n] = buf[:tunOffset+len(ip)]
	b.n++
}

// Flush writes the batch's packets to the TUN device.
func (g *Gateway) Flush(queue int) {
	b := g.rx[queue]
	if b.n == 0 {
		return
	}
	if _, err := g.tun.Write(b.bufs[:b.n], tunOffset); err != nil && !g.closed.Load() {
		g.counters.tunErrors.Add(1)
	}
	b.n = 0
}
