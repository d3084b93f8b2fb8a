package link

import (
	"errors"
	"testing"

	"gvisor.dev/gvisor/pkg/tcpip/header"

	"github.com/xdpstack/xdpstack/userstack/gsotx"
)

// segmenter is a Segmenter that records what it was handed.
type segmenter struct {
	tso  bool
	sent []gsotx.TCP
	// framesBefore is how many frames the peer had when each segment
	// was handed over.
	framesBefore []int
	peer         *memQueue
}

func (s *segmenter) TSO() bool { return s.tso }

func (s *segmenter) Send(seg gsotx.TCP) error {
	s.peer.mu.Lock()
	s.framesBefore = append(s.framesBefore, len(s.peer.frames))
	s.peer.mu.Unlock()
	s.sent = append(s.sent, seg)
	return nil
}

// TestSegmenter checks that segments larger than the MTU go whole to the
// Segmenter while the interface has TSO, after the frames written
// before them, and are cut into frames while it does not.
func TestSegmenter(t *testing.T) {
	for _, tso := range []bool{true, false} {
		qa, qb := memPair()
		seg := &segmenter{tso: tso, peer: qb}
		ep := New([]Queue{qa}, Options{MTU: 1500, Segmenter: seg})
		t.Cleanup(ep.Stop)
		write(t, ep, tcpOut(1, header.TCPFlagAck|header.TCPFlagPsh, 100, nil), tcpOut(1, header.TCPFlagAck|header.TCPFlagPsh, 10000, nil))
		frames := len(received(qb))
		if !tso {
			if len(seg.sent) != 0 || frames != 1+7 {
				t.Errorf("TSO off: %d segments handed over, %d frames sent; want none and 8", len(seg.sent), frames)
			}
			continue
		}
		if len(seg.sent) != 1 || frames != 1 || seg.framesBefore[0] != 1 {
			t.Fatalf("TSO on: %d segments handed over (after %v frames), %d frames sent; want 1 after the 1 frame", len(seg.sent), seg.framesBefore, frames)
		}
		if got := seg.sent[0]; got.MSS != 1460 || got.TCPOffset != 34 || got.Headers != 54 || got.IPv6 {
			t.Errorf("segment handed over as %+v", got)
		}
	}
}

// TestSegmenterAfterFailedFlush checks that a segment is cut into frames
// behind the flow's earlier ones when the queue cannot flush them:
// handed aside, it would overtake them.
func TestSegmenterAfterFailedFlush(t *testing.T) {
	qa, qb := memPair()
	qa.flushErr = errors.New("the kernel took none of 1 frames")
	seg := &segmenter{tso: true, peer: qb}
	ep := New([]Queue{qa}, Options{MTU: 1500, Segmenter: seg})
	t.Cleanup(ep.Stop)
	write(t, ep, tcpOut(1, header.TCPFlagAck|header.TCPFlagPsh, 100, nil), tcpOut(1, header.TCPFlagAck|header.TCPFlagPsh, 10000, nil))
	if frames := len(received(qb)); len(seg.sent) != 0 || frames != 1+7 {
		t.Errorf("after a failed Flush: %d segments handed over, %d frames sent; want none and 8", len(seg.sent), frames)
	}
}
