package link

import (
	"sync"
	"time"

	"gvisor.dev/gvisor/pkg/tcpip/header"
)

// The netstack acknowledges received data at once, with a segment of its
// own, where Linux delays the ACK and lets the reply carry it. On a
// request/response flow that ACK cost a sendto on the way from the
// request to the application (about 5 of 33 us in ping-pong, and the
// peer's kernel handled it too).
//
// So the endpoint holds back a pure ACK of a flow until something else
// is sent: a later segment of the same flow carries the same
// acknowledgement and window and replaces it; anything else takes it
// along in the same kick; and ackDelay after it was held it goes alone.
// Linux may wait 40 ms; ackDelay (which Go's timers round up to about a
// millisecond when every thread is idle) keeps the peer's RTT estimate
// and zero-window recovery close to what they were.
//
// Only what replacing cannot hurt is held: no ACK with SACK blocks
// (the peer counts those during recovery), and while one is held, a
// second pure ACK of the flow sends the first rather than replacing it,
// so that duplicate ACKs all arrive.
const ackDelay = 100 * time.Microsecond

// flowKey names a TCP flow: its addresses and ports as on the wire.
type flowKey [2*header.IPv6AddressSize + 4]byte

type delayedACKs struct {
	mu      sync.Mutex
	held    map[flowKey]*outPacket
	timer   *time.Timer
	armed   bool
	stopped bool
	// flush sends what the timer releases.
	flush func([]*outPacket)
	// delay is ackDelay; tests that must not see it pass make it long.
	delay time.Duration
	// replaced counts ACKs a later segment made unnecessary.
	replaced uint64
}

func newDelayedACKs(flush func([]*outPacket)) *delayedACKs {
	d := &delayedACKs{held: map[flowKey]*outPacket{}, flush: flush, delay: ackDelay}
	d.timer = time.AfterFunc(time.Hour, d.expire)
	d.timer.Stop()
	return d
}

// pureACK tells whether p is an ACK with no data, flag or SACK block,
// and names its flow.
func pureACK(p *outPacket) (flowKey, bool) {
	var key flowKey
	if !p.tso || p.payload != 0 {
		return key, false
	}
	tcp := header.TCP(p.pkt.TransportHeader().Slice())
	if tcp.Flags() != header.TCPFlagAck || len(header.ParseTCPOptions(tcp.Options()).SACKBlocks) != 0 {
		return key, false
	}
	return p.flow(), true
}

// newFlowKey names the flow from local to remote, addresses and ports
// (two bytes each, as on the wire).
func newFlowKey(local, remote, localPort, remotePort []byte) flowKey {
	var key flowKey
	copy(key[:], local)
	copy(key[len(local):], remote)
	copy(key[32:], localPort)
	copy(key[34:], remotePort)
	return key
}

// flow names the TCP flow of p, which must be tso.
func (p *outPacket) flow() flowKey {
	src, dst := ipAddresses(p.pkt.NetworkHeader().Slice(), p.v6)
	tcp := p.pkt.TransportHeader().Slice()
	return newFlowKey(src, dst, tcp[header.TCPSrcPortOffset:][:2], tcp[header.TCPDstPortOffset:][:2])
}

// hold takes the pure ACKs out of out and holds them, and returns what
// is to be sent now: out's other packets, after the held ACKs they
// release. A held ACK stays referenced until it is sent or dropped.
func (d *delayedACKs) hold(out []*outPacket) []*outPacket {
	d.mu.Lock()
	defer d.mu.Unlock()
	send := make([]*outPacket, 0, len(out)+len(d.held))
	var rest []*outPacket
	for _, p := range out {
		key, ack := pureACK(p)
		if !ack || d.stopped {
			rest = append(rest, p)
			if p.tso && len(d.held) != 0 {
				d.replace(p.flow())
			}
			continue
		}
		if old, ok := d.held[key]; ok {
			send = append(send, old)
		}
		p.pkt.IncRef()
		p.held = true
		d.held[key] = p
	}
	if len(rest) == 0 {
		// The timer runs from the first ACK held, so that a stream of
		// other flows' ACKs cannot put off sending this one.
		if len(d.held) != 0 && !d.armed {
			d.timer.Reset(d.delay)
			d.armed = true
		}
		return send
	}
	// Something goes out now: the held ACKs of other flows go with it.
	send = d.takeAll(send)
	return append(send, rest...)
}

// replace drops the held ACK of flow, if any, since a segment of the
// flow is about to carry its acknowledgement.
func (d *delayedACKs) replace(flow flowKey) {
	if p, ok := d.held[flow]; ok {
		delete(d.held, flow)
		p.pkt.DecRef()
		d.replaced++
	}
}

// takeAll appends every held ACK to send and disarms the timer.
func (d *delayedACKs) takeAll(send []*outPacket) []*outPacket {
	for key, p := range d.held {
		send = append(send, p)
		delete(d.held, key)
	}
	d.timer.Stop()
	d.armed = false
	return send
}

// expire sends the ACKs that waited ackDelay with nothing to ride on.
func (d *delayedACKs) expire() {
	d.mu.Lock()
	send := d.takeAll(nil)
	d.mu.Unlock()
	if len(send) != 0 {
		d.flush(send)
	}
}

// stop drops the held ACKs; from then on none is held.
func (d *delayedACKs) stop() {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.stopped = true
	for _, p := range d.takeAll(nil) {
		p.pkt.DecRef()
	}
}
