package main

import (
	"errors"
	"fmt"
	"time"

	"github.com/xdpstack/xdpstack/tools/internal/pktgen"
)

// genPort is the UDP port the generator sends to.
const genPort = 9

// passRate sends 64-byte UDP frames from host B with the generator and
// measures how many per second host A's interface takes in and passes to
// the kernel.
func (b *bench) passRate(rounds int, frames uint32) (map[setup]float64, error) {
	fmt.Fprintln(logOut, "packets passed to the kernel (packets/s):")
	return b.rxRate([]setup{none, minimalPass, xdpstack}, rounds, frames)
}

// stallRetries is how many times a measurement starts over when the
// generator stalls, which it does when the other work of a busy machine
// keeps the kernel from sending for long.
const stallRetries = 10

// rxRate measures, for each setup, how many of the generator's 64-byte
// frames per second host A's interface takes in, whatever its program
// then does with them (veth counts a frame its XDP program dropped as
// received too).
func (b *bench) rxRate(setups []setup, rounds int, frames uint32) (map[setup]float64, error) {
	a := b.pair.A
	gen, err := pktgen.New(b.pair.B, a, genPort)
	if err != nil {
		return nil, err
	}
	defer gen.Close()

	measure := func() (float64, error) {
		before, err := a.Link()
		if err != nil {
			return 0, err
		}
		elapsed, err := gen.Send(frames)
		time.Sleep(50 * time.Millisecond) // let the last batch arrive
		if err != nil {
			return 0, err
		}
		after, err := a.Link()
		if err != nil {
			return 0, err
		}
		received := after.Attrs().Statistics.RxPackets - before.Attrs().Statistics.RxPackets
		if received == 0 {
			return 0, fmt.Errorf("no frames arrived on %s", a.Iface)
		}
		return float64(received) / elapsed.Seconds(), nil
	}
	return b.interleave(setups, rounds, func(s setup) (float64, error) {
		rate, err := measure()
		for retry := 1; errors.Is(err, pktgen.ErrStalled) && retry <= stallRetries; retry++ {
			fmt.Fprintf(logOut, "  %-17s %v; measuring again\n", s, err)
			rate, err = measure()
		}
		return rate, err
	})
}
