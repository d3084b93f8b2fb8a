package afxdp

import (
	"log/slog"
	"sync"
	"time"
)

// TxFailure is a kind of transmit failure, counted per socket.
type TxFailure int

const (
	// TxKick: the kernel refused a kick of the TX ring with an error.
	TxKick TxFailure = iota
	// TxStuck: frames stayed in the TX ring though kicks took none of
	// them for txStallLimit.
	TxStuck
	// TxFull: Transmit gave up on packets after waiting txStallLimit
	// for a free TX frame or room in the ring (Stats.TxDropped).
	TxFull
	// TxTooLong: a packet longer than a frame, on a socket the kernel
	// gave no multi-buffer, was dropped (Stats.TxDropped).
	TxTooLong
	// NumTxFailures is the number of kinds.
	NumTxFailures
)

func (f TxFailure) String() string {
	switch f {
	case TxKick:
		return "kick"
	case TxStuck:
		return "stuck"
	case TxFull:
		return "full"
	case TxTooLong:
		return "too_long"
	}
	return "unknown"
}

// txLogInterval is the least time between two log lines of one kind of
// failure on one socket: a failing queue fails at the packet rate.
var txLogInterval = 10 * time.Second

// txLog counts each kind of failure and logs it, rate-limited.
type txLog struct {
	mu sync.Mutex
	// count is every failure, unlogged those since the last line.
	count, unlogged [NumTxFailures]uint64
	last            [NumTxFailures]time.Time
}

// txFailed counts a failure of kind and logs it with err unless a line
// of that kind went out less than txLogInterval ago; the next line says
// how many happened since. It returns err.
func (s *Socket) txFailed(kind TxFailure, err error) error {
	l := &s.txLog
	l.mu.Lock()
	defer l.mu.Unlock()
	l.count[kind]++
	l.unlogged[kind]++
	if now := time.Now(); now.Sub(l.last[kind]) >= txLogInterval {
		s.log().Warn("af_xdp transmit failed", "reason", kind.String(), "queue", s.Queue, "failures", l.unlogged[kind], "err", err)
		l.unlogged[kind], l.last[kind] = 0, now
	}
	return err
}

// txFailures reads the counts.
func (s *Socket) txFailures() [NumTxFailures]uint64 {
	s.txLog.mu.Lock()
	defer s.txLog.mu.Unlock()
	return s.txLog.count
}

func (s *Socket) log() *slog.Logger {
	if s.logger != nil {
		return s.logger
	}
	return slog.Default()
}
