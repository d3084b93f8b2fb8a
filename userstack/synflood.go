package userstack

import (
	"sync/atomic"
	"time"

	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/header"
	"gvisor.dev/gvisor/pkg/tcpip/stack"
	"gvisor.dev/gvisor/pkg/tcpip/transport/tcp"
)

// A SYN flood costs the netstack a whole connection per SYN: gVisor's
// half-open connections are full endpoints, made and torn down at about
// 10us each. gVisor answers with SYN cookies, which cost no state, only
// once a listener has as many half-open connections as its backlog;
// but a flood from a peer that answers each SYN-ACK with a reset (as
// any host does from its own address) never gets there, and the SYNs
// pile up in the listener's queue, which gVisor bounds for segments
// with data only: service and memory went with them (1 connect in 40
// within 1s under a 10 s hping3 --flood, 4.6s to recover, 37 to 265 MiB).
//
// So the userstack counts the SYNs that arrive, and while more than
// synFloodRate a second open no connection it answers every SYN with a
// cookie (no window scaling and no SACK for the connections made then,
// which cookies cannot carry), until a second passes below the rate.
// Meanwhile it keeps at most synQueueLimit SYNs waiting for the
// listeners, dropping the rest on arrival: a queue that only grows
// turns an overload into a wait that every legitimate SYN times out
// in, where a bounded one loses the excess only. And it drops resets
// for no connection before they cost a copy, since the flooding peer
// sends as many of those as SYNs.
const (
	synFloodRate  = 10000
	synFloodTick  = 100 * time.Millisecond
	synFloodQuiet = time.Second
	// synQueueLimit SYNs take a listener about 5ms to answer with
	// cookies, and hold a few MiB.
	synQueueLimit = 1024
)

// synFlood is what the userstack knows of the SYNs it receives.
type synFlood struct {
	// syns counts the pure SYNs received.
	syns atomic.Uint64
	// on while SYN cookies are.
	on atomic.Bool
	// admitted counts the SYNs for listeners let in while on, from
	// where answered stood when it came on; shed those dropped.
	admitted, shed atomic.Uint64
}

// answered counts what the listeners made of SYNs while every SYN gets
// a cookie: a SYN-ACK with one, or a drop for a full accept queue.
func (s *Stack) answered() uint64 {
	tcp := s.stack.Stats().TCP
	return tcp.ListenOverflowSynCookieSent.Value() + tcp.ListenOverflowSynDrop.Value() - s.flood.shed.Load()
}

// screen counts the pure SYNs that arrive and, during a flood, drops
// those for a listener that has synQueueLimit waiting already; and it
// drops resets that only a listener would get, which ignores them (RFC
// 9293, 3.10.7.2). It counts what it drops as the netstack would.
func (s *Stack) screen(frame []byte) (drop bool) {
	netProto, id, flags, ok := tcpHeader(frame)
	syn := flags&(header.TCPFlagSyn|header.TCPFlagAck) == header.TCPFlagSyn
	if syn {
		s.flood.syns.Add(1)
	}
	reset := flags&(header.TCPFlagRst|header.TCPFlagSyn) == header.TCPFlagRst
	if !ok || !(reset || syn && s.flood.on.Load()) {
		return false
	}
	ep, ok := s.stack.FindTransportEndpoint(netProto, tcp.ProtocolNumber, id, nicID).(*tcp.Endpoint)
	if !ok || ep.EndpointState() != tcp.StateListen {
		return false
	}
	stats := s.stack.Stats()
	if reset {
		stats.TCP.ValidSegmentsReceived.Increment()
		stats.TCP.ResetsReceived.Increment()
		stats.DroppedPackets.Increment()
		return true
	}
	answered := s.answered()
	if admitted := s.flood.admitted.Load(); admitted < answered {
		// SYNs queued before the cookies came on got them too.
		s.flood.admitted.CompareAndSwap(admitted, answered)
	} else if admitted-answered >= synQueueLimit {
		s.flood.shed.Add(1)
		stats.TCP.ListenOverflowSynDrop.Increment()
		stats.DroppedPackets.Increment()
		return true
	}
	s.flood.admitted.Add(1)
	return false
}

