// Command bench measures xdpstack side by side with the kernel on one veth
// pair in one run, and prints (and with -o writes) a markdown table of
// ratios. Every figure is the median of interleaved rounds, and every ratio
// the median of the rounds' ratios, because these machines are noisy and
// absolute numbers drift.
//
//	go run ./tools/bench -binary bin/xdpstack [-rounds 7] [-only apps] [-o BENCHMARKS.md]
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"slices"
	"strings"
	"time"

	"github.com/xdpstack/xdpstack/internal/testing/hosts"
	"github.com/xdpstack/xdpstack/tools/internal/ctbench"
	"github.com/xdpstack/xdpstack/tools/internal/echobench"
	"github.com/xdpstack/xdpstack/tools/internal/pingpong"
)

func main() {
	binary := flag.String("binary", "bin/xdpstack", "the xdpstack binary to attach")
	rounds := flag.Int("rounds", 7, "interleaved rounds per figure (the median is reported)")
	tcpTime := flag.Duration("tcp-time", 4*time.Second, "length of one iperf3 run")
	frames := flag.Uint("frames", 2_000_000, "frames the generator sends per pps round")
	echoBytes := flag.String("echo-bytes", "64M", "bytes one TLS or QUIC echo run sends")
	out := flag.String("o", "", "also write the report to this file")
	onlyList := flag.String("only", strings.Join(sections, ","), "the sections to measure, comma-separated")
	flag.Parse()
	only, err := parseSections(*onlyList)
	if err == nil && *out != "" && len(only) != len(sections) {
		err = errors.New("-o writes the whole report: leave out -only")
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(2)
	}
	if *rounds < 1 || *tcpTime < time.Second || *frames == 0 {
		fmt.Fprintln(os.Stderr, "bench: -rounds must be at least 1, -tcp-time at least 1s, -frames positive")
		os.Exit(2)
	}
	if _, err := os.Stat(*binary); err != nil {
		fmt.Fprintf(os.Stderr, "bench: -binary: %v (build it: make build)\n", err)
		os.Exit(2)
	}
	report, err := run(*binary, *rounds, *tcpTime, uint32(*frames), *echoBytes, only)
	if err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(1)
	}
	fmt.Print(report)
	if *out != "" {
		if err := os.WriteFile(*out, []byte(report), 0o644); err != nil {
			fmt.Fprintln(os.Stderr, "bench:", err)
			os.Exit(1)
		}
	}
}

// sections are the parts of the report, in order.
var sections = []string{"fastpath", "rules", "sampling", "psp-acl", "apps", "userstack", "latency", "cutthrough", "tunnels", "preload"}

