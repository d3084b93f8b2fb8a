package loader

import (
	"errors"
	"fmt"

	"github.com/vishvananda/netlink"
)

// Why an attached program can leave its interface without its
// Attachment's Close.
var (
	// ErrDetached: someone detached the link (xdpstack detach --force,
	// or BPF_LINK_DETACH from any tool).
	ErrDetached = errors.New("the program was detached from outside")
	// ErrInterfaceGone: the interface was deleted.
	ErrInterfaceGone = errors.New("the interface was deleted")
)

// Check tells whether the program is still attached: nil while it is,
// ErrDetached or ErrInterfaceGone once it left, either way the kernel
// sets the link's interface index to 0. After ErrDetached, Close
// leaves the pins alone: the detach removed them, and by then another
// attach may have made its own under the same names.
func (a *Attachment) Check() error {
	info, err := a.link.Info()
	if err != nil {
		return fmt.Errorf("read link info: %w", err)
	}
	if xdp := info.XDP(); xdp != nil && xdp.Ifindex != 0 {
		return nil
	}
	if _, err := netlink.LinkByIndex(a.Iface.Index); err != nil {
		var notFound netlink.LinkNotFoundError
		if errors.As(err, &notFound) {
			return ErrInterfaceGone
		}
		return fmt.Errorf("look up interface %d: %w", a.Iface.Index, err)
	}
	a.detachedOutside.Store(true)
	return ErrDetached
}
