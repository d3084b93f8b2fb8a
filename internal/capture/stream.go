package capture

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"sync/atomic"
	"time"
)

// The userstack's frames and the PSP gateway's inner packets travel
// from the daemon to a capture as a stream of records, each a 4-byte
// length (of the rest, little-endian), a kind, and its body:
//
//	recordPacket:  time (8 bytes, Unix ns), queue (4), out (1), length (4), the frame's first bytes
//	recordDropped: how many frames the daemon dropped so far (8)
//	recordInner:   time (8), spi (4), flags (1: out 1, sampled 2), length (4), the packet's first bytes
const (
	recordPacket  = 1
	recordDropped = 2
	recordInner   = 3

	// packetHeaderSize is the header of a recordPacket and of a
	// recordInner, which differ in what the 4 bytes after the time
	// and the flags byte mean.
	packetHeaderSize = 8 + 4 + 1 + 4

	innerOut     = 1
	innerSampled = 2
	// maxRecord bounds a record a reader takes: a whole 64 KiB frame
	// and its header.
	maxRecord = 1 + packetHeaderSize + 1<<16
)

// tapQueue is how many frames a tap holds for its stream; past it,
// frames are dropped and counted.
const tapQueue = 4096

// streamHeartbeat is how often a stream says how many frames were
// dropped, even while none pass: a write to a capture that is gone
// fails then, and the tap comes off.
const streamHeartbeat = 500 * time.Millisecond

// Tap copies the frames the userstack's link endpoint shows it
// (userstack/link.Tap) for one capture's stream. It never blocks the
// endpoint: a frame that finds the stream's queue full is dropped, and
// counted.
type Tap struct {
	snaplen int
	filter  *Filter
	packets chan Packet
	dropped atomic.Uint64
}

// NewTap makes a tap that keeps the frames filter matches, cut to
// snaplen bytes.
func NewTap(snaplen int, filter *Filter) *Tap {
	return &Tap{snaplen: snaplen, filter: filter, packets: make(chan Packet, tapQueue)}
}

// Tapped takes a frame the userstack received (out false) or sent on
// queue. It copies what it keeps.
func (t *Tap) Tapped(queue int, out bool, frame []byte) {
	t.keep(Packet{Time: time.Now(), Point: PointUserstack, Queue: queue, Out: out, Len: len(frame), Data: frame})
}

// keep queues a copy of p for the stream, if the filter keeps it.
func (t *Tap) keep(p Packet) {
	if !t.filter.Match(&p) {
		return
	}
	p.Data = bytes.Clone(p.Data[:min(len(p.Data), t.snaplen)])
	select {
	case t.packets <- p:
	default:
		t.dropped.Add(1)
	}
}

// PSPTap is a Tap of the PSP gateway's inner packets
// (userstack/psp/gateway.Tap).
type PSPTap struct{ *Tap }

// NewPSPTap makes a tap of the PSP gateway that keeps the packets
// filter matches, cut to snaplen bytes.
func NewPSPTap(snaplen int, filter *Filter) PSPTap { return PSPTap{NewTap(snaplen, filter)} }

// Tapped takes an inner IP packet the gateway sealed under spi (out),
// with the S bit when sampled, or opened. It copies what it keeps.
func (t PSPTap) Tapped(spi uint32, out, sampled bool, packet []byte) {
	t.keep(Packet{Time: time.Now(), Point: PointPSP, Out: out, SPI: spi, Sampled: sampled, Len: len(packet), Data: packet})
}

// streamBatch is about how many bytes of records a stream writes at
// once.
const streamBatch = 1 << 16

// Stream writes the tapped frames to w as records, flushing after each
// burst, until ctx ends or a write fails (the capture went away).
func (t *Tap) Stream(ctx context.Context, w io.Writer, flush func()) error {
	heartbeat := time.NewTicker(streamHeartbeat)
	defer heartbeat.Stop()
	var rec []byte
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-heartbeat.C:
			rec = appendDropped(rec[:0], t.dropped.Load())
		case p := <-t.packets:
			rec = t.batch(rec[:0], p)
		}
		if _, err := w.Write(rec); err != nil {
			return err
		}
		flush()
	}
}

// batch appends p and the frames queued behind it, up to about
// streamBatch bytes.
func (t *Tap) batch(b []byte, p Packet) []byte {
	b = appendPacket(b, &p)
	for len(b) < streamBatch {
		select {
		case p = <-t.packets:
			b = appendPacket(b, &p)
		default:
			return b
		}
	}
	return b
}

