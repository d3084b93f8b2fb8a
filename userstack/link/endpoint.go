// Package link is the netstack's link layer over AF_XDP: one
// stack.LinkEndpoint per interface that receives on every queue's socket
// and sends each flow on one queue's TX ring, in batches. It takes the
// netstack's TCP segments of up to 64 KiB and cuts them into frames
// (segment.go) or hands them whole to the kernel (Options.Segmenter),
// holds pure ACKs back for the next segment to carry (delayedack.go),
// works around the netstack's dropping of ACKs while its receive window
// is shut (zerowindow.go), lets an Interceptor (the SYN proxy) see
// the TCP traffic first, a Tap (a capture) every frame both ways, and
// a Secure side (the PSP gateway) take the frames of UDP to port 1000
// (secure.go).
//
// One endpoint serves all the queues, not one per queue, because the
// netstack routes by NIC and every queue carries the same addresses.
package link

import (
	"bytes"
	"net"
	"sync"
	"sync/atomic"

	"gvisor.dev/gvisor/pkg/buffer"
	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/header"
	"gvisor.dev/gvisor/pkg/tcpip/stack"
	"gvisor.dev/gvisor/pkg/tcpip/stack/gro"

	"github.com/xdpstack/xdpstack/internal/stagetime"
	"github.com/xdpstack/xdpstack/userstack/afxdp"
	"github.com/xdpstack/xdpstack/userstack/gsotx"
)

// Queue is what the endpoint needs of one queue's AF_XDP socket
// (*afxdp.Socket); tests use an in-memory one.
type Queue interface {
	// Receive hands up to max frames to deliver and reuses them after.
	Receive(max int, deliver func(frame []byte)) int
	// Wait blocks until frames arrive; false once stopped.
	Wait() bool
	// Stop ends Wait.
	Stop()
	// Transmit writes n frames with write and returns how many it
	// queued; they leave soon after, in order.
	Transmit(n int, write func(i int, frame []byte) (int, afxdp.Checksum)) (int, error)
	// Flush returns once the frames queued so far have left.
	Flush() error
	// OffloadsChecksum tells whether Transmit can leave partial
	// checksums to the kernel.
	OffloadsChecksum() bool
}

// Options describe the interface the endpoint stands in for.
type Options struct {
	// MTU of the interface, without the Ethernet header, at the start
	// (SetMTU changes it).
	MTU uint32
	// MAC of the interface: the userstack shares it with the kernel.
	MAC net.HardwareAddr
	// GRO coalesces received TCP segments of a batch into one before the
	// netstack sees them, to pay its per-segment cost less often.
	GRO bool
	// TrustChecksums skips checking received checksums (checksum.go).
	// Only for a veth, whose "wire" is the peer's memory: its packets
	// cannot be corrupted and, with the peer's checksum offload on, carry
	// only the partial checksum the kernel would have finished.
	TrustChecksums bool
	// Stats are the netstack's counters, where the endpoint counts the
	// frames it drops for a bad checksum; nil counters are filled in.
	Stats tcpip.Stats
	// Segmenter, when set, sends the TCP segments larger than the MTU
	// whole, for the kernel or the NIC to cut (gsotx). Only for queues
	// whose Flush has sent the frames when it returns (AF_XDP copy
	// mode), or a flow's segments could overtake each other.
	Segmenter interface {
		// TSO tells whether the interface takes segments whole now.
		TSO() bool
		Send(gsotx.TCP) error
	}
	// OnResolve is called with the target of every ARP request and IPv6
	// neighbour solicitation the netstack would send; the endpoint sends
	// none, since the answers would go to the kernel, which owns
	// neighbour resolution. Hand the kernel's answer back with Resolved.
	OnResolve func(target tcpip.Address)
	// Interceptor, when set, sees the TCP traffic before the netstack
	// and the wire do.
	Interceptor Interceptor
}

