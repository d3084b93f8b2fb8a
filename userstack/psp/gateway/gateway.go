// Package gateway is the PSP gateway's data path: it joins the clear
// side, a TUN device (psp0) that the host routes the remote virtual
// networks to, and the secure side, the userstack's AF_XDP queues on
// the attached interface, where PSP runs over UDP port 1000.
//
// Packets read from the TUN device go to the tunnel of their
// destination (tunnel.Table), sealed straight into TX ring frames; a
// packet whose destination has no tunnel yet is held while the key
// exchange is asked for one (tunnel.Requester) and sent once it is
// installed. Frames received on UDP port 1000 are decrypted (the
// psp.Device derives each SPI's key), checked against the receive ACL
// (tunnel.ACL) and written to the TUN device. Both sides move packets in
// batches, and the TUN device's offloads (virtio-net header, TSO and
// GRO) let the kernel hand over and take whole TCP segments of up to
// 64 KiB.
package gateway

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"

	"golang.zx2c4.com/wireguard/tun"

	"github.com/xdpstack/xdpstack/userstack"
	"github.com/xdpstack/xdpstack/userstack/psp"
	"github.com/xdpstack/xdpstack/userstack/psp/tunnel"
)

// DefaultTUN is the TUN device's name when Options.TUN is empty, as in
// DOCA's PSP gateway.
const DefaultTUN = "psp0"

// Options describe a gateway. Device, Tunnels and ACL are required, and
// so is Requester unless every tunnel is installed before it is needed.
type Options struct {
	// TUN names the TUN device; DefaultTUN when empty.
	TUN string
	// Local are this host's virtual addresses with their prefix
	// lengths, given to the TUN device.
	Local []netip.Prefix
	// Remote are the remote virtual networks, routed through the TUN
	// device. A packet to an address outside them has no peer to go to
	// and is dropped.
	Remote []netip.Prefix
	// Device receives: it derives the key of each SPI it issued.
	Device *psp.Device
	// Tunnels are where packets to each remote virtual address go.
	Tunnels *tunnel.Table
	// ACL holds the SPIs issued to peers, checked after decryption.
	ACL *tunnel.ACL
	// Requester is asked for the tunnel to a remote virtual address
	// that has none, once per address until it is installed or its
	// held packets expire.
	Requester tunnel.Requester
	// Secure is this host's address on the attached interface, the
	// outer source of its tunnels: its family is the outer IP header's,
	// which with Cookie sets the TUN device's MTU.
	Secure netip.Addr
	// Cookie says the tunnels carry an 8-byte virtualization cookie.
	Cookie bool
	// DisableIngressACL delivers every packet that decrypts, whatever
	// its SPI was issued for.
	DisableIngressACL bool
	// SampleRate sets the S bit on one sent packet in 2^SampleRate,
	// drawn at random, so that the receiver samples it; 0 sets it on
	// none. At most MaxSampleRate.
	SampleRate int
	// HoldPackets bounds the packets held for one destination while
	// its tunnel is made (DefaultHoldPackets when 0); HoldDestinations,
	// how many destinations may wait at once (DefaultHoldDestinations).
	HoldPackets, HoldDestinations int
}

// MaxSampleRate is the largest Options.SampleRate: 1 packet in 65536.
const MaxSampleRate = 16

// Defaults of the hold queues: at most 16 MTU-sized packets each,
// 256 destinations, about 6 MB.
const (
	DefaultHoldPackets      = 16
	DefaultHoldDestinations = 256
)

func (o *Options) setDefaults() error {
	if o.TUN == "" {
		o.TUN = DefaultTUN
	}
	switch {
	case o.Device == nil || o.Tunnels == nil || o.ACL == nil:
		return errors.New("start psp gateway: no psp device, tunnel table or acl")
	case !o.Secure.IsValid():
		return errors.New("start psp gateway: no secure-side address (the attached interface's)")
	case o.SampleRate < 0 || o.SampleRate > MaxSampleRate:
		return fmt.Errorf("start psp gateway: sample rate %d (want 0 for none, up to %d)", o.SampleRate, MaxSampleRate)
	case o.HoldPackets < 0 || o.HoldDestinations < 0:
		return fmt.Errorf("start psp gateway: hold limits %d packets, %d destinations (want 0 for the default, or more)", o.HoldPackets, o.HoldDestinations)
	}
	if o.HoldPackets == 0 {
		o.HoldPackets = DefaultHoldPackets
	}
	if o.HoldDestinations == 0 {
		o.HoldDestinations = DefaultHoldDestinations
	}
	for _, p := range append(append([]netip.Prefix(nil), o.Local...), o.Remote...) {
		if !p.IsValid() {
			return fmt.Errorf("start psp gateway: virtual network %v is not a prefix", p)
		}
	}
	return nil
}

