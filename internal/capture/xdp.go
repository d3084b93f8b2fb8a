package capture

import (
	"errors"
	"fmt"
	"os"
	"slices"
	"sync"
	"time"

	"github.com/cilium/ebpf/perf"

	"github.com/xdpstack/xdpstack/maps"
)

// Source is where a capture reads packets from: the XDP hook (OpenXDP)
// or the userstack's stream (ReadStream).
type Source interface {
	// Next returns the next packet, waiting for it until the time
	// given; os.ErrDeadlineExceeded when none came by then. The
	// packet's Data may be reused once Next is called again.
	Next(until time.Time) (Packet, error)
	// Lost is how many packets were lost on their way to the capture
	// so far: a full buffer, a slow reader.
	Lost() uint64
	// Close stops the capture; a Next waiting returns.
	Close() error
}

// A lease lasts leaseTerm and is renewed every leaseRenewal: a capture
// killed with -9 stops costing the program within leaseTerm.
const (
	leaseTerm    = time.Second
	leaseRenewal = leaseTerm / 4
)

// XDPOptions say what a capture at the XDP hook asks for.
type XDPOptions struct {
	// Snaplen is how many bytes of each sample the program copies.
	Snaplen uint32
	// All samples every packet while the capture runs, not 1 in 2^N.
	All bool
	// Buffer is the size of the perf buffers, shared out among the
	// CPUs, each of which gets at least minCPUBuffer; past it, samples
	// are lost.
	Buffer int
}

// minCPUBuffer is the least perf buffer a CPU gets: some 9,000 samples
// of 64-byte frames.
const minCPUBuffer = 1 << 20

// XDP is a capture at the XDP hook: it reads the samples the program
// writes to its perf buffers, through the interface's pins, and holds
// the capture lease (maps.Lease) while it runs.
type XDP struct {
	sampling maps.Sampling
	reader   *perf.Reader
	lease    maps.Lease
	// base is a wall-clock time and when it was on the program's clock.
	base     time.Time
	baseMono time.Duration
	lost     uint64
	rec      perf.Record
	// pending are samples read since the buffers were last found empty,
	// ready those handed out next, in time order (see Next); arena holds
	// their bytes.
	pending, ready []Packet
	arena          []byte

	stop      chan struct{}
	renewing  sync.WaitGroup
	closeOnce sync.Once
	closeErr  error
}

var _ Source = (*XDP)(nil)

// OpenXDP starts a capture of the samples of the program pinned in
// pinDir.
func OpenXDP(pinDir string, o XDPOptions) (*XDP, error) {
	if err := maps.CheckSnaplen(int(o.Snaplen)); err != nil {
		return nil, fmt.Errorf("snaplen %d: %w", o.Snaplen, err)
	}
	s, err := maps.OpenPinnedSampling(pinDir)
	if err != nil {
		return nil, err
	}
	perCPU := max(minCPUBuffer, o.Buffer/int(s.Samples().MaxEntries()))
	// Woken once a CPU's buffer holds a good share of it, or when Next's
	// wait ends: at a high rate, one wake-up reads many samples.
	reader, err := perf.NewReaderWithOptions(s.Samples(), perCPU, perf.ReaderOptions{Watermark: perCPU / 4})
	if err != nil {
		s.Close()
		return nil, fmt.Errorf("open the samples' perf buffers: %w", err)
	}
	x := &XDP{
		sampling: s,
		reader:   reader,
		lease:    maps.Lease{Snaplen: o.Snaplen, All: o.All},
		base:     time.Now(),
		baseMono: maps.MonotonicNow(),
		stop:     make(chan struct{}),
	}
	if err := x.renew(); err != nil {
		reader.Close()
		s.Close()
		return nil, err
	}
	x.renewing.Add(1)
	go x.keepRenewing()
	return x, nil
}

func (x *XDP) renew() error {
	x.lease.Until = maps.MonotonicNow() + leaseTerm
	return x.sampling.SetLease(x.lease)
}

func (x *XDP) keepRenewing() {
	defer x.renewing.Done()
	t := time.NewTicker(leaseRenewal)
	defer t.Stop()
	for {
		select {
		case <-x.stop:
			return
		case <-t.C:
			x.renew() // the maps stay while the capture holds them
		}
	}
}

// reorderBatch is the most samples Next holds back to put them in time
// order.
const reorderBatch = 1024

// Next returns the next sample. Each CPU has its buffer, and the reader
// empties one after the other: Next holds the samples back until it
// has found every buffer empty (or holds reorderBatch of them), and
// hands them out in time order.
func (x *XDP) Next(until time.Time) (Packet, error) {
	x.reader.SetDeadline(until)
	if len(x.ready) == 0 && len(x.pending) == 0 {
		x.arena = x.arena[:0] // the packets handed out are done with
	}
	for len(x.ready) == 0 {
		err := x.reader.ReadInto(&x.rec)
		switch {
		case errors.Is(err, os.ErrDeadlineExceeded) && len(x.pending) > 0:
			x.release()
			continue
		case errors.Is(err, perf.ErrClosed):
			return Packet{}, os.ErrClosed
		case err != nil:
			return Packet{}, err
		case x.rec.LostSamples > 0:
			x.lost += x.rec.LostSamples
			continue
		}
		s, err := maps.DecodeSample(x.rec.RawSample)
		if err != nil {
			return Packet{}, err
		}
		start := len(x.arena)
		x.arena = append(x.arena, s.Data...)
		x.pending = append(x.pending, Packet{
			Time:    x.base.Add(s.Time - x.baseMono),
			Point:   PointXDP,
			Queue:   s.Queue,
			Verdict: s.Verdict,
			RuleID:  s.RuleID,
			Len:     s.Len,
			Data:    x.arena[start:len(x.arena):len(x.arena)],
		})
		if len(x.pending) == reorderBatch {
			x.release()
		}
	}
	p := x.ready[0]
	x.ready = x.ready[1:]
	return p, nil
}

// release hands out the pending samples, in time order. They mostly
// are already: under a flood, one CPU takes an RX queue's packets.
func (x *XDP) release() {
	byTime := func(a, b Packet) int { return a.Time.Compare(b.Time) }
	if !slices.IsSortedFunc(x.pending, byTime) {
		slices.SortStableFunc(x.pending, byTime)
	}
	x.ready, x.pending = x.pending, x.ready[:0]
}

// Lost is how many samples found the capture's perf buffers full.
func (x *XDP) Lost() uint64 { return x.lost }

// Close ends the lease, so that the program stops sampling for the
// capture at once, and closes the perf buffers.
func (x *XDP) Close() error {
	x.closeOnce.Do(func() {
		close(x.stop)
		x.renewing.Wait()
		x.closeErr = errors.Join(x.sampling.SetLease(maps.Lease{}), x.reader.Close(), x.sampling.Close())
	})
	return x.closeErr
}
