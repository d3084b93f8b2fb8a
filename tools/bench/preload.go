package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"time"

	"github.com/xdpstack/xdpstack/internal/testing/programs"
	"github.com/xdpstack/xdpstack/tools/internal/echobench"
	"github.com/xdpstack/xdpstack/tools/internal/tunnelbench"
)

// Ports of the preload comparison on host A: each server runs under
// `xdpstack run` on one and on kernel sockets on the other, both at
// once (iperf3 serves one client at a time on 5201, in turns).
const (
	runRedis, kernelRedis = 6380, 6379
	runNginx, kernelNginx = 80, 8080
	builtinEcho, runSocat = 7, 7007
)

// preloadRow is a figure of a program under `xdpstack run`: its value
// in every round against base's in the same round.
type preloadRow struct {
	name, unit, base, goal string
	run, against           []float64
}

// preloadBench measures on host A with the attach daemon on its
// interface, clients on host B.
type preloadBench struct {
	*bench
	rounds int
	// run launches programs under `xdpstack run`; nil until it is built,
	// when only the baselines are measured.
	run, kernel *programs.Launcher
	addr, dir   string
	stops       []func() error
}

// preloadSection measures unmodified programs on the userstack under
// `xdpstack run` against the same programs on kernel sockets, and the
// preload path against the built-in echo app, and returns the report's
// section. Until run and the library are built, it measures the
// baselines alone and says why.
func (b *bench) preloadSection(rounds int, tcpTime time.Duration, echoBytes string) (string, error) {
	for _, tool := range []string{"nginx", "wrk", "redis-server", "redis-benchmark", "socat"} {
		if _, err := exec.LookPath(tool); err != nil {
			return "", fmt.Errorf("needs %s (make deps)", tool)
		}
	}
	a := b.pair.A
	p := &preloadBench{bench: b, rounds: rounds, kernel: programs.Kernel(a), addr: a.Addr.String()}
	notBuilt := programs.PreloadBuilt(b.binary)
	if notBuilt == nil {
		p.run = programs.Preloaded(a, b.binary)
	} else {
		fmt.Fprintf(logOut, "  %v: measuring the baselines alone\n", notBuilt)
	}
	rows, err := p.measure(tcpTime, echoBytes)
	if err != nil {
		return "", err
	}
	var r strings.Builder
	r.WriteString("\n## Unmodified programs on the userstack: `xdpstack run` against kernel sockets\n\n")
	fmt.Fprintf(&r, "Host A runs `xdpstack attach` with the built-in echo app throughout, and each server twice: under `xdpstack run` on the userstack (libxdpstack.so preloaded) and on kernel sockets, on ports of their own; the clients run on host B on kernel sockets. The kernel side passes the attached XDP program too, as it would beside any `run`. iperf3 %s, one stream, B to A; redis-benchmark 50,000 requests from 50 clients; nginx with 2 workers under wrk, 32 connections for 3 s; the echo tester with %s through one connection.\n\n", tcpTime, echoBytes)
	if notBuilt != nil {
		fmt.Fprintf(&r, "Baselines alone: %v.\n\n", notBuilt)
	}
	r.WriteString("| figure | under `xdpstack run` | against | run / against, median of the rounds' ratios | floor | goal |\n|---|---:|---:|---:|---|---|\n")
	for _, row := range rows {
		run, ratio := "—", "—"
		if len(row.run) > 0 {
			run = fmt.Sprintf("%.2f", echobench.Median(row.run))
			ratio = fmt.Sprintf("**%.2f×**", echobench.MedianRatio(row.run, row.against))
		}
		fmt.Fprintf(&r, "| %s (%s), against %s | %s | %.2f | %s | reported | %s |\n", row.name, row.unit, row.base, run, echobench.Median(row.against), ratio, row.goal)
	}
	r.WriteString("\niperf3 cannot talk to the echo app, so the last row compares like with like: the same echo tester and bytes through socat's echo (`socat TCP-LISTEN:7007,fork EXEC:cat`: C programs, socat and cat, joined by a socket pair) under `xdpstack run`, and through the built-in echo app in the daemon: what the preload path, a socket pair and a process away, costs over an app inside the daemon.\n")
	return r.String(), nil
}

