package afxdp

import (
	"sync/atomic"
	"testing"

	"golang.org/x/sys/unix"
)

func newTestRing(size uint32) ring {
	return ring{producer: new(atomic.Uint32), consumer: new(atomic.Uint32), flags: new(atomic.Uint32), mask: size - 1}
}

// TestRingWraps runs a producer and a consumer over a small ring past
// the 32-bit wrap of the indexes, as the kernel's side would.
func TestRingWraps(t *testing.T) {
	const size = 8
	prod := addrRing{ring: newTestRing(size), entries: make([]uint64, size)}
	// The consumer is the kernel's view of the same memory.
	cons := addrRing{ring: ring{producer: prod.producer, consumer: prod.consumer, flags: prod.flags, mask: prod.mask}, entries: prod.entries}
	start := ^uint32(0) - 20
	prod.producer.Store(start)
	prod.consumer.Store(start)
	prod.cachedProd, cons.cachedCons = start, start

	next, want := uint64(0), uint64(0)
	for round := range 50 {
		n := prod.free()
		if round == 0 && n != size {
			t.Fatalf("free() on an empty ring: got %d, want %d", n, size)
		}
		batch := min(n, uint32(round%size+1))
		for i := range batch {
			*prod.at(prod.cachedProd + i) = next
			next++
		}
		prod.submit(batch)
		got := cons.available()
		take := (got + 1) / 2
		for i := range take {
			if v := *cons.at(cons.cachedCons + i); v != want {
				t.Fatalf("round %d: entry %d: got %d, want %d", round, i, v, want)
			}
			want++
		}
		cons.release(take)
		if p := prod.pending(); p != got-take {
			t.Fatalf("round %d: pending() = %d, want %d", round, p, got-take)
		}
	}
	if prod.cachedProd > start {
		t.Fatalf("indexes did not wrap: producer at %d", prod.cachedProd)
	}
}

func TestRingNeedWakeup(t *testing.T) {
	r := descRing{ring: newTestRing(4), entries: make([]unix.XDPDesc, 4)}
	if r.needWakeup() {
		t.Fatal("needWakeup() with no flags: got true")
	}
	r.flags.Store(unix.XDP_RING_NEED_WAKEUP)
	if !r.needWakeup() {
		t.Fatal("needWakeup() with XDP_RING_NEED_WAKEUP: got false")
	}
}

// TestRingFull checks that a producer never overwrites entries the
// consumer has not released.
func TestRingFull(t *testing.T) {
	r := descRing{ring: newTestRing(4), entries: make([]unix.XDPDesc, 4)}
	r.submit(r.free())
	if n := r.free(); n != 0 {
		t.Fatalf("free() on a full ring: got %d, want 0", n)
	}
	r.consumer.Add(3)
	if n := r.free(); n != 3 {
		t.Fatalf("free() after 3 released: got %d, want 3", n)
	}
}

func TestFitMTU(t *testing.T) {
	for _, tc := range []struct {
		frameSize uint32
		mtu       int
		multi     bool
	}{
		{0, 1500, false}, {0, 3826, false}, {0, 3827, true}, {0, 9000, true},
		{2048, 1500, false}, {2048, 1778, false}, {2048, 1779, true},
	} {
		o := Options{FrameSize: tc.frameSize}
		if o.FitMTU(tc.mtu); o.MultiBuffer != tc.multi {
			t.Errorf("frame size %d, mtu %d: MultiBuffer %v, want %v", tc.frameSize, tc.mtu, o.MultiBuffer, tc.multi)
		}
	}
}
