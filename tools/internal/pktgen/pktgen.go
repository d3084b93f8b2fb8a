// Package pktgen sends one frame over and over out of a host's interface,
// for benchmarks. The kernel has no pktgen module here, and it refuses
// BPF_PROG_TEST_RUN's live frames (BPF_F_TEST_XDP_LIVE_FRAMES fails with
// EPERM), so the frames leave through the TX ring of an AF_XDP socket,
// which every driver takes in copy mode.
package pktgen

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"time"

	"github.com/xdpstack/xdpstack/internal/testing/hosts"
	"github.com/xdpstack/xdpstack/internal/testing/packet"
	"github.com/xdpstack/xdpstack/userstack/afxdp"
	"github.com/xdpstack/xdpstack/userstack/psp"
)

// FrameSize is the classic minimum: 64 bytes with the Ethernet header.
const FrameSize = 64

// Generator sends one frame over and over from one host to another:
// 64 bytes of UDP, or another the caller builds.
type Generator struct {
	sock  *afxdp.Socket
	frame []byte
}

// New opens a generator that sends from host from to UDP port dstPort of
// host to, over the veth between them, on from's queue 0.
func New(from, to *hosts.Host, dstPort uint16) (*Generator, error) {
	fromMAC, err := from.MAC()
	if err != nil {
		return nil, err
	}
	toMAC, err := to.MAC()
	if err != nil {
		return nil, err
	}
	return NewOf(from, Frame(toMAC, fromMAC, from.Addr, to.Addr, dstPort))
}

// NewOf opens a generator that sends frame out of host from's interface,
// on its queue 0.
func NewOf(from *hosts.Host, frame []byte) (*Generator, error) {
	fromLink, err := from.Link()
	if err != nil {
		return nil, err
	}
	g := &Generator{frame: frame}
	// The ifindex means something only inside from's namespace.
	err = from.Run(func() (err error) {
		g.sock, err = afxdp.Open(fromLink.Attrs().Index, 0, afxdp.Options{})
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("generator: %w", err)
	}
	return g, nil
}

// SrcPort is the UDP port the generator sends from.
const SrcPort = 9999

// Frame is the frame a generator sends: FrameSize bytes of UDP from
// src:SrcPort to dst:dstPort.
func Frame(dstMAC, srcMAC net.HardwareAddr, src, dst netip.Addr, dstPort uint16) []byte {
	f := packet.EthernetTo(dstMAC, srcMAC, packet.EtherTypeIPv4).
		IPv4(packet.IPv4{Src: src, Dst: dst, Protocol: packet.ProtoUDP}).
		UDP(SrcPort, dstPort)
	return f.Payload(FrameSize - len(f.Bytes())).Bytes()
}

// PSPFrame is the smallest PSP frame: an inner IPv4 header and nothing
// more, sealed by the codec in tunnel mode under spi (version 1, no
// cookie) from src to UDP port 1000 of dst, 94 bytes in all.
func PSPFrame(dstMAC, srcMAC net.HardwareAddr, src, dst netip.Addr, spi uint32) ([]byte, error) {
	inner := packet.EthernetTo(dstMAC, srcMAC, packet.EtherTypeIPv4).
		IPv4(packet.IPv4{Src: src, Dst: dst, Protocol: packet.ProtoNoNextHdr}).Bytes()
	return packet.PSP(inner, spi, psp.V1, psp.Encap{Mode: psp.Tunnel, OuterSrc: src, OuterDst: dst})
}

// ErrStalled says that the frames stopped leaving: the socket's TX
// ring stayed full, as it does for a while when other work takes the
// CPU the kernel sends them from.
var ErrStalled = errors.New("transmit stalled")

// Send transmits n frames and returns how long that took; count what
// arrives.
func (g *Generator) Send(n uint32) (time.Duration, error) {
	start := time.Now()
	// Transmit waits for room as the kicker sends, and stops early only
	// when none comes.
	sent, err := g.sock.Transmit(int(n), func(_ int, buf []byte) (int, afxdp.Checksum) {
		return copy(buf, g.frame), afxdp.Checksum{}
	})
	if err == nil && sent < int(n) {
		err = fmt.Errorf("%w after %d of %d frames", ErrStalled, sent, n)
	}
	if err == nil {
		err = g.sock.Flush()
	}
	if err != nil {
		return 0, fmt.Errorf("generator: %w", err)
	}
	return time.Since(start), nil
}

// Close closes the generator's socket.
func (g *Generator) Close() error { return g.sock.Close() }
