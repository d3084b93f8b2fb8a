// Package ctbench measures cut-through sessions (userstack/cutthrough)
// against kernel TCP over loopback in one process and one run: the echo
// app and the echo client of userstack/apps over each, echo throughput
// of one stream and 1-byte ping-pong latency, in interleaved rounds. It
// is a library so that tools/bench can fold its rows into the project's
// report; tools/ctbench runs it alone.
package ctbench

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"slices"
	"strings"
	"sync/atomic"
	"time"

	"github.com/xdpstack/xdpstack/tools/internal/echobench"
	"github.com/xdpstack/xdpstack/userstack/apps"
	"github.com/xdpstack/xdpstack/userstack/cutthrough"
	"github.com/xdpstack/xdpstack/userstack/transport"
)

// Config bounds a run; zero fields take the defaults.
type Config struct {
	// Bytes one throughput run sends (and gets back); 1 GiB.
	Bytes int64
	// Rounds per figure, interleaved; the median is reported. 5.
	Rounds int
	// PingPongs per latency round; 20000.
	PingPongs int
	// Log gets progress lines; nil for none.
	Log io.Writer
}

func (c *Config) defaults() {
	if c.Bytes == 0 {
		c.Bytes = 1 << 30
	}
	if c.Rounds == 0 {
		c.Rounds = 5
	}
	if c.PingPongs == 0 {
		c.PingPongs = 20000
	}
	if c.Log == nil {
		c.Log = io.Discard
	}
}

// Row is one figure for both.
type Row struct {
	Name, Unit         string
	CutThrough, Kernel float64
	LowerIsBetter      bool
	Goal               string
}

// Ratio is how many times better cut-through is: cut-through over
// kernel, or kernel over cut-through for a time.
func (r Row) Ratio() float64 {
	if r.LowerIsBetter {
		return r.Kernel / r.CutThrough
	}
	return r.CutThrough / r.Kernel
}

// Report is a run's figures.
type Report struct {
	Rows []Row
	Note string
}

// Markdown renders the report as a table.
func (r *Report) Markdown() string {
	var b strings.Builder
	b.WriteString("| figure | cut-through | kernel loopback | cut-through / kernel | goal |\n|---|---:|---:|---:|---|\n")
	for _, row := range r.Rows {
		fmt.Fprintf(&b, "| %s (%s) | %.2f | %.2f | **%.2f×** | %s |\n", row.Name, row.Unit, row.CutThrough, row.Kernel, row.Ratio(), row.Goal)
	}
	fmt.Fprintf(&b, "\n%s\n", r.Note)
	return b.String()
}

// Throughput is the row's name that issue 20 sets a goal for.
const Throughput = "cut-through echo throughput against kernel TCP over loopback"

// network is a cut-through table as a transport.Network, in the
// default namespace; each dial takes the next local port.
type network struct {
	table *cutthrough.Table
	port  atomic.Uint32
}

var local = netip.MustParseAddr("127.0.0.1")

func (n *network) Listen(_, address string) (net.Listener, error) {
	ap, err := netip.ParseAddrPort(address)
	if err != nil {
		return nil, err
	}
	return n.table.Listen("default", ap, cutthrough.ListenOptions{App: "echo"})
}

func (n *network) ListenPacket(string, string) (net.PacketConn, error) {
	return nil, errors.New("cut-through carries streams only")
}

func (n *network) Dial(ctx context.Context, _, address string) (net.Conn, error) {
	ap, err := netip.ParseAddrPort(address)
	if err != nil {
		return nil, err
	}
	port := uint16(49152 + n.port.Add(1)%16384)
	return n.table.Dial(ctx, "default", netip.AddrPortFrom(local, port), ap, cutthrough.DialOptions{App: "client"})
}

// side is one of the two measured: an echo server and the network to
// reach it on.
type side struct {
	name string
	net  transport.Network
	uri  transport.URI
}

