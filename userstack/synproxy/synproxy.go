// Package synproxy answers the SYNs for the userstack's listeners while
// a SYN flood lasts, as netfilter's SYNPROXY and Linux's SYN cookies do,
// at the link layer: the netstack never sees the flood.
//
// gVisor's netstack makes a half-open endpoint for every SYN, and even
// its own SYN cookies cost a trip through its processor goroutine, a
// route lookup, a SHA-1 and its transmit path per SYN: under a 10 s
// hping3 --flood that was 41% of the daemon's CPU, both cores were
// busy, and legitimate SYNs were lost before anything answered them.
// Here a SYN costs a parse, a listener lookup, a SipHash and a frame of
// at most 78 bytes written into the TX ring with the rest of its
// receive batch.
//
// The life of a connection opened during a flood:
//
//  1. The client's SYN reaches the link endpoint's receive loop, which
//     shows it to Received before the netstack copies it. A pure SYN for
//     a listener is answered there: a SYN-ACK whose sequence number is
//     a cookie (cookie.go) and whose only option is the MSS, sent out
//     the queue the SYN came in on.
//  2. The client's ACK for a listener, whose ack-1 is a valid cookie for
//     its flow and seq-1, opens the flow in the proxy's table, and the
//     proxy hands the netstack a SYN in the client's name: its ISN, the
//     MSS the cookie holds, its window, no other option. Segments of
//     the flow that arrive meanwhile are held.
//  3. The netstack answers with a SYN-ACK with its own ISN, g, which
//     Sending keeps off the wire; a goroutine hands the netstack the
//     client's ACK of it, then the held segments. The connection is
//     established and accepted like any other.
//  4. From then on the flow's sequence numbers are translated: the
//     client knows the cookie as the server's ISN, the netstack g. Every
//     segment the netstack sends gets delta = cookie - g added to its
//     sequence number, every segment received has it taken off its
//     acknowledgement and SACK blocks. Once the netstack has no
//     endpoint for the flow (TIME-WAIT over, or reset), the entry goes.
//
// A cookie cannot carry window scaling, SACK or timestamps (no
// timestamp to hide them in, as Linux does), so the connections opened
// during a flood have none: a window of at most 64 KiB, and loss
// recovery without SACK.
//
// The detector (flood.go) counts the pure SYNs received and the
// connections the netstack opens; while more than 10,000 SYNs a second
// open none the proxy answers them (from the 1000th such SYN in a tick
// of 100 ms on), until a second passes below the rate. Cookies are
// checked in ACKs until two cookie periods after the last one sent.
// Resets for a listener (the flooding peer's answers to the SYN-ACKs)
// are dropped before they cost a copy, flood or not: a listener ignores
// them.
//
// Outside a flood, with no flow translated and no cookie out, a
// received TCP segment costs a parse and a few atomic loads, and a sent
// one an atomic load.
package synproxy

import (
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/header"
	"gvisor.dev/gvisor/pkg/tcpip/stack"
)

// Owner is what in the netstack a segment of a flow would reach.
type Owner int

const (
	// Nobody: the netstack would answer with a reset.
	Nobody Owner = iota
	Listener
	// Connection: an endpoint of the flow's own, in any state but
	// listening (TIME-WAIT too).
	Connection
)

// Options connect the proxy to a netstack and its link endpoint.
type Options struct {
	// Lookup tells what in the netstack a segment of the flow id would
	// reach.
	Lookup func(netProto tcpip.NetworkProtocolNumber, id stack.TransportEndpointID) Owner
	// Deliver hands the netstack a frame as if received
	// (link.Endpoint.Inject). The proxy never calls it from Sending.
	Deliver func(frame []byte)
	// MTU is the interface's, for the MSS and window the SYN-ACKs
	// advertise.
	MTU func() uint32
	// Stats are the netstack's counters: the resets the proxy drops are
	// counted there as the netstack would, and the detector reads
	// PassiveConnectionOpenings.
	Stats tcpip.Stats
	// Log is where the flood's start and end are told.
	Log *slog.Logger
}

