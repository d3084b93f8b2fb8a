package synproxy

import (
	"log/slog"
	"strings"
	"testing"
	"time"

	"gvisor.dev/gvisor/pkg/tcpip/header"

	"github.com/xdpstack/xdpstack/internal/testing/testutil"
)

// TestFlood: floodBurst SYNs that open no connection start a flood at
// once, the SYN after them is answered, and a quiet second ends it;
// both switches are logged.
func TestFlood(t *testing.T) {
	n := &fakeNetstack{owners: map[uint16]Owner{7: Listener}}
	p := newProxy(t, n)
	var logs testutil.SyncBuffer
	p.opts.Log = slog.New(slog.NewTextHandler(&logs, nil))
	p.Start()
	id := testFlow(false)
	answer := make([]byte, 128)
	answered := 0
	for i := range floodBurst + 1 {
		id.remotePort = uint16(i)
		if _, l := p.Received(fromClient(id, header.TCPFields{SeqNum: 1, Flags: header.TCPFlagSyn}, 0, 0), answer); l != 0 {
			answered++
		}
	}
	// A tick may come between two SYNs and start the count anew.
	if answered > 1 || !p.Counters().Flood {
		t.Fatalf("after %d SYNs with no connection: flood %v, %d answered; want a flood and the last answered", floodBurst+1, p.Counters().Flood, answered)
	}
	if !strings.Contains(logs.String(), "SYN flood: the SYN proxy answers every SYN") {
		t.Errorf("flood start not logged:\n%s", logs.String())
	}
	waitFor(t, "the flood to end", func() bool { return !p.Counters().Flood })
	if !strings.Contains(logs.String(), "SYN flood over") || !strings.Contains(logs.String(), "cookies_sent=") {
		t.Errorf("flood end not logged with the cookies sent:\n%s", logs.String())
	}
	if !p.checking.Load() {
		t.Errorf("cookies no longer checked right after the flood")
	}
}

// TestNoFloodForConnections: SYNs that open connections are no flood.
func TestNoFloodForConnections(t *testing.T) {
	n := &fakeNetstack{owners: map[uint16]Owner{7: Listener}}
	p := newProxy(t, n)
	id := testFlow(false)
	answer := make([]byte, 128)
	start := time.Now()
	for i := range 3 * floodBurst {
		id.remotePort = uint16(i)
		p.Received(fromClient(id, header.TCPFields{SeqNum: 1, Flags: header.TCPFlagSyn}, 0, 0), answer)
		p.opts.Stats.TCP.PassiveConnectionOpenings.Increment()
	}
	if p.Counters().Flood {
		t.Errorf("%d SYNs in %v, each opening a connection, taken for a flood", 3*floodBurst, time.Since(start))
	}
}
