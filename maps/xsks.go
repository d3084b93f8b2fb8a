package maps

import (
	"fmt"

	"github.com/cilium/ebpf"
)

// XSKs maps an RX queue to the AF_XDP socket serving it. The kernel
// drops an entry by itself when its socket closes, so a dead daemon's
// queues fall back to the kernel.
type XSKs struct{ m *ebpf.Map }

// Register steers queue's redirected packets to the socket fd.
func (x XSKs) Register(queue, fd int) error {
	if err := x.m.Put(uint32(queue), uint32(fd)); err != nil {
		return fmt.Errorf("register af_xdp socket for queue %d: %w", queue, err)
	}
	return nil
}

// Unregister stops steering to queue's socket; no error when there was
// none.
func (x XSKs) Unregister(queue int) error {
	if err := notFound(x.m.Delete(uint32(queue))); err != nil && err != ErrNotFound {
		return fmt.Errorf("unregister af_xdp socket for queue %d: %w", queue, err)
	}
	return nil
}
