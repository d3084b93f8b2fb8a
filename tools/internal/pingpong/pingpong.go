// Package pingpong breaks a 1-byte ping-pong through the userstack down
// into stages (issue 19): where between the client's write and its read
// the microseconds go, from marks the userstack takes (internal/stagetime)
// within each round trip a separate client process stamps with the same
// clock. It measures the same client against the same echo loop on the
// kernel's sockets for scale. It is a library so that tools/bench can
// fold the breakdown into the project's report; tools/pingpong runs it
// alone.
package pingpong

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"sync"
	"time"

	"golang.org/x/sys/unix"

	"github.com/xdpstack/xdpstack/internal/stagetime"
	"github.com/xdpstack/xdpstack/internal/testing/hosts"
	"github.com/xdpstack/xdpstack/loader"
	"github.com/xdpstack/xdpstack/tools/internal/attachproc"
	"github.com/xdpstack/xdpstack/tools/internal/echobench"
	"github.com/xdpstack/xdpstack/userstack"
)

// Config bounds a run; zero fields take the defaults.
type Config struct {
	// RoundTrips per round; 5000.
	RoundTrips int
	// Rounds, the userstack's and the kernel's interleaved; the median
	// is reported. 3.
	Rounds int
	// Log gets progress lines; nil for none.
	Log io.Writer
}

func (c *Config) defaults() {
	if c.RoundTrips == 0 {
		c.RoundTrips = 5000
	}
	if c.Rounds == 0 {
		c.Rounds = 3
	}
	if c.Log == nil {
		c.Log = io.Discard
	}
}

// Segment is the time between two consecutive points of a round trip.
type Segment struct {
	From, To string
	// What the time goes to.
	What string
	// Median in µs: the median of the rounds' medians.
	Median float64
	// Matched is the share of round trips where both points were found.
	Matched float64
}

// Figures are one stack's.
type Figures struct {
	Segments []Segment
	// P50 and P99 of the round trip in µs, medians of the rounds'.
	P50, P99 float64
	// Switches are the serving process's voluntary context switches per
	// round trip, the median of the rounds'.
	Switches float64
}

// Report is a run's breakdown.
type Report struct {
	Userstack, Kernel Figures
	Notes             []string
}

// Markdown renders the userstack's breakdown as a table and the
// comparison with the kernel as lines under it.
func (r *Report) Markdown() string {
	var b strings.Builder
	b.WriteString("| segment | median µs | share of p50 | matched |\n|---|---:|---:|---:|\n")
	for _, s := range r.Userstack.Segments {
		fmt.Fprintf(&b, "| %s → %s (%s) | %.1f | %.0f%% | %.0f%% |\n", s.From, s.To, s.What, s.Median, 100*s.Median/r.Userstack.P50, 100*s.Matched)
	}
	fmt.Fprintf(&b, "| round trip p50 | %.1f | 100%% | |\n\n", r.Userstack.P50)
	fmt.Fprintf(&b, "userstack / kernel p50: %.1f / %.1f µs = %.2f×\n", r.Userstack.P50, r.Kernel.P50, r.Userstack.P50/r.Kernel.P50)
	fmt.Fprintf(&b, "userstack / kernel p99: %.1f / %.1f µs = %.2f×\n", r.Userstack.P99, r.Kernel.P99, r.Userstack.P99/r.Kernel.P99)
	fmt.Fprintf(&b, "voluntary context switches of the serving process per round trip: userstack %.2f, kernel %.2f\n", r.Userstack.Switches, r.Kernel.Switches)
	var kernel []string
	for _, s := range r.Kernel.Segments {
		kernel = append(kernel, fmt.Sprintf("%s → %s %.1f µs", s.From, s.To, s.Median))
	}
	fmt.Fprintf(&b, "kernel echo: %s\n", strings.Join(kernel, ", "))
	for _, n := range r.Notes {
		fmt.Fprintf(&b, "\n%s\n", n)
	}
	return b.String()
}

const (
	userPort   = 7
	kernelPort = 7007
	// marksPerTrip bounds the marks a stage takes per round trip: one
	// for the message, a few for ACKs and timers.
	marksPerTrip = 4
	// roundTimeout bounds one round's client.
	roundTimeout = 30 * time.Second
)

