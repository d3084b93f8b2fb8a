package maps

// This file holds the memory mapping of the sampling map's value, which
// the program reads on every packet and several writers share: the
// daemon its sampling settings, a capture its lease, the rule table its
// generation in use, the listener table its count. Each writer owns whole 64-bit words of the value
// and stores them with sync/atomic, never reading, changing and writing
// back what another owns; the program reads each word whole. So no
// writer loses another's change, and the program never sees half of a
// word.

import (
	"encoding/binary"
	"fmt"
	"os"
	"sync/atomic"
	"unsafe"

	"github.com/cilium/ebpf"
	"golang.org/x/sys/unix"
)

// wordStore is a 64-bit word to store at word index at of a shared
// value.
type wordStore struct {
	at int
	v  uint64
}

// wordOf is the index of the word that starts at byte off of a value.
func wordOf(off uintptr) int {
	if off%8 != 0 {
		panic(fmt.Sprintf("shared value: word at byte %d is not 8-byte aligned", off))
	}
	return int(off / 8)
}

// loadWords loads the words at the given indexes of the value of m, a
// one-entry BPF_F_MMAPABLE array, each whole.
func loadWords(m *ebpf.Map, at ...int) ([]uint64, error) {
	out := make([]uint64, len(at))
	err := mapValue(m, unix.PROT_READ, func(words []uint64) error {
		for i, w := range at {
			if w >= len(words) {
				return fmt.Errorf("word %d of a %d-byte value", w, len(words)*8)
			}
			out[i] = atomic.LoadUint64(&words[w])
		}
		return nil
	})
	return out, err
}

// storeWords stores words into the value of m, each whole, in the order
// given: a reader that sees a later one sees the earlier ones too.
func storeWords(m *ebpf.Map, stores ...wordStore) error {
	return mapValue(m, unix.PROT_READ|unix.PROT_WRITE, func(words []uint64) error {
		for _, s := range stores {
			if s.at >= len(words) {
				return fmt.Errorf("word %d of a %d-byte value", s.at, len(words)*8)
			}
		}
		for _, s := range stores {
			atomic.StoreUint64(&words[s.at], s.v)
		}
		return nil
	})
}

// addToWord adds delta to the word at index at of the value of m, never
// below 0, atomically: writers in other processes lose no change.
func addToWord(m *ebpf.Map, at int, delta int64) error {
	return mapValue(m, unix.PROT_READ|unix.PROT_WRITE, func(words []uint64) error {
		if at >= len(words) {
			return fmt.Errorf("word %d of a %d-byte value", at, len(words)*8)
		}
		for {
			old := atomic.LoadUint64(&words[at])
			v := max(int64(old)+delta, 0)
			if atomic.CompareAndSwapUint64(&words[at], old, uint64(v)) {
				return nil
			}
		}
	})
}

// mapValue maps the value of m for the length of f. A mapping per
// access keeps nothing open between accesses, which are rare: a rule
// table flip, a sampling change, a capture renewing its lease a few
// times a second.
func mapValue(m *ebpf.Map, prot int, f func(words []uint64) error) error {
	size := int(m.ValueSize())
	page := os.Getpagesize()
	b, err := unix.Mmap(m.FD(), 0, (size+page-1)/page*page, prot, unix.MAP_SHARED)
	if err != nil {
		return fmt.Errorf("map the value into memory: %w", err)
	}
	defer unix.Munmap(b)
	return f(unsafe.Slice((*uint64)(unsafe.Pointer(&b[0])), size/8))
}

// pack is v, 8 bytes of a value's layout, as the word that holds them.
func pack(v any) uint64 {
	b, err := binary.Append(nil, binary.NativeEndian, v)
	if err != nil || len(b) != 8 {
		panic(fmt.Sprintf("shared value: %T is not one word", v))
	}
	return binary.NativeEndian.Uint64(b)
}

// unpack decodes the word w into v, as pack encoded it.
func unpack(w uint64, v any) {
	if _, err := binary.Decode(binary.NativeEndian.AppendUint64(nil, w), binary.NativeEndian, v); err != nil {
		panic(fmt.Sprintf("shared value: %T is not one word", v))
	}
}
