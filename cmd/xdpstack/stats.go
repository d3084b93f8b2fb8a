package main

import (
	"cmp"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"text/tabwriter"
	"time"

	"github.com/urfave/cli/v2"
	"golang.org/x/sys/unix"

	"github.com/xdpstack/xdpstack/loader"
	"github.com/xdpstack/xdpstack/maps"
)

func statsCommand() *cli.Command {
	return &cli.Command{
		Name:      "stats",
		Usage:     "show the XDP counters by verdict and reason, read from the pinned maps",
		ArgsUsage: "[IFACE]",
		Description: "Works with or without a running attach process. Without IFACE, shows every\n" +
			"interface xdpstack is attached to. --rate shows per-second rates, refreshed like top.",
		Flags: []cli.Flag{
			&cli.BoolFlag{Name: "rate", Usage: "show rates per second instead of totals"},
			&cli.DurationFlag{Name: "interval", Value: time.Second, Usage: "with --rate: time between samples (at least 10ms)"},
			&cli.IntFlag{Name: "count", Usage: "with --rate: stop after this many samples (0: until interrupted)"},
			&cli.BoolFlag{Name: "json", Usage: "print JSON (with --rate: one object per line per sample)"},
		},
		Before: needRoot,
		Action: runStats,
	}
}

// counterName names one counter of one interface.
type counterName struct {
	Iface  string `json:"iface"`
	Action string `json:"action"`
	Reason string `json:"reason"`
}

func nameOf(iface string, v maps.Verdict) counterName {
	return counterName{iface, v.Action.String(), v.Reason.String()}
}

func sortByName[T interface{ name() counterName }](rows []T) {
	slices.SortFunc(rows, func(a, b T) int {
		x, y := a.name(), b.name()
		return cmp.Or(cmp.Compare(x.Iface, y.Iface), cmp.Compare(x.Action, y.Action), cmp.Compare(x.Reason, y.Reason))
	})
}

// statRow is one counter's totals.
type statRow struct {
	counterName
	Packets uint64 `json:"packets"`
	Bytes   uint64 `json:"bytes"`
}

// rateRow is the change of one counter over a sample interval.
type rateRow struct {
	counterName
	PacketsPerSecond float64 `json:"packets_per_second"`
	BitsPerSecond    float64 `json:"bits_per_second"`
}

func (r statRow) name() counterName { return r.counterName }
func (r rateRow) name() counterName { return r.counterName }

func runStats(c *cli.Context) error {
	ifname, err := optionalIface(c)
	if err != nil {
		return err
	}
	rate := c.Bool("rate")
	if !rate && (c.IsSet("interval") || c.IsSet("count")) {
		return errors.New("--interval and --count go with --rate")
	}
	// Shorter intervals only spin a CPU on the maps and the terminal.
	const minInterval = 10 * time.Millisecond
	if d := c.Duration("interval"); d < minInterval {
		return fmt.Errorf("--interval %v: want at least %v", d, minInterval)
	}
	if n := c.Int("count"); n < 0 {
		return fmt.Errorf("--count %d: want 0 (until interrupted) or more", n)
	}
	root := c.String("pin-root")
	var attached []loader.Status
	if ifname != "" {
		s, err := loader.ReadInterfaceStatus(root, ifname)
		if err != nil {
			return err
		}
		attached = append(attached, s)
	} else if attached, err = loader.ReadStatus(root); err != nil {
		return err
	}
	if len(attached) == 0 {
		return fmt.Errorf("xdpstack is not attached anywhere (no pins in %s)", root)
	}
	var ifaces []string
	sets := make(map[string]*maps.Set, len(attached))
	defer func() {
		for _, s := range sets {
			s.Close()
		}
	}()
	for _, s := range attached {
		set, err := maps.OpenPinned(s.PinDir)
		if err != nil {
			return fmt.Errorf("%w (see: xdpstack status %s)", err, s.Iface)
		}
		ifaces = append(ifaces, s.Iface)
		sets[s.Iface] = set
	}
	read := func() (map[string]map[maps.Verdict]maps.Counter, error) {
		samples := make(map[string]map[maps.Verdict]maps.Counter, len(ifaces))
		for _, name := range ifaces {
			sums, err := sets[name].Stats.Sum()
			if err != nil {
				return nil, fmt.Errorf("%s: %w", name, err)
			}
			samples[name] = sums
		}
		return samples, nil
	}

	sample, err := read()
	if err != nil {
		return err
	}
	if !rate {
		var rows []statRow
		for name, sums := range sample {
			for v, sum := range sums {
				rows = append(rows, statRow{nameOf(name, v), sum.Packets, sum.Bytes})
			}
		}
		sortByName(rows)
		if c.Bool("json") {
			return json.NewEncoder(c.App.Writer).Encode(nonNil(rows))
		}
		return printTotals(c.App.Writer, rows)
	}
	return printRates(c, sample, read)
}

