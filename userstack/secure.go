package userstack

import (
	"github.com/xdpstack/xdpstack/loader"
	"github.com/xdpstack/xdpstack/userstack/afxdp"
	"github.com/xdpstack/xdpstack/userstack/link"
)

// Interface is the interface the stack serves, as it was at Start.
func (s *Stack) Interface() loader.Interface { return s.iface }

// StartSecure hands sec the received frames of UDP to port 1000 (PSP)
// instead of the netstack; false when another's is on.
func (s *Stack) StartSecure(sec link.Secure) bool { return s.link.StartSecure(sec) }

// StopSecure takes sec off.
func (s *Stack) StopSecure(sec link.Secure) { s.link.StopSecure(sec) }

// Queues is how many AF_XDP queues the stack sends and receives on.
func (s *Stack) Queues() int { return s.link.Queues() }

// Transmit sends n frames that write fills on queue q's TX ring, as the
// netstack's go (a capture sees them); it returns how many the ring took.
func (s *Stack) Transmit(q, n int, write func(i int, buf []byte) (int, afxdp.Checksum)) (int, error) {
	return s.link.Transmit(q, n, write)
}