// Gateway is a running data path.
type Gateway struct {
	opts  Options
	stack *userstack.Stack
	tun   tun.Device
	// mac is the attached interface's, the source of sealed frames.
	mac net.HardwareAddr
	// wireMTU is the attached interface's: no sealed packet is longer.
	wireMTU int
	// queues is how many the stack sends on.
	queues int

	holds holds
	rx    []*rxQueue // one per queue
	tap   atomic.Pointer[tapped]
	// sampleMask picks the packets to sample: those whose random draw
	// has none of its bits; 0 when none is sampled.
	sampleMask uint32

	counters counters
	log      *slog.Logger
	closed   atomic.Bool
	done     chan struct{} // closed by Close
	wg       sync.WaitGroup
	once     sync.Once
	closeErr error
}

// New creates the TUN device with its addresses and routes and starts
// moving packets between it and stack's queues. Call it in the stack's
// network namespace, after the stack has started. Close undoes it all.
func New(stack *userstack.Stack, opts Options) (_ *Gateway, err error) {
	if err := opts.setDefaults(); err != nil {
		return nil, err
	}
	iface := stack.Interface()
	g := &Gateway{done: make(chan struct{}), opts: opts, stack: stack, mac: iface.MAC, wireMTU: iface.MTU, queues: stack.Queues(), log: slog.With("iface", iface.Name, "tun", opts.TUN)}
	g.holds.init(opts.HoldPackets, opts.HoldDestinations)
	g.sampleMask = sampleMask(opts.SampleRate)
	defer func() {
		if err != nil {
			g.Close()
		}
	}()
	mtu := TUNMTU(iface.MTU, opts.Secure, opts.Cookie)
	if g.tun, err = openTUN(opts.TUN, mtu, opts.Local, opts.Remote); err != nil {
		return nil, err
	}
	g.wg.Add(1)
	go g.drainEvents()
	for range g.queues {
		q := newRxQueue()
		g.rx = append(g.rx, q)
		g.wg.Add(1)
		go g.write(q)
	}
	opts.Tunnels.OnInstall(g.installed)
	if !stack.StartSecure(g) {
		return nil, errors.New("start psp gateway: another gateway runs on this stack")
	}
	g.wg.Add(1)
	go g.send()
	g.log.Info("psp gateway up", "mtu", mtu, "local", opts.Local, "remote", opts.Remote)
	return g, nil
}

// TUNMTU is the TUN device's MTU: the wire's less what PSP in tunnel
// mode adds with an outer header of secure's family: UDP (8), the PSP
// header (16), the ICV (16), the outer IP header (20 for IPv4, 40 for
// IPv6) and, with cookie, the virtualization cookie (8). 1440 on a
// 1500-byte IPv4 wire, 1420 on IPv6.
func TUNMTU(wireMTU int, secure netip.Addr, cookie bool) int {
	e := psp.Encap{Mode: psp.Tunnel, VC: cookie, OuterSrc: secure, OuterDst: secure}
	return wireMTU - psp.EncapLen(&e, false)
}

// drainEvents reads the TUN device's events, which nothing here needs:
// the device blocks on its event channel otherwise.
func (g *Gateway) drainEvents() {
	defer g.wg.Done()
	for range g.tun.Events() {
	}
}

// Close stops the data path and deletes the TUN device, and with it its
// addresses and routes. Held packets are dropped.
func (g *Gateway) Close() error {
	g.once.Do(func() {
		g.closed.Store(true)
		close(g.done)
		g.stack.StopSecure(g)
		var errs []error
		if g.tun != nil {
			errs = append(errs, g.tun.Close())
		}
		g.wg.Wait()
		g.holds.clear()
		g.closeErr = errors.Join(errs...)
	})
	return g.closeErr
}

// sampleMask is the mask of a random draw that samples 1 packet in
// 2^rate: 0 samples none.
func sampleMask(rate int) uint32 { return 1<<rate - 1 }

// Tap sees the inner packets, as the TUN device reads (out) and is
// written them, with the SPI they are sealed or were received under:
// for `capture --point psp`.
type Tap interface {
	// Tapped gets an inner IP packet; sampled says it goes out with
	// the S bit. It copies what it keeps before it returns, and never
	// blocks.
	Tapped(spi uint32, out, sampled bool, packet []byte)
}

type tapped struct{ Tap }

// StartTap shows t every inner packet from now on; false when another
// tap is on.
func (g *Gateway) StartTap(t Tap) bool { return g.tap.CompareAndSwap(nil, &tapped{t}) }

// StopTap takes t off, if it is on.
func (g *Gateway) StopTap(t Tap) {
	if cur := g.tap.Load(); cur != nil && cur.Tap == t {
		g.tap.CompareAndSwap(cur, nil)
	}
}
