package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/xdpstack/xdpstack/daemon"
	"github.com/xdpstack/xdpstack/daemon/control"
	"github.com/xdpstack/xdpstack/internal/capture"
	"github.com/xdpstack/xdpstack/loader"
	"github.com/xdpstack/xdpstack/maps"
)

func captureCommand() *cli.Command {
	return &cli.Command{
		Name:      "capture",
		Usage:     "show an interface's packets with their verdicts, or write them to pcapng",
		ArgsUsage: "IFACE",
		Description: "At the XDP hook (--point xdp, the default), reads the packets the program samples,\n" +
			"1 in 2^N of every verdict (attach --sample-rate N, or --sample-rate here), or all of\n" +
			"them with --all, and the PSP packets whose sender set the S bit (its attach\n" +
			"--psp-sample-rate N), through the pins, with or without a running attach. At --point\n" +
			"userstack, reads what the userstack receives and sends, from its daemon; at --point\n" +
			"psp, the PSP gateway's inner packets (IP, no Ethernet: pcapng link type RAW), the\n" +
			"packets it sends with the S bit among them. Each packet says why it is there:\n" +
			"verdict/reason and rule at the XDP hook, in or out and the queue at the userstack,\n" +
			"in or out, the SPI and \"sampled\" (S bit) at psp; as a line, or as the packet's\n" +
			"comment in pcapng.\n" +
			"Filter: " + capture.FilterHelp + ".",
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "write", Aliases: []string{"w"}, Usage: "write pcapng to `FILE`, - for stdout (| tcpdump -r -, | wireshark -k -i -); without it, one line per packet"},
			&cli.BoolFlag{Name: "all", Usage: "capture every packet at the XDP hook while this runs, not 1 in 2^N; the program stops within a second after it exits, even killed"},
			&cli.IntFlag{Name: "count", Usage: "stop after `K` packets"},
			&cli.DurationFlag{Name: "duration", Usage: "stop after `D` (10s, 1m)"},
			&cli.IntFlag{Name: "snaplen", Usage: "bytes of each packet to keep, 1 to 65280 (default: the interface's, attach --snaplen)"},
			&cli.StringFlag{Name: "filter", Usage: "keep the packets that match `EXPR`: " + capture.FilterHelp},
			&cli.StringFlag{Name: "point", Value: "xdp", Usage: "xdp (every packet arriving, with its verdict), userstack (what the userstack receives and sends) or psp (the PSP gateway's inner packets, with their SPI)"},
			&cli.IntFlag{Name: "sample-rate", Usage: "first set the interface's sampling to 1 packet in 2^`N` (0 off, up to 16), through its daemon or its pins; it stays"},
		},
		Before: needRoot,
		Action: runCapture,
	}
}

// captureBuffer is the size of the perf buffers at the XDP hook, in
// all: a few hundred thousand samples of 64-byte frames, a fraction of
// a second of a flood to ride out a moment the capture is not run.
const captureBuffer = 32 << 20

// flushEvery bounds how long a packet waits in the output's buffer, so
// that a reader on a pipe sees it.
const flushEvery = 100 * time.Millisecond

// captureFlags are capture's flags, checked.
type captureFlags struct {
	point    capture.Point
	filter   *capture.Filter
	count    int
	duration time.Duration
	// snaplen is 0 when not given: the interface's.
	snaplen int
	// rate is the sample rate to set, when setRate.
	rate    int
	setRate bool
	all     bool
	write   string
}

func readCaptureFlags(c *cli.Context) (captureFlags, error) {
	f := captureFlags{count: c.Int("count"), duration: c.Duration("duration"), snaplen: c.Int("snaplen"),
		rate: c.Int("sample-rate"), setRate: c.IsSet("sample-rate"), all: c.Bool("all"), write: c.String("write")}
	var err error
	if f.point, err = capture.ParsePoint(c.String("point")); err != nil {
		return f, fmt.Errorf("--point: %w", err)
	}
	if f.filter, err = capture.ParseFilter(c.String("filter")); err == nil {
		err = f.filter.CheckPoint(f.point)
	}
	switch {
	case err != nil:
		return f, err
	case c.IsSet("count") && f.count < 1:
		return f, fmt.Errorf("--count %d: want at least 1", f.count)
	case c.IsSet("duration") && f.duration <= 0:
		return f, fmt.Errorf("--duration %v: want a time above 0", f.duration)
	case c.IsSet("snaplen") && maps.CheckSnaplen(f.snaplen) != nil:
		return f, fmt.Errorf("--snaplen %d: %w", f.snaplen, maps.CheckSnaplen(f.snaplen))
	case f.setRate && maps.CheckSampleRate(f.rate) != nil:
		return f, fmt.Errorf("--sample-rate %d: %w", f.rate, maps.CheckSampleRate(f.rate))
	case f.point != capture.PointXDP && (f.all || f.setRate):
		return f, errors.New("--all and --sample-rate go with --point xdp: every packet of the userstack and the psp gateway is captured")
	case f.write != "" && f.write != "-":
		if fi, err := os.Stat(f.write); err == nil && fi.IsDir() {
			return f, fmt.Errorf("--write %s: a folder (want a file, a pipe or -)", f.write)
		}
	}
	return f, nil
}

