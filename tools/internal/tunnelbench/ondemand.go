package tunnelbench

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"slices"
	"time"

	"github.com/xdpstack/xdpstack/internal/testing/hosts"
	"github.com/xdpstack/xdpstack/tools/internal/echobench"
)

// OnDemandConfig bounds a run of OnDemand; zero fields take the
// defaults.
type OnDemandConfig struct {
	// Binary is the xdpstack executable. Required.
	Binary string
	// Addresses is how many of host B's virtual addresses host A sends
	// to at once, each a tunnel of its own, after a first one alone: 1
	// to 253; 200.
	Addresses int
	// Rounds, each with fresh gateways; the median is reported. 3.
	Rounds int
	// Log gets progress lines; nil for none.
	Log io.Writer
}

func (c *OnDemandConfig) defaults() error {
	if c.Addresses == 0 {
		c.Addresses = 200
	}
	if c.Rounds == 0 {
		c.Rounds = 3
	}
	if c.Log == nil {
		c.Log = io.Discard
	}
	switch {
	case c.Binary == "":
		return errors.New("tunnelbench: no xdpstack binary (OnDemandConfig.Binary)")
	case c.Addresses < 1 || c.Addresses > 253:
		return fmt.Errorf("tunnelbench: %d addresses (want 1 to 253: one /24, with the first)", c.Addresses)
	case c.Rounds < 1:
		return fmt.Errorf("tunnelbench: %d rounds (want at least 1)", c.Rounds)
	}
	return nil
}

// OnDemandReport is a run's medians.
type OnDemandReport struct {
	Addresses, Rounds int
	// First is the time from the first datagram's send to its
	// delivery: its tunnel waited for the key exchange's TLS
	// connection to the peer too.
	First time.Duration
	// PerSecond is tunnels made and used per second once the
	// connection is up: the datagrams sent at once, delivered, over the
	// time from the first of them sent to the last delivered.
	PerSecond float64
	// P50 and P99 are the times from such a datagram's send to its
	// delivery.
	P50, P99 time.Duration
	// Lost counts the datagrams never delivered, over all rounds.
	Lost int
}

// onDemandWait bounds how long a round waits for its datagrams.
const onDemandWait = 10 * time.Second

// onDemandPort is where host B receives the datagrams.
const onDemandPort = 7007

// OnDemand measures the PSP gateway making tunnels on demand: host A's
// gateway has a /24 of remote virtual addresses, all host B's, and a
// kernel UDP socket on A sends one datagram to one of them, and once it
// arrives, one to each of Addresses others at once; each makes a tunnel
// (a key exchange with B) before it is sent. Each round times every
// datagram from its send to its arrival on a kernel socket on B.
func OnDemand(ctx context.Context, cfg OnDemandConfig) (*OnDemandReport, error) {
	if err := cfg.defaults(); err != nil {
		return nil, err
	}
	pair, err := hosts.NewPair(0)
	if err != nil {
		return nil, fmt.Errorf("build hosts: %w", err)
	}
	defer pair.Close()
	r := &OnDemandReport{Addresses: cfg.Addresses, Rounds: cfg.Rounds}
	var rates, firsts, p50s, p99s []float64
	for round := range cfg.Rounds {
		got, err := onDemandRound(ctx, pair, cfg)
		if err != nil {
			return nil, fmt.Errorf("on demand, round %d: %w", round+1, err)
		}
		r.Lost += got.lost
		rates = append(rates, got.perSecond)
		firsts = append(firsts, float64(got.first))
		p50s = append(p50s, float64(got.p50))
		p99s = append(p99s, float64(got.p99))
		fmt.Fprintf(cfg.Log, "  PSP on demand  round %d: first %v; %d at once: %.0f/s, p50 %v, p99 %v, %d lost\n",
			round+1, got.first.Round(time.Microsecond), cfg.Addresses, got.perSecond, got.p50.Round(time.Microsecond), got.p99.Round(time.Microsecond), got.lost)
	}
	r.PerSecond, r.First = echobench.Median(rates), time.Duration(echobench.Median(firsts))
	r.P50, r.P99 = time.Duration(echobench.Median(p50s)), time.Duration(echobench.Median(p99s))
	return r, nil
}

