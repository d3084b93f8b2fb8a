package afxdp

import (
	"bytes"
	"errors"
	"log/slog"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// memSocket is a Socket whose UMEM and rings are plain memory, with no
// kernel behind them: the test plays the kernel's side of the rings.
func memSocket(frames, frameSize uint32, sg bool) *Socket {
	n := frames / 2
	s := &Socket{
		umem: make([]byte, frames*frameSize), frameSize: frameSize, frames: frames, sg: sg, fd: -1, txFD: -1,
		// need_wakeup with the flag clear: no kick reaches the absent fd.
		NeedWakeup: true,
		fill:       addrRing{ring: newTestRing(n), entries: make([]uint64, n)},
		comp:       addrRing{ring: newTestRing(n), entries: make([]uint64, n)},
		rx:         descRing{ring: newTestRing(n), entries: make([]unix.XDPDesc, n)},
		tx:         descRing{ring: newTestRing(n), entries: make([]unix.XDPDesc, n)},
	}
	if sg {
		s.txJoin = make([]byte, maxPacket)
	}
	s.shareFrames()
	return s
}

// loopBack plays the kernel: it sends every TX descriptor back in
// through the RX ring, copied into frames from the fill ring, and
// completes the TX frames.
func loopBack(t *testing.T, s *Socket) {
	t.Helper()
	for s.tx.consumer.Load() != s.tx.producer.Load() {
		i := s.tx.consumer.Load()
		d := *s.tx.at(i)
		f := s.fill.consumer.Load()
		if f == s.fill.producer.Load() {
			t.Fatal("fill ring empty")
		}
		addr := *s.fill.at(f)
		s.fill.consumer.Store(f + 1)
		copy(s.umem[addr:], s.umem[d.Addr:d.Addr+uint64(d.Len)])
		p := s.rx.producer.Load()
		*s.rx.at(p) = unix.XDPDesc{Addr: addr, Len: d.Len, Options: d.Options}
		s.rx.producer.Store(p + 1)
		c := s.comp.producer.Load()
		*s.comp.at(c) = d.Addr
		s.comp.producer.Store(c + 1)
		s.tx.consumer.Store(i + 1)
	}
}

// TestMultiBuffer sends packets larger than a frame through the rings
// and checks they are cut into frames marked XDP_PKT_CONTD, joined again
// on receive, and that every frame is accounted for.
func TestMultiBuffer(t *testing.T) {
	s := memSocket(256, 2048, true)
	sizes := []int{100, 5000, 2048, 2049, 9014}
	packets := make([][]byte, len(sizes))
	for i, n := range sizes {
		packets[i] = make([]byte, n)
		for j := range packets[i] {
			packets[i][j] = byte(i*31 + j)
		}
	}
	n, err := s.Transmit(len(packets), writePackets(packets))
	if err != nil || n != len(packets) {
		t.Fatalf("Transmit: %d, %v", n, err)
	}
	wantFrames := 0
	for _, n := range sizes {
		wantFrames += (n + 2047) / 2048
	}
	if got := int(s.tx.pending()); got != wantFrames {
		t.Fatalf("TX ring holds %d frames, want %d", got, wantFrames)
	}
	if err := s.audit(); err != nil {
		t.Fatalf("after Transmit: %v", err)
	}
	loopBack(t, s)
	var got [][]byte
	for s.Receive(2, func(p []byte) { got = append(got, append([]byte(nil), p...)) }) > 0 {
	}
	if len(got) != len(packets) {
		t.Fatalf("received %d packets, want %d", len(got), len(packets))
	}
	for i := range packets {
		if !bytes.Equal(got[i], packets[i]) {
			t.Errorf("packet %d: received %d bytes that differ from the %d sent", i, len(got[i]), len(packets[i]))
		}
	}
	s.reap()
	if err := s.audit(); err != nil {
		t.Fatalf("after the round trip: %v", err)
	}
	if c := s.Frames(); c.Free+c.InKernel != c.Total {
		t.Fatalf("Frames(): %+v", c)
	}
	st, _ := s.Stats()
	if st.RxPackets != uint64(len(packets)) || st.TxPackets != uint64(len(packets)) {
		t.Errorf("packets counted: rx %d, tx %d; want %d each", st.RxPackets, st.TxPackets, len(packets))
	}
}

// writePackets writes packets[i] as Transmit asks: not at all into a
// buffer too short for it.
func writePackets(packets [][]byte) func(i int, buf []byte) (int, Checksum) {
	return func(i int, buf []byte) (int, Checksum) {
		if len(packets[i]) > len(buf) {
			return len(packets[i]), Checksum{}
		}
		return copy(buf, packets[i]), Checksum{}
	}
}

// TestTransmitTooLong checks that a socket without multi-buffer drops a
// packet longer than a frame, counts it, and sends the others.
func TestTransmitTooLong(t *testing.T) {
	s := memSocket(64, 2048, false)
	packets := [][]byte{make([]byte, 100), make([]byte, 2049), make([]byte, 2048)}
	if n, err := s.Transmit(len(packets), writePackets(packets)); err != nil || n != len(packets) {
		t.Fatalf("Transmit: %d, %v; want %d", n, err, len(packets))
	}
	if got := s.tx.pending(); got != 2 {
		t.Errorf("TX ring holds %d frames, want 2", got)
	}
	st, _ := s.Stats()
	if st.TxPackets != 2 || st.TxFailures[TxTooLong] != 1 || st.TxDropped != 1 {
		t.Errorf("Stats(): %d sent, %d too long, %d dropped; want 2, 1 and 1", st.TxPackets, st.TxFailures[TxTooLong], st.TxDropped)
	}
	if s.MaxMTU() >= 2049 {
		t.Errorf("MaxMTU(): %d, want less than a frame", s.MaxMTU())
	}
	if err := s.audit(); err != nil {
		t.Fatal(err)
	}
}

// TestTransmitFull checks that Transmit gives up on a batch that can
// never fit, after a bounded wait, loses no frame doing so, and counts
// and logs the packets it gave up on.
func TestTransmitFull(t *testing.T) {
	s := memSocket(64, 2048, false)
	logged := logTo(s)
	n, err := s.Transmit(100, func(i int, buf []byte) (int, Checksum) { return 60, Checksum{} })
	if err != nil || n != 32 {
		t.Fatalf("Transmit(100) into 32 frames: %d, %v; want 32", n, err)
	}
	if err := s.audit(); err != nil {
		t.Fatal(err)
	}
	st, _ := s.Stats()
	if st.TxFailures[TxFull] != 1 || st.TxDropped != 68 {
		t.Errorf("Stats() after giving up: %d full, %d dropped; want 1 and 68", st.TxFailures[TxFull], st.TxDropped)
	}
	if !strings.Contains(logged.String(), "reason=full") || !strings.Contains(logged.String(), "gave up on 68 packets") {
		t.Errorf("log after giving up: %q", logged)
	}
}

// logTo sends s's log lines to the buffer it returns.
func logTo(s *Socket) *bytes.Buffer {
	var b bytes.Buffer
	s.logger = slog.New(slog.NewTextHandler(&b, nil))
	return &b
}

// kickable gives s a TX descriptor that takes kicks and does nothing
// with them, as a kernel that never sends would, and asks for kicks.
func kickable(t *testing.T, s *Socket) {
	t.Helper()
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { unix.Close(fds[0]); unix.Close(fds[1]) })
	s.txFD = fds[0]
	s.tx.flags.Store(unix.XDP_RING_NEED_WAKEUP)
}

