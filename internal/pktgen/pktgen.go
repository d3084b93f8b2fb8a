// Package pktgen sends one frame over and over out of a host's interface,
// for benchmarks: this kernel has no pktgen module, so a tiny XDP program
// (bpf/pktgen.c) run with BPF_PROG_TEST_RUN and BPF_F_TEST_XDP_LIVE_FRAMES
// redirects its input frame out of the interface once per repetition.
package pktgen

import (
	"fmt"
	"time"

	"github.com/cilium/ebpf"
	"golang.org/x/sys/unix"

	"github.com/xdpstack/xdpstack/bpf"
	"github.com/xdpstack/xdpstack/internal/hosts"
	"github.com/xdpstack/xdpstack/internal/packet"
)

// FrameSize is the classic minimum: 64 bytes with the Ethernet header.
const FrameSize = 64

// Generator sends 64-byte UDP frames from one host to another.
type Generator struct {
	from  *hosts.Host
	objs  bpf.PktgenObjects
	frame []byte
}

// New loads a generator that sends from host from to UDP port dstPort of
// host to, over the veth between them.
func New(from, to *hosts.Host, dstPort uint16) (*Generator, error) {
	fromLink, err := from.Link()
	if err != nil {
		return nil, err
	}
	toMAC, err := to.MAC()
	if err != nil {
		return nil, err
	}
	spec, err := bpf.LoadPktgen()
	if err != nil {
		return nil, err
	}
	if err := spec.Variables[bpf.PktgenVarTargetIfindex].Set(uint32(fromLink.Attrs().Index)); err != nil {
		return nil, err
	}
	g := &Generator{from: from}
	if err := spec.LoadAndAssign(&g.objs, nil); err != nil {
		return nil, fmt.Errorf("load generator: %w", err)
	}
	f := packet.EthernetTo(toMAC, fromLink.Attrs().HardwareAddr, packet.EtherTypeIPv4).
		IPv4(packet.IPv4{Src: from.Addr, Dst: to.Addr, Protocol: packet.ProtoUDP}).
		UDP(9999, dstPort)
	g.frame = f.Payload(FrameSize - len(f.Bytes())).Bytes()
	return g, nil
}

// Send transmits n frames and returns how long that took. An interrupted
// run restarts, so at least n frames leave; count what arrives.
func (g *Generator) Send(n uint32) (time.Duration, error) {
	start := time.Now()
	// The redirect's ifindex is looked up in the namespace of the thread
	// that runs the program.
	err := g.from.Run(func() error {
		_, err := g.objs.XdpPktgen.Run(&ebpf.RunOptions{Data: g.frame, Repeat: n, Flags: unix.BPF_F_TEST_XDP_LIVE_FRAMES})
		return err
	})
	if err != nil {
		return 0, fmt.Errorf("generator: %w", err)
	}
	return time.Since(start), nil
}

// Close unloads the generator.
func (g *Generator) Close() error { return g.objs.Close() }
