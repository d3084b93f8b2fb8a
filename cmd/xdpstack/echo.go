package main

import (
	"crypto/tls"
	"encoding/json"
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/xdpstack/xdpstack/daemon"
	"github.com/xdpstack/xdpstack/loader"
	"github.com/xdpstack/xdpstack/maps"
	"github.com/xdpstack/xdpstack/userstack"
	"github.com/xdpstack/xdpstack/userstack/apps"
	xtls "github.com/xdpstack/xdpstack/userstack/tls"
	"github.com/xdpstack/xdpstack/userstack/transport"
)

var (
	echoURIFlag   = &cli.StringFlag{Name: "uri", Usage: "tcp://, udp://, tls:// or quic:// [NAME]ADDR:PORT, NAME being the host name a tls or quic client verifies (required)"}
	echoIfaceFlag = &cli.StringFlag{Name: "iface", Usage: "run on the userstack of IFACE, attaching for the run (default: kernel sockets)"}
)

func echoCommand() *cli.Command {
	return &cli.Command{
		Name:  "echo",
		Usage: "the echo tester: an echo server and a client that measures it",
		Subcommands: []*cli.Command{
			{
				Name:  "server",
				Usage: "serve echo until SIGINT or SIGTERM",
				Flags: append([]cli.Flag{echoURIFlag, echoIfaceFlag,
					&cli.StringFlag{Name: "cert", Usage: "tls and quic: the server's certificate, a PEM file"},
					&cli.StringFlag{Name: "key", Usage: "tls and quic: the certificate's key, a PEM file"},
					&cli.StringFlag{Name: "test-cert", Usage: "tls and quic: generate a self-signed certificate for this host name instead"},
				}, tcpFlags...),
				Before: noArgs,
				Action: runEchoServer,
			},
			{
				Name:  "client",
				Usage: "send to an echo server and report throughput and connection rate",
				Flags: append([]cli.Flag{echoURIFlag, echoIfaceFlag,
					&cli.StringFlag{Name: "bytes", Value: "1M", Usage: "bytes each connection sends (suffixes K, M, G: powers of 1024)"},
					&cli.IntFlag{Name: "nclients", Value: 1, Usage: "connections at once (1 to 65535)"},
					&cli.BoolFlag{Name: "reflect", Usage: "read the echo back and count it (else drain it unread)"},
					&cli.BoolFlag{Name: "verify", Usage: "check every echoed byte (implies --reflect)"},
					&cli.BoolFlag{Name: "json", Usage: "print the result as one JSON object"},
					&cli.Float64Flag{Name: "stats", Value: 2, Usage: "print progress every SECS seconds to stderr (0: never; at most a day)"},
					&cli.StringFlag{Name: "ca-cert", Usage: "tls and quic: trust the CAs in this PEM file (default: the system's)"},
					&cli.BoolFlag{Name: "insecure", Usage: "tls and quic: do not verify the server's certificate"},
					&cli.IntFlag{Name: "streams", Value: 1, Usage: "quic: streams at once on each connection (1 to 1000)"},
					&cli.BoolFlag{Name: "uni", Usage: "quic: send on unidirectional streams; the server echoes on streams it opens"},
				}, tcpFlags...),
				Before: noArgs,
				Action: runEchoClient,
			},
		},
	}
}

// echoNetwork is the userstack of --iface, attached for the run, or the
// kernel's sockets; close undoes the attach.
func echoNetwork(c *cli.Context, spec *apps.Spec) (transport.Network, *daemon.Daemon, error) {
	ifname := c.String("iface")
	if ifname == "" {
		for _, f := range tcpFlags {
			if c.IsSet(f.Names()[0]) {
				return nil, nil, fmt.Errorf("--%s goes with --iface: kernel sockets follow the kernel's settings", f.Names()[0])
			}
		}
		return transport.Kernel, nil, nil
	}
	if err := maps.CheckIfaceName(ifname); err != nil {
		return nil, nil, fmt.Errorf("--iface: %w", err)
	}
	tuning, err := userstackOptions(settings{flags: c})
	if err != nil {
		return nil, nil, err
	}
	if err := needRoot(c); err != nil {
		return nil, nil, err
	}
	cfg := daemon.Config{Iface: ifname, Attach: loader.Options{Mode: loader.ModeAuto, PinRoot: c.String("pin-root")}, NeedUserstack: true, Userstack: tuning}
	if spec != nil {
		iface, err := loader.LookupInterface(ifname)
		if err != nil {
			return nil, nil, err
		}
		if err := userstack.CheckListenAddr(iface, spec.URI.Addr); err != nil {
			return nil, nil, fmt.Errorf("--uri: %w", err)
		}
		cfg.Apps = []apps.Spec{*spec}
	}
	d, err := daemon.Start(cfg)
	if err != nil {
		return nil, nil, err
	}
	return d.Stack, d, nil
}

// echoURI reads --uri, which both verbs need.
func echoURI(c *cli.Context) (transport.URI, error) {
	if !c.IsSet("uri") {
		return transport.URI{}, fmt.Errorf("--uri is required (e.g. --uri tcp://10.0.0.1:7)")
	}
	uri, err := transport.ParseURI(c.String("uri"))
	if err != nil {
		return transport.URI{}, fmt.Errorf("--uri: %w", err)
	}
	return uri, nil
}