func runCapture(c *cli.Context) error {
	ifname, err := oneIface(c)
	if err != nil {
		return err
	}
	f, err := readCaptureFlags(c)
	if err != nil {
		return fmt.Errorf("capture %s: %w", ifname, err)
	}
	if err := captureOn(c, ifname, f); err != nil {
		return fmt.Errorf("capture %s: %w", ifname, err)
	}
	return nil
}

func captureOn(c *cli.Context, ifname string, f captureFlags) error {
	st, err := loader.ReadInterfaceStatus(c.String("pin-root"), ifname)
	if err != nil {
		return err
	}
	sampling, err := maps.OpenPinnedSampling(st.PinDir)
	if err != nil {
		return err
	}
	defer sampling.Close()
	settings, err := sampling.Settings()
	if err != nil {
		return err
	}
	if f.snaplen == 0 {
		f.snaplen = int(settings.Snaplen)
	}

	var src capture.Source
	var tags capture.RuleTags
	if f.point == capture.PointXDP {
		rate := int(settings.Rate)
		if f.setRate {
			rate = f.rate
		}
		if rate == 0 && !f.all {
			if !pspChecked(st.PinDir) {
				return fmt.Errorf("sampling is off: nothing to capture (capture --all, or --sample-rate N, or attach --sample-rate N)")
			}
			fmt.Fprintf(c.App.ErrWriter, "sampling is off on %s: capturing the PSP packets whose sender set the S bit only\n", ifname)
		}
		unlock, err := capture.LockXDP(c.String("run-dir"), ifname)
		if err != nil {
			return err
		}
		defer unlock()
		if src, err = capture.OpenXDP(st.PinDir, capture.XDPOptions{Snaplen: uint32(f.snaplen), All: f.all, Buffer: captureBuffer}); err != nil {
			return err
		}
		var closeTags func()
		tags, closeTags = ruleTags(st.PinDir)
		defer closeTags()
	} else {
		req := daemon.CaptureRequest{Point: f.point.String(), Snaplen: f.snaplen, Filter: f.filter.String()}
		// Not ended by ^C: the frames on their way are read first, then
		// closing the stream ends it.
		ctx := context.WithoutCancel(c.Context)
		body, err := daemon.CaptureEndpoint.Open(ctx, control.NewClient(c.String("run-dir"), ifname), req)
		if err != nil {
			return err
		}
		src = capture.ReadStream(body)
	}
	defer src.Close()

	out, err := newCaptureOutput(c, ifname, f, tags)
	if err != nil {
		return err
	}
	if f.setRate {
		how, err := setSampleRate(c, ifname, sampling, settings, f.rate)
		if err != nil {
			return errors.Join(err, out.abort())
		}
		fmt.Fprintf(c.App.ErrWriter, "%s samples 1 packet in 2^%d from now on (set %s; it stays after the capture)\n", ifname, f.rate, how)
	}
	// A reader that goes (| head) ends the capture with EPIPE, not
	// SIGPIPE, so that it ends its lease on the way out.
	signal.Ignore(syscall.SIGPIPE)
	n, err := copyPackets(c, src, out, f)
	err = errors.Join(err, out.close())
	if errors.Is(err, syscall.EPIPE) {
		err = nil
	}
	summary := fmt.Sprintf("captured %d packets on %s at the %s point, %d lost", n, ifname, f.point, src.Lost())
	if src.Lost() > 0 {
		summary += " (the capture read too slowly)"
	}
	fmt.Fprintln(c.App.ErrWriter, summary)
	return err
}