func run(binary string, rounds int, tcpTime time.Duration, frames uint32, echoBytes string, only map[string]bool) (string, error) {
	if _, err := exec.LookPath("iperf3"); err != nil {
		return "", fmt.Errorf("needs iperf3 (make deps)")
	}
	pair, err := hosts.NewPair(0)
	if err != nil {
		return "", err
	}
	defer pair.Close()
	b := &bench{pair: pair, binary: binary}

	var r strings.Builder
	fmt.Fprintf(&r, "# Benchmarks\n\nMeasured %s on %s with `make bench` (`go run ./tools/bench -binary bin/xdpstack -o BENCHMARKS.md`).\n",
		time.Now().UTC().Format("2006-01-02"), machine())
	fmt.Fprintf(&r, "Each figure is the median of %d interleaved rounds on one veth pair between two network namespaces; each ratio the median of the rounds' ratios. The packet-rate figures send with the bench on one CPU, where the veth then receives too.\n", rounds)
	if only["fastpath"] || only["rules"] {
		fmt.Fprintf(&r, "\n## Fast path: what passing through xdpstack costs the kernel\n\n")
	}
	if only["fastpath"] {
		tcp, err := b.tcpThroughput(rounds, tcpTime)
		if err != nil {
			return "", fmt.Errorf("tcp throughput: %w", err)
		}
		pps, err := b.passRate(rounds, frames)
		if err != nil {
			return "", fmt.Errorf("pass rate: %w", err)
		}
		fmt.Fprintf(&r, "| figure | no XDP | minimal XDP_PASS | xdpstack | xdpstack / XDP_PASS | xdpstack / no XDP | target |\n|---|---:|---:|---:|---:|---:|---|\n")
		fmt.Fprintf(&r, "| kernel TCP throughput, iperf3 %s (Gbit/s) | %.2f | %.2f | %.2f | **%.3f×** | %.3f× | ≥ 0.97× XDP_PASS |\n",
			tcpTime, tcp.median(none)/1e9, tcp.median(minimalPass)/1e9, tcp.median(xdpstack)/1e9, tcp.ratio(xdpstack, minimalPass), tcp.ratio(xdpstack, none))
		fmt.Fprintf(&r, "| packets passed to the kernel, 64 B UDP (Mpps) | %.2f | %.2f | %.2f | **%.3f×** | %.3f× | ≥ 0.90× XDP_PASS |\n\n",
			pps.median(none)/1e6, pps.median(minimalPass)/1e6, pps.median(xdpstack)/1e6, pps.ratio(xdpstack, minimalPass), pps.ratio(xdpstack, none))
	}
	if only["rules"] {
		drop, rules, err := b.ruleFigures(rounds, frames)
		if err != nil {
			return "", fmt.Errorf("session rules: %w", err)
		}
		fmt.Fprintf(&r, "| figure | baseline | xdpstack | xdpstack / baseline | target |\n|---|---:|---:|---:|---|\n")
		fmt.Fprintf(&r, "| frames dropped by a deny rule, 64 B UDP (Mpps), against minimal XDP_DROP | %.2f | %.2f | **%.3f×** | ≥ 0.85× |\n",
			drop.median(minimalDrop)/1e6, drop.median(xdpstackDeny)/1e6, drop.ratio(xdpstackDeny, minimalDrop))
		fmt.Fprintf(&r, "| packets passed to the kernel, 64 B UDP (Mpps), %d rules in 8 shapes against none | %.2f | %.2f | **%.3f×** | ≥ 0.90× |\n\n",
			manyRules, rules.median(xdpstack)/1e6, rules.median(xdpstackRules)/1e6, rules.ratio(xdpstackRules, xdpstack))
	}
	if only["fastpath"] || only["rules"] {
		r.WriteString(notes)
	}
	if only["rules"] {
		rows, err := b.ruleChanges()
		if err != nil {
			return "", fmt.Errorf("rule changes: %w", err)
		}
		fmt.Fprintf(&r, "\n## Rule changes\n\nOn a running `attach` daemon, each table growing as it goes; one run each.\n\n| how | made | rate |\n|---|---:|---:|\n")
		for _, row := range rows {
			fmt.Fprintf(&r, "| %s | %d %s | **%.0f %s/s** |\n", row.how, row.changes, row.unit, row.rate, row.unit)
		}
	}
	if only["sampling"] {
		pass, err := b.samplingFigures(rounds, frames)
		if err != nil {
			return "", fmt.Errorf("sampling: %w", err)
		}
		all, err := b.captureAll(rounds, frames)
		if err != nil {
			return "", fmt.Errorf("capture --all: %w", err)
		}
		fmt.Fprintf(&r, "\n## Sampling and capture\n\n")
		fmt.Fprintf(&r, "| figure | baseline | xdpstack | xdpstack / baseline | floor | goal |\n|---|---:|---:|---:|---|---|\n")
		fmt.Fprintf(&r, "| packets passed to the kernel, 64 B UDP (Mpps), sampling off, against minimal XDP_PASS | %.2f | %.2f | **%.3f×** | 0.97× | 1.0× |\n",
			pass.median(minimalPass)/1e6, pass.median(xdpstack)/1e6, pass.ratio(xdpstack, minimalPass))
		fmt.Fprintf(&r, "| packets passed to the kernel, 64 B UDP (Mpps), `--sample-rate %d` with a capture reading, against sampling off | %.2f | %.2f | **%.3f×** | 0.95× | 0.99× |\n",
			sampledRate, pass.median(xdpstack)/1e6, pass.median(xdpstackSampled)/1e6, pass.ratio(xdpstackSampled, xdpstack))
		fmt.Fprintf(&r, "| `capture --all -w /dev/null` of 64 B UDP (Mpps): packets captured against packets offered | %.2f | %.2f | **%.3f×** | reported | 1.0× |\n\n",
			all.offered/1e6, all.captured/1e6, all.kept)
		r.WriteString(samplingNotes)
	}
	if only["psp-acl"] {
		rates, frameLen, err := b.pspACLFigure(rounds, frames)
		if err != nil {
			return "", fmt.Errorf("psp acl: %w", err)
		}
		fmt.Fprintf(&r, "\n## PSP: the receive ACL in XDP\n\n")
		fmt.Fprintf(&r, "| figure | minimal XDP_DROP | xdpstack | xdpstack / XDP_DROP, median of the rounds' ratios | floor | goal |\n|---|---:|---:|---:|---|---|\n")
		fmt.Fprintf(&r, "| %d B PSP frames (tunnel mode, an inner IPv4 header) under an unknown SPI dropped (Mpps) | %.2f | %.2f | **%.3f×** | 0.85× | 0.95× |\n\n",
			frameLen, rates.median(minimalDrop)/1e6, rates.median(xdpstackPSP)/1e6, rates.ratio(xdpstackPSP, minimalDrop))
		r.WriteString(pspACLNotes)
	}
	if only["apps"] {
		fmt.Fprintln(logOut, "transports and apps:")
		appRows, err := b.appFigures(rounds, echoBytes)
		if err != nil {
			return "", fmt.Errorf("apps: %w", err)
		}
		fmt.Fprintf(&r, "\n## Transports and apps: the userstack against the kernel\n\n")
		fmt.Fprintf(&r, "The same Go code (crypto/tls, quic-go, the HTTP app's handler) on the userstack and on kernel sockets of the same host; clients on the peer host on kernel sockets (the echo tester with %s per run, wrk for 3 s).\n\n", echoBytes)
		fmt.Fprintf(&r, "| figure | userstack | kernel | userstack / kernel | target |\n|---|---:|---:|---:|---|\n")
		for _, row := range appRows {
			fmt.Fprintf(&r, "| %s (%s) | %.2f | %.2f | **%.2f×** | %s |\n", row.name, row.unit, row.user, row.kernel, row.user/row.kernel, row.target)
		}
	}
	if only["userstack"] {
		// Each run on a fresh pair of its own.
		for _, run := range []struct {
			mtu   int
			check bool
		}{{1500, false}, {9000, false}, {1500, true}} {
			title, flags := fmt.Sprintf("MTU %d", run.mtu), fmt.Sprintf("-mtu %d", run.mtu)
			if run.check {
				title, flags = title+", checksums checked", flags+" -check-checksums"
			}
			fmt.Fprintf(logOut, "userstack against the kernel, %s:\n", title)
			rep, err := echobench.Run(context.Background(), echobench.Config{Binary: binary, Rounds: rounds, MTU: run.mtu, CheckChecksums: run.check, Log: logOut})
			if err != nil {
				return "", fmt.Errorf("echobench, %s: %w", title, err)
			}
			fmt.Fprintf(&r, "\n## The userstack against the kernel, %s\n\n`go run ./tools/echobench %s`: the echo app on the userstack in the attach daemon, and the echo server on kernel sockets, each in a process of its own on one host; the clients on the peer.\n\n%s", title, flags, rep.Markdown())
		}
	}
	if only["latency"] {
		fmt.Fprintln(logOut, "latency breakdown:")
		rep, err := pingpong.Run(context.Background(), pingpong.Config{Rounds: rounds, Log: logOut})
		if err != nil {
			return "", fmt.Errorf("latency breakdown: %w", err)
		}
		fmt.Fprintf(&r, "\n## Where a 1-byte ping-pong's time goes\n\n`go run ./tools/pingpong`: a separate client process on the peer stamps each round trip, the userstack marks where the message passes (`internal/stagetime`).\n\n%s", rep.Markdown())
	}
	if only["cutthrough"] {
		fmt.Fprintln(logOut, "cut-through sessions:")
		rep, err := ctbench.Run(context.Background(), ctbench.Config{Rounds: rounds, Log: logOut})
		if err != nil {
			return "", fmt.Errorf("cut-through: %w", err)
		}
		fmt.Fprintf(&r, "\n## Session layer: cut-through sessions against kernel TCP over loopback\n\n`go run ./tools/ctbench`: a local-scope connect joined in memory to a listener of its namespace (`userstack/cutthrough`), against the same client and echo app on 127.0.0.1.\n\n%s", rep.Markdown())
	}
	if only["tunnels"] {
		fmt.Fprintln(logOut, "tunnels:")
		section, err := tunnelFigures(binary, rounds, tcpTime)
		if err != nil {
			return "", fmt.Errorf("tunnels: %w", err)
		}
		r.WriteString(section)
	}
	if only["preload"] {
		fmt.Fprintln(logOut, "programs under xdpstack run:")
		section, err := b.preloadSection(rounds, tcpTime, echoBytes)
		if err != nil {
			return "", fmt.Errorf("preload: %w", err)
		}
		r.WriteString(section)
	}
	return r.String(), nil
}

