package userstack

import (
	"cmp"
	"maps"
	"net/netip"
	"slices"
	"sync"
	"time"

	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/stack"
	"gvisor.dev/gvisor/pkg/tcpip/transport"
	"gvisor.dev/gvisor/pkg/tcpip/transport/tcp"
	"gvisor.dev/gvisor/pkg/tcpip/transport/udp"

	"github.com/xdpstack/xdpstack/userstack/appns"
)

// Transports as VPP's `show session` tags them.
const (
	TransportTCP  = "T"
	TransportUDP  = "U"
	TransportTLS  = "TLS"
	TransportQUIC = "Q"
	// TransportCutThrough is for sessions joined in memory.
	TransportCutThrough = "CT"
)

// DefaultNamespace is the namespace of the sessions of no app.
const DefaultNamespace = appns.Default

// Session is a listener or a connection of the netstack, as the sessions
// view shows it.
type Session struct {
	// Queue is the AF_XDP queue the link endpoint sends the session's
	// packets on: its transmit hash modulo the queues, as
	// link.Endpoint.send picks it (UDP packets carry no hash: queue 0).
	// The RX queue is the NIC's choice (RSS), which the userstack does
	// not see per session.
	Queue int `json:"queue"`
	// Index is the session's place among its queue's in this snapshot:
	// listeners first, then by local and remote endpoint.
	Index int `json:"index"`
	// Transport is T, U, TLS, Q or CT.
	Transport string         `json:"transport"`
	Protocol  string         `json:"protocol"`
	Local     netip.AddrPort `json:"local"`
	// Remote is unset for a listener.
	Remote netip.AddrPort `json:"remote"`
	State  SessionState   `json:"state"`
	// TCPState is the netstack's own name of a TCP session's state
	// (ESTABLISHED, CLOSE-WAIT...).
	TCPState string `json:"tcp_state,omitempty"`
	// RxFifo are the bytes received that the app has not read (for UDP,
	// the first waiting datagram's, as FIONREAD says); TxFifo, those the
	// app wrote that the peer has not acknowledged.
	RxFifo    int    `json:"rx_fifo"`
	TxFifo    int    `json:"tx_fifo"`
	Namespace string `json:"namespace"`
	// App is the app that opened the session, when it said (see
	// AppOptions.Name).
	App string `json:"app,omitempty"`
	// TCP are the connection's variables, when asked for.
	TCP *TCPVars `json:"tcp,omitempty"`
}

// TCPVars are a TCP connection's variables (RFC 9293 names).
type TCPVars struct {
	SndUna uint32 `json:"snd_una"`
	SndNxt uint32 `json:"snd_nxt"`
	RcvNxt uint32 `json:"rcv_nxt"`
	// SndWnd is the peer's window, RcvWnd the one we advertised, in bytes
	// after scaling; the scales are the shifts each side applies.
	SndWnd      uint32 `json:"snd_wnd"`
	RcvWnd      uint32 `json:"rcv_wnd"`
	SndWndScale uint8  `json:"snd_wscale"`
	RcvWndScale uint8  `json:"rcv_wscale"`
	// MSS is the largest payload a segment carries.
	MSS int `json:"mss"`
	// Cwnd and Ssthresh are in segments.
	Cwnd     int           `json:"cwnd"`
	Ssthresh int           `json:"ssthresh"`
	SRTT     time.Duration `json:"srtt_ns"`
	RTTVar   time.Duration `json:"rttvar_ns"`
	RTO      time.Duration `json:"rto_ns"`
	// Retransmits are the segments sent again; Timeouts, the times the
	// RTO expired.
	Retransmits uint64 `json:"retransmits"`
	Timeouts    uint64 `json:"timeouts"`
	// SACKBlocks are the blocks above RcvNxt we have and tell the peer.
	SACKBlocks []SACKBlock `json:"sack_blocks,omitempty"`
}

// SACKBlock is a received range of sequence numbers, [Start, End).
type SACKBlock struct {
	Start uint32 `json:"start"`
	End   uint32 `json:"end"`
}

