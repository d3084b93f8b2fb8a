package main

import (
	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"

	"github.com/xdpstack/xdpstack/bpf"
	"github.com/xdpstack/xdpstack/maps"
	"github.com/xdpstack/xdpstack/tools/internal/attachproc"
	"github.com/xdpstack/xdpstack/tools/internal/benchrules"
)

// attach puts setup s on host A's interface and returns what undoes it.
func (b *bench) attach(s setup) (func() error, error) {
	switch s {
	case minimalPass:
		return b.attachPass()
	case minimalDrop:
		return b.attachDrop()
	case xdpstack:
		return b.attachXdpstack()
	case xdpstackDeny:
		return b.attachWithRules([]maps.Rule{benchrules.Deny(genPort)})
	case xdpstackRules:
		return b.attachWithRules(benchrules.Many(manyRules, b.generated()))
	case xdpstackSampled:
		return b.attachSampled()
	case xdpstackPSP:
		return b.attachPSP()
	}
	return func() error { return nil }, nil
}

func (b *bench) attachPass() (func() error, error) {
	var objs bpf.PassObjects
	if err := bpf.LoadPassObjects(&objs, nil); err != nil {
		return nil, err
	}
	return b.attachProgram(objs.XdpPass, objs.Close)
}

func (b *bench) attachDrop() (func() error, error) {
	var objs bpf.DropObjects
	if err := bpf.LoadDropObjects(&objs, nil); err != nil {
		return nil, err
	}
	return b.attachProgram(objs.XdpDrop, objs.Close)
}

// attachProgram attaches a minimal program to host A's interface in
// native mode; close releases its objects.
func (b *bench) attachProgram(prog *ebpf.Program, close func() error) (func() error, error) {
	var l link.Link
	err := b.pair.A.Run(func() error {
		ifc, err := b.pair.A.Link()
		if err != nil {
			return err
		}
		l, err = link.AttachXDP(link.XDPOptions{Program: prog, Interface: ifc.Attrs().Index, Flags: link.XDPDriverMode})
		return err
	})
	if err != nil {
		close()
		return nil, err
	}
	return func() error { l.Close(); return close() }, nil
}

// attachXdpstack runs the real binary on host A, as an operator would,
// with the given extra arguments (apps).
func (b *bench) attachXdpstack(extra ...string) (func() error, error) {
	return attachproc.Start(b.pair.A, b.binary, extra...)
}