// Interceptor sees the traffic where the netstack meets the wire: the
// SYN proxy (userstack/synproxy) answers SYNs and translates sequence
// numbers there.
type Interceptor interface {
	// Received sees each received frame with a valid checksum before
	// the netstack does, and may change it in place. It drops the frame
	// (one the netstack would drop anyway then costs no copy), and may
	// answer it with a frame of n bytes written into answer
	// (AnswerSize bytes long): a batch's answers leave together, on the
	// queue it came from.
	Received(frame, answer []byte) (drop bool, n int)
	// Sending sees the IP and TCP headers of each TCP packet the
	// netstack sends, before anything else reads them, and may change
	// them in place; partialChecksum says the TCP checksum covers the
	// pseudo-header only, for the endpoint to finish. It keeps the
	// packet off the wire by returning false.
	Sending(ip, tcp []byte, partialChecksum bool) (send bool)
}

// AnswerSize is the room an Interceptor has for an answer: a TCP
// segment with a few options.
const AnswerSize = 128

// batchSize bounds how many frames one Receive hands up.
const batchSize = 64

// Endpoint is the link endpoint of one interface.
type Endpoint struct {
	queues []Queue
	opts   Options
	addr   tcpip.LinkAddress
	mtu    atomic.Uint32

	mu         sync.RWMutex
	dispatcher stack.NetworkDispatcher
	// solicitors maps an IPv6 target the netstack solicited to the
	// address it solicited from, where the advertisement must go.
	solicitors map[tcpip.Address]tcpip.Address
	acks       *delayedACKs
	zero       *zeroWindows
	wg         sync.WaitGroup
	// tap is the capture's, if one runs: one load per frame otherwise.
	tap atomic.Pointer[tapped]
	// secure is the PSP gateway's, if one runs: loaded once per batch.
	secure atomic.Pointer[secured]
}

var (
	_ stack.LinkEndpoint = (*Endpoint)(nil)
	_ stack.GSOEndpoint  = (*Endpoint)(nil)
)

// New returns an endpoint over queues; receiving starts when the
// netstack attaches it.
func New(queues []Queue, opts Options) *Endpoint {
	opts.Stats = opts.Stats.FillIn()
	e := &Endpoint{queues: queues, opts: opts, addr: tcpip.LinkAddress(opts.MAC), solicitors: map[tcpip.Address]tcpip.Address{}, zero: newZeroWindows()}
	e.mtu.Store(opts.MTU)
	e.acks = newDelayedACKs(func(acks []*outPacket) { e.send(acks) })
	return e
}

func (e *Endpoint) Attach(d stack.NetworkDispatcher) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if d == nil {
		if e.dispatcher != nil {
			for _, q := range e.queues {
				q.Stop()
			}
			e.dispatcher = nil
		}
		return
	}
	if e.dispatcher != nil {
		return
	}
	e.dispatcher = d
	for i, q := range e.queues {
		e.wg.Add(1)
		go func() {
			defer e.wg.Done()
			e.receive(i, q, d)
		}()
	}
}

// receive is a queue's receive loop: it drains the RX ring in batches
// and parks in Wait when it runs dry. It does not busy-poll: measured
// on two shared cores, spinning even 50us after the last frame doubled
// the ping-pong p50 (88 against 49us), taking the CPU the peer needed.
func (e *Endpoint) receive(qi int, q Queue, d stack.NetworkDispatcher) {
	var g gro.GRO
	g.Init(e.opts.GRO)
	g.Dispatcher = d
	enqueue := func(frame []byte) {
		if pkt := e.parse(frame); pkt != nil {
			g.Enqueue(pkt)
			pkt.DecRef()
		}
	}
	answers := newAnswers()
	var sec *secured // this batch's
	deliver := func(frame []byte) {
		if t := e.tap.Load(); t != nil {
			t.Tapped(qi, false, frame)
		}
		if sec != nil && secureFrame(frame) {
			sec.Received(qi, frame)
			return
		}
		if !e.opts.TrustChecksums && !checksumsValid(frame, &e.opts.Stats) {
			return
		}
		if e.opts.Interceptor != nil {
			drop, n := e.opts.Interceptor.Received(frame, answers.next())
			answers.add(n)
			if drop {
				return
			}
		}
		if ack := e.zero.ackFor(frame); ack != nil {
			enqueue(ack)
		}
		enqueue(frame)
	}
	for {
		sec = e.secure.Load()
		if q.Receive(batchSize, deliver) > 0 {
			if sec != nil {
				sec.Flush(qi)
			}
			answers.send(e, qi)
			flushGRO(&g)
			stagetime.Mark(stagetime.RxDelivered)
			continue
		}
		if !q.Wait() {
			return
		}
		stagetime.Mark(stagetime.RxWake)
	}
}

