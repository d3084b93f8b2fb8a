package pktgen_test

import (
	"testing"
	"time"

	"github.com/xdpstack/xdpstack/internal/testing/testutil"
	"github.com/xdpstack/xdpstack/tools/internal/pktgen"
)

// Every frame Send reports sent reaches the peer, 64 bytes each, so that
// a benchmark's rate counts real arrivals.
func TestSendArrives(t *testing.T) {
	a, b := testutil.HostPair(t, 0)
	g, err := pktgen.New(b.Host, a.Host, 9)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { g.Close() })

	const n = 10_000
	before, err := a.Link()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := g.Send(n); err != nil {
		t.Fatalf("Send(%d): %v", n, err)
	}
	var got, bytes uint64
	for deadline := time.Now().Add(2 * time.Second); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
		after, err := a.Link()
		if err != nil {
			t.Fatal(err)
		}
		got = after.Attrs().Statistics.RxPackets - before.Attrs().Statistics.RxPackets
		bytes = after.Attrs().Statistics.RxBytes - before.Attrs().Statistics.RxBytes
		if got >= n {
			break
		}
	}
	if got != n || bytes != n*pktgen.FrameSize {
		t.Fatalf("peer received %d frames, %d bytes; want %d frames of %d bytes", got, bytes, n, pktgen.FrameSize)
	}
}
