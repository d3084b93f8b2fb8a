package main

import (
	"fmt"
	"strconv"

	"github.com/urfave/cli/v2"

	"github.com/xdpstack/xdpstack/userstack"
)

// tcpFlags tune the userstack's TCP, for attach and for the echo verbs
// with --iface. The defaults are Linux's, but for the congestion control
// (userstack.TCPOptions).
var tcpFlags = []cli.Flag{
	&cli.StringFlag{Name: "tcp-cc", Value: "reno", Usage: "userstack TCP congestion control: reno or cubic (gVisor's cubic can stall a connection; see README)"},
	&cli.BoolFlag{Name: "tcp-sack", Value: true, Usage: "userstack TCP selective acknowledgements (--tcp-sack=false turns them off)"},
	&cli.StringFlag{Name: "tcp-send-buffer", Value: "4M", Usage: "largest send buffer userstack TCP auto-tuning may give a connection (4K to 1G; suffixes K, M, G)"},
	&cli.StringFlag{Name: "tcp-receive-buffer", Value: "6M", Usage: "largest receive buffer userstack TCP auto-tuning may give a connection (4K to 1G; suffixes K, M, G)"},
	&cli.IntFlag{Name: "tcp-backlog", Value: 4096, Usage: "accept queue of each userstack TCP listener (1 to 65535)"},
	&cli.StringFlag{Name: "procs", Value: "auto", Usage: "Go threads running at once (GOMAXPROCS) for the userstack and its apps: auto (one per queue, leaving a CPU to the kernel; GOMAXPROCS from the environment wins) or a number"},
	&cli.BoolFlag{Name: "check-checksums", Usage: "check received checksums on a veth too, as on every other interface (for tests and benchmarks: the peer must send whole checksums, its tx checksumming off)"},
}

// userstackOptions reads tcpFlags and checks them as the userstack would.
func userstackOptions(c *cli.Context) (userstack.Options, error) {
	var o userstack.Options
	t := &o.TCP
	t.CongestionControl = c.String("tcp-cc")
	t.NoSACK = !c.Bool("tcp-sack")
	t.Backlog = c.Int("tcp-backlog")
	o.CheckChecksums = c.Bool("check-checksums")
	switch p := c.String("procs"); p {
	case "auto":
		o.Procs = userstack.ProcsAuto
	default:
		n, err := strconv.Atoi(p)
		if err != nil || n < 1 || n > 4096 {
			return o, fmt.Errorf("--procs %q: want auto or a number from 1 to 4096", p)
		}
		o.Procs = n
	}
	for _, b := range []struct {
		flag string
		size *int
	}{{"tcp-send-buffer", &t.SendBuffer}, {"tcp-receive-buffer", &t.ReceiveBuffer}} {
		v, err := parseSize(c.String(b.flag))
		if err == nil && v == 0 {
			err = fmt.Errorf("want a size, not 0")
		}
		if err != nil {
			return o, fmt.Errorf("--%s: %w", b.flag, err)
		}
		*b.size = int(v)
	}
	if t.Backlog <= 0 { // 0 would be the userstack's default
		return o, fmt.Errorf("--tcp-backlog %d: want 1 to %d", t.Backlog, userstack.MaxBacklog)
	}
	if err := o.Validate(); err != nil {
		return o, fmt.Errorf("userstack tuning: %w", err)
	}
	return o, nil
}