// answers are the Interceptor's answers to a batch of received frames.
type answers struct {
	buf  []byte
	lens []int
	// write hands answer i to Transmit: made once, since a closure made
	// per batch would be garbage per batch.
	write func(i int, buf []byte) (int, afxdp.Checksum)
}

func newAnswers() *answers {
	a := &answers{}
	a.write = func(i int, buf []byte) (int, afxdp.Checksum) {
		n := a.lens[i]
		if n > len(buf) {
			return n, afxdp.Checksum{}
		}
		return copy(buf, a.buf[i*AnswerSize:i*AnswerSize+n]), afxdp.Checksum{}
	}
	return a
}

// next is the room for the next answer.
func (a *answers) next() []byte {
	off := len(a.lens) * AnswerSize
	if len(a.buf) < off+AnswerSize {
		a.buf = append(a.buf, make([]byte, AnswerSize)...)
	}
	return a.buf[off : off+AnswerSize]
}

// add takes the answer of n bytes written into next, if any.
func (a *answers) add(n int) {
	if n > 0 {
		a.lens = append(a.lens, n)
	}
}

// send transmits the answers on e's queue q in one batch. What the TX
// ring cannot take is dropped there, and counted.
func (a *answers) send(e *Endpoint, q int) {
	if len(a.lens) == 0 {
		return
	}
	e.transmit(q, len(a.lens), a.write)
	a.lens = a.lens[:0]
}

// groBucketSize is how many packets a bucket of gro.GRO holds (its
// unexported groBucketSize).
const groBucketSize = 8

// flushGRO delivers every packet g holds. gro.GRO.Flush delivers only
// the first of each bucket: it steps to the next packet through the list
// link that removing the first has just cleared. The rest waited for the
// next batch of their queue, which may never come while the peer waits
// for them. Each Flush empties a bucket by at least one packet.
func flushGRO(g *gro.GRO) {
	for range groBucketSize {
		g.Flush()
	}
}

// parse copies a frame out of the UMEM into a packet for the netstack.
func (e *Endpoint) parse(frame []byte) *stack.PacketBuffer {
	if len(frame) < header.EthernetMinimumSize {
		return nil
	}
	pkt := stack.NewPacketBuffer(stack.PacketBufferOptions{Payload: buffer.MakeWithData(frame)})
	eth, _ := pkt.LinkHeader().Consume(header.EthernetMinimumSize)
	pkt.NetworkProtocolNumber = header.Ethernet(eth).Type()
	// Checked (checksumsValid) or trusted: GRO need not check again.
	pkt.RXChecksumValidated = true
	return pkt
}

// Stop ends receiving and waits for the receive loops to return. Call it
// before closing the netstack: a loop delivering a packet may need the
// stack's lock, which the stack holds while it waits for the endpoint.
func (e *Endpoint) Stop() {
	e.acks.stop()
	for _, q := range e.queues {
		q.Stop()
	}
	e.wg.Wait()
}

func (e *Endpoint) IsAttached() bool {
	e.mu.RLock()
	defer e.mu.RUnlock()
	return e.dispatcher != nil
}