func nonNil[T any](s []T) []T {
	if s == nil {
		return []T{}
	}
	return s
}

func printTotals(w io.Writer, rows []statRow) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "IFACE\tACTION\tREASON\tPACKETS\tBYTES\t")
	for _, r := range rows {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%d\t\n", r.Iface, r.Action, r.Reason, r.Packets, r.Bytes)
	}
	return tw.Flush()
}

func printRates(c *cli.Context, prev map[string]map[maps.Verdict]maps.Counter, read func() (map[string]map[maps.Verdict]maps.Counter, error)) error {
	interval, count := c.Duration("interval"), c.Int("count")
	clear := !c.Bool("json") && isTerminal(c.App.Writer)
	ticker := time.NewTicker(interval)
	defer ticker.Stop()
	last := time.Now()
	for n := 0; count == 0 || n < count; n++ {
		select {
		case <-c.Context.Done():
			return nil
		case <-ticker.C:
		}
		cur, err := read()
		if err != nil {
			return err
		}
		now := time.Now()
		var rows []rateRow
		for name, sums := range cur {
			for v, r := range maps.Rates(prev[name], sums, now.Sub(last).Seconds()) {
				rows = append(rows, rateRow{nameOf(name, v), r.PacketsPerSecond, r.BitsPerSecond})
			}
		}
		sortByName(rows)
		prev, last = cur, now
		if c.Bool("json") {
			sample := struct {
				Time  time.Time `json:"time"`
				Rates []rateRow `json:"rates"`
			}{now.UTC(), nonNil(rows)}
			if err := json.NewEncoder(c.App.Writer).Encode(sample); err != nil {
				return err
			}
			continue
		}
		if clear {
			fmt.Fprint(c.App.Writer, "\033[H\033[2J")
		}
		fmt.Fprintf(c.App.Writer, "%s  every %s\n", now.Format(time.TimeOnly), interval)
		tw := tabwriter.NewWriter(c.App.Writer, 0, 4, 2, ' ', tabwriter.AlignRight)
		fmt.Fprintln(tw, "IFACE\tACTION\tREASON\tPKT/S\tBIT/S\t")
		for _, r := range rows {
			fmt.Fprintf(tw, "%s\t%s\t%s\t%.0f\t%s\t\n", r.Iface, r.Action, r.Reason, r.PacketsPerSecond, humanBits(r.BitsPerSecond))
		}
		if err := tw.Flush(); err != nil {
			return err
		}
	}
	return nil
}

func humanBits(bps float64) string {
	for _, u := range []struct {
		div  float64
		name string
	}{{1e9, "G"}, {1e6, "M"}, {1e3, "k"}} {
		if bps >= u.div {
			return fmt.Sprintf("%.2f%s", bps/u.div, u.name)
		}
	}
	return fmt.Sprintf("%.0f", bps)
}

func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	_, err := unix.IoctlGetTermios(int(f.Fd()), unix.TCGETS)
	return err == nil
}
