package link

import (
	"bytes"
	"errors"
	"testing"

	"gvisor.dev/gvisor/pkg/tcpip/header"
	"gvisor.dev/gvisor/pkg/tcpip/stack"

	"github.com/xdpstack/xdpstack/userstack/afxdp"
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

// TestWriteTooLong: a packet or piece longer than the buffer is left
// unwritten, and write says how long it is, for Transmit to find it a
// larger buffer (multi-buffer) or drop it.
func TestWriteTooLong(t *testing.T) {
	for _, tc := range []struct {
		name string
		mss  uint16
		want int
	}{
		{"piece of a segment", 3000, 14 + 20 + 20 + 3000},
		{"whole packet", 0, 14 + 20 + 20 + 3000},
	} {
		t.Run(tc.name, func(t *testing.T) {
			pkt := tcpOut(1, header.TCPFlagAck, 3000, nil)
			defer pkt.DecRef()
			pkt.GSOOptions.MSS = tc.mss
			if tc.mss == 0 {
				pkt.GSOOptions = stack.GSO{}
			}
			p := newOutPacket(pkt)
			buf := make([]byte, 2048)
			if n, csum := p.write(buf, 0, false); n != tc.want || csum != (afxdp.Checksum{}) {
				t.Errorf("write into %d bytes: %d, %+v; want %d and no checksum", len(buf), n, csum, tc.want)
			}
			if !bytes.Equal(buf, make([]byte, len(buf))) {
				t.Error("write wrote into a buffer too short")
			}
			big := make([]byte, tc.want)
			if n, _ := p.write(big, 0, false); n != tc.want {
				t.Errorf("write into %d bytes: %d, want %d", len(big), n, tc.want)
			}
		})
	}
}
