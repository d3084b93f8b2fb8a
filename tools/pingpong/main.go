// Command pingpong breaks a 1-byte ping-pong through the userstack down
// into stages, on a veth pair it creates, against the same echo on
// kernel sockets, and prints a markdown table.
//
//	go run ./tools/pingpong [-n 5000] [-rounds 3]
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"

	"github.com/xdpstack/xdpstack/tools/internal/pingpong"
)

func main() {
	var cfg pingpong.Config
	flag.IntVar(&cfg.RoundTrips, "n", 5000, "round trips per round")
	flag.IntVar(&cfg.Rounds, "rounds", 3, "interleaved rounds per stack (the median is reported)")
	flag.Parse()
	if cfg.RoundTrips < 1 || cfg.Rounds < 1 {
		fmt.Fprintln(os.Stderr, "pingpong: -n and -rounds must be at least 1")
		os.Exit(2)
	}
	cfg.Log = os.Stderr
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	r, err := pingpong.Run(ctx, cfg)
	if err != nil {
		fmt.Fprintf(os.Stderr, "pingpong: %v\n", err)
		os.Exit(1)
	}
	fmt.Print(r.Markdown())
}