// parseSections reads -only: a comma-separated list of sections.
func parseSections(list string) (map[string]bool, error) {
	only := map[string]bool{}
	for _, name := range strings.Split(list, ",") {
		if !slices.Contains(sections, name) {
			return nil, fmt.Errorf("-only %q: unknown section %q (want some of %s)", list, name, strings.Join(sections, ","))
		}
		only[name] = true
	}
	return only, nil
}

const notes = `Notes:

- **Why minimal XDP_PASS is the baseline.** As soon as any XDP program is
  attached to a veth, the veth turns off GSO/GRO for the traffic its peer
  sends it (it must hand the program single frames), so TCP moves in
  MTU-sized segments instead of 64 KiB ones, and it copies every frame the
  peer sends into a page of its own before the program runs
  (skb_pp_cow_data). That costs the kernel the same whatever the program
  does; the ratio against no XDP at all shows that cost, and the ratio
  against a program that only returns XDP_PASS shows what xdpstack itself
  adds: parsing, the listener lookup and the per-CPU counters.
- **How packets per second are generated.** This kernel has no pktgen and
  refuses BPF_PROG_TEST_RUN's live frames (EPERM), so the peer sends one
  64-byte UDP frame over and over through an AF_XDP socket's TX ring (copy
  mode, ` + "`tools/internal/pktgen`" + `); the frames arrive on the measured veth as
  any packet from the peer does, as skbs, where XDP (none, minimal or
  xdpstack) passes them to the kernel stack (UDP to a closed port). The rate
  is frames received by the measured veth divided by wall time. The
  generator and the receiver share the CPU the generator runs on (veth
  schedules the receive softirq there), so the figure is the cost of the
  whole path, of which the XDP program is one part.
`

