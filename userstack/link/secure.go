package link

import (
	"encoding/binary"

	"gvisor.dev/gvisor/pkg/tcpip/header"

	"github.com/xdpstack/xdpstack/userstack/afxdp"
)

// SecurePort is PSP's UDP port: frames of UDP to it go to the Secure
// side, when one is on, instead of the netstack.
const SecurePort = 1000

// Secure is the PSP gateway's receiving side: it takes the frames of
// UDP to SecurePort that the XDP program steered to the userstack.
type Secure interface {
	// Received gets each such frame of a batch received on queue,
	// before any checksum is checked (PSP's ICV covers it). It copies
	// what it keeps before it returns.
	Received(queue int, frame []byte)
	// Flush ends the batch of queue: what Received kept may go on.
	Flush(queue int)
}

// secured holds a Secure for an atomic pointer.
type secured struct{ Secure }

// StartSecure hands s the frames of UDP to SecurePort from the next
// batch on; false when another Secure is on already.
func (e *Endpoint) StartSecure(s Secure) bool {
	return e.secure.CompareAndSwap(nil, &secured{s})
}

// StopSecure takes s off, if it is on: such frames go to the netstack
// again.
func (e *Endpoint) StopSecure(s Secure) {
	if cur := e.secure.Load(); cur != nil && cur.Secure == s {
		e.secure.CompareAndSwap(cur, nil)
	}
}

// Queues is how many queues the endpoint sends and receives on.
func (e *Endpoint) Queues() int { return len(e.queues) }

// Transmit sends n frames that write fills on queue q, as the
// endpoint's own frames go (the tap sees them): for the Secure side's
// sealed frames. It returns how many the TX ring took.
func (e *Endpoint) Transmit(q, n int, write func(i int, buf []byte) (int, afxdp.Checksum)) (int, error) {
	return e.transmit(q, n, write)
}

// secureFrame tells whether frame is IPv4 or IPv6 UDP to SecurePort,
// not a later fragment.
func secureFrame(frame []byte) bool {
	const eth = header.EthernetMinimumSize
	if len(frame) < eth+header.IPv6MinimumSize+header.UDPMinimumSize {
		return false // shorter than any IPv6 one; IPv4 ones are padded past it
	}
	var udp int
	switch binary.BigEndian.Uint16(frame[12:]) {
	case uint16(header.IPv4ProtocolNumber):
		ip := header.IPv4(frame[eth:])
		if ip.Protocol() != uint8(header.UDPProtocolNumber) || ip.FragmentOffset() != 0 {
			return false
		}
		udp = eth + int(ip.HeaderLength())
	case uint16(header.IPv6ProtocolNumber):
		if header.IPv6(frame[eth:]).NextHeader() != uint8(header.UDPProtocolNumber) {
			return false
		}
		udp = eth + header.IPv6MinimumSize
	default:
		return false
	}
	return udp+header.UDPMinimumSize <= len(frame) && binary.BigEndian.Uint16(frame[udp+2:]) == SecurePort
}