// run is a run on one pair: the userstack and a kernel echo on host A,
// the client process on host B.
type run struct {
	cfg     Config
	pair    *hosts.Pair
	client  string // this program, run again as the client
	closers []func() error
	dropped int
}

// Run builds a pair of namespaces, measures, and tears it all down.
// It sets GOMAXPROCS for the userstack as the daemon does, and sets it
// back before it returns.
func Run(ctx context.Context, cfg Config) (*Report, error) {
	cfg.defaults()
	defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(0))
	self, err := os.Executable()
	if err != nil {
		return nil, fmt.Errorf("find the client program: %w", err)
	}
	pair, err := hosts.NewPair(2)
	if err != nil {
		return nil, fmt.Errorf("build hosts: %w", err)
	}
	r := &run{cfg: cfg, pair: pair, client: self}
	defer r.close()
	mode, err := r.start()
	if err != nil {
		return nil, err
	}
	targets := []struct {
		port int
		path []stagetime.Stage
		what []string
	}{
		{userPort, userPath, userWhat},
		{kernelPort, kernelPath, nil},
	}
	type perRound struct {
		segments      [][]float64
		found         []int
		p50, p99, csw []float64
		trips         int
	}
	results := make([]perRound, len(targets))
	for round := range cfg.Rounds {
		for i, t := range targets {
			trips, marks, switches, err := r.round(ctx, t.port)
			if err != nil {
				return nil, fmt.Errorf("round %d on port %d: %w", round+1, t.port, err)
			}
			median, found := segments(place(trips, &marks, t.path))
			res := &results[i]
			if res.segments == nil {
				res.segments, res.found = make([][]float64, len(median)), make([]int, len(median))
			}
			for k := range median {
				if found[k] > 0 {
					res.segments[k] = append(res.segments[k], median[k])
				}
				res.found[k] += found[k]
			}
			totals := make([]float64, len(trips))
			for j, trip := range trips {
				totals[j] = float64(trip.Read-trip.Write) / 1e3
			}
			p50, p99 := quantile(totals, 0.5), quantile(totals, 0.99)
			res.p50, res.p99 = append(res.p50, p50), append(res.p99, p99)
			res.csw = append(res.csw, switches)
			res.trips += len(trips)
			fmt.Fprintf(cfg.Log, "round %d, port %d: p50 %.1f µs, p99 %.1f µs, %.2f voluntary context switches per round trip\n", round+1, t.port, p50, p99, switches)
		}
	}
	rep := &Report{}
	for i, t := range targets {
		res := &results[i]
		figs := Figures{P50: echobench.Median(res.p50), P99: echobench.Median(res.p99), Switches: echobench.Median(res.csw)}
		names := append(append([]string{"client write"}, stageNames(t.path)...), "client read")
		for k := range res.segments {
			s := Segment{From: names[k], To: names[k+1], Matched: float64(res.found[k]) / float64(res.trips)}
			if t.what != nil {
				s.What = t.what[k]
			}
			if len(res.segments[k]) > 0 {
				s.Median = echobench.Median(res.segments[k])
			}
			figs.Segments = append(figs.Segments, s)
		}
		if t.port == userPort {
			rep.Userstack = figs
		} else {
			rep.Kernel = figs
		}
	}
	rep.Notes = append(rep.Notes, fmt.Sprintf("1-byte ping-pong, %d round trips a round, median of %d interleaved rounds, from a separate client process in the peer namespace (one thread, blocking socket, TCP_NODELAY) to an echo loop on the userstack (AF_XDP %s mode, GOMAXPROCS %d as the daemon sizes it, 2 queues) and on kernel sockets of the same process and host. A segment's median is taken over the round trips where both its ends were found (matched), so the medians need not add up to the round trip's; KickDone is missed where the client's read returned first (the kick's sendto runs the peer's receive, which wakes the client before the sendto returns).", cfg.RoundTrips, cfg.Rounds, mode, runtime.GOMAXPROCS(0)))
	if r.dropped > 0 {
		rep.Notes = append(rep.Notes, fmt.Sprintf("%d stage marks did not fit the recording and were dropped.", r.dropped))
	}
	return rep, nil
}