type onDemandResult struct {
	perSecond float64
	first     time.Duration
	p50, p99  time.Duration
	lost      int
}

// onDemandRound starts the gateways, sends the datagrams, and takes the
// gateways down.
func onDemandRound(ctx context.Context, pair *hosts.Pair, cfg OnDemandConfig) (res onDemandResult, err error) {
	net3 := pair.A.Addr.As4()[2]
	va := netip.AddrFrom4([4]byte{10, 215, net3, 1})
	b := &pspEnd{name: "b", host: pair.B, net: netip.PrefixFrom(netip.AddrFrom4([4]byte{10, 216, net3, 0}), 24)}
	for i := range cfg.Addresses + 1 {
		b.vips = append(b.vips, netip.AddrFrom4([4]byte{10, 216, net3, byte(i + 1)}))
	}
	down, err := PSP{Binary: cfg.Binary}.up(ctx, &pspEnd{name: "a", host: pair.A, vips: []netip.Addr{va}, net: netip.PrefixFrom(va, 32)}, b)
	if err != nil {
		return res, err
	}
	defer func() { err = errors.Join(err, down()) }()
	recv, err := pair.B.ListenPacket("udp4", fmt.Sprintf(":%d", onDemandPort))
	if err != nil {
		return res, err
	}
	defer recv.Close()
	send, err := pair.A.ListenPacket("udp4", netip.AddrPortFrom(va, 0).String())
	if err != nil {
		return res, err
	}
	defer send.Close()

	// Index 0 goes first and alone: its tunnel waits for the key
	// exchange's TLS connection too. The others go at once after it.
	n := len(b.vips)
	sent, arrived := make([]time.Time, n), make([]time.Time, n)
	arrivals := make(chan int, n)
	go func() {
		defer close(arrivals)
		buf := make([]byte, 64)
		recv.SetReadDeadline(time.Now().Add(onDemandWait))
		for count := 0; count < n; {
			m, _, err := recv.ReadFrom(buf)
			if err != nil {
				return
			}
			now := time.Now()
			if i := int(binary.BigEndian.Uint16(buf)); m == 2 && i < n && arrived[i].IsZero() {
				arrived[i] = now
				arrivals <- i
				count++
			}
		}
	}()
	msg := make([]byte, 2)
	sendTo := func(i int) error {
		binary.BigEndian.PutUint16(msg, uint16(i))
		sent[i] = time.Now()
		_, err := send.WriteTo(msg, net.UDPAddrFromAddrPort(netip.AddrPortFrom(b.vips[i], onDemandPort)))
		return err
	}
	if err := sendTo(0); err != nil {
		return res, fmt.Errorf("send to %v: %w", b.vips[0], err)
	}
	if i, ok := <-arrivals; !ok || i != 0 {
		return res, fmt.Errorf("the first datagram, to %v, did not arrive within %v", b.vips[0], onDemandWait)
	}
	res.first = arrived[0].Sub(sent[0])
	for i := 1; i < n; i++ {
		if err := sendTo(i); err != nil {
			return res, fmt.Errorf("send to %v: %w", b.vips[i], err)
		}
	}
	var took []float64
	var last time.Time
	for i := range arrivals {
		took = append(took, float64(arrived[i].Sub(sent[i])))
		last = arrived[i]
	}
	if len(took) == 0 {
		return res, fmt.Errorf("none of %d datagrams arrived within %v", n-1, onDemandWait)
	}
	slices.Sort(took)
	res.p50 = time.Duration(took[len(took)/2])
	res.p99 = time.Duration(took[min(len(took)-1, len(took)*99/100)])
	res.perSecond = float64(len(took)) / last.Sub(sent[1]).Seconds()
	res.lost = n - 1 - len(took)
	return res, nil
}
