package maps

import (
	"fmt"
	"time"

	"github.com/cilium/ebpf"

	"github.com/xdpstack/xdpstack/bpf"
)

// AttachInfo records when and by which process a program was attached.
type AttachInfo struct {
	Time time.Time
	PID  int
}

// Info is the one-entry map that holds the AttachInfo.
type Info struct{ m *ebpf.Map }

// Get reads the attach record.
func (i Info) Get() (AttachInfo, error) {
	var v bpf.XdpAttachInfo
	if err := i.m.Lookup(uint32(0), &v); err != nil {
		return AttachInfo{}, fmt.Errorf("read %s map: %w", InfoName, err)
	}
	return AttachInfo{Time: time.Unix(0, int64(v.AttachTimeNs)), PID: int(v.Pid)}, nil
}

// Put writes the attach record.
func (i Info) Put(a AttachInfo) error {
	v := bpf.XdpAttachInfo{AttachTimeNs: uint64(a.Time.UnixNano()), Pid: uint32(a.PID)}
	if err := i.m.Put(uint32(0), v); err != nil {
		return fmt.Errorf("write %s map: %w", InfoName, err)
	}
	return nil
}
