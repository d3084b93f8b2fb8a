// Package tunnelbench measures TCP throughput through tunnels between
// two hosts joined by one veth pair, against the bare veth, in one run:
// iperf3 from host B to a server on host A, one stream and several, in
// interleaved rounds whose medians are reported. It is a library so that
// tools/bench can fold its table into the project's report.
//
// A tunnel is anything that implements Tunnel. Bare (no tunnel),
// WireGuardGo (the baseline issue 22 measures PSP against) and PSP
// (`xdpstack attach` with a PSP config on each host's veth end) are
// here. OnDemand measures how fast the PSP gateway makes tunnels.
package tunnelbench

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"os/exec"
	"slices"
	"strings"
	"time"

	"github.com/xdpstack/xdpstack/internal/testing/hosts"
	"github.com/xdpstack/xdpstack/tools/internal/echobench"
)

// Tunnel carries IP between two hosts. Run calls Up once per round on
// the same hosts, measures, and calls down before the next tunnel's Up.
//
// What an implementation must do:
//   - Up gets hosts joined by a veth pair as hosts.NewPair makes them
//     (A.Addr and B.Addr on A.Iface and B.Iface, IPv6 off, static
//     neighbours) with nothing else set up on them.
//   - Up returns an address of host A and one of host B such that TCP
//     from addrB to addrA goes through the tunnel and nowhere else,
//     once Up returns or at the latest within a second (an on-demand
//     tunnel may be made by the first packet).
//   - down undoes all Up did: processes it started stopped by PID and
//     waited for, interfaces, routes and addresses deleted, XDP programs
//     detached, pins and temporary files (keys above all) removed. The
//     next tunnel measured on the same pair must find it as Up found
//     it: an XDP program left on the veth would slow every tunnel after.
//   - When Up fails it undoes what it did itself and returns an error.
//   - Name is the tunnel's column in the report, unique within a run.
type Tunnel interface {
	Name() string
	Up(ctx context.Context, a, b *hosts.Host) (addrA, addrB netip.Addr, down func() error, err error)
}

// Bare is no tunnel: the hosts' own veth addresses.
type Bare struct{}

// Name is the bare veth's column.
func (Bare) Name() string { return "bare veth" }

// Up returns the hosts' addresses; there is nothing to take down.
func (Bare) Up(_ context.Context, a, b *hosts.Host) (netip.Addr, netip.Addr, func() error, error) {
	return a.Addr, b.Addr, func() error { return nil }, nil
}

// Config bounds a run; zero fields take the defaults.
type Config struct {
	// Tunnels to measure, in this order (reversed every other round).
	// Required.
	Tunnels []Tunnel
	// Streams is the iperf3 runs of a round, by their parallel streams;
	// {1, 4}.
	Streams []int
	// Rounds per figure, interleaved; the median is reported. 3.
	Rounds int
	// Time is the length of one iperf3 run, whole seconds; 3s.
	Time time.Duration
	// Log gets progress lines; nil for none.
	Log io.Writer
}

func (c *Config) defaults() error {
	if len(c.Tunnels) == 0 {
		return errors.New("tunnelbench: no tunnels to measure (Config.Tunnels)")
	}
	names := map[string]bool{}
	for _, t := range c.Tunnels {
		if names[t.Name()] {
			return fmt.Errorf("tunnelbench: two tunnels named %q (each is a column of its own)", t.Name())
		}
		names[t.Name()] = true
	}
	if c.Streams == nil {
		c.Streams = []int{1, 4}
	}
	if c.Rounds == 0 {
		c.Rounds = 3
	}
	if c.Time == 0 {
		c.Time = 3 * time.Second
	}
	if c.Log == nil {
		c.Log = io.Discard
	}
	if c.Time < time.Second || c.Time%time.Second != 0 {
		return fmt.Errorf("tunnelbench: run time %v (iperf3 takes whole seconds, at least 1)", c.Time)
	}
	return nil
}

// settle is how long a tunnel runs before it is measured.
const settle = time.Second

// Report is a run's measurements.
type Report struct {
	Tunnels []string // the columns, in the order of Config.Tunnels
	Streams []int
	Rounds  int
	Time    time.Duration
	// rounds holds each figure's bit/s in every round, in round order.
	rounds map[figure][]float64
}

type figure struct {
	tunnel  string
	streams int
}

// Gbps is a tunnel's median throughput with streams streams, and false
// when the run did not measure it.
func (r *Report) Gbps(tunnel string, streams int) (float64, bool) {
	v, ok := r.rounds[figure{tunnel, streams}]
	if !ok {
		return 0, false
	}
	return echobench.Median(slices.Clone(v)) / 1e9, true
}

// Ratio is the median over the rounds of tunnel num's throughput over
// den's in the same round, with streams streams: the machine drifts
// more between rounds than within one. False when the run did not
// measure both.
func (r *Report) Ratio(num, den string, streams int) (float64, bool) {
	a, ok1 := r.rounds[figure{num, streams}]
	b, ok2 := r.rounds[figure{den, streams}]
	if !ok1 || !ok2 {
		return 0, false
	}
	return echobench.MedianRatio(a, b), true
}

