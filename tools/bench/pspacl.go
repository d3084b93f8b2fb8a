package main

import (
	"errors"
	"fmt"

	"github.com/xdpstack/xdpstack/maps"
	"github.com/xdpstack/xdpstack/tools/internal/attachproc"
	"github.com/xdpstack/xdpstack/tools/internal/pktgen"
	"github.com/xdpstack/xdpstack/userstack/psp"
)

// unknownSPI is the SPI of the generator's PSP frames, which no grant
// names.
const unknownSPI = 0x12345

// pspACLFigure measures issue 22's figure: how many of the smallest PSP
// frames under an unknown SPI per second xdpstack's PSP check drops,
// against a program that only drops. It returns each round's rates and
// the frames' length.
func (b *bench) pspACLFigure(rounds int, frames uint32) (rates measured, frameLen int, err error) {
	fmt.Fprintln(logOut, "PSP frames of an unknown SPI dropped (packets/s):")
	a, peer := b.pair.A, b.pair.B
	aMAC, err := a.MAC()
	if err != nil {
		return nil, 0, err
	}
	peerMAC, err := peer.MAC()
	if err != nil {
		return nil, 0, err
	}
	frame, err := pktgen.PSPFrame(aMAC, peerMAC, peer.Addr, a.Addr, unknownSPI)
	if err != nil {
		return nil, 0, err
	}
	gen, err := pktgen.NewOf(peer, frame)
	if err != nil {
		return nil, 0, err
	}
	defer gen.Close()

	rates, err = b.interleave([]setup{minimalDrop, xdpstackPSP}, rounds, func(setup) (float64, error) {
		return b.rxRateOnce(gen, frames)
	})
	return rates, len(frame), err
}

// attachPSP runs the real binary on host A and, through its pins,
// switches the PSP check on with no SPI issued, and makes A's address
// one the userstack serves (the daemon runs no userstack to do it).
func (b *bench) attachPSP() (func() error, error) {
	stop, dir, err := attachproc.StartPinned(b.pair.A, b.binary)
	if err != nil {
		return nil, err
	}
	err = func() error {
		set, err := maps.OpenPinned(dir)
		if err != nil {
			return err
		}
		defer set.Close()
		if err := set.LocalAddrs.Put(b.pair.A.Addr, maps.AddrOwn|maps.AddrServed); err != nil {
			return err
		}
		p, err := maps.OpenPinnedPSP(dir)
		if err != nil {
			return err
		}
		defer p.Close()
		return p.SetSettings(maps.PSPSettings{Enabled: true, Versions: []psp.Version{psp.V1}})
	}()
	if err != nil {
		stop()
		return nil, fmt.Errorf("switch the psp check on: %w", err)
	}
	// A figure of frames dropped for another reason, or not at all,
	// would measure something else.
	return func() error {
		dropped, err := droppedUnknownSPI(dir)
		if serr := stop(); err == nil {
			err = serr
		}
		if err == nil && dropped == 0 {
			err = errors.New("the psp check dropped none of the frames as psp_spi")
		}
		return err
	}, nil
}

// droppedUnknownSPI reads how many frames the program in dir dropped as
// drop/psp_spi.
func droppedUnknownSPI(dir string) (uint64, error) {
	set, err := maps.OpenPinned(dir)
	if err != nil {
		return 0, err
	}
	defer set.Close()
	sums, err := set.Stats.Sum()
	return sums[maps.Verdict{Action: maps.ActionDrop, Reason: maps.ReasonPSPSPI}].Packets, err
}