// measure starts the daemon and the servers, measures every row, and
// stops it all.
func (p *preloadBench) measure(tcpTime time.Duration, echoBytes string) (rows []preloadRow, err error) {
	detach, err := p.attachXdpstack("--app", fmt.Sprintf("echo=tcp://:%d", builtinEcho))
	if err != nil {
		return nil, err
	}
	defer func() {
		for i := len(p.stops) - 1; i >= 0; i-- {
			err = errors.Join(err, p.stops[i]())
		}
		err = errors.Join(err, detach())
	}()
	if p.dir, err = os.MkdirTemp("", "xdpstack-bench-preload"); err != nil {
		return nil, err
	}
	p.stops = append(p.stops, func() error { return os.RemoveAll(p.dir) })
	for _, figure := range []func() ([]preloadRow, error){
		func() ([]preloadRow, error) { return p.iperf3(tcpTime) },
		p.redis,
		p.nginx,
		func() ([]preloadRow, error) { return p.echo(echoBytes) },
	} {
		more, err := figure()
		if err != nil {
			return nil, err
		}
		rows = append(rows, more...)
	}
	return rows, nil
}

// iperf3 measures TCP from B to an iperf3 server on A that serves one
// client (-1), started afresh for each.
func (p *preloadBench) iperf3(tcpTime time.Duration) ([]preloadRow, error) {
	measure := func(l *programs.Launcher) func() (float64, error) {
		return func() (float64, error) {
			server, err := programs.Start(l.Command(context.Background(), "iperf3", "-s", "-1", "-B", p.addr))
			if err != nil {
				return 0, err
			}
			bps, err := tunnelbench.Throughput(context.Background(), p.pair.B, p.pair.A.Addr, tcpTime, 1)
			if serr := server.Stop(); err == nil && serr != nil {
				err = fmt.Errorf("iperf3 server (%s): %w", l.Mode(), serr)
			}
			return bps / 1e9, err
		}
	}
	row := preloadRow{name: "iperf3 TCP throughput, server on A", unit: "Gbit/s", base: "iperf3 on kernel sockets", goal: "0.8×"}
	err := p.pairRounds(&row, p.whenBuilt(measure(p.run)), measure(p.kernel))
	return []preloadRow{row}, err
}

// redis measures GET and SET against a redis-server of each side.
func (p *preloadBench) redis() ([]preloadRow, error) {
	if err := p.startEach(func(l *programs.Launcher, port int) error {
		dir, err := os.MkdirTemp(p.dir, "redis")
		if err != nil {
			return err
		}
		server, err := programs.StartRedis(l, dir, p.addr, port)
		if err == nil {
			p.stops = append(p.stops, server.Stop)
		}
		return err
	}, runRedis, kernelRedis); err != nil {
		return nil, err
	}
	var rows []preloadRow
	for _, test := range []string{"GET", "SET"} {
		measure := func(port int) func() (float64, error) {
			return func() (float64, error) {
				rps, err := programs.RedisBenchmark(context.Background(), p.pair.B, p.addr, port, strings.ToLower(test), 50_000, 50)
				return rps[test], err
			}
		}
		row := preloadRow{name: "redis-benchmark " + test + " requests per second, 50 clients", unit: "req/s", base: "redis-server on kernel sockets", goal: "0.8×"}
		if err := p.pairRounds(&row, p.whenBuilt(measure(runRedis)), measure(kernelRedis)); err != nil {
			return nil, err
		}
		rows = append(rows, row)
	}
	return rows, nil
}