// SessionFilter chooses sessions; a zero field chooses all.
type SessionFilter struct {
	Namespace string
	State     SessionState
	// Protocol is "tcp" or "udp".
	Protocol string
	// TCPVars asks for each TCP session's variables.
	TCPVars bool
}

func (f SessionFilter) match(s Session) bool {
	return (f.Namespace == "" || f.Namespace == s.Namespace) &&
		(f.State == "" || f.State == s.State) &&
		(f.Protocol == "" || f.Protocol == s.Protocol)
}

// label is what an app said of an endpoint it opened, and its
// namespace.
type label struct {
	app       string
	transport string
	namespace string
}

// held are the endpoints apps hold: listeners, UDP sockets and TCP
// connections, with what their apps said of them. A TCP connection the
// transport closed (a reset, a time-out) leaves the netstack's tables
// but stays here, so that the view shows it until the app closes it,
// as VPP's does.
type held struct {
	mu  sync.Mutex
	eps map[tcpip.Endpoint]label
}

func (h *held) add(ep tcpip.Endpoint, l label) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.eps == nil {
		h.eps = map[tcpip.Endpoint]label{}
	}
	h.eps[ep] = l
}

func (h *held) remove(ep tcpip.Endpoint) {
	h.mu.Lock()
	defer h.mu.Unlock()
	delete(h.eps, ep)
}

func (h *held) copy() map[tcpip.Endpoint]label {
	h.mu.Lock()
	defer h.mu.Unlock()
	return maps.Clone(h.eps)
}

// ListSessions lists the netstack's listeners and connections, and the
// cut-through ones (on queue 0, which they never use), that f chooses,
// by queue and index.
func (s *Stack) ListSessions(f SessionFilter) []Session {
	apps := s.held.copy()
	unseen := maps.Clone(apps)
	var all []Session
	add := func(ep tcpip.Endpoint, l label) {
		if sess, ok := s.session(ep, l, f.TCPVars); ok {
			all = append(all, sess)
		}
	}
	for _, ep := range s.stack.RegisteredEndpoints() {
		e, ok := ep.(tcpip.Endpoint)
		if !ok {
			continue
		}
		l, mine := apps[e]
		delete(unseen, e)
		if !mine && isTCP(e) && !isListening(e) {
			// A connection not yet accepted, or one an app closed:
			// the listener's app's.
			l = s.listenerLabel(e, apps)
		}
		add(e, l)
	}
	for e, l := range unseen {
		add(e, l)
	}
	all = append(all, s.localSessions()...)
	slices.SortFunc(all, func(a, b Session) int {
		return cmp.Or(cmp.Compare(a.Queue, b.Queue),
			boolOrder(a.State != StateListening, b.State != StateListening),
			cmp.Compare(a.Protocol, b.Protocol),
			a.Local.Compare(b.Local), a.Remote.Compare(b.Remote))
	})
	chosen := all[:0]
	for i := range all {
		if i > 0 && all[i].Queue == all[i-1].Queue {
			all[i].Index = all[i-1].Index + 1
		}
		if f.match(all[i]) {
			chosen = append(chosen, all[i])
		}
	}
	return chosen
}

func boolOrder(a, b bool) int {
	switch {
	case a == b:
		return 0
	case a:
		return 1
	}
	return -1
}

func isTCP(ep tcpip.Endpoint) bool {
	_, ok := ep.(*tcp.Endpoint)
	return ok
}

func isListening(ep tcpip.Endpoint) bool {
	t, ok := ep.(*tcp.Endpoint)
	return ok && t.EndpointState() == tcp.StateListen
}