// MTU follows the interface's (SetMTU), read by the netstack as it
// sizes each packet.
func (e *Endpoint) MTU() uint32       { return e.mtu.Load() }
func (e *Endpoint) SetMTU(mtu uint32) { e.mtu.Store(mtu) }

func (e *Endpoint) MaxHeaderLength() uint16                 { return header.EthernetMinimumSize }
func (e *Endpoint) LinkAddress() tcpip.LinkAddress          { return e.addr }
func (e *Endpoint) SetLinkAddress(addr tcpip.LinkAddress)   { e.addr = addr }
func (e *Endpoint) ARPHardwareType() header.ARPHardwareType { return header.ARPHardwareEther }
func (e *Endpoint) Wait()                                   { e.wg.Wait() }
func (e *Endpoint) Close()                                  {}
func (e *Endpoint) SetOnCloseAction(func())                 {}

// Capabilities: the netstack resolves neighbours (from the kernel's
// table, see OnResolve) and computes every checksum it sends, since an
// AF_XDP frame leaves exactly as written. It checks no received
// checksum: the endpoint has (checksum.go).
func (e *Endpoint) Capabilities() stack.LinkEndpointCapabilities {
	return stack.CapabilityResolutionRequired | stack.CapabilityRXChecksumOffload
}

// GSOMaxSize and SupportedGSO offer the netstack host GSO: TCP hands
// over segments of up to 64 KiB with partial checksums, which the
// endpoint cuts into frames (segment.go).
func (e *Endpoint) GSOMaxSize() uint32 { return 1 << 16 }

func (e *Endpoint) SupportedGSO() stack.SupportedGSO { return stack.HostGSOSupported }

func (e *Endpoint) AddHeader(pkt *stack.PacketBuffer) {
	eth := header.Ethernet(pkt.LinkHeader().Push(header.EthernetMinimumSize))
	eth.Encode(&header.EthernetFields{
		SrcAddr: pkt.EgressRoute.LocalLinkAddress,
		DstAddr: pkt.EgressRoute.RemoteLinkAddress,
		Type:    pkt.NetworkProtocolNumber,
	})
}

func (e *Endpoint) ParseHeader(pkt *stack.PacketBuffer) bool {
	_, ok := pkt.LinkHeader().Consume(header.EthernetMinimumSize)
	return ok
}

// WritePackets sends a batch, each packet on the queue its flow hash
// picks, so that a flow's segments never overtake each other. Pure ACKs
// may wait for the next packet (delayedACKs).
func (e *Endpoint) WritePackets(pkts stack.PacketBufferList) (int, tcpip.Error) {
	stagetime.Mark(stagetime.TxWrite)
	out := make([]*outPacket, 0, pkts.Len())
	for _, pkt := range pkts.AsSlice() {
		if !e.solicitation(pkt) && e.leaves(pkt) {
			p := newOutPacket(pkt)
			e.zero.sent(p)
			out = append(out, p)
		}
	}
	unsent := 0
	for _, p := range e.send(e.acks.hold(out)) {
		if !p.held {
			unsent++
		}
	}
	if unsent != 0 {
		return pkts.Len() - unsent, &tcpip.ErrNoBufferSpace{}
	}
	return pkts.Len(), nil
}