// Run measures cut-through and kernel loopback, interleaved.
func Run(ctx context.Context, cfg Config) (*Report, error) {
	cfg.defaults()
	var sides []side
	for _, s := range []struct {
		name string
		net  transport.Network
		uri  string
	}{
		{"cut-through", &network{table: cutthrough.NewTable()}, "tcp://127.0.0.1:7"},
		{"kernel", transport.Kernel, "tcp://127.0.0.1:0"},
	} {
		uri, err := transport.ParseURI(s.uri)
		if err != nil {
			return nil, err
		}
		srv, err := apps.StartEcho(s.net, uri, nil)
		if err != nil {
			return nil, fmt.Errorf("start the %s echo: %w", s.name, err)
		}
		defer srv.Close()
		uri.Port = uint16(srv.Addr().(*net.TCPAddr).Port)
		sides = append(sides, side{s.name, s.net, uri})
	}
	logf := func(format string, args ...any) { fmt.Fprintf(cfg.Log, format+"\n", args...) }

	// interleave measures f on both sides in turns, the order reversed
	// every other round, and returns each side's samples.
	interleave := func(f func(side) (float64, error)) (ct, k []float64, err error) {
		for round := range cfg.Rounds {
			order := []int{0, 1}
			if round%2 == 1 {
				order = []int{1, 0}
			}
			for _, i := range order {
				v, err := f(sides[i])
				if err != nil {
					return nil, nil, fmt.Errorf("%s, round %d: %w", sides[i].name, round+1, err)
				}
				if i == 0 {
					ct = append(ct, v)
				} else {
					k = append(k, v)
				}
			}
		}
		return ct, k, nil
	}

	ct, k, err := interleave(func(s side) (float64, error) {
		ctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
		defer cancel()
		r, err := apps.RunClient(ctx, s.net, apps.ClientConfig{URI: s.uri, Bytes: cfg.Bytes, Clients: 1, Reflect: true})
		logf("  echo throughput, %-11s %.2f Gbit/s", s.name+":", r.ThroughputGbps)
		return r.ThroughputGbps, err
	})
	if err != nil {
		return nil, fmt.Errorf("echo throughput: %w", err)
	}
	r := &Report{}
	r.Rows = append(r.Rows, Row{Name: Throughput, Unit: "Gbit/s", CutThrough: echobench.Median(ct), Kernel: echobench.Median(k), Goal: "2×"})

	var p99ct, p99k []float64
	ct, k, err = interleave(func(s side) (float64, error) {
		p50, p99, err := pingPong(ctx, s, cfg.PingPongs)
		logf("  ping-pong, %-11s p50 %.2fµs p99 %.2fµs", s.name+":", p50, p99)
		if s.net == transport.Kernel {
			p99k = append(p99k, p99)
		} else {
			p99ct = append(p99ct, p99)
		}
		return p50, err
	})
	if err != nil {
		return nil, fmt.Errorf("ping-pong: %w", err)
	}
	r.Rows = append(r.Rows,
		Row{Name: "1-byte ping-pong latency p50", Unit: "µs", CutThrough: echobench.Median(ct), Kernel: echobench.Median(k), LowerIsBetter: true, Goal: "—"},
		Row{Name: "1-byte ping-pong latency p99", Unit: "µs", CutThrough: echobench.Median(p99ct), Kernel: echobench.Median(p99k), LowerIsBetter: true, Goal: "—"})
	r.Note = fmt.Sprintf("One process: the echo app and the echo client (userstack/apps) over a cut-through table and over kernel TCP on 127.0.0.1; median of %d interleaved rounds; throughput is one stream through the echo, %d MiB each way; latency is 1-byte ping-pong on one connection, %d round trips a round. For latencies the ratio is kernel over cut-through: above 1, cut-through is faster.", cfg.Rounds, cfg.Bytes>>20, cfg.PingPongs)
	return r, nil
}

// pingPong times 1-byte round trips through s's echo and returns the
// 50th and 99th percentiles in µs.
func pingPong(ctx context.Context, s side, n int) (p50, p99 float64, err error) {
	c, err := transport.Dial(ctx, s.net, s.uri, nil)
	if err != nil {
		return 0, 0, err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(time.Minute))
	rtts := make([]float64, 0, n)
	one := []byte{1}
	for range n {
		t0 := time.Now()
		if _, err := c.Write(one); err != nil {
			return 0, 0, err
		}
		if _, err := io.ReadFull(c, one); err != nil {
			return 0, 0, err
		}
		rtts = append(rtts, float64(time.Since(t0).Nanoseconds())/1e3)
	}
	slices.Sort(rtts)
	return rtts[len(rtts)/2], rtts[len(rtts)*99/100], nil
}
