// Package echobench measures the userstack against the kernel on one
// veth pair in one run: echo throughput, connection rate, ping-pong
// latency, and the AF_XDP receive rate with a consumer that does
// nothing. It is a library so that tools/bench can fold its rows into
// the project's report; tools/echobench runs it alone.
package echobench

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"slices"
	"strings"
	"time"

	"github.com/xdpstack/xdpstack/internal/testing/hosts"
	"github.com/xdpstack/xdpstack/tools/internal/attachproc"
	"github.com/xdpstack/xdpstack/userstack/apps"
	"github.com/xdpstack/xdpstack/userstack/transport"
	"golang.org/x/sys/unix"
)

// Config bounds a run; zero fields take the defaults.
type Config struct {
	// Binary is the xdpstack binary: the userstack's echo runs in its
	// attach daemon and the kernel's in its echo server, each in a
	// process of its own as an operator runs them, apart from the
	// clients. Required.
	Binary string
	// Bytes one throughput run sends (and gets back); 256 MiB.
	Bytes int64
	// Rounds per figure, interleaved; the median is reported. 3.
	Rounds int
	// Conns per connection-rate round; 2000.
	Conns int
	// PingPongs per latency round; 5000.
	PingPongs int
	// Frames the generator sends per receive-rate round; 2,000,000.
	Frames uint32
	// MTU of both ends of the pair; the veth default (1500) when 0.
	MTU int
	// CheckChecksums has the userstack check received checksums, as on
	// any interface but a veth, and the peer send them whole.
	CheckChecksums bool
	// Log gets progress lines; nil for none.
	Log io.Writer
}

func (c *Config) defaults() {
	if c.Bytes == 0 {
		c.Bytes = 256 << 20
	}
	if c.Rounds == 0 {
		c.Rounds = 3
	}
	if c.Conns == 0 {
		c.Conns = 2000
	}
	if c.PingPongs == 0 {
		c.PingPongs = 5000
	}
	if c.Frames == 0 {
		c.Frames = 2_000_000
	}
	if c.Log == nil {
		c.Log = io.Discard
	}
}

// Row is one figure for both stacks.
type Row struct {
	Name, Unit        string
	Userstack, Kernel float64
	// LowerIsBetter for latencies: the ratio is then kernel/userstack
	// inverted so that above 1 always means "the userstack is better".
	LowerIsBetter bool
}

// Ratio is userstack over kernel (0 when there is no kernel figure).
func (r Row) Ratio() float64 {
	if r.Kernel == 0 {
		return 0
	}
	return r.Userstack / r.Kernel
}

// Report is a run's figures.
type Report struct {
	Rows  []Row
	Notes []string
}

// Markdown renders the report as a table.
func (r *Report) Markdown() string {
	var b strings.Builder
	b.WriteString("| figure | userstack | kernel | userstack / kernel |\n|---|---:|---:|---:|\n")
	for _, row := range r.Rows {
		kernel, ratio := "—", "—"
		if row.Kernel != 0 {
			kernel = fmt.Sprintf("%.2f", row.Kernel)
			ratio = fmt.Sprintf("%.2f×", row.Ratio())
		}
		fmt.Fprintf(&b, "| %s (%s) | %.2f | %s | %s |\n", row.Name, row.Unit, row.Userstack, kernel, ratio)
	}
	for _, n := range r.Notes {
		fmt.Fprintf(&b, "\n%s\n", n)
	}
	return b.String()
}

// bench is a run on one pair: the userstack and a kernel echo server on
// host A, clients on host B.
type bench struct {
	cfg        Config
	pair       *hosts.Pair
	userAddr   string // the userstack echo
	kernelAddr string // the kernel echo, same host and address
	// stopUser and stopKernel end the two servers' processes.
	stopUser, stopKernel func() error
	mode                 string // AF_XDP mode of the receive-rate sockets
}

const (
	userPort   = 7
	kernelPort = 7007
)

