package gateway

import (
	"net/netip"
	"testing"
	"time"
)

func TestHolds(t *testing.T) {
	var h holds
	h.init(2, 2)
	a, b, c := netip.MustParseAddr("10.0.0.1"), netip.MustParseAddr("10.0.0.2"), netip.MustParseAddr("10.0.0.3")
	now := time.Now()
	none := func() bool { return false }
	for i, step := range []struct {
		dst  netip.Addr
		at   time.Duration
		want holdResult
		// expired is how many packets the step dropped as too old.
		expired int
	}{
		{a, 0, holdRequest, 0},
		{a, 0, holdQueued, 0},
		{a, 0, holdDropped, 0}, // a's queue is full
		{b, 0, holdRequest, 0},
		{c, 0, holdDropped, 0},                         // two destinations wait already
		{c, holdTimeout + time.Second, holdRequest, 3}, // a's and b's expired to make room
		{c, holdTimeout + time.Second, holdQueued, 0},
	} {
		res, expired := h.hold(step.dst, []byte{byte(i)}, now.Add(step.at), none)
		if res != step.want || expired != step.expired {
			t.Fatalf("step %d: hold(%v): %v with %d expired, want %v with %d", i, step.dst, res, expired, step.want, step.expired)
		}
	}
	if n := h.waiting.Load(); n != 1 {
		t.Errorf("destinations waiting: %d, want 1", n)
	}
	if res, _ := h.hold(a, nil, now, func() bool { return true }); res != holdInstalled {
		t.Errorf("hold when the tunnel came meanwhile: %v, want holdInstalled", res)
	}

	// join queues behind what waits, and release hands it all in order.
	if joined, dropped := h.join(a, []byte{9}); joined || dropped {
		t.Error("join: a packet joined a destination that does not wait")
	}
	if joined, dropped := h.join(c, []byte{7}); !joined || !dropped {
		t.Errorf("join to a full queue: joined %v, dropped %v; want both", joined, dropped)
	}
	var got [][]byte
	h.release(c, func(p [][]byte) { got = p })
	if len(got) != 2 || got[0][0] != 5 || got[1][0] != 6 {
		t.Errorf("release: %v, want the packets of steps 5 and 6", got)
	}
	if n := h.waiting.Load(); n != 0 {
		t.Errorf("destinations waiting after release: %d, want 0", n)
	}
	h.release(c, func([][]byte) { t.Error("release sent twice") })
}

func TestHoldCopies(t *testing.T) {
	var h holds
	h.init(4, 4)
	dst := netip.MustParseAddr("fd00::1")
	p := []byte{1, 2, 3}
	h.hold(dst, p, time.Now(), func() bool { return false })
	p[0] = 9 // the TUN device's buffer is read into again
	h.release(dst, func(held [][]byte) {
		if held[0][0] != 1 {
			t.Error("hold kept the caller's buffer, not a copy")
		}
	})
}