// tcpHeader reads the TCP segment of a received frame: the endpoint it
// is for, seen from the netstack, and its flags. Fragments and IPv6
// extension headers are left alone (ok false).
func tcpHeader(frame []byte) (netProto tcpip.NetworkProtocolNumber, id stack.TransportEndpointID, flags header.TCPFlags, ok bool) {
	if len(frame) < header.EthernetMinimumSize {
		return 0, id, 0, false
	}
	var segment []byte
	switch ip := frame[header.EthernetMinimumSize:]; header.Ethernet(frame).Type() {
	case header.IPv4ProtocolNumber:
		h := header.IPv4(ip)
		if !h.IsValid(len(ip)) || h.TransportProtocol() != header.TCPProtocolNumber || h.More() || h.FragmentOffset() != 0 {
			return 0, id, 0, false
		}
		netProto, segment = header.IPv4ProtocolNumber, ip[h.HeaderLength():h.TotalLength()]
		id.LocalAddress, id.RemoteAddress = h.DestinationAddress(), h.SourceAddress()
	case header.IPv6ProtocolNumber:
		h := header.IPv6(ip)
		if !h.IsValid(len(ip)) || tcpip.TransportProtocolNumber(h.NextHeader()) != header.TCPProtocolNumber {
			return 0, id, 0, false
		}
		netProto, segment = header.IPv6ProtocolNumber, ip[header.IPv6MinimumSize:header.IPv6MinimumSize+int(h.PayloadLength())]
		id.LocalAddress, id.RemoteAddress = h.DestinationAddress(), h.SourceAddress()
	default:
		return 0, id, 0, false
	}
	if len(segment) < header.TCPMinimumSize {
		return 0, id, 0, false
	}
	t := header.TCP(segment)
	id.LocalPort, id.RemotePort = t.DestinationPort(), t.SourcePort()
	return netProto, id, t.Flags(), true
}

// watchSYNs turns SYN cookies on while SYNs that open no connection
// come faster than synFloodRate, and off once a second passes slower.
func (s *Stack) watchSYNs() {
	defer s.wg.Done()
	t := time.NewTicker(synFloodTick)
	defer t.Stop()
	opened := s.stack.Stats().TCP.PassiveConnectionOpenings
	lastSYNs, lastOpened := s.flood.syns.Load(), opened.Value()
	var flooded bool
	var quietSince time.Time
	for {
		select {
		case <-s.done:
			return
		case now := <-t.C:
			syns, open := s.flood.syns.Load(), opened.Value()
			unanswered := int64(syns-lastSYNs) - int64(open-lastOpened)
			lastSYNs, lastOpened = syns, open
			rate := unanswered * int64(time.Second/synFloodTick)
			switch {
			case rate > synFloodRate:
				quietSince = time.Time{}
				if !flooded {
					flooded = s.setSYNCookies(true, rate)
				}
			case flooded && quietSince.IsZero():
				quietSince = now
			case flooded && now.Sub(quietSince) >= synFloodQuiet:
				flooded = !s.setSYNCookies(false, rate)
			}
		}
	}
}

// setSYNCookies turns SYN cookies for every SYN on or off, and tells
// whether it could.
func (s *Stack) setSYNCookies(on bool, rate int64) bool {
	s.flood.admitted.Store(s.answered())
	s.flood.on.Store(on)
	opt := tcpip.TCPAlwaysUseSynCookies(on)
	if err := s.stack.SetTransportProtocolOption(tcp.ProtocolNumber, &opt); err != nil {
		s.flood.on.Store(!on)
		s.log.Warn("cannot switch SYN cookies", "on", on, "err", err)
		return false
	}
	if on {
		s.log.Warn("SYN flood: answering every SYN with a cookie", "unanswered_syns_per_second", rate)
	} else {
		s.log.Info("SYN flood over: full handshakes again")
	}
	return true
}
