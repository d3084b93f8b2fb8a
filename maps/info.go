package maps

import (
	"fmt"
	"time"

	"github.com/cilium/ebpf"

	"github.com/xdpstack/xdpstack/bpf"
)

// MaxQueues is MAX_QUEUES in xdpstack.h: the RX queues an xsks map and
// an attach record have room for.
const MaxQueues = 256

// QueueSet is a set of RX queues below MaxQueues.
type QueueSet [MaxQueues / 64]uint64

// Add puts queue q in the set; it fails for a queue past MaxQueues.
func (s *QueueSet) Add(q int) error {
	if q < 0 || q >= MaxQueues {
		return fmt.Errorf("queue %d: xdpstack serves queues 0 to %d", q, MaxQueues-1)
	}
	s[q/64] |= 1 << (q % 64)
	return nil
}

// Has tells whether queue q is in the set.
func (s QueueSet) Has(q int) bool {
	return q >= 0 && q < MaxQueues && s[q/64]&(1<<(q%64)) != 0
}

// Queues lists the set's queues in order.
func (s QueueSet) Queues() []int {
	var qs []int
	for q := range MaxQueues {
		if s.Has(q) {
			qs = append(qs, q)
		}
	}
	return qs
}

// PortRange is an inclusive range of ports; the zero value is empty.
type PortRange struct{ Min, Max uint16 }

func (r PortRange) String() string { return fmt.Sprintf("%d-%d", r.Min, r.Max) }

// Contains tells whether port is in the range.
func (r PortRange) Contains(port uint16) bool {
	return r != PortRange{} && port >= r.Min && port <= r.Max
}

// AttachInfo records when and by which process a program was attached,
// and the AF_XDP sockets that process serves the interface with.
type AttachInfo struct {
	Time time.Time
	PID  int
	// PIDStartTime is when that process started, in clock ticks after
	// boot, as /proc/PID/stat has it: a PID reused by another process
	// has another.
	PIDStartTime uint64
	// UserPorts is the range of ports the program steers to the
	// userstack for its own connections.
	UserPorts PortRange
	// XSKQueues are the queues an AF_XDP socket serves, and XSKZeroCopy
	// those whose socket runs in zero-copy mode, as the kernel told the
	// process (XDP_OPTIONS).
	XSKQueues, XSKZeroCopy QueueSet
}

// Info is the one-entry map that holds the AttachInfo.
type Info struct{ m *ebpf.Map }

// Get reads the attach record.
func (i Info) Get() (AttachInfo, error) {
	var v bpf.XdpAttachInfo
	if err := i.m.Lookup(uint32(0), &v); err != nil {
		return AttachInfo{}, fmt.Errorf("read %s map: %w", InfoName, err)
	}
	return AttachInfo{
		Time:         time.Unix(0, int64(v.AttachTimeNs)),
		PID:          int(v.Pid),
		PIDStartTime: v.PidStartTime,
		UserPorts:    PortRange{v.UserstackPortMin, v.UserstackPortMax},
		XSKQueues:    v.XskQueues,
		XSKZeroCopy:  v.XskZerocopy,
	}, nil
}

// SetSockets records the AF_XDP sockets that serve the interface (see
// AttachInfo), keeping the rest of the record.
func (i Info) SetSockets(queues, zeroCopy QueueSet) error {
	a, err := i.Get()
	if err != nil {
		return err
	}
	a.XSKQueues, a.XSKZeroCopy = queues, zeroCopy
	return i.Put(a)
}

// Put writes the attach record.
func (i Info) Put(a AttachInfo) error {
	v := bpf.XdpAttachInfo{
		AttachTimeNs:     uint64(a.Time.UnixNano()),
		Pid:              uint32(a.PID),
		PidStartTime:     a.PIDStartTime,
		UserstackPortMin: a.UserPorts.Min,
		UserstackPortMax: a.UserPorts.Max,
		XskQueues:        a.XSKQueues,
		XskZerocopy:      a.XSKZeroCopy,
	}
	if err := i.m.Put(uint32(0), v); err != nil {
		return fmt.Errorf("write %s map: %w", InfoName, err)
	}
	return nil
}
