// Package afxdp owns AF_XDP sockets: one per RX queue, each with its own
// UMEM and its four rings.
//
// Who owns which ring (and which frames):
//   - The UMEM is split in two. The first half of the frames belongs to
//     receive, the second half to transmit, so the two paths never share
//     a free list or a lock.
//   - Fill ring (we produce, the kernel consumes) and RX ring (the kernel
//     produces, we consume) belong to the one goroutine that calls
//     Receive. Every received frame goes straight back to the fill ring
//     after its bytes are copied out, so the fill ring is always full.
//   - TX ring (we produce) and completion ring (the kernel produces)
//     belong to whoever holds the socket's transmit lock, taken by
//     Transmit.
//
// This file holds the mmap and socket-option code; ring.go the index
// arithmetic, which needs no unsafe and is tested without root.
package afxdp

import (
	"fmt"
	"sync/atomic"
	"unsafe"

	"golang.org/x/sys/unix"
)

// registerUMEM registers umem with fd, leaving txMetadata bytes before
// every transmitted packet for its TX metadata when not 0.
func registerUMEM(fd int, umem []byte, frameSize, txMetadata uint32) error {
	reg := unix.XDPUmemReg{
		Addr:            uint64(uintptr(unsafe.Pointer(&umem[0]))),
		Len:             uint64(len(umem)),
		Size:            frameSize,
		Tx_metadata_len: txMetadata,
	}
	if txMetadata != 0 {
		reg.Flags = unix.XDP_UMEM_TX_METADATA_LEN
	}
	_, _, errno := unix.Syscall6(unix.SYS_SETSOCKOPT, uintptr(fd), unix.SOL_XDP, unix.XDP_UMEM_REG,
		uintptr(unsafe.Pointer(&reg)), unsafe.Sizeof(reg), 0)
	if errno != 0 {
		return fmt.Errorf("register umem: %w", errno)
	}
	return nil
}

func mmapOffsets(fd int) (unix.XDPMmapOffsets, error) {
	var off unix.XDPMmapOffsets
	size := uint32(unsafe.Sizeof(off))
	_, _, errno := unix.Syscall6(unix.SYS_GETSOCKOPT, uintptr(fd), unix.SOL_XDP, unix.XDP_MMAP_OFFSETS,
		uintptr(unsafe.Pointer(&off)), uintptr(unsafe.Pointer(&size)), 0)
	if errno != 0 {
		return off, fmt.Errorf("read ring offsets: %w", errno)
	}
	return off, nil
}

func xdpStatistics(fd int) (unix.XDPStatistics, error) {
	var st unix.XDPStatistics
	size := uint32(unsafe.Sizeof(st))
	_, _, errno := unix.Syscall6(unix.SYS_GETSOCKOPT, uintptr(fd), unix.SOL_XDP, unix.XDP_STATISTICS,
		uintptr(unsafe.Pointer(&st)), uintptr(unsafe.Pointer(&size)), 0)
	if errno != 0 {
		return st, fmt.Errorf("read xdp statistics: %w", errno)
	}
	return st, nil
}

// mapRing maps one ring of n entries of entrySize bytes and points r at
// its shared indexes.
func mapRing(fd int, pgoff int64, off unix.XDPRingOffset, n, entrySize uint32, r *ring) ([]byte, error) {
	mem, err := unix.Mmap(fd, pgoff, int(off.Desc)+int(n*entrySize), unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED|unix.MAP_POPULATE)
	if err != nil {
		return nil, fmt.Errorf("mmap ring at %#x: %w", pgoff, err)
	}
	r.producer = (*atomic.Uint32)(unsafe.Pointer(&mem[off.Producer]))
	r.consumer = (*atomic.Uint32)(unsafe.Pointer(&mem[off.Consumer]))
	r.flags = (*atomic.Uint32)(unsafe.Pointer(&mem[off.Flags]))
	r.mask = n - 1
	r.cachedProd = r.producer.Load()
	r.cachedCons = r.consumer.Load()
	return mem, nil
}

func mapAddrRing(fd int, pgoff int64, off unix.XDPRingOffset, n uint32, r *addrRing) ([]byte, error) {
	mem, err := mapRing(fd, pgoff, off, n, 8, &r.ring)
	if err != nil {
		return nil, err
	}
	r.entries = unsafe.Slice((*uint64)(unsafe.Pointer(&mem[off.Desc])), n)
	return mem, nil
}

func mapDescRing(fd int, pgoff int64, off unix.XDPRingOffset, n uint32, r *descRing) ([]byte, error) {
	mem, err := mapRing(fd, pgoff, off, n, uint32(unsafe.Sizeof(unix.XDPDesc{})), &r.ring)
	if err != nil {
		return nil, err
	}
	r.entries = unsafe.Slice((*unix.XDPDesc)(unsafe.Pointer(&mem[off.Desc])), n)
	return mem, nil
}
