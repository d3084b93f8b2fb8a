// Command ctbench measures cut-through sessions against kernel TCP over
// loopback in one process, and prints a markdown table of ratios.
//
//	go run ./tools/ctbench [-rounds 5] [-bytes 1073741824] [-pingpongs 20000]
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"

	"github.com/xdpstack/xdpstack/tools/internal/ctbench"
)

func main() {
	var cfg ctbench.Config
	flag.IntVar(&cfg.Rounds, "rounds", 5, "interleaved rounds per figure (the median is reported)")
	flag.Int64Var(&cfg.Bytes, "bytes", 1<<30, "bytes each throughput run sends through the echo")
	flag.IntVar(&cfg.PingPongs, "pingpongs", 20000, "round trips per latency round")
	flag.Parse()
	if cfg.Rounds < 1 || cfg.Bytes < 1 || cfg.PingPongs < 100 {
		fmt.Fprintln(os.Stderr, "ctbench: -rounds and -bytes must be positive, -pingpongs at least 100")
		os.Exit(2)
	}
	cfg.Log = os.Stderr
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	r, err := ctbench.Run(ctx, cfg)
	if err != nil {
		fmt.Fprintf(os.Stderr, "ctbench: %v\n", err)
		os.Exit(1)
	}
	fmt.Print(r.Markdown())
}
