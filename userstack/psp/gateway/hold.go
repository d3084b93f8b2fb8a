package gateway

import (
	"net/netip"
	"sync"
	"sync/atomic"
	"time"
)

// holdTimeout is how long packets wait for their tunnel: the next
// packet to that destination after it drops them and asks again, in
// case the request failed. A key exchange takes milliseconds.
const holdTimeout = 2 * time.Second

// holds are the packets waiting for a tunnel, by destination.
type holds struct {
	maxPackets, maxDsts int

	mu    sync.Mutex
	byDst map[netip.Addr]*holdQueue
	// waiting is len(byDst), read without the lock: the send path
	// takes the lock only while some destination waits.
	waiting atomic.Int32
}

type holdQueue struct {
	since   time.Time
	packets [][]byte
}

func (h *holds) init(maxPackets, maxDsts int) {
	h.maxPackets, h.maxDsts = maxPackets, maxDsts
	h.byDst = make(map[netip.Addr]*holdQueue)
}

// holdResult says what hold did with a packet.
type holdResult uint8

const (
	holdQueued    holdResult = iota // kept; its destination was asked for before
	holdRequest                     // kept, the first: ask for the tunnel
	holdDropped                     // the queue or the table is full
	holdInstalled                   // the tunnel came meanwhile: send it
)

// hold keeps a copy of packet until dst's tunnel comes. installed is
// asked, under the lock, whether it came since the caller looked: its
// OnInstall then ran already or waits for the lock, and would not see
// a queue made after it.
func (h *holds) hold(dst netip.Addr, packet []byte, now time.Time, installed func() bool) (res holdResult, expired int) {
	h.mu.Lock()
	defer h.mu.Unlock()
	q := h.byDst[dst]
	if q != nil && now.Sub(q.since) > holdTimeout {
		expired = len(q.packets)
		h.remove(dst)
		q = nil
	}
	if q == nil {
		if installed() {
			return holdInstalled, expired
		}
		if len(h.byDst) >= h.maxDsts {
			expired += h.expire(now)
		}
		if len(h.byDst) >= h.maxDsts {
			return holdDropped, expired
		}
		q = &holdQueue{since: now}
		h.byDst[dst] = q
		h.waiting.Add(1)
		res = holdRequest
	}
	if len(q.packets) >= h.maxPackets {
		return holdDropped, expired
	}
	q.packets = append(q.packets, append([]byte(nil), packet...))
	return res, expired
}

// join keeps packet behind those that wait for dst, if any: its tunnel
// exists, but what waited must go first. It takes the lock only while
// some destination waits.
func (h *holds) join(dst netip.Addr, packet []byte) (joined, dropped bool) {
	if h.waiting.Load() == 0 {
		return false, false
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	q := h.byDst[dst]
	switch {
	case q == nil:
		return false, false
	case len(q.packets) >= h.maxPackets:
		return true, true
	}
	q.packets = append(q.packets, append([]byte(nil), packet...))
	return true, false
}

// release hands send the packets held for dst, in order, under the lock
// so that join holds the later ones back until they are sent.
func (h *holds) release(dst netip.Addr, send func(packets [][]byte)) {
	h.mu.Lock()
	defer h.mu.Unlock()
	q := h.byDst[dst]
	if q == nil {
		return
	}
	h.remove(dst)
	send(q.packets)
}

// expire drops the queues older than holdTimeout and returns how many
// packets they held.
func (h *holds) expire(now time.Time) (dropped int) {
	for dst, q := range h.byDst {
		if now.Sub(q.since) > holdTimeout {
			dropped += len(q.packets)
			h.remove(dst)
		}
	}
	return dropped
}

func (h *holds) remove(dst netip.Addr) {
	delete(h.byDst, dst)
	h.waiting.Add(-1)
}

// clear drops everything held.
func (h *holds) clear() {
	h.mu.Lock()
	defer h.mu.Unlock()
	for dst := range h.byDst {
		h.remove(dst)
	}
}
