package gateway

import (
	"encoding/binary"
	"errors"
	"math/rand/v2"
	"net/netip"
	"os"
	"time"

	"github.com/xdpstack/xdpstack/userstack/afxdp"
	"github.com/xdpstack/xdpstack/userstack/psp"
	"github.com/xdpstack/xdpstack/userstack/psp/tunnel"
)

const (
	ethLen = 14
	// tunOffset is where a packet starts in the buffers the TUN device
	// reads into and is written from: room before it for the Ethernet
	// header that Encrypt takes and Decrypt writes, and for the
	// virtio-net header (10 bytes) that the device writes there.
	tunOffset = 16
	// bufSize holds a TCP segment of 64 KiB that the TUN device's GRO
	// coalesces into the first buffer of its flow.
	bufSize = tunOffset + 1<<16
)

// send reads the TUN device in batches and seals each packet into the
// TX ring, or holds it until its tunnel exists.
func (g *Gateway) send() {
	defer g.wg.Done()
	bufs := make([][]byte, g.tun.BatchSize())
	for i := range bufs {
		bufs[i] = make([]byte, bufSize)
	}
	sizes := make([]int, len(bufs))
	b := newSealBatch(g)
	logged := false
	for {
		n, err := g.tun.Read(bufs, sizes, tunOffset)
		for i := range n {
			g.route(b, bufs[i][tunOffset-ethLen:tunOffset+sizes[i]])
		}
		b.flush()
		switch {
		case err == nil:
		case errors.Is(err, os.ErrClosed) || g.closed.Load():
			return
		default:
			// What the device could not hand over (a segment too
			// large to split, say) is lost; the device itself works.
			g.counters.tunErrors.Add(1)
			if !logged {
				g.log.Warn("read tun: packets lost", "err", err)
				logged = true
			}
		}
	}
}

// route sends frame, an inner packet with room for an Ethernet header
// before it, through its destination's tunnel, or holds it.
func (g *Gateway) route(b *sealBatch, frame []byte) {
	_, dst, ok := addrs(frame[ethLen:])
	if !ok {
		g.counters.notIP.Add(1)
		return
	}
	t := g.opts.Tunnels.Lookup(dst)
	if t == nil {
		g.hold(b, dst, frame)
		return
	}
	if joined, dropped := g.holds.join(dst, frame[ethLen:]); joined {
		if dropped {
			g.counters.holdDropped.Add(1)
		} else {
			g.counters.held.Add(1)
		}
		return
	}
	b.add(frame, t)
}

// hold keeps frame's packet for dst's tunnel, asking for it once.
func (g *Gateway) hold(b *sealBatch, dst netip.Addr, frame []byte) {
	if !g.owned(dst) {
		g.counters.noPeer.Add(1)
		return
	}
	var t *tunnel.Tunnel
	res, expired := g.holds.hold(dst, frame[ethLen:], time.Now(), func() bool {
		t = g.opts.Tunnels.Lookup(dst)
		return t != nil
	})
	g.counters.holdDropped.Add(uint64(expired))
	switch res {
	case holdInstalled:
		b.add(frame, t)
	case holdDropped:
		g.counters.holdDropped.Add(1)
	case holdRequest:
		g.counters.held.Add(1)
		g.counters.requests.Add(1)
		if g.opts.Requester != nil {
			g.opts.Requester.Request(dst)
		}
	case holdQueued:
		g.counters.held.Add(1)
	}
}

// owned tells whether dst is in a remote virtual network.
func (g *Gateway) owned(dst netip.Addr) bool {
	for _, p := range g.opts.Remote {
		if p.Contains(dst) {
			return true
		}
	}
	return false
}

// installed sends what was held for t's address, from the key
// exchange's goroutine (tunnel.Table.OnInstall).
func (g *Gateway) installed(t *tunnel.Tunnel) {
	if g.closed.Load() {
		return
	}
	g.holds.release(t.Remote, func(packets [][]byte) {
		b := newSealBatch(g)
		for _, p := range packets {
			frame := make([]byte, ethLen+len(p))
			copy(frame[ethLen:], p)
			b.add(frame, t)
		}
		b.flush()
	})
}

// sealBatch gathers frames to seal into the TX rings, by queue.
type sealBatch struct {
	g       *Gateway
	byQueue [][]sealFrame
	// cur is what write seals: made once, since a closure made per
	// batch would be garbage per batch.
	cur   []sealFrame
	write func(i int, buf []byte) (int, afxdp.Checksum)
}