// listenerLabel is the label of the listener a TCP connection came
// through: the held listener on its local port and address, or on its
// port and no address.
func (s *Stack) listenerLabel(ep tcpip.Endpoint, apps map[tcpip.Endpoint]label) label {
	id := ep.Info().(*stack.TransportEndpointInfo).ID
	var wildcard label
	for e, l := range apps {
		lid := e.Info().(*stack.TransportEndpointInfo).ID
		if !isListening(e) || lid.LocalPort != id.LocalPort {
			continue
		}
		if lid.LocalAddress == id.LocalAddress {
			return l
		}
		if lid.LocalAddress.BitLen() == 0 || lid.LocalAddress.Unspecified() {
			wildcard = l
		}
	}
	return wildcard
}

// session describes ep; ok is false for an endpoint of another kind
// than TCP or UDP.
func (s *Stack) session(ep tcpip.Endpoint, l label, tcpVars bool) (Session, bool) {
	info, ok := ep.Info().(*stack.TransportEndpointInfo)
	if !ok {
		return Session{}, false
	}
	sess := Session{
		Local:     addrPort(info.ID.LocalAddress, info.ID.LocalPort),
		Remote:    addrPort(info.ID.RemoteAddress, info.ID.RemotePort),
		Namespace: cmp.Or(l.namespace, DefaultNamespace),
		App:       l.app,
		Transport: l.transport,
	}
	if rx, err := ep.GetSockOptInt(tcpip.ReceiveQueueSizeOption); err == nil {
		sess.RxFifo = rx
	}
	switch e := ep.(type) {
	case *tcp.Endpoint:
		st := e.EndpointState()
		sess.Protocol, sess.State, sess.TCPState = "tcp", tcpSessionState(st), st.String()
		sess.Transport = cmp.Or(sess.Transport, TransportTCP)
		if hash, ok := tcpFields.txHash(e); ok && len(s.sockets) > 1 {
			sess.Queue = int(hash % uint32(len(s.sockets)))
		}
		in, ok := tcpFields.read(e)
		if ok {
			sess.TxFifo = in.sendBuffered
		}
		if tcpVars && ok {
			sess.TCP = tcpVarsOf(e, in)
		}
	default:
		if info.TransProto != udp.ProtocolNumber {
			return Session{}, false
		}
		sess.Protocol, sess.State = "udp", udpSessionState(transport.DatagramEndpointState(ep.State()))
		sess.Transport = cmp.Or(sess.Transport, TransportUDP)
	}
	return sess, true
}

func tcpVarsOf(ep *tcp.Endpoint, in tcpInternals) *TCPVars {
	var info tcpip.TCPInfoOption
	ep.GetSockOpt(&info)
	stats := ep.Stats().(*tcp.Stats)
	snd, rcv := in.sender, in.receiver
	v := &TCPVars{
		SndUna: uint32(snd.SndUna), SndNxt: uint32(snd.SndNxt), RcvNxt: uint32(rcv.RcvNxt),
		SndWnd: uint32(snd.SndWnd), RcvWnd: uint32(rcv.RcvNxt.Size(rcv.RcvAcc)),
		SndWndScale: snd.SndWndScale, RcvWndScale: rcv.RcvWndScale,
		MSS: snd.MaxPayloadSize, Cwnd: snd.SndCwnd, Ssthresh: snd.Ssthresh,
		SRTT: info.RTT, RTTVar: info.RTTVar, RTO: snd.RTO,
		Retransmits: stats.SendErrors.Retransmits.Value(), Timeouts: stats.SendErrors.Timeouts.Value(),
	}
	for _, b := range in.sack {
		v.SACKBlocks = append(v.SACKBlocks, SACKBlock{uint32(b.Start), uint32(b.End)})
	}
	return v
}

func addrPort(a tcpip.Address, port uint16) netip.AddrPort {
	switch {
	case a.BitLen() == 0 && port == 0:
		return netip.AddrPort{} // no peer
	case a.BitLen() == 0:
		// Any address: [::]:port, which keeps its port in JSON, where
		// an invalid address would lose it.
		return netip.AddrPortFrom(netip.IPv6Unspecified(), port)
	}
	addr, _ := netip.AddrFromSlice(a.AsSlice())
	return netip.AddrPortFrom(addr.Unmap(), port)
}