// nginx measures wrk's requests per second against an nginx of each
// side, two workers each.
func (p *preloadBench) nginx() ([]preloadRow, error) {
	if err := p.startEach(func(l *programs.Launcher, port int) error {
		dir, err := os.MkdirTemp(p.dir, "nginx")
		if err != nil {
			return err
		}
		n, err := programs.StartNginx(context.Background(), l, dir, programs.NginxOptions{Listen: fmt.Sprintf("%s:%d", p.addr, port), Workers: 2})
		if err != nil {
			return err
		}
		p.stops = append(p.stops, n.Stop)
		_, err = n.WriteFile("index.html", 1152) // the apps section's page
		return err
	}, runNginx, kernelNginx); err != nil {
		return nil, err
	}
	measure := func(port int) func() (float64, error) {
		return func() (float64, error) { return p.wrk(fmt.Sprintf("http://%s:%d/index.html", p.addr, port)) }
	}
	row := preloadRow{name: "nginx requests per second, wrk 32 connections", unit: "req/s", base: "nginx on kernel sockets", goal: "0.8×"}
	err := p.pairRounds(&row, p.whenBuilt(measure(runNginx)), measure(kernelNginx))
	return []preloadRow{row}, err
}

// echo measures the echo tester through socat's echo under run against
// the built-in echo app.
func (p *preloadBench) echo(echoBytes string) ([]preloadRow, error) {
	if p.run != nil {
		// EXEC:cat, not PIPE: socat blocks writing a whole read into its
		// own pipe once the pipe is nearly full, and deadlocks when the
		// socket hands it 64 KiB at a time, as the preload pair does.
		socat, err := programs.Start(p.run.Command(context.Background(), "socat", "-d", "-d",
			fmt.Sprintf("TCP-LISTEN:%d,bind=%s,reuseaddr,fork", runSocat, p.addr), "EXEC:cat"))
		if err != nil {
			return nil, err
		}
		p.stops = append(p.stops, socat.Stop)
		if err := socat.WaitOutput("listening on", 10*time.Second); err != nil {
			return nil, err
		}
	}
	measure := func(port int) func() (float64, error) {
		return func() (float64, error) {
			return p.echoThroughput(fmt.Sprintf("tcp://%s:%d", p.addr, port), echoBytes)
		}
	}
	row := preloadRow{name: "TCP echo throughput, 1 connection, socat's echo", unit: "Gbit/s", base: "the built-in echo app", goal: "0.9×"}
	err := p.pairRounds(&row, p.whenBuilt(measure(runSocat)), measure(builtinEcho))
	return []preloadRow{row}, err
}

// startEach starts a server under run on runPort, once run is built,
// and one on kernel sockets on kernelPort.
func (p *preloadBench) startEach(start func(l *programs.Launcher, port int) error, runPort, kernelPort int) error {
	if p.run != nil {
		if err := start(p.run, runPort); err != nil {
			return err
		}
	}
	return start(p.kernel, kernelPort)
}

// whenBuilt is f, or nil until run is built.
func (p *preloadBench) whenBuilt(f func() (float64, error)) func() (float64, error) {
	if p.run == nil {
		return nil
	}
	return f
}

// pairRounds measures run (when not nil) and against in turn, rounds
// times, against first every other round, into row.
func (p *preloadBench) pairRounds(row *preloadRow, run, against func() (float64, error)) error {
	for round := range p.rounds {
		sides := []struct {
			name    string
			measure func() (float64, error)
			values  *[]float64
		}{{"run", run, &row.run}, {"base", against, &row.against}}
		if round%2 == 1 {
			sides[0], sides[1] = sides[1], sides[0]
		}
		for _, side := range sides {
			if side.measure == nil {
				continue
			}
			v, err := side.measure()
			if err != nil {
				return fmt.Errorf("%s, %s, round %d: %w", row.name, side.name, round+1, err)
			}
			*side.values = append(*side.values, v)
			fmt.Fprintf(logOut, "  %-55s %-4s round %d: %.4g\n", row.name, side.name, round+1, v)
		}
	}
	return nil
}