const samplingNotes = `The sampled pass rate and the capture run the real ` + "`xdpstack capture`" + ` in a process of its own,
writing pcapng to /dev/null; "captured" is the count in its summary, "offered" the frames the
interface received, both over the generator's sending time.
`

const pspACLNotes = `The generator sends the frame over and over, as for the 64 B figures; ` + "`xdpstack`" + ` is the real
` + "`attach`" + ` with the PSP check switched on through its pins and no SPI issued, so that every frame
is dropped as drop/psp_spi after the session rules, the served-address lookup, the header checks and
the SPI lookup. ` + "`go run ./tools/xdpcost`" + ` shows the same in ns per frame.
`

// settle is how long a setup runs before it is measured.
const settle = time.Second

// logOut shows progress while the report is being measured.
var logOut = os.Stderr

func machine() string {
	out, err := exec.Command("uname", "-r").Output()
	if err != nil {
		return "Linux"
	}
	return "Linux " + strings.TrimSpace(string(out))
}

// setup is what is attached to the measured interface.
type setup int

const (
	none setup = iota
	minimalPass
	xdpstack
	minimalDrop
	xdpstackDeny  // a deny rule for the generator's frames
	xdpstackRules // manyRules rules, none for the generator's frames
	// xdpstackSampled samples 1 in 2^sampledRate, a capture reading.
	xdpstackSampled
	// xdpstackPSP has the PSP check on and no SPI issued.
	xdpstackPSP
)

func (s setup) String() string {
	return [...]string{"no XDP", "minimal XDP_PASS", "xdpstack", "minimal XDP_DROP", "xdpstack deny rule", "xdpstack 10k rules", "xdpstack sampled", "xdpstack PSP check"}[s]
}

type bench struct {
	pair   *hosts.Pair
	binary string
}

// interleave runs measure for every setup in turn, rounds times. Every
// other round runs the setups in the reverse order, and each measurement
// starts after the attach settled, so that neither order nor start-up
// favours a setup.
func (b *bench) interleave(setups []setup, rounds int, measure func(setup) (float64, error)) (measured, error) {
	m := make(measured)
	for round := range rounds {
		order := slices.Clone(setups)
		if round%2 == 1 {
			slices.Reverse(order)
		}
		for _, s := range order {
			detach, err := b.attach(s)
			if err != nil {
				return nil, fmt.Errorf("attach %v: %w", s, err)
			}
			time.Sleep(settle)
			v, err := measure(s)
			if derr := detach(); err == nil {
				err = derr
			}
			if err != nil {
				return nil, fmt.Errorf("%v, round %d: %w", s, round+1, err)
			}
			m[s] = append(m[s], v)
			fmt.Fprintf(logOut, "  %-17s round %d: %.4g\n", s, round+1, v)
		}
	}
	return m, nil
}

// measured holds each setup's value in every round, in round order.
type measured map[setup][]float64

// median is setup s's median value.
func (m measured) median(s setup) float64 { return echobench.Median(slices.Clone(m[s])) }

// ratio is the median over the rounds of a's value over b's in the
// same round (echobench.MedianRatio).
func (m measured) ratio(a, b setup) float64 { return echobench.MedianRatio(m[a], m[b]) }