// copyPackets copies the packets the filter keeps from src to out until
// the command is interrupted, the count or the duration is reached, or
// the source ends; then, for up to flushEvery, those already on their
// way.
func copyPackets(c *cli.Context, src capture.Source, out *captureOutput, f captureFlags) (int, error) {
	var end, drained time.Time
	if f.duration > 0 {
		end = time.Now().Add(f.duration)
	}
	n := 0
	lastFlush := time.Now()
	for f.count == 0 || n < f.count {
		now := time.Now()
		wait := now.Add(flushEvery)
		if drained.IsZero() && (c.Context.Err() != nil || !end.IsZero() && !now.Before(end)) {
			drained = now.Add(flushEvery)
		}
		switch {
		case !drained.IsZero() && now.After(drained):
			return n, nil
		case !drained.IsZero():
			wait = now // no more waiting: what the buffers hold
		case !end.IsZero() && end.Before(wait):
			wait = end
		}
		p, err := src.Next(wait)
		switch {
		case errors.Is(err, os.ErrDeadlineExceeded):
			if !drained.IsZero() {
				return n, nil
			}
		case errors.Is(err, io.EOF):
			return n, errors.New("the daemon ended the stream (it stopped)")
		case err != nil:
			return n, err
		case f.filter.Match(&p):
			if err := out.write(&p); err != nil {
				return n, err
			}
			n++
		}
		if time.Since(lastFlush) >= flushEvery {
			if err := out.flush(); err != nil {
				return n, err
			}
			lastFlush = time.Now()
		}
	}
	return n, nil
}

// pspChecked tells whether the program pinned in dir checks PSP, and so
// samples the PSP packets with the S bit whatever the rate.
func pspChecked(dir string) bool {
	p, err := maps.OpenPinnedPSP(dir)
	if err != nil {
		return false
	}
	defer p.Close()
	s, err := p.Settings()
	return err == nil && s.Enabled
}

// setSampleRate sets the interface's sample rate through its daemon, so
// that it knows, or through the pins when none runs; it says which.
func setSampleRate(c *cli.Context, ifname string, sampling maps.Sampling, settings maps.SampleSettings, rate int) (string, error) {
	_, err := daemon.SamplingEndpoint.Call(c.Context, control.NewClient(c.String("run-dir"), ifname), daemon.SamplingRequest{Rate: &rate})
	if !errors.Is(err, control.ErrNotRunning) {
		return "through the daemon", err
	}
	settings.Rate = uint32(rate)
	return "through the pins", sampling.SetSettings(settings)
}

// ruleTags names the rules of the interface whose pins are in dir,
// reading the rule table again when it meets an id it does not know,
// at most once a second; nil for pins without rules. closeTable
// closes the table.
func ruleTags(dir string) (tags capture.RuleTags, closeTable func()) {
	rules, err := maps.OpenPinnedRules(dir)
	if err != nil {
		return nil, func() {}
	}
	known := map[uint32]string{}
	var read time.Time
	return func(id uint32) string {
		if tag, ok := known[id]; ok || time.Since(read) < time.Second {
			return tag
		}
		read = time.Now()
		if all, err := rules.All(); err == nil {
			for _, r := range all {
				known[r.ID] = r.Tag
			}
		}
		return known[id]
	}, func() { rules.Close() }
}

// captureOutput is where captured packets go: pcapng to a file or
// stdout, or lines to stdout.
type captureOutput struct {
	file  *os.File // nil for stdout
	pcap  *capture.Writer
	lines *bufio.Writer
	tags  capture.RuleTags
}

func newCaptureOutput(c *cli.Context, ifname string, f captureFlags, tags capture.RuleTags) (*captureOutput, error) {
	out := &captureOutput{tags: tags}
	if f.write == "" {
		out.lines = bufio.NewWriter(c.App.Writer)
		return out, nil
	}
	w := c.App.Writer
	if f.write != "-" {
		var err error
		if out.file, err = os.Create(f.write); err != nil {
			return nil, fmt.Errorf("--write: %w", err)
		}
		w = out.file
	}
	var err error
	if out.pcap, err = capture.NewWriter(w, ifname, f.point, f.snaplen, f.filter, tags); err != nil {
		return nil, errors.Join(fmt.Errorf("--write: %w", err), out.abort())
	}
	return out, nil
}

func (o *captureOutput) write(p *capture.Packet) error {
	if o.pcap != nil {
		return o.pcap.Write(p)
	}
	o.lines.WriteString(capture.Line(p, o.tags))
	return o.lines.WriteByte('\n')
}

func (o *captureOutput) flush() error {
	if o.pcap != nil {
		return o.pcap.Flush()
	}
	return o.lines.Flush()
}

func (o *captureOutput) close() error {
	err := o.flush()
	if o.file != nil {
		err = errors.Join(err, o.file.Close())
	}
	return err
}

// abort removes a file made for a capture that never started.
func (o *captureOutput) abort() error {
	if o.file == nil {
		return nil
	}
	o.file.Close()
	return os.Remove(o.file.Name())
}
