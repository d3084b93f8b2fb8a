package synproxy

import (
	"sync"
	"sync/atomic"

	"gvisor.dev/gvisor/pkg/tcpip/header"
)

// The table's bounds: memory stays bounded whatever arrives.
const (
	// maxFlows bounds the flows translated, about 200 bytes each.
	maxFlows = 1 << 16
	// maxOpening bounds the flows whose handshake with the netstack is
	// not complete.
	maxOpening = 1024
	// maxHeld bounds the segments held for one flow being opened, and
	// heldBytesLimit those held in all.
	maxHeld        = 8
	heldBytesLimit = 4 << 20
	// handshakeTries is how many sweeps a flow waits for the netstack's
	// SYN-ACK, its SYN handed over again at each, before it is given up.
	handshakeTries = 3
)

// flow is a connection the proxy opened.
type flow struct {
	// cookie is the ISN the client knows the server by; isn the
	// client's.
	cookie, isn uint32
	// delta is cookie less the netstack's ISN, once answered.
	delta    uint32
	answered bool
	// open says the netstack has the handshake and every held segment:
	// the flow's segments are translated from then on, and delta does
	// not change.
	open bool
	// syn and ack are what the proxy hands the netstack in the client's
	// name: the SYN until the netstack answers it, the ACK from then on.
	syn, ack []byte
	// held are the flow's segments received before it was open.
	held  [][]byte
	tries int
}

// flowTable is the proxy's flows, by flowID.
type flowTable struct {
	mu    sync.RWMutex
	flows map[flowID]*flow
	// n is len(flows), read without the lock on every packet.
	n atomic.Int32
	// opening counts the flows not open; heldBytes the bytes they hold.
	opening, heldBytes int
}

func newFlowTable() flowTable { return flowTable{flows: map[flowID]*flow{}} }

// remove takes f, the flow of id, out of the table; the lock is held.
func (t *flowTable) remove(id flowID, f *flow) {
	if t.flows[id] != f {
		return
	}
	delete(t.flows, id)
	t.n.Store(int32(len(t.flows)))
	if !f.open {
		t.opening--
		t.drain(f)
	}
}

// drain forgets what f holds; the lock is held.
func (t *flowTable) drain(f *flow) (held [][]byte) {
	for _, h := range f.held {
		t.heldBytes -= len(h)
	}
	held, f.held = f.held, nil
	return held
}

// open starts the handshake with the netstack for flow id, whose ACK s
// carried cookie for the client's ISN isn and the MSS mss: it hands the
// netstack the client's SYN and holds s if it carries data.
func (p *Proxy) open(s *segment, id flowID, cookie, isn uint32, mss uint16) {
	t := &p.flows
	t.mu.Lock()
	if f, ok := t.flows[id]; ok {
		// Opened by an earlier copy of this ACK.
		p.hold(f, s.frame)
		t.mu.Unlock()
		return
	}
	if t.opening >= maxOpening || len(t.flows) >= maxFlows {
		t.mu.Unlock()
		p.drop(dropTableFull)
		return
	}
	tcp := s.tcp()
	syn := make([]byte, maxFrame)
	syn = syn[:build(syn, s.frame[0:6], s.frame[6:12], id.v6, id.remoteAddr(), id.localAddr(), header.TCPFields{
		SrcPort:    id.remotePort,
		DstPort:    id.localPort,
		SeqNum:     isn,
		Flags:      header.TCPFlagSyn,
		WindowSize: tcp.WindowSize(),
	}, mss)]
	f := &flow{cookie: cookie, isn: isn, syn: syn}
	t.flows[id] = f
	t.n.Store(int32(len(t.flows)))
	t.opening++
	if s.payload() != 0 {
		p.hold(f, s.frame)
	}
	t.mu.Unlock()
	p.opts.Deliver(syn)
}

// hold keeps a copy of frame for f, which is not open, within the
// bounds; the lock is held.
func (p *Proxy) hold(f *flow, frame []byte) {
	t := &p.flows
	if len(f.held) >= maxHeld || t.heldBytes+len(frame) > heldBytesLimit {
		p.drop(dropHoldFull)
		return
	}
	f.held = append(f.held, append([]byte(nil), frame...))
	t.heldBytes += len(frame)
}

