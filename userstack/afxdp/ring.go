package afxdp

import (
	"sync/atomic"

	"golang.org/x/sys/unix"
)

// ring is the index half of one of the four rings. producer and
// consumer live in memory shared with the kernel; the cached copies let
// a batch touch the shared words once, not once per entry.
type ring struct {
	producer *atomic.Uint32
	consumer *atomic.Uint32
	flags    *atomic.Uint32
	mask     uint32

	cachedProd uint32
	cachedCons uint32
}

// free is how many entries a producer may still write.
func (r *ring) free() uint32 {
	r.cachedCons = r.consumer.Load()
	return r.mask + 1 - (r.cachedProd - r.cachedCons)
}

// submit publishes n entries written after the last submit. The atomic
// store orders the entries before the index, as the kernel expects.
func (r *ring) submit(n uint32) {
	r.cachedProd += n
	r.producer.Store(r.cachedProd)
}

// available is how many entries a consumer may read.
func (r *ring) available() uint32 {
	r.cachedProd = r.producer.Load()
	return r.cachedProd - r.cachedCons
}

// release gives n read entries back to the producer.
func (r *ring) release(n uint32) {
	r.cachedCons += n
	r.consumer.Store(r.cachedCons)
}

// pending is how many entries the producer wrote that the consumer has
// not taken yet.
func (r *ring) pending() uint32 {
	return r.producer.Load() - r.consumer.Load()
}

func (r *ring) needWakeup() bool {
	return r.flags.Load()&unix.XDP_RING_NEED_WAKEUP != 0
}

// addrRing carries frame addresses: the fill and completion rings.
type addrRing struct {
	ring
	entries []uint64
}

func (r *addrRing) at(i uint32) *uint64 { return &r.entries[i&r.mask] }

// descRing carries frame descriptors: the RX and TX rings.
type descRing struct {
	ring
	entries []unix.XDPDesc
}

func (r *descRing) at(i uint32) *unix.XDPDesc { return &r.entries[i&r.mask] }
