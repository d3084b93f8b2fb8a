// Package stagetime stamps the stages a message passes through the
// userstack (received, handed to the netstack, written, queued, kicked),
// for tools/internal/pingpong to tell where a round trip's time goes.
// Marks sit on the hot paths: while nothing records, Mark costs one
// atomic load.
package stagetime

import (
	"runtime"
	"slices"
	"strconv"
	"sync/atomic"
	_ "unsafe" // go:linkname
)

// Stage is a point on a message's path through the userstack.
type Stage uint8

const (
	// RxWake: a receive loop returned from Wait with frames to take.
	RxWake Stage = iota
	// RxDelivered: a received batch has been handed to the netstack.
	RxDelivered
	// AppRead: the application read the message (marked by the tool's
	// own echo, not by the userstack).
	AppRead
	// TxWrite: the link endpoint's WritePackets was entered.
	TxWrite
	// TxQueued: AF_XDP Transmit queued the frames on the TX ring.
	TxQueued
	// KickStart and KickDone: around the sendto that kicks the TX ring.
	KickStart
	KickDone
	// Count is the number of stages.
	Count
)

var names = [Count]string{"RxWake", "RxDelivered", "AppRead", "TxWrite", "TxQueued", "KickStart", "KickDone"}

func (s Stage) String() string {
	if s < Count {
		return names[s]
	}
	return "Stage(" + strconv.Itoa(int(s)) + ")"
}

// Marks are the times of a recording, per stage, in nanoseconds of
// CLOCK_MONOTONIC (Now), sorted.
type Marks struct {
	Times [Count][]int64
	// Dropped counts the marks past the capacity, per stage.
	Dropped [Count]int
}

// recording is where marks go between Record and Stop.
type recording struct {
	times [Count][]int64
	next  [Count]atomic.Int64
	// writers counts the Marks in flight, for Stop to wait for.
	writers atomic.Int64
}

var current atomic.Pointer[recording]

// Record starts recording up to capacity marks per stage, in slices
// made now so that marking allocates nothing; a recording under way is
// dropped.
func Record(capacity int) {
	r := &recording{}
	for s := range r.times {
		r.times[s] = make([]int64, capacity)
	}
	current.Store(r)
}

// Stop ends the recording and returns its marks: none when nothing
// recorded.
func Stop() Marks {
	r := current.Swap(nil)
	if r == nil {
		return Marks{}
	}
	// A Mark that saw r before the swap may still be writing; one that
	// counts itself in after this wait sees nil and writes nothing.
	for r.writers.Load() != 0 {
		runtime.Gosched()
	}
	var m Marks
	for s := range r.times {
		n := min(int(r.next[s].Load()), len(r.times[s]))
		m.Times[s] = r.times[s][:n]
		m.Dropped[s] = int(r.next[s].Load()) - n
		// Marks of one stage from several goroutines take their slots
		// in an order that need not be their times'.
		slices.Sort(m.Times[s])
	}
	return m
}

// Mark stamps stage s now, if a recording is under way.
func Mark(s Stage) {
	if r := current.Load(); r != nil {
		r.mark(s)
	}
}

func (r *recording) mark(s Stage) {
	t := nanotime()
	r.writers.Add(1)
	if current.Load() == r {
		if i := r.next[s].Add(1) - 1; i < int64(len(r.times[s])) {
			r.times[s][i] = t
		}
	}
	r.writers.Add(-1)
}

// Now is CLOCK_MONOTONIC in nanoseconds, read through the vDSO without
// a system call: the clock of the marks, for other processes (a client)
// to stamp theirs with.
func Now() int64 { return nanotime() }

// nanotime is the runtime's CLOCK_MONOTONIC reading through the vDSO:
// cheaper than time.Now, whose monotonic reading is moreover relative to
// the process's start and so not comparable across processes.
//
//go:linkname nanotime runtime.nanotime
func nanotime() int64