// sendAll plays the kernel's transmit: it takes every frame in the TX
// ring and completes it.
func sendAll(s *Socket) {
	for i := s.tx.consumer.Load(); i != s.tx.producer.Load(); i++ {
		c := s.comp.producer.Load()
		*s.comp.at(c) = s.tx.at(i).Addr
		s.comp.producer.Store(c + 1)
		s.tx.consumer.Store(i + 1)
	}
}

func transmit(t *testing.T, s *Socket, n int) {
	t.Helper()
	if sent, err := s.Transmit(n, func(i int, buf []byte) (int, Checksum) { return 60, Checksum{} }); sent != n || err != nil {
		t.Fatalf("Transmit(%d): %d, %v", n, sent, err)
	}
}

// TestFlushWaitsForTheKernel checks Flush's promise: it returns once the
// kernel has taken the frames queued before it, however many kicks that
// takes; before, it gave up after a burst of kicks and returned nil.
func TestFlushWaitsForTheKernel(t *testing.T) {
	s := memSocket(64, 2048, false)
	kickable(t, s)
	transmit(t, s, 4)
	start := time.Now()
	go func() {
		time.Sleep(5 * time.Millisecond)
		sendAll(s)
	}()
	if err := s.Flush(); err != nil {
		t.Fatalf("Flush: %v", err)
	}
	if pending := s.tx.pending(); pending != 0 || time.Since(start) < 5*time.Millisecond {
		t.Errorf("Flush returned after %v with %d frames in the TX ring; want none left", time.Since(start), pending)
	}
	if st, _ := s.Stats(); st.TxFailures != [NumTxFailures]uint64{} {
		t.Errorf("failures after a good Flush: %v", st.TxFailures)
	}
}

