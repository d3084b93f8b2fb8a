package main

import (
	"bytes"
	"errors"
	"fmt"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"syscall"
	"time"

	"github.com/xdpstack/xdpstack/maps"
	"github.com/xdpstack/xdpstack/tools/internal/attachproc"
	"github.com/xdpstack/xdpstack/tools/internal/echobench"
	"github.com/xdpstack/xdpstack/tools/internal/pktgen"
)

// sampledRate is the --sample-rate of the sampled setup: 1 packet in
// 1024, as an operator might leave on.
const sampledRate = 10

// samplingFigures measures what sampling costs the pass rate: xdpstack
// with sampling off against a minimal XDP_PASS, and with sampling on
// (a capture reading the samples) against off.
func (b *bench) samplingFigures(rounds int, frames uint32) (measured, error) {
	fmt.Fprintln(logOut, "packets passed to the kernel, sampling off and on (packets/s):")
	return b.rxRate([]setup{minimalPass, xdpstack, xdpstackSampled}, rounds, frames)
}

// attachSampled runs the real binary with --sample-rate and a capture
// that reads its samples (pcapng to /dev/null).
func (b *bench) attachSampled() (func() error, error) {
	stop, dir, err := attachproc.StartPinned(b.pair.A, b.binary, "--sample-rate", strconv.Itoa(sampledRate))
	if err != nil {
		return nil, err
	}
	c, err := b.startCapture(dir)
	if err != nil {
		return nil, errors.Join(err, stop())
	}
	return func() error {
		_, err := c.stop()
		return errors.Join(err, stop())
	}, nil
}

// captureFigure is what capture --all keeps of a flood of 64-byte
// frames: each a median over the rounds.
type captureFigure struct {
	offered, captured float64 // packets per second
	kept              float64 // captured / offered
}

// captureAll floods host A with the generator's 64-byte frames while
// `xdpstack capture --all -w /dev/null` runs, and counts what it
// captured (its summary) against what arrived.
func (b *bench) captureAll(rounds int, frames uint32) (captureFigure, error) {
	fmt.Fprintln(logOut, "capture --all of 64 B frames (captured / offered):")
	gen, err := pktgen.New(b.pair.B, b.pair.A, genPort)
	if err != nil {
		return captureFigure{}, err
	}
	defer gen.Close()
	var offered, captured, kept []float64
	for round := range rounds {
		var o, c float64
		err := retryStalled(func() (err error) {
			o, c, err = b.captureAllRound(gen, frames)
			return err
		})
		if err != nil {
			return captureFigure{}, fmt.Errorf("round %d: %w", round+1, err)
		}
		offered, captured, kept = append(offered, o), append(captured, c), append(kept, c/o)
		fmt.Fprintf(logOut, "  round %d: %.4g offered, %.4g captured (%.3f)\n", round+1, o, c, c/o)
	}
	return captureFigure{echobench.Median(offered), echobench.Median(captured), echobench.Median(kept)}, nil
}

func (b *bench) captureAllRound(gen *pktgen.Generator, frames uint32) (offered, captured float64, err error) {
	stop, dir, err := attachproc.StartPinned(b.pair.A, b.binary)
	if err != nil {
		return 0, 0, err
	}
	defer func() { err = errors.Join(err, stop()) }()
	c, err := b.startCapture(dir, "--all")
	if err != nil {
		return 0, 0, err
	}
	time.Sleep(settle)
	received, elapsed, err := b.send(gen, frames)
	n, serr := c.stop()
	if err = errors.Join(err, serr); err != nil {
		return 0, 0, err
	}
	return float64(received) / elapsed.Seconds(), float64(n) / elapsed.Seconds(), nil
}

// benchCapture is a running `xdpstack capture -w /dev/null`.
type benchCapture struct {
	cmd    *exec.Cmd
	stderr *bytes.Buffer // read once it exited
}

// startCapture runs `xdpstack capture` with extra arguments on the
// interface whose pins are in dir, and returns once it holds the
// capture lease, which it takes once it reads.
func (b *bench) startCapture(dir string, extra ...string) (*benchCapture, error) {
	args := append([]string{"--pin-root", filepath.Dir(dir), "capture", b.pair.A.Iface, "-w", "/dev/null"}, extra...)
	c := &benchCapture{cmd: exec.Command(b.binary, args...), stderr: &bytes.Buffer{}}
	c.cmd.Stderr = c.stderr
	if err := c.cmd.Start(); err != nil {
		return nil, err
	}
	s, err := maps.OpenPinnedSampling(dir)
	if err != nil {
		c.stop()
		return nil, err
	}
	defer s.Close()
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
		if l, err := s.Lease(); err == nil && l.Until != 0 {
			return c, nil
		}
	}
	_, err = c.stop()
	return nil, fmt.Errorf("xdpstack capture not reading after 10s: %w", err)
}

var capturedLine = regexp.MustCompile(`captured (\d+) packets`)

// stop interrupts the capture and returns how many packets it says it
// captured.
func (c *benchCapture) stop() (int, error) {
	c.cmd.Process.Signal(syscall.SIGINT)
	if err := c.cmd.Wait(); err != nil {
		return 0, fmt.Errorf("xdpstack capture: %w: %s", err, c.stderr)
	}
	m := capturedLine.FindStringSubmatch(c.stderr.String())
	if m == nil {
		return 0, fmt.Errorf("xdpstack capture: no summary in %q", c.stderr)
	}
	return strconv.Atoi(m[1])
}