type sealFrame struct {
	frame  []byte
	t      *tunnel.Tunnel
	sample bool // sealed with the S bit
}

// unsendable is a length no frame holds: write returns it for a frame
// it cannot seal, which Transmit then drops.
const unsendable = 1 << 30

func newSealBatch(g *Gateway) *sealBatch {
	b := &sealBatch{g: g, byQueue: make([][]sealFrame, g.queues)}
	b.write = func(i int, buf []byte) (int, afxdp.Checksum) {
		f := &b.cur[i]
		var n int
		var err error
		if f.sample {
			n, err = f.t.SA.EncryptSampled(buf, f.frame, &f.t.Encap)
		} else {
			n, err = f.t.SA.Encrypt(buf, f.frame, &f.t.Encap)
		}
		if err != nil {
			// add checked the size and the IP header: the SA has used
			// up its IVs (counted as tx-error).
			return unsendable, afxdp.Checksum{}
		}
		return n, afxdp.Checksum{}
	}
	return b
}

// add puts the Ethernet header to t's peer before frame's packet and
// queues it for sealing.
func (b *sealBatch) add(frame []byte, t *tunnel.Tunnel) {
	g := b.g
	ip := frame[ethLen:]
	v6 := ip[0]>>4 == 6
	if len(ip)+psp.EncapLen(&t.Encap, v6) > g.wireMTU {
		g.counters.tooBig.Add(1)
		return
	}
	copy(frame[0:6], t.PeerMAC)
	copy(frame[6:12], g.mac)
	etype := uint16(0x0800)
	if v6 {
		etype = 0x86dd
	}
	binary.BigEndian.PutUint16(frame[12:], etype)
	sample := g.sampleMask != 0 && rand.Uint32()&g.sampleMask == 0
	if sample {
		g.counters.sampled.Add(1)
	}
	if tap := g.tap.Load(); tap != nil {
		tap.Tapped(t.SA.SPI(), true, sample, ip)
	}
	q := flowQueue(ip, v6, len(b.byQueue))
	b.byQueue[q] = append(b.byQueue[q], sealFrame{frame, t, sample})
}

// flush seals the frames into their queues' TX rings.
func (b *sealBatch) flush() {
	for q, frames := range b.byQueue {
		if len(frames) == 0 {
			continue
		}
		b.cur = frames
		sent, _ := b.g.stack.Transmit(q, len(frames), b.write)
		if sent < len(frames) {
			b.g.counters.txFull.Add(uint64(len(frames) - sent))
		}
		clear(frames) // let the tunnels go
		b.byQueue[q], b.cur = frames[:0], nil
	}
}

// flowQueue picks a queue by the inner flow's addresses and ports, so
// that a flow's packets stay in order.
func flowQueue(ip []byte, v6 bool, queues int) int {
	if queues == 1 {
		return 0
	}
	var h uint32
	var l4 []byte
	if v6 {
		h = binary.BigEndian.Uint32(ip[20:]) ^ binary.BigEndian.Uint32(ip[36:])
		l4 = ip[40:]
	} else {
		h = binary.BigEndian.Uint32(ip[12:]) ^ binary.BigEndian.Uint32(ip[16:])
		l4 = ip[int(ip[0]&0xf)*4:]
	}
	if len(l4) >= 4 {
		h ^= binary.BigEndian.Uint32(l4)
	}
	h ^= h >> 16
	h ^= h >> 8
	return int(h % uint32(queues))
}

// addrs reads an IP packet's source and destination addresses.
func addrs(ip []byte) (src, dst netip.Addr, ok bool) {
	switch {
	case len(ip) >= 20 && ip[0]>>4 == 4 && int(ip[0]&0xf)*4 >= 20 && int(ip[0]&0xf)*4 <= len(ip):
		return netip.AddrFrom4([4]byte(ip[12:16])), netip.AddrFrom4([4]byte(ip[16:20])), true
	case len(ip) >= 40 && ip[0]>>4 == 6:
		return netip.AddrFrom16([16]byte(ip[8:24])), netip.AddrFrom16([16]byte(ip[24:40])), true
	}
	return netip.Addr{}, netip.Addr{}, false
}