// Markdown renders the throughputs as a table, one row per stream
// count, one column per tunnel.
func (r *Report) Markdown() string {
	var b strings.Builder
	fmt.Fprintf(&b, "| TCP throughput, iperf3 %v (Gbit/s) | %s |\n|---|%s\n", r.Time, strings.Join(r.Tunnels, " | "), strings.Repeat("---:|", len(r.Tunnels)))
	for _, n := range r.Streams {
		fmt.Fprintf(&b, "| %s |", StreamCount(n))
		for _, t := range r.Tunnels {
			v, _ := r.Gbps(t, n)
			fmt.Fprintf(&b, " %.2f |", v)
		}
		b.WriteString("\n")
	}
	return b.String()
}

// StreamCount names a number of streams: "1 stream", "4 streams".
func StreamCount(n int) string {
	if n == 1 {
		return "1 stream"
	}
	return fmt.Sprintf("%d streams", n)
}

// Run builds a pair of hosts, measures every tunnel on it, and tears it
// all down.
func Run(ctx context.Context, cfg Config) (*Report, error) {
	if err := cfg.defaults(); err != nil {
		return nil, err
	}
	if _, err := exec.LookPath("iperf3"); err != nil {
		return nil, errors.New("tunnelbench: needs iperf3 (make deps)")
	}
	pair, err := hosts.NewPair(0)
	if err != nil {
		return nil, fmt.Errorf("build hosts: %w", err)
	}
	defer pair.Close()
	// One server for the whole run: it listens on every address of A,
	// the tunnels' included.
	server := pair.A.Command(context.Background(), "iperf3", "-s")
	if err := server.Start(); err != nil {
		return nil, fmt.Errorf("start iperf3 server: %w", err)
	}
	defer func() { server.Process.Kill(); server.Wait() }()

	r := &Report{Streams: cfg.Streams, Rounds: cfg.Rounds, Time: cfg.Time, rounds: map[figure][]float64{}}
	for _, t := range cfg.Tunnels {
		r.Tunnels = append(r.Tunnels, t.Name())
	}
	for round := range cfg.Rounds {
		order := slices.Clone(cfg.Tunnels)
		if round%2 == 1 {
			slices.Reverse(order)
		}
		for _, t := range order {
			got, err := measure(ctx, pair, t, cfg)
			if err != nil {
				return nil, fmt.Errorf("%s, round %d: %w", t.Name(), round+1, err)
			}
			for i, n := range cfg.Streams {
				f := figure{t.Name(), n}
				r.rounds[f] = append(r.rounds[f], got[i])
				fmt.Fprintf(cfg.Log, "  %-14s %-9s round %d: %.2f Gbit/s\n", t.Name(), StreamCount(n), round+1, got[i]/1e9)
			}
		}
	}
	return r, nil
}

// measure brings t up, runs iperf3 once per stream count, and takes t
// down; it returns bit/s in the order of cfg.Streams.
func measure(ctx context.Context, pair *hosts.Pair, t Tunnel, cfg Config) ([]float64, error) {
	addrA, _, down, err := t.Up(ctx, pair.A, pair.B)
	if err != nil {
		return nil, fmt.Errorf("up: %w", err)
	}
	time.Sleep(settle)
	var bps []float64
	for _, n := range cfg.Streams {
		v, err := Throughput(ctx, pair.B, addrA, cfg.Time, n)
		if err != nil {
			down()
			return nil, err
		}
		bps = append(bps, v)
	}
	if err := down(); err != nil {
		return nil, fmt.Errorf("down: %w", err)
	}
	return bps, nil
}

// serverWait bounds how long Throughput retries a client that cannot
// reach the server yet (it may still be starting, or a tunnel being
// made).
const serverWait = 5 * time.Second

// Throughput runs an iperf3 client on host client against the iperf3
// server at server (port 5201) for length with streams parallel TCP
// streams, and returns what the server received, in bit/s.
func Throughput(ctx context.Context, client *hosts.Host, server netip.Addr, length time.Duration, streams int) (float64, error) {
	args := []string{"-J", "-c", server.String(), "-t", fmt.Sprint(int(length.Seconds())), "-P", fmt.Sprint(streams), "--connect-timeout", "1000"}
	var bps float64
	var err error
	for deadline := time.Now().Add(serverWait); ; time.Sleep(100 * time.Millisecond) {
		runCtx, cancel := context.WithTimeout(ctx, length+10*time.Second)
		var out []byte
		out, err = client.Command(runCtx, "iperf3", args...).Output()
		cancel()
		if err != nil {
			err = fmt.Errorf("%w: %s", err, out)
		} else {
			bps, err = received(out)
		}
		if err == nil || time.Now().After(deadline) || ctx.Err() != nil {
			break
		}
	}
	if err != nil {
		return 0, fmt.Errorf("iperf3 %s: %w", strings.Join(args, " "), err)
	}
	return bps, nil
}

// received reads what the server received, in bit/s, from iperf3's
// JSON. A run that reports nothing received failed, even if iperf3
// exited 0 (seen once in a bench round of 4 streams on the bare veth:
// a 0 that would have counted as a sample).
func received(out []byte) (float64, error) {
	var result struct {
		End struct {
			SumReceived struct {
				BitsPerSecond float64 `json:"bits_per_second"`
			} `json:"sum_received"`
		} `json:"end"`
	}
	if err := json.Unmarshal(out, &result); err != nil {
		return 0, fmt.Errorf("read output: %w", err)
	}
	if bps := result.End.SumReceived.BitsPerSecond; bps > 0 {
		return bps, nil
	}
	return 0, fmt.Errorf("nothing received: %.300s", out)
}