// Run builds a pair of namespaces, measures, and tears it all down.
func Run(ctx context.Context, cfg Config) (*Report, error) {
	cfg.defaults()
	if cfg.Binary == "" {
		return nil, errors.New("echobench: no xdpstack binary to run (Config.Binary)")
	}
	pair, err := hosts.NewPair(2)
	if err != nil {
		return nil, fmt.Errorf("build hosts: %w", err)
	}
	b := &bench{cfg: cfg, pair: pair}
	defer b.close()
	if cfg.MTU != 0 {
		for _, h := range []*hosts.Host{pair.A, pair.B} {
			if out, err := h.Command(ctx, "ip", "link", "set", h.Iface, "mtu", fmt.Sprint(cfg.MTU)).CombinedOutput(); err != nil {
				return nil, fmt.Errorf("set mtu %d: %v: %s", cfg.MTU, err, out)
			}
		}
	}
	if cfg.CheckChecksums {
		if out, err := pair.B.Command(ctx, "ethtool", "-K", pair.B.Iface, "tx", "off").CombinedOutput(); err != nil {
			return nil, fmt.Errorf("turn tx checksumming off on the peer: %v: %s", err, out)
		}
	}
	// The client opens thousands of connections a round, and each one
	// it closes keeps its port for a minute (TIME-WAIT): with the default
	// 28k ports, connect() spent ever longer finding a free one, slowing
	// later rounds and, with enough rounds, running out.
	for _, sysctl := range []string{"net.ipv4.ip_local_port_range=1024 65535", "net.ipv4.tcp_tw_reuse=1"} {
		if out, err := pair.B.Command(ctx, "sysctl", "-q", "-w", sysctl).CombinedOutput(); err != nil {
			return nil, fmt.Errorf("sysctl %s on the client: %v: %s", sysctl, err, out)
		}
	}
	if err := b.start(ctx); err != nil {
		return nil, err
	}
	r := &Report{}
	for _, offloads := range []bool{false, true} {
		if err := b.setOffloads(offloads); err != nil {
			return nil, err
		}
		row, err := b.throughput(ctx, offloads)
		if err != nil {
			return nil, err
		}
		r.Rows = append(r.Rows, row)
	}
	cps, err := b.connRate(ctx)
	if err != nil {
		return nil, err
	}
	r.Rows = append(r.Rows, cps)
	lat, err := b.latency(ctx)
	if err != nil {
		return nil, err
	}
	r.Rows = append(r.Rows, lat...)
	// The receive rate needs the queues' sockets to itself.
	if err := b.stopUserstack(); err != nil {
		return nil, err
	}
	pps, err := b.rxRate()
	if err != nil {
		return nil, err
	}
	r.Rows = append(r.Rows, pps)
	mtu := cfg.MTU
	if mtu == 0 {
		mtu = 1500
	}
	checksums := "trusted by the userstack, as on any veth"
	if cfg.CheckChecksums {
		checksums = "checked by the userstack, as on any other interface (the peer's tx checksumming off)"
	}
	r.Notes = append(r.Notes, fmt.Sprintf("veth pair with 2 active queues, MTU %d, AF_XDP %s mode, received checksums %s; median of %d interleaved rounds; throughput is one TCP stream through an echo (%d MiB each way), kernel client on the peer; connections/s is connect, 1-byte echo, close, 8 at a time from 8 client goroutines; latency is 1-byte ping-pong on one connection.", mtu, b.mode, checksums, cfg.Rounds, cfg.Bytes>>20))
	return r, nil
}

func (b *bench) logf(format string, args ...any) { fmt.Fprintf(b.cfg.Log, format+"\n", args...) }

