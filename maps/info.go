package maps

import (
	"fmt"
	"time"

	"github.com/cilium/ebpf"

	"github.com/xdpstack/xdpstack/bpf"
)

// AttachInfo records when and by which process a program was attached,
// and the AF_XDP sockets that process serves the interface with.
type AttachInfo struct {
	Time time.Time
	PID  int
	// XSKQueues has bit q set when an AF_XDP socket serves queue q, and
	// XSKZeroCopy when that socket runs in zero-copy mode, as the kernel
	// told the process (XDP_OPTIONS).
	XSKQueues, XSKZeroCopy uint64
}

// Info is the one-entry map that holds the AttachInfo.
type Info struct{ m *ebpf.Map }

// Get reads the attach record.
func (i Info) Get() (AttachInfo, error) {
	var v bpf.XdpAttachInfo
	if err := i.m.Lookup(uint32(0), &v); err != nil {
		return AttachInfo{}, fmt.Errorf("read %s map: %w", InfoName, err)
	}
	return AttachInfo{Time: time.Unix(0, int64(v.AttachTimeNs)), PID: int(v.Pid), XSKQueues: v.XskQueues, XSKZeroCopy: v.XskZerocopy}, nil
}

// SetSockets records the AF_XDP sockets that serve the interface (see
// AttachInfo), keeping the rest of the record.
func (i Info) SetSockets(queues, zeroCopy uint64) error {
	a, err := i.Get()
	if err != nil {
		return err
	}
	a.XSKQueues, a.XSKZeroCopy = queues, zeroCopy
	return i.Put(a)
}

// Put writes the attach record.
func (i Info) Put(a AttachInfo) error {
	v := bpf.XdpAttachInfo{AttachTimeNs: uint64(a.Time.UnixNano()), Pid: uint32(a.PID), XskQueues: a.XSKQueues, XskZerocopy: a.XSKZeroCopy}
	if err := i.m.Put(uint32(0), v); err != nil {
		return fmt.Errorf("write %s map: %w", InfoName, err)
	}
	return nil
}
