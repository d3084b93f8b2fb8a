package main

import (
	"github.com/cilium/ebpf/link"

	"github.com/xdpstack/xdpstack/bpf"
	"github.com/xdpstack/xdpstack/tools/internal/attachproc"
)

// attach puts setup s on host A's interface and returns what undoes it.
func (b *bench) attach(s setup) (func() error, error) {
	switch s {
	case minimalPass:
		return b.attachPass()
	case xdpstack:
		return b.attachXdpstack()
	}
	return func() error { return nil }, nil
}

func (b *bench) attachPass() (func() error, error) {
	var objs bpf.PassObjects
	if err := bpf.LoadPassObjects(&objs, nil); err != nil {
		return nil, err
	}
	var l link.Link
	err := b.pair.A.Run(func() error {
		ifc, err := b.pair.A.Link()
		if err != nil {
			return err
		}
		l, err = link.AttachXDP(link.XDPOptions{Program: objs.XdpPass, Interface: ifc.Attrs().Index, Flags: link.XDPDriverMode})
		return err
	})
	if err != nil {
		objs.Close()
		return nil, err
	}
	return func() error { l.Close(); return objs.Close() }, nil
}

// attachXdpstack runs the real binary on host A, as an operator would,
// with the given extra arguments (apps).
func (b *bench) attachXdpstack(extra ...string) (func() error, error) {
	return attachproc.Start(b.pair.A, b.binary, extra...)
}