// Proxy is the SYN proxy of one netstack. Received and Sending are its
// hooks in the link endpoint (link.Interceptor); Start runs the
// detector.
type Proxy struct {
	opts    Options
	cookies cookieJar
	flows   flowTable

	detect detector
	// flood is on while the proxy answers SYNs.
	flood atomic.Bool
	// checking is on while cookies may come back in ACKs.
	checking atomic.Bool
	// period is the cookie period now, kept by the detector.
	period atomic.Uint32

	// opened counts the connections handed to the netstack; the
	// cookies sent and taken back are counted in its Stats, with those
	// of its listeners.
	opened atomic.Uint64
	drops  [numDropReasons]atomic.Uint64

	// spawnMu guards closed and the additions to wg: the detector and
	// the completions (Sending starts them) end before Close returns.
	spawnMu sync.Mutex
	closed  bool
	wg      sync.WaitGroup
	done    chan struct{}
}

// New makes a proxy with a fresh cookie secret.
func New(opts Options) (*Proxy, error) {
	cookies, err := newCookieJar()
	if err != nil {
		return nil, err
	}
	if opts.Log == nil {
		opts.Log = slog.Default()
	}
	opts.Stats = opts.Stats.FillIn()
	p := &Proxy{opts: opts, cookies: cookies, flows: newFlowTable(), done: make(chan struct{})}
	p.period.Store(period(time.Now()))
	p.detect.tickOpened.Store(opts.Stats.TCP.PassiveConnectionOpenings.Value())
	p.detect.tickAt.Store(time.Now().UnixNano())
	return p, nil
}

// Received sees a received frame before the netstack does. It answers
// a SYN during a flood with a SYN-ACK written into answer (its length in
// n, the SYN dropped), opens a flow on a valid cookie, holds or
// translates the segments of a flow it opened, and drops resets for a
// listener.
func (p *Proxy) Received(frame, answer []byte) (drop bool, n int) {
	s, ok := parse(frame)
	if !ok {
		return false, 0
	}
	flags := s.tcp().Flags()
	syn := flags&(header.TCPFlagSyn|header.TCPFlagAck) == header.TCPFlagSyn
	reset := flags&(header.TCPFlagRst|header.TCPFlagSyn) == header.TCPFlagRst
	ack := flags&(header.TCPFlagSyn|header.TCPFlagRst|header.TCPFlagFin) == 0 && flags&header.TCPFlagAck != 0
	if syn {
		p.countSYN()
	}
	if !syn && !reset && p.flows.n.Load() == 0 && !(ack && p.checking.Load()) {
		return false, 0
	}
	id := s.flow()
	if p.flows.n.Load() != 0 {
		if drop, mine := p.receivedOnFlow(&s, id, syn); mine {
			return drop, 0
		}
	}
	switch {
	case syn:
		if p.flood.Load() && p.owner(id) == Listener {
			return true, p.answer(&s, id, answer)
		}
	case reset:
		if p.owner(id) == Listener {
			// RFC 9293, 3.10.7.2: a listener ignores a reset.
			stats := p.opts.Stats
			stats.TCP.ValidSegmentsReceived.Increment()
			stats.TCP.ResetsReceived.Increment()
			stats.DroppedPackets.Increment()
			return true, 0
		}
	case ack && p.checking.Load():
		return p.cookieACK(&s, id), 0
	}
	return false, 0
}

// Sending sees the headers of a TCP packet the netstack sends. It keeps
// the netstack's SYN-ACKs to the flows it opens off the wire and
// translates the sequence numbers of their segments.
func (p *Proxy) Sending(ip, tcp []byte, partialChecksum bool) (send bool) {
	if p.flows.n.Load() == 0 {
		return true
	}
	id, ok := sentID(ip, tcp)
	if !ok {
		return true
	}
	return p.sentOnFlow(id, header.TCP(tcp), !partialChecksum)
}

func (p *Proxy) owner(id flowID) Owner { return p.opts.Lookup(id.endpoint()) }