// TestFlushFails checks that Flush says so, counted and logged, when the
// kernel takes no frame or refuses the kick.
func TestFlushFails(t *testing.T) {
	s := memSocket(64, 2048, false)
	logged := logTo(s)
	kickable(t, s)
	transmit(t, s, 4)
	if err := s.Flush(); err == nil || !strings.Contains(err.Error(), "took none of 4 frames") {
		t.Errorf("Flush with a kernel that sends nothing: got %v", err)
	}
	unix.Close(s.txFD)
	if err := s.Flush(); !errors.Is(err, unix.EBADF) {
		t.Errorf("Flush with a kick the kernel refuses: got %v, want EBADF", err)
	}
	st, _ := s.Stats()
	if st.TxFailures[TxStuck] != 1 || st.TxFailures[TxKick] != 1 {
		t.Errorf("failures: %v, want 1 stuck and 1 kick", st.TxFailures)
	}
	for _, want := range []string{"reason=stuck", "reason=kick"} {
		if !strings.Contains(logged.String(), want) {
			t.Errorf("log: %q, want a line with %s", logged, want)
		}
	}
}

// TestTxFailureLogRateLimited checks that a kind of failure is logged
// at most once per txLogInterval, the next line counting what happened
// in between, and that kinds are limited apart.
func TestTxFailureLogRateLimited(t *testing.T) {
	s := memSocket(64, 2048, false)
	logged := logTo(s)
	for range 5 {
		s.txFailed(TxKick, unix.ENETDOWN)
	}
	s.txFailed(TxStuck, errors.New("stuck"))
	if n := strings.Count(logged.String(), "\n"); n != 2 {
		t.Fatalf("5 kick and 1 stuck failures logged in %d lines, want 2:\n%s", n, logged)
	}
	s.txLog.last[TxKick] = s.txLog.last[TxKick].Add(-txLogInterval)
	s.txFailed(TxKick, unix.ENETDOWN)
	lines := strings.Split(strings.TrimSpace(logged.String()), "\n")
	if len(lines) != 3 || !strings.Contains(lines[2], "reason=kick") || !strings.Contains(lines[2], "failures=5") {
		t.Errorf("line after the interval: %q, want kick with failures=5", lines[len(lines)-1])
	}
	if st, _ := s.Stats(); st.TxFailures[TxKick] != 6 || st.TxFailures[TxStuck] != 1 {
		t.Errorf("counted %v, want 6 kick and 1 stuck", st.TxFailures)
	}
}

// receiveFrames plays the kernel receiving n 60-byte packets: each takes
// the next frame of the fill ring and goes to the RX ring.
func receiveFrames(t *testing.T, s *Socket, n int) {
	t.Helper()
	for range n {
		f := s.fill.consumer.Load()
		if f == s.fill.producer.Load() {
			t.Fatal("fill ring empty")
		}
		p := s.rx.producer.Load()
		*s.rx.at(p) = unix.XDPDesc{Addr: *s.fill.at(f), Len: 60}
		s.rx.producer.Store(p + 1)
		s.fill.consumer.Store(f + 1)
	}
}

// TestFillDepthAdapts checks that the fill ring holds few frames, which
// the kernel reuses while they are still in the TLB, under light
// traffic; deepens as soon as the kernel takes frames faster; and goes
// back after fillDecay.
func TestFillDepthAdapts(t *testing.T) {
	s := memSocket(4096, 2048, false)
	if got := s.fill.pending(); got != fillFloor {
		t.Fatalf("fill ring holds %d frames at start; want %d", got, fillFloor)
	}
	// A ping-pong: one frame at a time comes back to the same short round.
	seen := map[uint64]bool{}
	for range 4 * fillFloor {
		seen[*s.fill.at(s.fill.consumer.Load())] = true
		receiveFrames(t, s, 1)
		s.Receive(64, func([]byte) {})
	}
	if len(seen) != fillFloor || s.fill.pending() != fillFloor {
		t.Errorf("light traffic went round %d frames with %d in the fill ring; want %d and %d", len(seen), s.fill.pending(), fillFloor, fillFloor)
	}
	// A burst: the kernel takes a quarter of the ring at once.
	receiveFrames(t, s, fillFloor/4)
	for s.Receive(64, func([]byte) {}) > 0 {
	}
	if got := s.fill.pending(); got != 2*fillFloor {
		t.Errorf("after a burst the fill ring holds %d frames; want %d", got, 2*fillFloor)
	}
	// Quiet for fillDecay: back to the floor, frame by frame as they
	// come back (the ring's frames stay there until the kernel takes them).
	s.fillDeepened = time.Now().Add(-2 * fillDecay)
	receiveFrames(t, s, 1)
	s.Receive(64, func([]byte) {})
	if s.fillDepth != fillFloor {
		t.Errorf("fill depth %d after %v without a burst; want %d", s.fillDepth, fillDecay, fillFloor)
	}
	if st := s.Frames(); st.Free+st.InKernel != st.Total {
		t.Errorf("receive frames lost: %+v", st)
	}
}
