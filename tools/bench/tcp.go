package main

import (
	"context"
	"encoding/json"
	"fmt"
	"time"
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
		var out []byte
		var err error
		// The first run may come before the server listens.
		for range 50 {
			out, err = b.pair.B.Command(context.Background(), "iperf3", "-J", "-c", a.Addr.String(),
				"-t", fmt.Sprint(int(length.Seconds()))).Output()
			if err == nil {
				break
			}
			time.Sleep(100 * time.Millisecond)
		}
		if err != nil {
			return 0, fmt.Errorf("iperf3: %w: %s", err, out)
		}
		var result struct {
			End struct {
				SumReceived struct {
					BitsPerSecond float64 `json:"bits_per_second"`
				} `json:"sum_received"`
			} `json:"end"`
		}
		if err := json.Unmarshal(out, &result); err != nil {
			return 0, fmt.Errorf("iperf3 output: %w", err)
		}
		return result.End.SumReceived.BitsPerSecond, nil
	})
}
