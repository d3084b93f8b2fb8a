package userstack

import (
	"gvisor.dev/gvisor/pkg/tcpip/transport"
	"gvisor.dev/gvisor/pkg/tcpip/transport/tcp"
)

// SessionState is a session's state by the names of VPP's session layer
// (session_state_t), so that `xdpstack sessions` reads as `show session`.
type SessionState string

// The VPP session states, in the order a session goes through them.
const (
	StateCreated          SessionState = "created"
	StateListening        SessionState = "listening"
	StateConnecting       SessionState = "connecting"
	StateAccepting        SessionState = "accepting"
	StateReady            SessionState = "ready"
	StateOpened           SessionState = "opened"
	StateTransportClosing SessionState = "transport-closing"
	StateClosing          SessionState = "closing"
	StateAppClosed        SessionState = "app-closed"
	StateTransportClosed  SessionState = "transport-closed"
	StateClosed           SessionState = "closed"
	StateTransportDeleted SessionState = "transport-deleted"
)

// SessionStates are all the states, in VPP's order.
var SessionStates = []SessionState{
	StateCreated, StateListening, StateConnecting, StateAccepting, StateReady, StateOpened,
	StateTransportClosing, StateClosing, StateAppClosed, StateTransportClosed, StateClosed, StateTransportDeleted,
}

// tcpSessionState is the one mapping from the netstack's TCP states to
// VPP's. VPP's session layer sits between the app and the transport and
// names a state by who has closed what; TCP's state says the same.
//
// Two VPP states have no TCP counterpart: ready (VPP's app has yet to
// confirm an accept; gVisor hands an established connection to Accept
// as it is) and transport-deleted (the transport's state is freed: the
// netstack forgets the endpoint, and the view no longer lists it).
func tcpSessionState(s tcp.EndpointState) SessionState {
	switch s {
	case tcp.StateInitial, tcp.StateBound:
		// An endpoint made, maybe bound, neither listening nor connecting.
		return StateCreated
	case tcp.StateListen:
		return StateListening
	case tcp.StateConnecting, tcp.StateSynSent:
		// An active open: Connect called, the SYN about to go or gone.
		return StateConnecting
	case tcp.StateSynRecv:
		// A passive open: a listener's SYN-ACK sent, the handshake's last
		// ACK awaited.
		return StateAccepting
	case tcp.StateEstablished:
		return StateOpened
	case tcp.StateCloseWait:
		// The peer sent its FIN (half-close); the app has not closed yet.
		return StateTransportClosing
	case tcp.StateFinWait1, tcp.StateFinWait2, tcp.StateClosing:
		// The app closed (or shut down writing) first, and the
		// transport is closing: its FIN awaits an ACK (FIN-WAIT1), the
		// peer's FIN (FIN-WAIT2), or, both FINs crossed, the ACK of
		// ours (CLOSING).
		return StateClosing
	case tcp.StateLastAck:
		// The app closed after the peer did (from CLOSE-WAIT): only the
		// ACK of our FIN is outstanding.
		return StateAppClosed
	case tcp.StateTimeWait:
		// Both sides closed and acknowledged; the transport only lingers
		// for stray segments before it frees the endpoint.
		return StateClosed
	case tcp.StateClose, tcp.StateError:
		// The transport closed under an app that still holds the
		// connection: a reset, a time-out (retransmissions, keepalive,
		// user timeout), or TIME-WAIT ended before the app closed. The
		// view lists it until the app closes it.
		return StateTransportClosed
	}
	return StateCreated
}

// udpSessionState maps a UDP endpoint's state: UDP has no handshake, so
// a bound socket listens and a connected one is open at once.
func udpSessionState(s transport.DatagramEndpointState) SessionState {
	switch s {
	case transport.DatagramEndpointStateBound:
		return StateListening
	case transport.DatagramEndpointStateConnected:
		return StateOpened
	case transport.DatagramEndpointStateClosed:
		return StateClosed
	}
	return StateCreated
}