// answer writes the SYN-ACK for the SYN s of flow id into b and returns
// its length.
func (p *Proxy) answer(s *segment, id flowID, b []byte) int {
	t := s.tcp()
	isn := t.SequenceNumber()
	cookie := p.cookies.make(id, isn, mssIndex(id.v6, s.mss()), p.period.Load())
	mss := p.ownMSS(id.v6)
	f := header.TCPFields{
		SrcPort: id.localPort,
		DstPort: id.remotePort,
		SeqNum:  cookie,
		AckNum:  isn + 1,
		Flags:   header.TCPFlagSyn | header.TCPFlagAck,
		// The window the netstack's connections start with: twice
		// an initial congestion window of ten segments, unscaled.
		WindowSize: uint16(min(20*int(mss), 0xffff)),
	}
	n := build(b, s.frame[6:12], s.frame[0:6], id.v6, id.localAddr(), id.remoteAddr(), f, mss)
	p.opts.Stats.TCP.ListenOverflowSynCookieSent.Increment()
	return n
}

// ownMSS is the MSS the SYN-ACKs advertise: what the MTU carries.
func (p *Proxy) ownMSS(v6 bool) uint16 {
	headers := header.IPv4MinimumSize + header.TCPMinimumSize
	if v6 {
		headers = header.IPv6MinimumSize + header.TCPMinimumSize
	}
	return uint16(min(int(p.opts.MTU())-headers, 0xffff))
}

// cookieACK opens flow id for its ACK s if s carries a valid cookie for
// a listener, and tells whether it took the segment.
func (p *Proxy) cookieACK(s *segment, id flowID) (took bool) {
	t := s.tcp()
	isn, cookie := t.SequenceNumber()-1, t.AckNumber()-1
	mss, ok := p.cookies.check(id, isn, cookie, p.period.Load())
	if !ok || p.owner(id) != Listener {
		return false
	}
	p.opts.Stats.TCP.ListenOverflowSynCookieRcvd.Increment()
	p.open(s, id, cookie, isn, mssTables[b2i(id.v6)][mss])
	return true
}

// spawn runs f on a goroutine of its own unless the proxy is closed.
func (p *Proxy) spawn(f func()) {
	p.spawnMu.Lock()
	defer p.spawnMu.Unlock()
	if p.closed {
		return
	}
	p.wg.Add(1)
	go func() {
		defer p.wg.Done()
		f()
	}()
}

// Start runs the detector, which also keeps the cookie period and
// sweeps the table.
func (p *Proxy) Start() { p.spawn(p.run) }

// Close stops the detector and waits for the handshakes being
// completed; from then on nothing hands the netstack a packet. Call it
// once the link endpoint no longer receives, before the netstack
// closes.
func (p *Proxy) Close() {
	p.spawnMu.Lock()
	if !p.closed {
		p.closed = true
		close(p.done)
	}
	p.spawnMu.Unlock()
	p.wg.Wait()
}

// Counters are what the proxy did, for metrics. The cookies it sends
// and takes back are counted in the netstack's Stats, as
// TCP.ListenOverflowSynCookieSent and ListenOverflowSynCookieRcvd.
type Counters struct {
	// Flood is true while the proxy answers SYNs.
	Flood bool
	// Opened counts the connections the proxy handed the netstack.
	Opened uint64
	// Flows counts the flows translated now, or being opened.
	Flows int
	// Drops counts what the proxy dropped, by reason (DropReasons).
	Drops [numDropReasons]uint64
}

// Counters reads the proxy's counters.
func (p *Proxy) Counters() Counters {
	c := Counters{
		Flood:  p.flood.Load(),
		Opened: p.opened.Load(),
		Flows:  int(p.flows.n.Load()),
	}
	for r := range c.Drops {
		c.Drops[r] = p.drops[r].Load()
	}
	return c
}

// What the proxy drops, and why.
const (
	// dropTableFull: an ACK with a valid cookie, with maxOpening flows
	// being opened or maxFlows translated already (the client sends it
	// again).
	dropTableFull = iota
	// dropHoldFull: a segment of a flow being opened, with maxHeld held
	// for it or heldBytesLimit in all.
	dropHoldFull
	// dropHandshakeTimeout: a flow the netstack did not answer the SYN
	// of (its accept queue full), given up after handshakeTries.
	dropHandshakeTimeout
	numDropReasons
)

// DropReasons names the reasons of Counters.Drops, by index.
var DropReasons = [numDropReasons]string{"table_full", "hold_full", "handshake_timeout"}

func (p *Proxy) drop(reason int) { p.drops[reason].Add(1) }
