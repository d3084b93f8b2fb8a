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

// rxFail counts a refused packet in the counter its syndrome belongs to.
func (c *Counters) rxFail(err error) {
	switch err {
	case ErrAuth:
		c.RxAuthFail.Add(1)
	case ErrVersion, ErrRetiredKey:
		c.RxBad.Add(1)
	default:
		c.RxError.Add(1)
	}
}