// receivedOnFlow handles a received segment of flow id if the flow is
// in the table (mine). It translates the segment of an open flow and
// holds that of a flow being opened (drop true).
func (p *Proxy) receivedOnFlow(s *segment, id flowID, syn bool) (drop, mine bool) {
	t := &p.flows
	t.mu.RLock()
	f, ok := t.flows[id]
	var open bool
	var delta uint32
	if ok {
		open, delta = f.open, f.delta
	}
	t.mu.RUnlock()
	switch {
	case !ok:
		return false, false
	case open && syn:
		// A new connection once the netstack's is gone; the netstack's
		// answer to the SYN, if it still has one, is translated.
		if p.owner(id) == Connection {
			return false, true
		}
		t.mu.Lock()
		t.remove(id, f)
		t.mu.Unlock()
		return false, false
	case open:
		translateIn(s.tcp(), delta)
		return false, true
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if f.open {
		// Opened since: the held segments went first.
		translateIn(s.tcp(), f.delta)
		return false, true
	}
	if t.flows[id] == f {
		p.hold(f, s.frame)
	}
	return true, true
}

// sentOnFlow handles a segment the netstack sends on a flow that may be
// in the table, and tells whether it goes to the wire: its SYN-ACK does
// not, and every other segment gets the client's sequence numbers.
func (p *Proxy) sentOnFlow(id flowID, tcp header.TCP, fullChecksum bool) (send bool) {
	t := &p.flows
	t.mu.RLock()
	f, ok := t.flows[id]
	var open bool
	var delta uint32
	if ok {
		open, delta = f.open, f.delta
	}
	t.mu.RUnlock()
	if !ok {
		return true
	}
	flags := tcp.Flags()
	if open {
		if flags&header.TCPFlagSyn != 0 {
			// Its SYN-ACK again: the ACK was lost on the way in.
			ack := f.ack
			p.spawn(func() { p.opts.Deliver(ack) })
			return false
		}
		setUint32(tcp, header.TCPSeqNumOffset, tcp.SequenceNumber()+delta, fullChecksum)
		return true
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	switch {
	case flags&header.TCPFlagSyn != 0 && flags&header.TCPFlagAck != 0 && !f.answered:
		f.answered, f.delta = true, f.cookie-tcp.SequenceNumber()
		f.ack, f.syn = p.handshakeACK(id, f, tcp.SequenceNumber()), nil
		p.spawn(func() { p.complete(id, f) })
		return false
	case flags&header.TCPFlagSyn != 0:
		// Its SYN-ACK again while the ACK is on its way.
		return false
	case flags&header.TCPFlagRst != 0:
		// The netstack refused the connection (its listener went):
		// the client hears it at the sequence number it expects.
		seq := f.cookie + 1
		if f.answered {
			seq = tcp.SequenceNumber() + f.delta
		}
		setUint32(tcp, header.TCPSeqNumOffset, seq, fullChecksum)
		t.remove(id, f)
		return true
	case f.answered:
		setUint32(tcp, header.TCPSeqNumOffset, tcp.SequenceNumber()+f.delta, fullChecksum)
	}
	return true
}

// handshakeACK is the client's ACK of the netstack's SYN-ACK with ISN
// iss, built from the SYN the proxy handed over.
func (p *Proxy) handshakeACK(id flowID, f *flow, iss uint32) []byte {
	syn, _ := parse(f.syn)
	ack := make([]byte, maxFrame)
	return ack[:build(ack, f.syn[0:6], f.syn[6:12], id.v6, id.remoteAddr(), id.localAddr(), header.TCPFields{
		SrcPort:    id.remotePort,
		DstPort:    id.localPort,
		SeqNum:     f.isn + 1,
		AckNum:     iss + 1,
		Flags:      header.TCPFlagAck,
		WindowSize: syn.tcp().WindowSize(),
	}, 0)]
}

// complete hands the netstack the client's ACK of its SYN-ACK and the
// segments held, translated, in the order they came, and opens the
// flow.
func (p *Proxy) complete(id flowID, f *flow) {
	p.opts.Deliver(f.ack)
	t := &p.flows
	for {
		t.mu.Lock()
		held := t.drain(f)
		if len(held) == 0 {
			f.open = true
			if t.flows[id] == f {
				t.opening--
			}
			t.mu.Unlock()
			p.opened.Add(1)
			return
		}
		t.mu.Unlock()
		for _, frame := range held {
			s, _ := parse(frame)
			translateIn(s.tcp(), f.delta)
			p.opts.Deliver(frame)
		}
	}
}

// sweep hands the netstack the SYN of each flow it has not answered
// again, up to handshakeTries times, and forgets the flows the netstack
// has no connection for any more.
func (p *Proxy) sweep() {
	t := &p.flows
	var retry [][]byte
	type entry struct {
		id flowID
		f  *flow
	}
	var check []entry
	t.mu.Lock()
	for id, f := range t.flows {
		switch {
		case f.open:
			check = append(check, entry{id, f})
		case f.answered:
		case f.tries >= handshakeTries:
			t.remove(id, f)
			p.drop(dropHandshakeTimeout)
		default:
			f.tries++
			retry = append(retry, f.syn)
		}
	}
	t.mu.Unlock()
	for _, syn := range retry {
		p.opts.Deliver(syn)
	}
	for _, e := range check {
		if p.owner(e.id) != Connection {
			t.mu.Lock()
			t.remove(e.id, e.f)
			t.mu.Unlock()
		}
	}
}