func stageNames(path []stagetime.Stage) []string {
	names := make([]string, len(path))
	for i, s := range path {
		names[i] = s.String()
	}
	return names
}

// start attaches the XDP program and the userstack to host A and
// starts both echo loops; it returns the AF_XDP mode.
func (r *run) start() (string, error) {
	a := r.pair.A
	root := attachproc.NewPinRoot("pingpong")
	r.closers = append(r.closers, func() error { return os.RemoveAll(root) })
	var (
		stack  *userstack.Stack
		kernel net.Listener
	)
	err := a.Run(func() error {
		att, err := loader.Attach(a.Iface, loader.Options{PinRoot: root, UserPorts: loader.DefaultUserPorts})
		if err != nil {
			return err
		}
		r.closers = append(r.closers, att.Close)
		if stack, err = userstack.Start(att.Iface, att.Maps, userstack.Options{Procs: userstack.ProcsAuto}); err != nil {
			return err
		}
		r.closers = append(r.closers, stack.Close)
		kernel, err = net.Listen("tcp", fmt.Sprintf("%s:%d", a.Addr, kernelPort))
		return err
	})
	if err != nil {
		return "", err
	}
	user, err := stack.Listen("tcp", fmt.Sprintf(":%d", userPort))
	if err != nil {
		kernel.Close()
		return "", err
	}
	for _, ln := range []net.Listener{user, kernel} {
		var wg sync.WaitGroup
		wg.Go(func() { serve(ln) })
		r.closers = append(r.closers, func() error {
			err := ln.Close()
			wg.Wait()
			return err
		})
	}
	return stack.Sockets()[0].Mode.String(), nil
}

func (r *run) close() {
	for i := len(r.closers) - 1; i >= 0; i-- {
		r.closers[i]()
	}
	r.pair.Close()
}

// serve echoes each byte it reads on every connection ln accepts, and
// marks the read.
func serve(ln net.Listener) {
	for {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		go func() {
			defer c.Close()
			b := make([]byte, 1)
			for {
				if _, err := c.Read(b); err != nil {
					return
				}
				stagetime.Mark(stagetime.AppRead)
				if _, err := c.Write(b); err != nil {
					return
				}
			}
		}()
	}
}

// round runs the client against the echo on port, recording the stages
// and counting this process's voluntary context switches per round
// trip. They include the client's start and its connection, a few
// against thousands of round trips.
func (r *run) round(ctx context.Context, port int) ([]Trip, stagetime.Marks, float64, error) {
	ctx, cancel := context.WithTimeout(ctx, roundTimeout)
	defer cancel()
	n := r.cfg.RoundTrips
	cmd := r.pair.B.Command(ctx, r.client)
	cmd.Env = append(os.Environ(), "GOMAXPROCS=1", fmt.Sprintf("%s=%s:%d %d", clientEnv, r.pair.A.Addr, port, n))
	var before, after unix.Rusage
	stagetime.Record(marksPerTrip * n)
	unix.Getrusage(unix.RUSAGE_SELF, &before)
	out, err := cmd.Output()
	unix.Getrusage(unix.RUSAGE_SELF, &after)
	marks := stagetime.Stop()
	if err != nil {
		var exit *exec.ExitError
		if errors.As(err, &exit) {
			err = fmt.Errorf("%w: %s", err, strings.TrimSpace(string(exit.Stderr)))
		}
		return nil, marks, 0, fmt.Errorf("ping-pong client: %w", err)
	}
	if len(out) != 16*n {
		return nil, marks, 0, fmt.Errorf("ping-pong client: %d bytes of stamps, want %d", len(out), 16*n)
	}
	trips := make([]Trip, n)
	for i := range trips {
		trips[i] = Trip{Write: int64(binary.LittleEndian.Uint64(out[16*i:])), Read: int64(binary.LittleEndian.Uint64(out[16*i+8:]))}
	}
	for _, d := range marks.Dropped {
		r.dropped += d
	}
	return trips, marks, float64(after.Nvcsw-before.Nvcsw) / float64(n), nil
}
