package main

import (
	"context"
	"fmt"
	"time"

	"github.com/xdpstack/xdpstack/tools/internal/tunnelbench"
)

// tcpThroughput runs iperf3 from host B to a kernel server on host A,
// with each setup on A's interface.
func (b *bench) tcpThroughput(rounds int, length time.Duration) (measured, error) {
	a := b.pair.A
	server := a.Command(context.Background(), "iperf3", "-s", "-B", a.Addr.String())
	if err := server.Start(); err != nil {
		return nil, err
	}
	defer func() { server.Process.Kill(); server.Wait() }()

	fmt.Fprintln(logOut, "kernel TCP throughput (bit/s):")
	return b.interleave([]setup{none, minimalPass, xdpstack}, rounds, func(setup) (float64, error) {
		return tunnelbench.Throughput(context.Background(), b.pair.B, a.Addr, length, 1)
	})
}
