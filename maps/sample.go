package maps

import (
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"
	"unsafe"

	"github.com/cilium/ebpf"
	"golang.org/x/sys/unix"

	"github.com/xdpstack/xdpstack/bpf"
)

// Sampling limits, as sample_limits in xdpstack.h has them.
const (
	// MaxSampleRate is the largest rate: 1 packet in 2^16.
	MaxSampleRate = uint32(bpf.XdpSampleLimitsSAMPLE_MAX_RATE)
	// DefaultSnaplen is how many bytes of a sample are copied unless
	// told otherwise.
	DefaultSnaplen = uint32(bpf.XdpSampleLimitsSAMPLE_DEFAULT_SNAPLEN)
	// MaxSnaplen is the most bytes of a sample a perf record holds.
	MaxSnaplen = uint32(bpf.XdpSampleLimitsSAMPLE_MAX_SNAPLEN)
)

// SampleSettings say how the program samples.
type SampleSettings struct {
	// Rate samples 1 packet in 2^Rate of every verdict; 0 samples none.
	Rate uint32
	// Snaplen is how many bytes of each sample are copied.
	Snaplen uint32
}

// DefaultSampleSettings sample nothing, and copy DefaultSnaplen bytes
// of a sample a capture asks for.
var DefaultSampleSettings = SampleSettings{Snaplen: DefaultSnaplen}

// CheckSampleRate refuses a rate the program does not take; the error
// leaves naming the rate to the caller.
func CheckSampleRate(rate int) error {
	if rate < 0 || rate > int(MaxSampleRate) {
		return fmt.Errorf("want 0 (off) to %d (1 packet in 2^N)", MaxSampleRate)
	}
	return nil
}

// CheckSnaplen refuses a snap length the program does not take; the
// error leaves naming the length to the caller.
func CheckSnaplen(n int) error {
	if n < 1 || n > int(MaxSnaplen) {
		return fmt.Errorf("want 1 to %d bytes", MaxSnaplen)
	}
	return nil
}

// Check refuses settings the program does not take.
func (s SampleSettings) Check() error {
	if err := CheckSampleRate(int(s.Rate)); err != nil {
		return fmt.Errorf("sample rate %d: %w", s.Rate, err)
	}
	if err := CheckSnaplen(int(s.Snaplen)); err != nil {
		return fmt.Errorf("snaplen %d: %w", s.Snaplen, err)
	}
	return nil
}

// Lease is what a running capture asks of the program, until a time it
// keeps renewing: once that is past, the program goes back to the
// settings by itself.
type Lease struct {
	// Until is the end of the lease, on CLOCK_MONOTONIC (MonotonicNow).
	Until time.Duration
	// Snaplen is how many bytes of each sample the capture wants.
	Snaplen uint32
	// All samples every packet, not 1 in 2^Rate.
	All bool
}

// MonotonicNow is the time on the clock the program stamps samples
// and ends leases with (bpf_ktime_get_ns).
func MonotonicNow() time.Duration {
	var ts unix.Timespec
	unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts)
	return time.Duration(ts.Nano())
}

// SampleCount is what became of one verdict's samples.
type SampleCount struct {
	// Taken were written to a capture's perf buffer.
	Taken uint64
	// Lost found the capture's buffer full.
	Lost uint64
	// Unread were sampled while no capture was reading.
	Unread uint64
}

// Sampling is the sampling maps of one interface: the settings with the
// capture lease (one value, memory-mapped), the samples perf buffer and
// the sample counters.
type Sampling struct {
	state, samples, counts *ebpf.Map
}

// SampleMapNames are the maps of sampling (OpenPinnedSampling).
var SampleMapNames = []string{SamplingName, SamplesName, SampleCountsName}

// ErrSampleMapsMissing says that the pins are an older build's, from
// before sampling.
var ErrSampleMapsMissing = errors.New("no sampling maps pinned (attached by an xdpstack older than sampling; attach again with this one)")

// OpenPinnedSampling opens the sampling maps pinned in dir. The caller
// closes them.
func OpenPinnedSampling(dir string) (Sampling, error) {
	var opened []*ebpf.Map
	for _, name := range SampleMapNames {
		m, err := ebpf.LoadPinnedMap(filepath.Join(dir, name), nil)
		if err != nil {
			for _, m := range opened {
				m.Close()
			}
			if errors.Is(err, os.ErrNotExist) {
				return Sampling{}, fmt.Errorf("open sampling in %s: %w", dir, ErrSampleMapsMissing)
			}
			return Sampling{}, fmt.Errorf("open pinned map %s: %w", filepath.Join(dir, name), err)
		}
		opened = append(opened, m)
	}
	return Sampling{state: opened[0], samples: opened[1], counts: opened[2]}, nil
}

// Close closes maps opened by OpenPinnedSampling.
func (s Sampling) Close() error {
	return errors.Join(s.state.Close(), s.samples.Close(), s.counts.Close())
}

// The words of struct sample_state that the sampling writers own (see
// shared_unsafe.go): the settings, and the lease's end and its tail
// (snap length and all). The program never sees a torn end of lease or
// a rate without its snap length.
var (
	settingsWord   = wordOf(unsafe.Offsetof(bpf.XdpSampleState{}.Settings))
	leaseUntilWord = wordOf(unsafe.Offsetof(bpf.XdpSampleState{}.Lease) + unsafe.Offsetof(bpf.XdpSampleLease{}.UntilNs))
	leaseTailWord  = wordOf(unsafe.Offsetof(bpf.XdpSampleState{}.Lease) + unsafe.Offsetof(bpf.XdpSampleLease{}.Snaplen))
)

