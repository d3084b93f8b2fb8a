package main

import (
	"fmt"
	"time"

	"github.com/xdpstack/xdpstack/tools/internal/pktgen"
)

// passRate sends 64-byte UDP frames from host B with the generator and
// measures how many per second host A's interface takes in and passes to
// the kernel.
func (b *bench) passRate(rounds int, frames uint32) (map[setup]float64, error) {
	a := b.pair.A
	gen, err := pktgen.New(b.pair.B, a, 9)
	if err != nil {
		return nil, err
	}
	defer gen.Close()

	fmt.Fprintln(logOut, "packets passed to the kernel (packets/s):")
	return b.interleave([]setup{none, minimalPass, xdpstack}, rounds, func(setup) (float64, error) {
		before, err := a.Link()
		if err != nil {
			return 0, err
		}
		elapsed, err := gen.Send(frames)
		if err != nil {
			return 0, err
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
