package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/xdpstack/xdpstack/internal/testing/programs"
	"github.com/xdpstack/xdpstack/tools/internal/echobench"
	"github.com/xdpstack/xdpstack/userstack/apps"
	"github.com/xdpstack/xdpstack/userstack/apps/httpapp"
	"github.com/xdpstack/xdpstack/userstack/transport"
)

// Ports of the app comparison: the userstack serves one, the kernel the
// other, both on host A's address, with the same application code.
const (
	userPort   = 7443
	kernelPort = 8443
	userHTTP   = 80
	kernelHTTP = 8080
)

// appRow is one figure of the transports and apps.
type appRow struct {
	name, unit, target string
	user, kernel       float64
}

// appFigures measures TLS and QUIC echo throughput and HTTP requests per
// second, the userstack against the kernel, clients on host B.
func (b *bench) appFigures(rounds int, echoBytes string) ([]appRow, error) {
	root, err := os.MkdirTemp("", "xdpstack-bench-www")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(root)
	if err := os.WriteFile(filepath.Join(root, "index.html"), []byte(strings.Repeat("xdpstack ", 128)), 0o644); err != nil {
		return nil, err
	}
	detach, err := b.attachXdpstack(
		"--app", fmt.Sprintf("echo=tls://:%d,test-cert=bench.test", userPort),
		"--app", fmt.Sprintf("echo=quic://:%d,test-cert=bench.test", userPort),
		"--app", fmt.Sprintf("http=tcp://:%d,root=%s", userHTTP, root))
	if err != nil {
		return nil, err
	}
	defer detach()
	stop, err := b.kernelApps(root)
	if err != nil {
		return nil, err
	}
	defer stop()

	addr := b.pair.A.Addr.String()
	figures := []struct {
		row     appRow
		measure func(port int) (float64, error)
		ports   [2]int
	}{
		{appRow{name: "TLS echo throughput, 1 connection", unit: "Gbit/s", target: "≥ 1.0×"},
			func(port int) (float64, error) {
				return b.echoThroughput(fmt.Sprintf("tls://%s:%d", addr, port), echoBytes)
			},
			[2]int{userPort, kernelPort}},
		{appRow{name: "QUIC echo throughput, 1 connection", unit: "Gbit/s", target: "≥ 1.0×"},
			func(port int) (float64, error) {
				return b.echoThroughput(fmt.Sprintf("quic://%s:%d", addr, port), echoBytes)
			},
			[2]int{userPort, kernelPort}},
		{appRow{name: "HTTP requests per second, wrk 32 connections", unit: "req/s", target: "≥ 1.0×"},
			func(port int) (float64, error) { return b.wrk(fmt.Sprintf("http://%s:%d/index.html", addr, port)) },
			[2]int{userHTTP, kernelHTTP}},
	}
	var rows []appRow
	for _, f := range figures {
		var user, kernel []float64
		for round := range rounds {
			for side, port := range f.ports {
				v, err := f.measure(port)
				if err != nil {
					return nil, fmt.Errorf("%s, round %d: %w", f.row.name, round+1, err)
				}
				if side == 0 {
					user = append(user, v)
				} else {
					kernel = append(kernel, v)
				}
				fmt.Fprintf(logOut, "  %-45s %-9s round %d: %.4g\n", f.row.name, [2]string{"userstack", "kernel"}[side], round+1, v)
			}
		}
		f.row.user, f.row.kernel = echobench.Median(user), echobench.Median(kernel)
		rows = append(rows, f.row)
	}
	return rows, nil
}

// kernelApps serves the same echo and HTTP code on kernel sockets of
// host A.
func (b *bench) kernelApps(root string) (func() error, error) {
	a := b.pair.A
	var closers []func() error
	stop := func() error {
		var errs []error
		for _, c := range closers {
			errs = append(errs, c())
		}
		return errors.Join(errs...)
	}
	for _, scheme := range []transport.Scheme{transport.TLS, transport.QUIC} {
		uri := transport.URI{Scheme: scheme, Addr: a.Addr, Port: kernelPort}
		spec, err := apps.NewSpec("echo", uri, map[string]string{"test-cert": "bench.test"})
		if err != nil {
			return nil, errors.Join(err, stop())
		}
		srv, err := apps.StartEcho(a, uri, spec.TLS)
		if err != nil {
			return nil, errors.Join(err, stop())
		}
		closers = append(closers, srv.Close)
	}
	h, err := httpapp.New(httpapp.Options{Root: root})
	if err != nil {
		return nil, errors.Join(err, stop())
	}
	srv, err := httpapp.Listen(a, transport.URI{Scheme: transport.TCP, Addr: a.Addr, Port: kernelHTTP}, nil, h)
	if err != nil {
		return nil, errors.Join(err, h.Close(), stop())
	}
	closers = append(closers, func() error { return srv.Close(context.Background()) }, h.Close)
	return stop, nil
}

// echoThroughput runs the echo tester from host B, on kernel sockets
// (tls and quic: not checking the test certificate).
func (b *bench) echoThroughput(uri, bytes string) (float64, error) {
	// A stalled transfer fails the run instead of hanging it.
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	args := []string{"echo", "client", "--uri", uri, "--bytes", bytes, "--json", "--stats", "0"}
	if !strings.HasPrefix(uri, "tcp://") {
		args = append(args, "--insecure")
	}
	out, err := b.pair.B.Command(ctx, b.binary, args...).Output()
	if err != nil {
		return 0, fmt.Errorf("echo client %s: %w: %s", uri, err, out)
	}
	var r struct {
		ThroughputGbps float64 `json:"throughput_gbps"`
	}
	if err := json.Unmarshal(out, &r); err != nil {
		return 0, fmt.Errorf("echo client output: %w", err)
	}
	return r.ThroughputGbps, nil
}

// wrk loads url from host B for a bounded three seconds.
func (b *bench) wrk(url string) (float64, error) {
	w, err := programs.RunWrk(context.Background(), b.pair.B, "-t2", "-c32", "-d3s", url)
	return w.PerSecond, err
}
