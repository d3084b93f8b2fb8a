package kernelview

import (
	"errors"
	"fmt"
	"net/netip"

	"golang.org/x/sys/unix"
)

// probes make the kernel resolve a neighbour by sending it an empty
// datagram to the discard port, which the kernel can only send once it
// has resolved the neighbour. (A netlink NTF_USE was tried first: the
// kernel delays that probe by a retransmit time, a full second for
// IPv6.)
type probes struct{ v4, v6 int }

// discardPort is where the probes go (RFC 863).
const discardPort = 9

// openProbes opens the probe sockets, bound to the interface so that
// the kernel resolves the neighbour there.
func openProbes(iface string) (*probes, error) {
	p := &probes{v4: -1, v6: -1}
	for _, s := range []struct {
		fd     *int
		family int
	}{{&p.v4, unix.AF_INET}, {&p.v6, unix.AF_INET6}} {
		fd, err := unix.Socket(s.family, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC|unix.SOCK_NONBLOCK, 0)
		if err != nil {
			if s.family == unix.AF_INET6 {
				continue // a kernel without IPv6
			}
			p.Close()
			return nil, fmt.Errorf("open neighbour probe socket: %w", err)
		}
		*s.fd = fd
		if err := unix.SetsockoptString(fd, unix.SOL_SOCKET, unix.SO_BINDTODEVICE, iface); err != nil {
			p.Close()
			return nil, fmt.Errorf("bind neighbour probe socket to %s: %w", iface, err)
		}
	}
	return p, nil
}

func (p *probes) Probe(addr netip.Addr) error {
	if addr.Is4() {
		return unix.Sendto(p.v4, nil, unix.MSG_DONTWAIT, &unix.SockaddrInet4{Port: discardPort, Addr: addr.As4()})
	}
	if p.v6 < 0 {
		return errors.New("no ipv6 in this kernel")
	}
	return unix.Sendto(p.v6, nil, unix.MSG_DONTWAIT, &unix.SockaddrInet6{Port: discardPort, Addr: addr.As16()})
}

func (p *probes) Close() error {
	var errs []error
	for _, fd := range []int{p.v4, p.v6} {
		if fd >= 0 {
			errs = append(errs, unix.Close(fd))
		}
	}
	p.v4, p.v6 = -1, -1
	return errors.Join(errs...)
}
