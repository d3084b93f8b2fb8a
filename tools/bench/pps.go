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
func (b *bench) passRate(rounds int, frames uint32) (measured, error) {
	fmt.Fprintln(logOut, "packets passed to the kernel (packets/s):")
	return b.rxRate([]setup{none, minimalPass, xdpstack}, rounds, frames)
}

// rxRate measures, for each setup, how many of the generator's 64-byte
// frames per second host A's interface takes in, whatever its program
// then does with them (veth counts a frame its XDP program dropped as
// received too).
func (b *bench) rxRate(setups []setup, rounds int, frames uint32) (measured, error) {
	a := b.pair.A
	gen, err := pktgen.New(b.pair.B, a, genPort)
	if err != nil {
		return nil, err
	}
	defer gen.Close()

	return b.interleave(setups, rounds, func(setup) (float64, error) { return b.rxRateOnce(gen, frames) })
}

// rxRateOnce sends frames from gen and returns how many per second host
// A's interface took in, the bench on one CPU (onOneCPU).
func (b *bench) rxRateOnce(gen *pktgen.Generator, frames uint32) (float64, error) {
	var rate float64
	err := onOneCPU(func() error {
		return retryStalled(func() error {
			received, elapsed, err := b.send(gen, frames)
			rate = float64(received) / elapsed.Seconds()
			return err
		})
	})
	return rate, err
}

// stallTries is how often retryStalled tries: a busy machine's other
// work can keep the kernel from sending for long, several times over.
const stallTries = 10

// retryStalled runs measure, and again when the generator stalled in
// it: the host is shared, and at times busy elsewhere.
func retryStalled(measure func() error) error {
	for try := 1; ; try++ {
		err := measure()
		if !errors.Is(err, pktgen.ErrStalled) || try == stallTries {
			return err
		}
		fmt.Fprintf(logOut, "  (%v; again)\n", err)
	}
}

// send sends frames from the generator and returns how many of them
// host A's interface took in, and the sending time.
func (b *bench) send(gen *pktgen.Generator, frames uint32) (received uint64, elapsed time.Duration, err error) {
	a := b.pair.A
	before, err := a.Link()
	if err != nil {
		return 0, 0, err
	}
	if elapsed, err = gen.Send(frames); err != nil {
		return 0, 0, err
	}
	time.Sleep(50 * time.Millisecond) // let the last batch arrive
	after, err := a.Link()
	if err != nil {
		return 0, 0, err
	}
	received = after.Attrs().Statistics.RxPackets - before.Attrs().Statistics.RxPackets
	if received == 0 {
		return 0, 0, fmt.Errorf("no frames arrived on %s", a.Iface)
	}
	return received, elapsed, nil
}