// send transmits packets on their queues and returns those it could not
// send whole. It drops the references of the held ones.
func (e *Endpoint) send(packets []*outPacket) (unsent []*outPacket) {
	byQueue := make([][]frame, len(e.queues))
	transmit := func(q int) {
		frames := byQueue[q]
		if len(frames) == 0 {
			return
		}
		offload := e.queues[q].OffloadsChecksum()
		n, _ := e.transmit(q, len(frames), func(i int, buf []byte) (int, afxdp.Checksum) {
			return frames[i].pkt.write(buf, frames[i].seg, offload)
		})
		// A packet is sent once its last frame is.
		for _, f := range frames[n:] {
			if f.seg == f.pkt.segs-1 {
				unsent = append(unsent, f.pkt)
			}
		}
		byQueue[q] = frames[:0]
	}
	for _, p := range packets {
		q := 0
		if len(e.queues) > 1 {
			q = int(p.pkt.Hash % uint32(len(e.queues)))
		}
		if p.segs > 1 && e.opts.Segmenter != nil && e.opts.Segmenter.TSO() {
			// The flow's frames before it go first; while they cannot
			// (the queue counts and logs why), neither can it go aside.
			transmit(q)
			if e.queues[q].Flush() == nil && e.opts.Segmenter.Send(p.gso()) == nil {
				if t := e.tap.Load(); t != nil {
					t.Tapped(q, true, bytes.Join(p.views, nil))
				}
				continue
			}
		}
		for seg := range p.segs {
			byQueue[q] = append(byQueue[q], frame{pkt: p, seg: seg})
		}
	}
	for q := range byQueue {
		transmit(q)
	}
	for _, p := range packets {
		if p.held {
			p.pkt.DecRef()
		}
	}
	return unsent
}

// transmit sends n frames on queue q (Queue.Transmit), showing the tap
// each frame as it is written.
func (e *Endpoint) transmit(q, n int, write func(i int, buf []byte) (int, afxdp.Checksum)) (int, error) {
	if t := e.tap.Load(); t != nil {
		w := write
		write = func(i int, buf []byte) (int, afxdp.Checksum) {
			l, csum := w(i, buf)
			if l <= len(buf) { // else not written: too long for buf
				t.Tapped(q, true, buf[:l])
			}
			return l, csum
		}
	}
	return e.queues[q].Transmit(n, write)
}

// Tap sees every frame the endpoint receives and sends, for a capture.
type Tap interface {
	// Tapped gets a frame received (out false) or sent on queue. It
	// copies what it keeps before it returns, and never blocks. Sent
	// frames may carry a partial checksum that the kernel finishes.
	Tapped(queue int, out bool, frame []byte)
}

// tapped holds a Tap for an atomic pointer.
type tapped struct{ Tap }

// StartTap shows t every frame from now on; false when another tap is
// on already.
func (e *Endpoint) StartTap(t Tap) bool { return e.tap.CompareAndSwap(nil, &tapped{t}) }

// StopTap takes t off, if it is on.
func (e *Endpoint) StopTap(t Tap) {
	if cur := e.tap.Load(); cur != nil && cur.Tap == t {
		e.tap.CompareAndSwap(cur, nil)
	}
}

// leaves tells whether pkt goes to the wire: the Interceptor sees every
// TCP packet and may keep it back.
func (e *Endpoint) leaves(pkt *stack.PacketBuffer) bool {
	if e.opts.Interceptor == nil || pkt.TransportProtocolNumber != header.TCPProtocolNumber {
		return true
	}
	gso := pkt.GSOOptions
	partial := gso.Type != stack.GSONone && gso.NeedsCsum
	return e.opts.Interceptor.Sending(pkt.NetworkHeader().Slice(), pkt.TransportHeader().Slice(), partial)
}

// Inject hands the netstack a frame as if it had been received, for an
// Interceptor's own packets. Not from inside WritePackets, where the
// netstack holds locks that delivering takes.
func (e *Endpoint) Inject(frame []byte) {
	e.mu.RLock()
	d := e.dispatcher
	e.mu.RUnlock()
	if d == nil {
		return
	}
	if pkt := e.parse(frame); pkt != nil {
		d.DeliverNetworkPacket(pkt.NetworkProtocolNumber, pkt)
		pkt.DecRef()
	}
}

