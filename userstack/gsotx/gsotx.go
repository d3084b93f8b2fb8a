// Package gsotx sends TCP segments larger than the MTU whole, through an
// AF_PACKET socket with a virtio-net header, and lets the kernel cut them
// (in software, or the NIC with TSO). AF_XDP has no segmentation offload:
// through it a 64 KiB segment is 45 frames, each its own skb and its own
// trip through the peer's receive path, where the kernel's own TCP sends
// one skb that a veth peer or a TSO NIC takes whole.
package gsotx

import (
	"encoding/binary"
	"errors"
	"fmt"
	"sync/atomic"

	"golang.org/x/sys/unix"

	"github.com/xdpstack/xdpstack/internal/ethtool"
)

// sendBuffer is the socket's send buffer. A segment's skb is charged to
// the socket until the device is done with it; 64 of the largest fit.
const sendBuffer = 4 << 20

// ErrNoTSO is what Send says while the interface does not segment TCP
// itself: the kernel would then cut the segment in software and send
// every piece through the peer's receive path anyway, which measured no
// faster than AF_XDP frames.
var ErrNoTSO = errors.New("interface has tcp segmentation offload off")

// Socket sends on one interface.
type Socket struct {
	fd   int
	name string
	// tso is the interface's TCP segmentation offload, as Refresh last
	// read it.
	tso atomic.Bool
	// Segments and Bytes count what was sent, before cutting.
	Segments, Bytes atomic.Uint64
}

// Open opens a socket that sends on the interface ifindex, named name,
// and receives nothing (protocol 0). It must run in the interface's
// network namespace, whose interfaces Refresh then asks about from any
// thread.
func Open(ifindex int, name string) (*Socket, error) {
	fd, err := unix.Socket(unix.AF_PACKET, unix.SOCK_RAW|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("open af_packet socket for gso: %w", err)
	}
	s := &Socket{fd: fd, name: name}
	for _, opt := range []struct {
		name       string
		level, opt int
		value      int
	}{
		{"PACKET_VNET_HDR", unix.SOL_PACKET, unix.PACKET_VNET_HDR, 1},
		// Straight to the driver, as AF_XDP frames go: a qdisc could
		// reorder them against the frames of the same flow.
		{"PACKET_QDISC_BYPASS", unix.SOL_PACKET, unix.PACKET_QDISC_BYPASS, 1},
		{"SO_SNDBUFFORCE", unix.SOL_SOCKET, unix.SO_SNDBUFFORCE, sendBuffer},
	} {
		if err := unix.SetsockoptInt(fd, opt.level, opt.opt, opt.value); err != nil {
			s.Close()
			return nil, fmt.Errorf("set %s on the gso socket: %w", opt.name, err)
		}
	}
	if err := unix.Bind(fd, &unix.SockaddrLinklayer{Ifindex: ifindex}); err != nil {
		s.Close()
		return nil, fmt.Errorf("bind the gso socket to interface %d: %w", ifindex, err)
	}
	if err := s.Refresh(); err != nil {
		s.Close()
		return nil, err
	}
	return s, nil
}

// Refresh reads whether the interface segments TCP itself (ethtool -k
// IFACE: tcp-segmentation-offload), which can change at any time.
func (s *Socket) Refresh() error {
	on, err := ethtool.TSO(s.fd, s.name)
	if err != nil {
		return fmt.Errorf("read tcp segmentation offload of %s: %w", s.name, err)
	}
	s.tso.Store(on)
	return nil
}

// TCP is a TCP segment to send: an Ethernet frame whose IP header gives
// the whole length and whose TCP checksum holds only the pseudo-header's
// sum over that length (Linux's CHECKSUM_PARTIAL), cut into pieces of MSS
// bytes of payload.
type TCP struct {
	Frame [][]byte
	IPv6  bool
	// TCPOffset is where the TCP header starts, Headers where the
	// payload does.
	TCPOffset, Headers int
	MSS                int
}

// TSO tells whether the interface segments TCP itself, as Refresh last
// read it; Send fails with ErrNoTSO while it does not.
func (s *Socket) TSO() bool { return s.tso.Load() }

// Send sends seg; the kernel cuts it.
func (s *Socket) Send(seg TCP) error {
	if !s.tso.Load() {
		return ErrNoTSO
	}
	gsoType := uint8(unix.VIRTIO_NET_HDR_GSO_TCPV4)
	if seg.IPv6 {
		gsoType = unix.VIRTIO_NET_HDR_GSO_TCPV6
	}
	// struct virtio_net_hdr, in the host's byte order.
	var hdr [10]byte
	hdr[0] = unix.VIRTIO_NET_HDR_F_NEEDS_CSUM
	hdr[1] = gsoType
	binary.NativeEndian.PutUint16(hdr[2:], uint16(seg.Headers))
	binary.NativeEndian.PutUint16(hdr[4:], uint16(seg.MSS))
	binary.NativeEndian.PutUint16(hdr[6:], uint16(seg.TCPOffset))
	binary.NativeEndian.PutUint16(hdr[8:], 16) // the TCP checksum's offset
	n, err := unix.SendmsgBuffers(s.fd, append([][]byte{hdr[:]}, seg.Frame...), nil, nil, 0)
	if err != nil {
		return fmt.Errorf("send %d-byte tcp segment for gso: %w", n, err)
	}
	s.Segments.Add(1)
	s.Bytes.Add(uint64(n - len(hdr)))
	return nil
}

// Close closes the socket.
func (s *Socket) Close() error {
	if s.fd < 0 {
		return errors.New("gso socket already closed")
	}
	err := unix.Close(s.fd)
	s.fd = -1
	return err
}
