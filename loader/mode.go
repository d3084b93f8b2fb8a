package loader

import (
	"fmt"

	"github.com/cilium/ebpf/link"
	"github.com/vishvananda/netlink/nl"
)

// Mode is how an XDP program is attached.
type Mode int

const (
	// ModeAuto tries native first and falls back to generic, saying so.
	ModeAuto Mode = iota
	// ModeNative runs in the driver, before any socket buffer exists.
	ModeNative
	// ModeGeneric runs after the kernel built a socket buffer; it works on
	// any interface, slower.
	ModeGeneric
	// ModeOffload runs on the NIC; xdpstack never asks for it but can
	// meet it on an interface.
	ModeOffload
	// ModeUnknown is the mode of a program whose interface cannot be seen
	// from here, such as one in another network namespace.
	ModeUnknown
)

var modeNames = map[Mode]string{ModeUnknown: "unknown", ModeAuto: "auto", ModeNative: "native", ModeGeneric: "generic", ModeOffload: "offload"}

func (m Mode) String() string {
	if s, ok := modeNames[m]; ok {
		return s
	}
	return fmt.Sprintf("mode(%d)", int(m))
}

// ParseMode reads a --mode flag.
func ParseMode(s string) (Mode, error) {
	for _, m := range []Mode{ModeAuto, ModeNative, ModeGeneric} {
		if s == m.String() {
			return m, nil
		}
	}
	return 0, fmt.Errorf("unknown XDP mode %q (want native, generic or auto)", s)
}

func (m Mode) attachFlags() link.XDPAttachFlags {
	if m == ModeGeneric {
		return link.XDPGenericMode
	}
	return link.XDPDriverMode
}

func modeFromNetlink(attachMode uint32) Mode {
	switch attachMode {
	case nl.XDP_ATTACHED_SKB:
		return ModeGeneric
	case nl.XDP_ATTACHED_HW:
		return ModeOffload
	}
	return ModeNative
}
