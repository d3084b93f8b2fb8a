package main

import (
	"fmt"
	"time"

	"github.com/cilium/ebpf"
	"golang.org/x/sys/unix"

	"github.com/xdpstack/xdpstack/bpf"
	"github.com/xdpstack/xdpstack/internal/packet"
)

// frameSize is the classic minimum: 64 bytes with the Ethernet header.
const frameSize = 64

// passRate sends 64-byte UDP frames from host B with the live-frames
// generator and measures how many per second host A's interface takes in
// and passes to the kernel.
func (b *bench) passRate(rounds int, frames uint32) (map[setup]float64, error) {
	a, peer := b.pair.A, b.pair.B
	aMAC, err := a.MAC()
	if err != nil {
		return nil, err
	}
	peerLink, err := peer.Link()
	if err != nil {
		return nil, err
	}
	spec, err := bpf.LoadPktgen()
	if err != nil {
		return nil, err
	}
	if err := spec.Variables[bpf.PktgenVarTargetIfindex].Set(uint32(peerLink.Attrs().Index)); err != nil {
		return nil, err
	}
	var gen bpf.PktgenObjects
	if err := spec.LoadAndAssign(&gen, nil); err != nil {
		return nil, err
	}
	defer gen.Close()
	f := packet.EthernetTo(aMAC, peerLink.Attrs().HardwareAddr, packet.EtherTypeIPv4).
		IPv4(packet.IPv4{Src: peer.Addr, Dst: a.Addr, Protocol: packet.ProtoUDP}).
		UDP(9999, 9)
	frame := f.Payload(frameSize - len(f.Bytes())).Bytes()

	fmt.Fprintln(logOut, "packets passed to the kernel (packets/s):")
	// A veth without an XDP program drops redirected frames, so there is
	// no "no XDP" column here.
	return b.interleave([]setup{minimalPass, xdpstack}, rounds, func(setup) (float64, error) {
		before, err := a.Link()
		if err != nil {
			return 0, err
		}
		start := time.Now()
		// The live-frames run must happen in B's namespace: the redirect's
		// ifindex is looked up there.
		err = peer.Run(func() error {
			_, err := gen.XdpPktgen.Run(&ebpf.RunOptions{Data: frame, Repeat: frames, Flags: unix.BPF_F_TEST_XDP_LIVE_FRAMES})
			return err
		})
		elapsed := time.Since(start)
		if err != nil {
			return 0, fmt.Errorf("generator: %w", err)
		}
		time.Sleep(50 * time.Millisecond) // let the last batch arrive
		after, err := a.Link()
		if err != nil {
			return 0, err
		}
		received := after.Attrs().Statistics.RxPackets - before.Attrs().Statistics.RxPackets
		if received == 0 {
			return 0, fmt.Errorf("no frames arrived on %s", a.Iface)
		}
		return float64(received) / elapsed.Seconds(), nil
	})
}
