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

// userstackOptions reads the tcpFlags' settings and checks them as the
// userstack would, each on its own so that an error names its key.
func userstackOptions(s settings) (userstack.Options, error) {
	var o userstack.Options
	t := &o.TCP
	set := func(key string, f func(*userstack.Options)) error {
		var one userstack.Options
		f(&one)
		f(&o)
		if err := one.Validate(); err != nil {
			return fmt.Errorf("%s: %w", s.label(key), err)
		}
		return nil
	}
	if err := set("tcp-cc", func(o *userstack.Options) { o.TCP.CongestionControl = s.String("tcp-cc") }); err != nil {
		return o, err
	}
	t.NoSACK = !s.Bool("tcp-sack")
	o.CheckChecksums = s.Bool("check-checksums")
	switch p := s.String("procs"); p {
	case "auto":
		o.Procs = userstack.ProcsAuto
	default:
		n, err := strconv.Atoi(p)
		if err != nil || n < 1 || n > 4096 {
			return o, fmt.Errorf("%s %q: want auto or a number from 1 to 4096", s.label("procs"), p)
		}
		o.Procs = n
	}
	for _, b := range []struct {
		key  string
		size func(*userstack.Options) *int
	}{
		{"tcp-send-buffer", func(o *userstack.Options) *int { return &o.TCP.SendBuffer }},
		{"tcp-receive-buffer", func(o *userstack.Options) *int { return &o.TCP.ReceiveBuffer }},
	} {
		v, err := parseSize(s.String(b.key))
		if err == nil && v == 0 {
			err = fmt.Errorf("want a size, not 0")
		}
		if err == nil {
			err = set(b.key, func(o *userstack.Options) { *b.size(o) = int(v) })
		} else {
			err = fmt.Errorf("%s: %w", s.label(b.key), err)
		}
		if err != nil {
			return o, err
		}
	}
	backlog := s.Int("tcp-backlog")
	if backlog <= 0 { // 0 would be the userstack's default
		return o, fmt.Errorf("%s %d: want 1 to %d", s.label("tcp-backlog"), backlog, userstack.MaxBacklog)
	}
	if err := set("tcp-backlog", func(o *userstack.Options) { o.TCP.Backlog = backlog }); err != nil {
		return o, err
	}
	if err := o.Validate(); err != nil {
		return o, fmt.Errorf("userstack tuning: %w", err)
	}
	return o, nil
}
