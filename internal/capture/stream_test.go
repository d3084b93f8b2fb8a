package capture

import (
	"bytes"
	"context"
	"errors"
	"io"
	"os"
	"testing"
	"time"
)

// TestStream taps frames, streams them through a pipe and reads them
// back: the filter's, cut to the snap length, with their queue and
// direction; then the end of the stream.
func TestStream(t *testing.T) {
	filter, _ := ParseFilter("tcp")
	tap := NewTap(40, filter)
	frame := tcpFrame(addrB, addrA, 5555, 22)
	tap.Tapped(0, false, frame)
	tap.Tapped(1, false, []byte("not a tcp frame, and so not kept"))
	tap.Tapped(2, true, frame)

	r, w := io.Pipe()
	ctx, cancel := context.WithCancel(context.Background())
	streamed := make(chan error, 1)
	go func() { streamed <- tap.Stream(ctx, w, func() {}); w.Close() }()
	s := ReadStream(r)
	defer s.Close()

	for _, want := range []struct {
		queue int
		out   bool
	}{{0, false}, {2, true}} {
		p, err := s.Next(time.Now().Add(5 * time.Second))
		if err != nil {
			t.Fatal(err)
		}
		if p.Point != PointUserstack || p.Queue != want.queue || p.Out != want.out || p.Len != len(frame) || !bytes.Equal(p.Data, frame[:40]) ||
			time.Since(p.Time) > time.Minute {
			t.Errorf("streamed packet: got %+v, want queue %d out %v with 40 of %d bytes", p, want.queue, want.out, len(frame))
		}
	}
	if _, err := s.Next(time.Now().Add(10 * time.Millisecond)); !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Errorf("Next with nothing streamed: got %v, want a deadline error", err)
	}
	cancel()
	if err := <-streamed; err != nil {
		t.Errorf("Stream: %v", err)
	}
	if _, err := s.Next(time.Now().Add(5 * time.Second)); err != io.EOF {
		t.Errorf("Next after the stream ended: got %v, want EOF", err)
	}
}

// TestTapDrops fills a tap that nobody streams: what does not fit is
// dropped and counted, never waited for, and the stream says how many.
func TestTapDrops(t *testing.T) {
	tap := NewTap(64, &Filter{})
	frame := tcpFrame(addrB, addrA, 5555, 22)
	start := time.Now()
	for range tapQueue + 100 {
		tap.Tapped(0, false, frame)
	}
	if elapsed := time.Since(start); elapsed > time.Second {
		t.Errorf("tapping %d frames took %v", tapQueue+100, elapsed)
	}
	if got := tap.dropped.Load(); got != 100 {
		t.Errorf("dropped: got %d, want 100", got)
	}

	r, w := io.Pipe()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go tap.Stream(ctx, w, func() {})
	s := ReadStream(r)
	defer s.Close()
	for i := range tapQueue {
		if _, err := s.Next(time.Now().Add(5 * time.Second)); err != nil {
			t.Fatalf("packet %d: %v", i, err)
		}
	}
	for deadline := time.Now().Add(5 * time.Second); s.Lost() != 100 && time.Now().Before(deadline); {
		s.Next(time.Now().Add(streamHeartbeat))
	}
	if got := s.Lost(); got != 100 {
		t.Errorf("Lost after a heartbeat: got %d, want 100", got)
	}
}
