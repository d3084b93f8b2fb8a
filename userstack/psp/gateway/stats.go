package gateway

import (
	"sync/atomic"

	"github.com/xdpstack/xdpstack/userstack/psp"
)

// counters are the gateway's own, beside the PSP device's.
type counters struct {
	noPeer, held, holdDropped, requests, tooBig, txFull atomic.Uint64
	sampled                                             atomic.Uint64
	notIP, aclDenied, notLocal, tunErrors               atomic.Uint64
}

// Stats are the gateway's counters. PSP holds the device's, under
// Linux's names (rx-packets, rx-auth-fail, tx-packets...); the rest are
// what happens around them, each packet counted once.
type Stats struct {
	PSP psp.Stats
	// NoPeer: read from the TUN device to an address outside the remote
	// virtual networks, dropped.
	NoPeer uint64
	// Held: waited for their tunnel; HoldDropped of them, and of those
	// that found the queue full, were dropped: the queue overflowed or
	// the tunnel did not come in time. Requests: tunnels asked for.
	Held, HoldDropped, Requests uint64
	// TooBig: longer than the wire's MTU once sealed (the TUN device's
	// MTU was raised), dropped.
	TooBig uint64
	// TxFull: sealed but dropped, the TX ring staying full.
	TxFull uint64
	// Sampled: sent with the S bit (Options.SampleRate).
	Sampled uint64
	// NotIP: read from the TUN device or decrypted, but no IP packet.
	NotIP uint64
	// ACLDenied: decrypted, but under an SPI not issued for that
	// version and inner source address; dropped.
	ACLDenied uint64
	// NotLocal: decrypted and allowed, but to an address other than
	// this host's virtual ones; dropped.
	NotLocal uint64
	// TUNErrors: writes to the TUN device that failed.
	TUNErrors uint64
}

// Stats reads the counters.
func (g *Gateway) Stats() Stats {
	c := &g.counters
	return Stats{
		PSP:         g.opts.Device.Stats(),
		NoPeer:      c.noPeer.Load(),
		Held:        c.held.Load(),
		HoldDropped: c.holdDropped.Load(),
		Requests:    c.requests.Load(),
		TooBig:      c.tooBig.Load(),
		TxFull:      c.txFull.Load(),
		Sampled:     c.sampled.Load(),
		NotIP:       c.notIP.Load(),
		ACLDenied:   c.aclDenied.Load(),
		NotLocal:    c.notLocal.Load(),
		TUNErrors:   c.tunErrors.Load(),
	}
}

// Each calls fn with each counter's name and value, in a fixed order:
// the PSP device's under Linux's names, then the gateway's.
func (s Stats) Each(fn func(name string, v uint64)) {
	s.PSP.Each(fn)
	fn("tx-no-peer", s.NoPeer)
	fn("tx-held", s.Held)
	fn("tx-hold-dropped", s.HoldDropped)
	fn("tx-requests", s.Requests)
	fn("tx-too-big", s.TooBig)
	fn("tx-ring-full", s.TxFull)
	fn("tx-sampled", s.Sampled)
	fn("not-ip", s.NotIP)
	fn("rx-acl-denied", s.ACLDenied)
	fn("rx-not-local", s.NotLocal)
	fn("tun-errors", s.TUNErrors)
}