// Settings reads the sampling settings.
func (s Sampling) Settings() (SampleSettings, error) {
	w, err := loadWords(s.state, settingsWord)
	if err != nil {
		return SampleSettings{}, fmt.Errorf("read %s map: %w", SamplingName, err)
	}
	var v bpf.XdpSampleSettings
	unpack(w[0], &v)
	return SampleSettings{Rate: v.Rate, Snaplen: v.Snaplen}, nil
}

// SetSettings checks and writes the sampling settings, leaving a
// running capture's lease as it is.
func (s Sampling) SetSettings(set SampleSettings) error {
	if err := set.Check(); err != nil {
		return err
	}
	return s.write(wordStore{settingsWord, pack(bpf.XdpSampleSettings{Rate: set.Rate, Snaplen: set.Snaplen})})
}

// SetLease writes a capture's lease; the zero Lease ends it. A lease
// that starts gets its snap length before its end, and one that ends
// loses its end first, so the program never reads a live lease with
// another's snap length.
func (s Sampling) SetLease(l Lease) error {
	var all uint32
	if l.All {
		all = 1
	}
	until := wordStore{leaseUntilWord, uint64(l.Until)}
	tail := wordStore{leaseTailWord, pack([2]uint32{l.Snaplen, all})}
	if l.Until == 0 {
		return s.write(until, tail)
	}
	return s.write(tail, until)
}

// Lease reads the lease as the program last left it: its Until is zero
// once the program found it past.
func (s Sampling) Lease() (Lease, error) {
	w, err := loadWords(s.state, leaseUntilWord, leaseTailWord)
	if err != nil {
		return Lease{}, fmt.Errorf("read %s map: %w", SamplingName, err)
	}
	var tail [2]uint32
	unpack(w[1], &tail)
	return Lease{Until: time.Duration(w[0]), Snaplen: tail[0], All: tail[1] != 0}, nil
}

func (s Sampling) write(stores ...wordStore) error {
	if err := storeWords(s.state, stores...); err != nil {
		return fmt.Errorf("write %s map: %w", SamplingName, err)
	}
	return nil
}

// Samples is the perf event array the program writes samples to, for
// a reader (github.com/cilium/ebpf/perf); Sampling keeps owning it.
func (s Sampling) Samples() *ebpf.Map { return s.samples }

// Counts reads every verdict's sample counters and sums them over the
// CPUs. Verdicts never sampled are left out.
func (s Sampling) Counts() (map[Verdict]SampleCount, error) {
	return sumVerdicts(s.counts, SampleCountsName, func(sum SampleCount, c bpf.XdpSampleCount) SampleCount {
		return SampleCount{sum.Taken + c.Taken, sum.Lost + c.Lost, sum.Unread + c.Unread}
	})
}

// Sample is one packet the program sampled.
type Sample struct {
	// Time is when, on CLOCK_MONOTONIC (MonotonicNow).
	Time    time.Duration
	Ifindex int
	Queue   int
	Verdict Verdict
	// RuleID is the session rule that decided the verdict; 0 for none.
	RuleID uint32
	// Len is the frame's whole length; Data its first bytes, as many as
	// the snap length let through.
	Len  int
	Data []byte
}

// Where struct sample_meta's fields are, read by hand: binary.Decode
// takes a tenth of a microsecond a sample, as much as the rest of a
// capture's work on it.
var (
	sampleMeta      bpf.XdpSampleMeta
	sampleMetaSize  = int(unsafe.Sizeof(sampleMeta))
	sampleTimeAt    = unsafe.Offsetof(sampleMeta.TimeNs)
	sampleIfindexAt = unsafe.Offsetof(sampleMeta.Ifindex)
	sampleQueueAt   = unsafe.Offsetof(sampleMeta.RxQueue)
	sampleLenAt     = unsafe.Offsetof(sampleMeta.Len)
	sampleCapLenAt  = unsafe.Offsetof(sampleMeta.CapLen)
	sampleRuleIDAt  = unsafe.Offsetof(sampleMeta.RuleId)
	sampleActionAt  = unsafe.Offsetof(sampleMeta.Action)
	sampleReasonAt  = unsafe.Offsetof(sampleMeta.Reason)
)

// DecodeSample reads a sample as the program writes it to the perf
// buffer: struct sample_meta, then the frame's first bytes, then up to
// 7 bytes of the record's padding. Data points into raw.
func DecodeSample(raw []byte) (Sample, error) {
	if len(raw) < sampleMetaSize {
		return Sample{}, fmt.Errorf("sample of %d bytes: shorter than its %d-byte header", len(raw), sampleMetaSize)
	}
	le := binary.LittleEndian
	capLen := int(le.Uint32(raw[sampleCapLenAt:]))
	if capLen > len(raw)-sampleMetaSize {
		return Sample{}, fmt.Errorf("sample of %d bytes: says it holds %d bytes of the frame", len(raw), capLen)
	}
	return Sample{
		Time:    time.Duration(le.Uint64(raw[sampleTimeAt:])),
		Ifindex: int(le.Uint32(raw[sampleIfindexAt:])),
		Queue:   int(le.Uint32(raw[sampleQueueAt:])),
		Len:     int(le.Uint32(raw[sampleLenAt:])),
		RuleID:  le.Uint32(raw[sampleRuleIDAt:]),
		Verdict: Verdict{Action: Action(raw[sampleActionAt]), Reason: Reason(raw[sampleReasonAt])},
		Data:    raw[sampleMetaSize : sampleMetaSize+capLen],
	}, nil
}
