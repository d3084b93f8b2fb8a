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
	// to, each a tunnel of its own: 1 to 254; 200.
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
	case c.Addresses < 1 || c.Addresses > 254:
		return fmt.Errorf("tunnelbench: %d addresses (want 1 to 254, one /24)", c.Addresses)
	case c.Rounds < 1:
		return fmt.Errorf("tunnelbench: %d rounds (want at least 1)", c.Rounds)
	}
	return nil
}

// OnDemandReport is a run's medians.
type OnDemandReport struct {
	Addresses, Rounds int
	// PerSecond is tunnels made and used per second: the datagrams
	// delivered over the time from the first sent to the last delivered.
	PerSecond float64
	// P50 and P99 are the times from a datagram's send to its delivery.
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
// kernel UDP socket on A sends one datagram to each at once; each
// makes a tunnel (a key exchange with B) before it is sent. Each round
// times every datagram from its send to its arrival on a kernel socket
// on B.
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
	var rates, p50s, p99s []float64
	for round := range cfg.Rounds {
		got, err := onDemandRound(ctx, pair, cfg)
		if err != nil {
			return nil, fmt.Errorf("on demand, round %d: %w", round+1, err)
		}
		r.Lost += got.lost
		rates = append(rates, got.perSecond)
		p50s = append(p50s, float64(got.p50))
		p99s = append(p99s, float64(got.p99))
		fmt.Fprintf(cfg.Log, "  PSP on demand  %d tunnels  round %d: %.0f/s, p50 %v, p99 %v, %d lost\n",
			cfg.Addresses, round+1, got.perSecond, got.p50.Round(time.Microsecond), got.p99.Round(time.Microsecond), got.lost)
	}
	r.PerSecond = echobench.Median(rates)
	r.P50, r.P99 = time.Duration(echobench.Median(p50s)), time.Duration(echobench.Median(p99s))
	return r, nil
}

type onDemandResult struct {
	perSecond float64
	p50, p99  time.Duration
	lost      int
}

// onDemandRound starts the gateways, sends the datagrams, and takes the
// gateways down.
func onDemandRound(ctx context.Context, pair *hosts.Pair, cfg OnDemandConfig) (res onDemandResult, err error) {
	net3 := pair.A.Addr.As4()[2]
	va := netip.AddrFrom4([4]byte{10, 215, net3, 1})
	b := &pspEnd{name: "b", host: pair.B, net: netip.PrefixFrom(netip.AddrFrom4([4]byte{10, 216, net3, 0}), 24)}
	for i := range cfg.Addresses {
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

	n := len(b.vips)
	sent, arrived := make([]time.Time, n), make([]time.Time, n)
	done := make(chan int)
	go func() {
		count := 0
		buf := make([]byte, 64)
		recv.SetReadDeadline(time.Now().Add(onDemandWait))
		for count < n {
			m, _, err := recv.ReadFrom(buf)
			if err != nil {
				break
			}
			now := time.Now()
			if i := int(binary.BigEndian.Uint16(buf)); m == 2 && i < n && arrived[i].IsZero() {
				arrived[i] = now
				count++
			}
		}
		done <- count
	}()
	msg := make([]byte, 2)
	for i, vip := range b.vips {
		binary.BigEndian.PutUint16(msg, uint16(i))
		sent[i] = time.Now()
		if _, err := send.WriteTo(msg, net.UDPAddrFromAddrPort(netip.AddrPortFrom(vip, onDemandPort))); err != nil {
			recv.Close()
			<-done
			return res, fmt.Errorf("send to %v: %w", vip, err)
		}
	}
	count := <-done
	if count == 0 {
		return res, fmt.Errorf("none of %d datagrams arrived within %v", n, onDemandWait)
	}
	var took []float64
	var last time.Time
	for i := range n {
		if !arrived[i].IsZero() {
			took = append(took, float64(arrived[i].Sub(sent[i])))
			if arrived[i].After(last) {
				last = arrived[i]
			}
		}
	}
	slices.Sort(took)
	res.p50 = time.Duration(took[len(took)/2])
	res.p99 = time.Duration(took[min(len(took)-1, len(took)*99/100)])
	res.perSecond = float64(count) / last.Sub(sent[0]).Seconds()
	res.lost = n - count
	return res, nil
}