// solicitation tells whether pkt is the netstack asking for a link
// address, an ARP request or an IPv6 neighbour solicitation, and hands
// its target to OnResolve instead of the wire.
func (e *Endpoint) solicitation(pkt *stack.PacketBuffer) bool {
	switch pkt.NetworkProtocolNumber {
	case header.ARPProtocolNumber:
		h := header.ARP(pkt.NetworkHeader().Slice())
		if h.IsValid() && h.Op() == header.ARPRequest && e.opts.OnResolve != nil {
			e.opts.OnResolve(tcpip.AddrFrom4Slice(h.ProtocolAddressTarget()))
		}
		return true
	case header.IPv6ProtocolNumber:
		ip := header.IPv6(pkt.NetworkHeader().Slice())
		if len(ip) < header.IPv6MinimumSize || tcpip.TransportProtocolNumber(ip.NextHeader()) != header.ICMPv6ProtocolNumber {
			return false
		}
		icmp := header.ICMPv6(append(pkt.TransportHeader().Slice(), pkt.Data().AsRange().ToSlice()...))
		if len(icmp) < header.ICMPv6NeighborSolicitMinimumSize || icmp.Type() != header.ICMPv6NeighborSolicit {
			return false
		}
		target := header.NDPNeighborSolicit(icmp.MessageBody()).TargetAddress()
		e.mu.Lock()
		e.solicitors[target] = ip.SourceAddress()
		e.mu.Unlock()
		if e.opts.OnResolve != nil {
			e.opts.OnResolve(target)
		}
		return true
	}
	return false
}

// Resolved hands the netstack the kernel's answer for a neighbour it
// asked about (OnResolve), in the shape of the ARP reply or neighbour
// advertisement it waits for: that completes its pending entry and sends
// what it held back, where a static entry would replace the pending one
// and fail those packets.
func (e *Endpoint) Resolved(addr tcpip.Address, mac tcpip.LinkAddress) {
	e.mu.Lock()
	d := e.dispatcher
	solicitor, solicited := e.solicitors[addr]
	delete(e.solicitors, addr)
	e.mu.Unlock()
	if d == nil {
		return
	}
	var (
		b     []byte
		proto tcpip.NetworkProtocolNumber
	)
	switch {
	case addr.Len() == header.IPv4AddressSize:
		h := header.ARP(make([]byte, header.ARPSize))
		h.SetIPv4OverEthernet()
		h.SetOp(header.ARPReply)
		copy(h.HardwareAddressSender(), mac)
		copy(h.ProtocolAddressSender(), addr.AsSlice())
		copy(h.HardwareAddressTarget(), e.addr)
		b, proto = h, header.ARPProtocolNumber
	case solicited:
		b, proto = neighbourAdvert(addr, solicitor, mac), header.IPv6ProtocolNumber
	default:
		return
	}
	pkt := stack.NewPacketBuffer(stack.PacketBufferOptions{Payload: buffer.MakeWithData(b)})
	defer pkt.DecRef()
	d.DeliverNetworkPacket(proto, pkt)
}

// neighbourAdvert builds the solicited advertisement of target at mac,
// sent to dst, as RFC 4861 has it (hop limit 255, override set).
func neighbourAdvert(target, dst tcpip.Address, mac tcpip.LinkAddress) []byte {
	size := header.ICMPv6NeighborAdvertMinimumSize + header.NDPLinkLayerAddressSize
	b := make([]byte, header.IPv6MinimumSize+size)
	header.IPv6(b).Encode(&header.IPv6Fields{
		PayloadLength:     uint16(size),
		TransportProtocol: header.ICMPv6ProtocolNumber,
		HopLimit:          header.NDPHopLimit,
		SrcAddr:           target,
		DstAddr:           dst,
	})
	icmp := header.ICMPv6(b[header.IPv6MinimumSize:])
	icmp.SetType(header.ICMPv6NeighborAdvert)
	na := header.NDPNeighborAdvert(icmp.MessageBody())
	na.SetSolicitedFlag(true)
	na.SetOverrideFlag(true)
	na.SetTargetAddress(target)
	na.Options().Serialize(header.NDPOptionsSerializer{header.NDPTargetLinkLayerAddressOption(mac)})
	icmp.SetChecksum(header.ICMPv6Checksum(header.ICMPv6ChecksumParams{Header: icmp, Src: target, Dst: dst}))
	return b
}
