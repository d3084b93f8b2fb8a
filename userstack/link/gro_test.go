package link

import (
	"slices"
	"sync"
	"testing"
	"time"

	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/header"
	"gvisor.dev/gvisor/pkg/tcpip/stack"
)

// sizeRecorder is a netstack stand-in that records the size of every
// IP packet the endpoint delivers.
type sizeRecorder struct {
	mu    sync.Mutex
	sizes []int
}

func (r *sizeRecorder) DeliverNetworkPacket(_ tcpip.NetworkProtocolNumber, pkt *stack.PacketBuffer) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.sizes = append(r.sizes, pkt.Data().Size())
}

func (r *sizeRecorder) DeliverLinkPacket(tcpip.NetworkProtocolNumber, *stack.PacketBuffer) {}

// receiveBatch hands frames to an endpoint as one receive batch and
// returns the sizes of the IP packets delivered once they stop coming.
func receiveBatch(t *testing.T, opts Options, frames [][]byte) []int {
	t.Helper()
	q, _ := memPair()
	q.frames = frames
	ep := New([]Queue{q}, opts)
	var r sizeRecorder
	ep.Attach(&r)
	t.Cleanup(ep.Stop)
	// Done once something came and nothing more for 100 ms.
	var got []int
	quiet := time.Now()
	for deadline := time.Now().Add(2 * time.Second); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
		r.mu.Lock()
		now := slices.Clone(r.sizes)
		r.mu.Unlock()
		if len(now) != len(got) {
			got, quiet = now, time.Now()
		} else if len(got) != 0 && time.Since(quiet) > 100*time.Millisecond {
			break
		}
	}
	return got
}

// Three flows whose packets share a GRO bucket (their ports differ by
// the bucket count) each leave the batch: gro.GRO.Flush alone delivered
// only the first and held the others until their queue's next batch.
func TestGROFlushesEveryFlow(t *testing.T) {
	var frames [][]byte
	for _, port := range []uint16{1000, 1008, 1016} {
		frames = append(frames, inFrame(port, 1, header.TCPFlagAck, 100))
	}
	got := receiveBatch(t, Options{GRO: true, TrustChecksums: true}, frames)
	if len(got) != 3 {
		t.Fatalf("delivered %d packets %v, want the 3 flows' packets", len(got), got)
	}
}

// In-order segments of a flow are coalesced into one packet whether the
// endpoint checks their checksums or trusts them. A checked frame whose
// checksum is wrong is dropped and counted, and coalescing stops at the
// gap it leaves; a trusted one is taken as it is.
func TestGROChecksums(t *testing.T) {
	var frames [][]byte
	for i := range uint32(4) {
		frames = append(frames, inFrame(2000, 1+100*i, header.TCPFlagAck, 100))
	}
	corrupt := slices.Clone(frames)
	corrupt[2] = slices.Clone(corrupt[2])
	corrupt[2][len(corrupt[2])-1] ^= 1
	ipTCP := header.IPv4MinimumSize + header.TCPMinimumSize
	for _, tc := range []struct {
		name   string
		frames [][]byte
		trust  bool
		want   []int
		errors uint64
	}{
		{"checked", frames, false, []int{ipTCP + 400}, 0},
		{"trusted", frames, true, []int{ipTCP + 400}, 0},
		{"checked, third corrupt", corrupt, false, []int{ipTCP + 200, ipTCP + 100}, 1},
		{"trusted, third corrupt", corrupt, true, []int{ipTCP + 400}, 0},
	} {
		stats := tcpip.Stats{}.FillIn()
		got := receiveBatch(t, Options{GRO: true, TrustChecksums: tc.trust, Stats: stats}, tc.frames)
		if !slices.Equal(got, tc.want) {
			t.Errorf("%s: delivered packets of %v bytes, want %v", tc.name, got, tc.want)
		}
		if n := stats.TCP.ChecksumErrors.Value(); n != tc.errors {
			t.Errorf("%s: counted %d TCP checksum errors, want %d", tc.name, n, tc.errors)
		}
	}
}