func runEchoServer(c *cli.Context) error {
	uri, err := echoURI(c)
	if err != nil {
		return err
	}
	opts := map[string]string{}
	for _, name := range []string{"cert", "key", "test-cert"} {
		if c.IsSet(name) {
			opts[name] = c.String(name)
		}
	}
	spec, err := apps.NewSpec("echo", uri, opts)
	if err != nil {
		return fmt.Errorf("echo server: %w", err)
	}
	n, d, err := echoNetwork(c, &spec)
	if err != nil {
		return err
	}
	if d != nil {
		defer d.Close()
		fmt.Fprintf(c.App.Writer, "echo serving on %s (userstack of %s, AF_XDP %s mode)\n", d.Apps[0].Addr(), d.Iface.Name, d.Stack.Sockets()[0].Mode)
	} else {
		srv, err := apps.StartEcho(n, uri, spec.TLS)
		if err != nil {
			return err
		}
		defer srv.Close()
		fmt.Fprintf(c.App.Writer, "echo serving on %s (kernel)\n", srv.Addr())
	}
	<-c.Context.Done()
	return nil
}

func runEchoClient(c *cli.Context) error {
	uri, err := echoURI(c)
	if err != nil {
		return err
	}
	if !uri.Addr.IsValid() || uri.Addr.IsUnspecified() || uri.Port == 0 {
		return fmt.Errorf("--uri %s: a client needs the server's address and a port from 1 to 65535", uri)
	}
	size, err := parseSize(c.String("bytes"))
	if err != nil {
		return fmt.Errorf("--bytes: %w", err)
	}
	// Each client is a connection, from a port of its own.
	if n := c.Int("nclients"); n < 1 || n > 65535 {
		return fmt.Errorf("--nclients %d: want 1 to 65535", n)
	}
	const maxStats = 24 * 60 * 60
	if secs := c.Float64("stats"); !(secs >= 0 && secs <= maxStats) { // NaN fails both
		return fmt.Errorf("--stats %v: want 0 to %d seconds", secs, maxStats)
	}
	if !uri.Secure() && (c.IsSet("ca-cert") || c.IsSet("insecure")) {
		return fmt.Errorf("--ca-cert and --insecure go with tls:// or quic://")
	}
	if uri.Scheme != transport.QUIC && (c.IsSet("streams") || c.IsSet("uni")) {
		return fmt.Errorf("--streams and --uni go with quic://")
	}
	// quic-go lets a peer open 100 streams at once; more wait their turn.
	if n := c.Int("streams"); n < 1 || n > 1000 {
		return fmt.Errorf("--streams %d: want 1 to 1000", n)
	}
	var clientTLS *tls.Config
	if uri.Secure() {
		if clientTLS, err = xtls.ClientConfig(xtls.ClientOptions{CAFile: c.String("ca-cert"), InsecureSkipVerify: c.Bool("insecure")}); err != nil {
			return err
		}
	}
	n, d, err := echoNetwork(c, nil)
	if err != nil {
		return err
	}
	if d != nil {
		defer d.Close()
	}
	r, runErr := apps.RunClient(c.Context, n, apps.ClientConfig{
		URI:        uri,
		TLS:        clientTLS,
		Streams:    c.Int("streams"),
		Uni:        c.Bool("uni"),
		Bytes:      size,
		Clients:    c.Int("nclients"),
		Reflect:    c.Bool("reflect") || c.Bool("verify"),
		Verify:     c.Bool("verify"),
		Progress:   c.App.ErrWriter,
		StatsEvery: time.Duration(c.Float64("stats") * float64(time.Second)),
	})
	if c.Bool("json") {
		b, _ := json.Marshal(r)
		fmt.Fprintln(c.App.Writer, string(b))
	} else {
		fmt.Fprintf(c.App.Writer, "sent %d bytes, received %d in %.3fs: %.3f Gbit/s\n", r.BytesSent, r.BytesReceived, r.Seconds, r.ThroughputGbps)
		fmt.Fprintf(c.App.Writer, "%d connections, %.0f/s; connect p50 %.0fus p99 %.0fus; %d verify errors\n",
			r.Connections, r.ConnectionsPerSecond, r.ConnectP50us, r.ConnectP99us, r.VerifyErrors)
	}
	if runErr == nil && r.VerifyErrors > 0 {
		runErr = fmt.Errorf("%d bytes of the echo differ from what was sent", r.VerifyErrors)
	}
	return runErr
}

// parseSize reads a byte count with an optional K, M or G suffix
// (powers of 1024).
func parseSize(s string) (int64, error) {
	digits, mult := s, int64(1)
	for i, suffix := range []string{"K", "M", "G"} {
		if d, ok := strings.CutSuffix(s, suffix); ok {
			digits, mult = d, 1<<(10*(i+1))
		}
	}
	v, err := strconv.ParseInt(digits, 10, 64)
	if err != nil || v < 0 {
		return 0, fmt.Errorf("%q is not a byte count (e.g. 1000, 64K, 1G)", s)
	}
	if v > math.MaxInt64/mult {
		return 0, fmt.Errorf("%q is more bytes than can be counted (at most %dG)", s, math.MaxInt64>>30)
	}
	return v * mult, nil
}
