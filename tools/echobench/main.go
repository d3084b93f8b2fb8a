// Command echobench measures the userstack against the kernel on one veth
// pair it creates, and prints a markdown table of ratios.
//
//	go run ./tools/echobench [-binary bin/xdpstack] [-rounds 3] [-bytes 268435456] [-mtu 9000] [-check-checksums]
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"

	"github.com/xdpstack/xdpstack/tools/internal/echobench"
)

func main() {
	var cfg echobench.Config
	flag.StringVar(&cfg.Binary, "binary", "bin/xdpstack", "the xdpstack binary whose attach daemon and echo server are measured")
	flag.IntVar(&cfg.Rounds, "rounds", 3, "interleaved rounds per figure (the median is reported)")
	flag.Int64Var(&cfg.Bytes, "bytes", 256<<20, "bytes each throughput run sends through the echo")
	flag.IntVar(&cfg.Conns, "conns", 2000, "connections per connection-rate round")
	flag.IntVar(&cfg.PingPongs, "pingpongs", 5000, "round trips per latency round")
	flag.IntVar(&cfg.MTU, "mtu", 0, "MTU of both ends of the veth pair (0: 1500)")
	flag.BoolVar(&cfg.CheckChecksums, "check-checksums", false, "the userstack checks received checksums, as on any interface but a veth, and the peer sends them whole")
	flag.Parse()
	cfg.Log = os.Stderr
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	r, err := echobench.Run(ctx, cfg)
	if err != nil {
		fmt.Fprintf(os.Stderr, "echobench: %v\n", err)
		os.Exit(1)
	}
	fmt.Print(r.Markdown())
}
