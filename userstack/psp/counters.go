package psp

import "sync/atomic"

// Counters are kept per SA and per Device, named as Linux names its PSP
// device statistics. Bytes count from the first byte after the IV to the
// last byte of payload: neither the base header nor the ICV.
type Counters struct {
	RxPackets  atomic.Uint64 // authenticated and delivered
	RxBytes    atomic.Uint64
	RxAuthFail atomic.Uint64 // the ICV did not verify
	RxError    atomic.Uint64 // length and framing errors
	RxBad      atomic.Uint64 // other refusals: unknown version, retired key
	TxPackets  atomic.Uint64
	TxBytes    atomic.Uint64
	TxError    atomic.Uint64
}

// Stats is a snapshot of Counters.
type Stats struct {
	RxPackets, RxBytes, RxAuthFail, RxError, RxBad uint64
	TxPackets, TxBytes, TxError                    uint64
}

// Snapshot reads every counter.
func (c *Counters) Snapshot() Stats {
	return Stats{
		RxPackets:  c.RxPackets.Load(),
		RxBytes:    c.RxBytes.Load(),
		RxAuthFail: c.RxAuthFail.Load(),
		RxError:    c.RxError.Load(),
		RxBad:      c.RxBad.Load(),
		TxPackets:  c.TxPackets.Load(),
		TxBytes:    c.TxBytes.Load(),
		TxError:    c.TxError.Load(),
	}
}

// Each calls fn with each counter's Linux name ("rx-auth-fail") and value,
// in a fixed order.
func (s Stats) Each(fn func(name string, v uint64)) {
	fn("rx-packets", s.RxPackets)
	fn("rx-bytes", s.RxBytes)
	fn("rx-auth-fail", s.RxAuthFail)
	fn("rx-error", s.RxError)
	fn("rx-bad", s.RxBad)
	fn("tx-packets", s.TxPackets)
	fn("tx-bytes", s.TxBytes)
	fn("tx-error", s.TxError)
}

// The counting methods take a nil *Counters as nothing to count in: an SA
// built without a Device has no totals.

func (c *Counters) tx(bytes int) {
	if c != nil {
		c.TxPackets.Add(1)
		c.TxBytes.Add(uint64(bytes))
	}
}

func (c *Counters) rx(bytes int) {
	if c != nil {
		c.RxPackets.Add(1)
		c.RxBytes.Add(uint64(bytes))
	}
}

func (c *Counters) txFail() {
	if c != nil {
		c.TxError.Add(1)
	}
}

// rxFail counts a refused packet in the counter its syndrome belongs to.
func (c *Counters) rxFail(err error) {
	switch {
	case c == nil:
	case err == ErrAuth:
		c.RxAuthFail.Add(1)
	case err == ErrVersion, err == ErrRetiredKey:
		c.RxBad.Add(1)
	default:
		c.RxError.Add(1)
	}
}
