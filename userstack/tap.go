package userstack

import "github.com/xdpstack/xdpstack/userstack/link"

// StartTap shows t every frame the userstack receives and sends on the
// interface, for a capture; false when another's tap is on.
func (s *Stack) StartTap(t link.Tap) bool { return s.link.StartTap(t) }

// StopTap takes t off.
func (s *Stack) StopTap(t link.Tap) { s.link.StopTap(t) }