// startRecord appends a record's header; endRecord fills in the length
// of the record that starts at start.
func startRecord(b []byte, kind byte) []byte { return append(b, 0, 0, 0, 0, kind) }

func endRecord(b []byte, start int) []byte {
	binary.LittleEndian.PutUint32(b[start:], uint32(len(b)-start-4))
	return b
}

func appendPacket(b []byte, p *Packet) []byte {
	start := len(b)
	kind, id, flags := byte(recordPacket), uint32(p.Queue), byte(0)
	if p.Point == PointPSP {
		kind, id = recordInner, p.SPI
		if p.Sampled {
			flags |= innerSampled
		}
	}
	if p.Out {
		flags |= innerOut // recordPacket's out is 1 too
	}
	b = startRecord(b, kind)
	b = binary.LittleEndian.AppendUint64(b, uint64(p.Time.UnixNano()))
	b = binary.LittleEndian.AppendUint32(b, id)
	b = append(b, flags)
	b = binary.LittleEndian.AppendUint32(b, uint32(p.Len))
	return endRecord(append(b, p.Data...), start)
}

func appendDropped(b []byte, n uint64) []byte {
	start := len(b)
	b = startRecord(b, recordDropped)
	return endRecord(binary.LittleEndian.AppendUint64(b, n), start)
}

// StreamSource reads a daemon's stream of the userstack's frames or the
// PSP gateway's inner packets.
type StreamSource struct {
	body    io.ReadCloser
	packets chan Packet
	// err is why the stream ended, once packets is closed.
	err     error
	dropped atomic.Uint64
}

var _ Source = (*StreamSource)(nil)

// ReadStream reads the records the daemon writes to body (Tap.Stream).
func ReadStream(body io.ReadCloser) *StreamSource {
	s := &StreamSource{body: body, packets: make(chan Packet, tapQueue)}
	go s.read()
	return s
}

func (s *StreamSource) read() {
	defer close(s.packets)
	r := bufio.NewReaderSize(s.body, 1<<16)
	var length [4]byte
	for {
		if _, err := io.ReadFull(r, length[:]); err != nil {
			s.err = err
			return
		}
		n := binary.LittleEndian.Uint32(length[:])
		if n == 0 || n > maxRecord {
			s.err = fmt.Errorf("capture stream: a record of %d bytes", n)
			return
		}
		rec := make([]byte, n)
		if _, err := io.ReadFull(r, rec); err != nil {
			s.err = fmt.Errorf("capture stream: %w", err)
			return
		}
		switch body := rec[1:]; rec[0] {
		case recordPacket, recordInner:
			if len(body) < packetHeaderSize {
				s.err = errors.New("capture stream: a packet record shorter than its header")
				return
			}
			le := binary.LittleEndian
			p := Packet{
				Time: time.Unix(0, int64(le.Uint64(body))),
				Out:  body[12]&innerOut != 0,
				Len:  int(le.Uint32(body[13:])),
				Data: body[packetHeaderSize:],
			}
			if rec[0] == recordInner {
				p.Point, p.SPI, p.Sampled = PointPSP, le.Uint32(body[8:]), body[12]&innerSampled != 0
			} else {
				p.Point, p.Queue = PointUserstack, int(le.Uint32(body[8:]))
			}
			s.packets <- p
		case recordDropped:
			if len(body) >= 8 {
				s.dropped.Store(binary.LittleEndian.Uint64(body))
			}
		}
	}
}

// Next returns the next frame; io.EOF once the daemon ended the stream.
func (s *StreamSource) Next(until time.Time) (Packet, error) {
	select {
	case p, ok := <-s.packets:
		return s.got(p, ok)
	default:
	}
	timer := time.NewTimer(time.Until(until))
	defer timer.Stop()
	select {
	case p, ok := <-s.packets:
		return s.got(p, ok)
	case <-timer.C:
		return Packet{}, os.ErrDeadlineExceeded
	}
}

func (s *StreamSource) got(p Packet, ok bool) (Packet, error) {
	if !ok {
		return Packet{}, s.err
	}
	return p, nil
}

// Lost is how many frames the daemon dropped because the capture did
// not read them fast enough, as it last said.
func (s *StreamSource) Lost() uint64 { return s.dropped.Load() }

// Close stops reading the stream; the daemon then takes its tap off.
func (s *StreamSource) Close() error { return s.body.Close() }
