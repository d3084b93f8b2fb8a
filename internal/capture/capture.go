// Package capture is what `xdpstack capture` shows an operator: packets
// at three points of an interface, each with why it is where it is.
//
//   - At the XDP hook (XDP): the samples of the XDP program, one packet
//     in 2^N of every verdict or every packet while the capture asks for
//     it, read through the interface's pins, each with its verdict,
//     reason and deciding rule.
//   - At the userstack's link endpoint (Tap, Stream): the frames the
//     userstack receives and sends, which the daemon copies for a
//     capture and streams to it over its control socket.
//   - At the PSP gateway (PSPTap, Stream): the inner packets, IP without
//     Ethernet, that it seals and opens, each with its SPI, streamed
//     the same way.
//
// A Filter picks packets by verdict, reason, rule, protocol, host and
// port (its syntax is in ParseFilter); a Writer writes them to pcapng
// with a comment each that says why, and Line summarizes one on a line.
//
// It is a package of its own, not part of the daemon's, since a capture
// at the XDP hook runs without one, and not of cmd/xdpstack, which only
// reads flags and prints.
package capture

import (
	"fmt"
	"time"

	"github.com/xdpstack/xdpstack/maps"
)

// Point is where a packet was captured.
type Point int

const (
	// PointXDP is the XDP hook: every packet arriving on the interface.
	PointXDP Point = iota
	// PointUserstack is the userstack's link endpoint, both ways.
	PointUserstack
	// PointPSP is the PSP gateway's clear side, both ways: inner IP
	// packets, with no Ethernet header.
	PointPSP
)

var pointNames = []string{"xdp", "userstack", "psp"}

func (p Point) String() string { return pointNames[p] }

// ParsePoint reads xdp, userstack or psp.
func ParsePoint(s string) (Point, error) {
	for p, name := range pointNames {
		if s == name {
			return Point(p), nil
		}
	}
	return 0, fmt.Errorf("unknown point %q (want xdp, userstack or psp)", s)
}

// Packet is one captured frame.
type Packet struct {
	Time  time.Time
	Point Point
	// Queue is the RX queue it came on, or the TX queue the userstack
	// sent it on; none at PointPSP.
	Queue int
	// Out says the userstack or the PSP gateway sent it; a packet at
	// the XDP hook, or one they received, is in.
	Out bool
	// SPI is the PSP SPI an inner packet is sealed or was received
	// under, at PointPSP; Sampled says its PSP header has the S bit.
	SPI     uint32
	Sampled bool
	// Verdict and RuleID are the XDP program's, at PointXDP: RuleID is
	// the session rule that decided the verdict, 0 for none.
	Verdict maps.Verdict
	RuleID  uint32
	// Len is the frame's whole length; Data its first bytes, as many as
	// the snap length let through: an Ethernet frame, or at PointPSP an
	// IP packet.
	Len  int
	Data []byte
}