func (b *bench) start(ctx context.Context) error {
	a := b.pair.A
	var extra []string
	if b.cfg.CheckChecksums {
		extra = append(extra, "--check-checksums")
	}
	var err error
	b.stopUser, err = attachproc.Start(a, b.cfg.Binary, append(extra, "--app", fmt.Sprintf("echo=tcp://:%d", userPort))...)
	if err != nil {
		return err
	}
	b.userAddr = fmt.Sprintf("%s:%d", a.Addr, userPort)
	b.kernelAddr = fmt.Sprintf("%s:%d", a.Addr, kernelPort)
	server := a.Command(context.Background(), b.cfg.Binary, "echo", "server", "--uri", "tcp://"+b.kernelAddr)
	var out strings.Builder
	server.Stdout, server.Stderr = &out, &out
	if err := server.Start(); err != nil {
		return fmt.Errorf("start the kernel echo server: %w", err)
	}
	b.stopKernel = func() error {
		server.Process.Signal(unix.SIGTERM)
		if err := server.Wait(); err != nil {
			return fmt.Errorf("kernel echo server: %w: %s", err, out.String())
		}
		return nil
	}
	// Ready once it accepts.
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		c, err := b.pair.B.DialContext(ctx, "tcp", b.kernelAddr)
		if err == nil {
			c.Close()
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("kernel echo server not accepting after 10s: %v: %s", err, out.String())
		}
	}
}

func (b *bench) stopUserstack() error {
	if b.stopUser == nil {
		return nil
	}
	err := b.stopUser()
	b.stopUser = nil
	return err
}

func (b *bench) close() {
	b.stopUserstack()
	if b.stopKernel != nil {
		b.stopKernel()
	}
	b.pair.Close()
}

// peer is host B as a transport.Network for clients.
type peer struct{ h *hosts.Host }

func (p peer) Listen(string, string) (net.Listener, error) { return nil, errors.New("dial only") }
func (p peer) ListenPacket(string, string) (net.PacketConn, error) {
	return nil, errors.New("dial only")
}
func (p peer) Dial(ctx context.Context, network, addr string) (net.Conn, error) {
	return p.h.DialContext(ctx, network, addr)
}

func (b *bench) setOffloads(on bool) error {
	v := "off"
	if on {
		v = "on"
	}
	for _, h := range []*hosts.Host{b.pair.A, b.pair.B} {
		out, err := h.Command(context.Background(), "ethtool", "-K", h.Iface, "gro", v, "gso", v, "tso", v).CombinedOutput()
		// veth refuses some settings while XDP is attached; say so, go on.
		if err != nil {
			b.logf("ethtool -K %s gro/gso/tso %s: %v %s", h.Iface, v, err, strings.TrimSpace(string(out)))
		}
	}
	return nil
}

// interleave measures f for the userstack and the kernel in turns and
// returns the medians.
func (b *bench) interleave(f func(addr string) (float64, error)) (user, kernel float64, err error) {
	var us, ks []float64
	for range b.cfg.Rounds {
		u, err := f(b.userAddr)
		if err != nil {
			return 0, 0, fmt.Errorf("userstack: %w", err)
		}
		k, err := f(b.kernelAddr)
		if err != nil {
			return 0, 0, fmt.Errorf("kernel: %w", err)
		}
		us, ks = append(us, u), append(ks, k)
	}
	return Median(us), Median(ks), nil
}

// Median is the median of v, which it sorts: the figure a benchmark
// reports of its rounds.
func Median(v []float64) float64 {
	slices.Sort(v)
	return v[len(v)/2]
}

// MedianRatio is the median over the rounds of a's value over b's in
// the same round (a[i]/b[i]): the machine's speed drifts between rounds
// far more than within one, so pairs measured seconds apart cancel most
// of it.
func MedianRatio(a, b []float64) float64 {
	ratios := make([]float64, min(len(a), len(b)))
	for i := range ratios {
		ratios[i] = a[i] / b[i]
	}
	return Median(ratios)
}

func (b *bench) throughput(ctx context.Context, offloads bool) (Row, error) {
	name := "TCP echo throughput, offloads off"
	if offloads {
		name = "TCP echo throughput, offloads on"
	}
	u, k, err := b.interleave(func(addr string) (float64, error) {
		ctx, cancel := context.WithTimeout(ctx, time.Minute)
		defer cancel()
		uri, err := transport.ParseURI("tcp://" + addr)
		if err != nil {
			return 0, err
		}
		r, err := apps.RunClient(ctx, peer{b.pair.B}, apps.ClientConfig{URI: uri, Bytes: b.cfg.Bytes, Clients: 1, Reflect: true})
		b.logf("%s to %s: %.2f Gbit/s", name, addr, r.ThroughputGbps)
		return r.ThroughputGbps, err
	})
	return Row{Name: name, Unit: "Gbit/s", Userstack: u, Kernel: k}, err
}

// connRate runs Conns connect, 1-byte echo, close cycles, 8 at a time.
func (b *bench) connRate(ctx context.Context) (Row, error) {
	const workers = 8
	u, k, err := b.interleave(func(addr string) (float64, error) {
		peer, err := netip.ParseAddrPort(addr)
		if err != nil {
			return 0, err
		}
		ctx, cancel := context.WithTimeout(ctx, time.Minute)
		defer cancel()
		jobs := make(chan struct{}, b.cfg.Conns)
		for range b.cfg.Conns {
			jobs <- struct{}{}
		}
		close(jobs)
		errs := make(chan error, workers)
		start := time.Now()
		for range workers {
			go func() { errs <- b.echoOnes(ctx, jobs, peer) }()
		}
		for range workers {
			if err := <-errs; err != nil {
				return 0, err
			}
		}
		rate := float64(b.cfg.Conns) / time.Since(start).Seconds()
		b.logf("connections to %s: %.0f/s", addr, rate)
		return rate, nil
	})
	return Row{Name: "connections (connect, 1-byte echo, close)", Unit: "per second", Userstack: u, Kernel: k}, err
}

// echoOnes connects to peer, echoes one byte and closes, once per job,
// on sockets made a batch at a time inside the client's namespace.
func (b *bench) echoOnes(ctx context.Context, jobs <-chan struct{}, peer netip.AddrPort) error {
	var fds []int
	defer func() {
		for _, fd := range fds {
			unix.Close(fd)
		}
	}()
	one := []byte{1}
	for range jobs {
		if len(fds) == 0 {
			var err error
			if fds, err = b.pair.B.TCPSockets(64, peer); err != nil {
				return err
			}
		}
		c, err := hosts.ConnectSocket(ctx, fds[0], peer)
		fds = fds[1:]
		if err != nil {
			return err
		}
		_, err = c.Write(one)
		if err == nil {
			_, err = io.ReadFull(c, one)
		}
		c.Close()
		if err != nil {
			return err
		}
	}
	return nil
}

// latency measures 1-byte ping-pong round trips on one connection.
func (b *bench) latency(ctx context.Context) ([]Row, error) {
	var p99u, p99k []float64
	pick := func(p99 *[]float64) func(string) (float64, error) {
		return func(addr string) (float64, error) {
			c, err := b.pair.B.DialContext(ctx, "tcp", addr)
			if err != nil {
				return 0, err
			}
			defer c.Close()
			c.SetDeadline(time.Now().Add(time.Minute))
			rtts := make([]float64, 0, b.cfg.PingPongs)
			one := []byte{1}
			for range b.cfg.PingPongs {
				t0 := time.Now()
				if _, err := c.Write(one); err != nil {
					return 0, err
				}
				if _, err := io.ReadFull(c, one); err != nil {
					return 0, err
				}
				rtts = append(rtts, float64(time.Since(t0).Nanoseconds())/1e3)
			}
			slices.Sort(rtts)
			*p99 = append(*p99, rtts[len(rtts)*99/100])
			b.logf("ping-pong with %s: p50 %.1fus p99 %.1fus", addr, rtts[len(rtts)/2], rtts[len(rtts)*99/100])
			return rtts[len(rtts)/2], nil
		}
	}
	userF, kernelF := pick(&p99u), pick(&p99k)
	u, k, err := b.interleave(func(addr string) (float64, error) {
		if addr == b.userAddr {
			return userF(addr)
		}
		return kernelF(addr)
	})
	if err != nil {
		return nil, err
	}
	return []Row{
		{Name: "1-byte ping-pong latency p50", Unit: "µs", Userstack: u, Kernel: k, LowerIsBetter: true},
		{Name: "1-byte ping-pong latency p99", Unit: "µs", Userstack: Median(p99u), Kernel: Median(p99k), LowerIsBetter: true},
	}, nil
}
