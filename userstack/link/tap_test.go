package link

import (
	"bytes"
	"context"
	"sync"
	"testing"
	"time"

	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/adapters/gonet"
	"gvisor.dev/gvisor/pkg/tcpip/header"
	"gvisor.dev/gvisor/pkg/tcpip/network/ipv4"

	"github.com/xdpstack/xdpstack/internal/testing/testutil"
)

// recordingTap keeps copies of the frames it is shown.
type recordingTap struct {
	mu       sync.Mutex
	in, out  [][]byte
	badQueue bool
}

func (r *recordingTap) Tapped(queue int, out bool, frame []byte) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.badQueue = r.badQueue || queue != 0
	if out {
		r.out = append(r.out, bytes.Clone(frame))
	} else {
		r.in = append(r.in, bytes.Clone(frame))
	}
}

func (r *recordingTap) counts() (in, out int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.in), len(r.out)
}

// TestTap runs a TCP exchange with a tap on one side: it sees every
// frame that side sends, as sent, and every frame it receives, until
// it is taken off; a second tap is refused meanwhile.
func TestTap(t *testing.T) {
	qa, qb := memPair()
	a := newSide(t, qa, 1, Options{})
	b := newSide(t, qb, 2, Options{})
	a.knows(t, b)
	b.knows(t, a)
	tap := &recordingTap{}
	if !a.ep.StartTap(tap) {
		t.Fatal("StartTap: refused with no tap on")
	}
	if a.ep.StartTap(&recordingTap{}) {
		t.Error("StartTap: a second tap was let on")
	}

	to := tcpip.FullAddress{NIC: 1, Addr: b.addr, Port: 7}
	ln, err := gonet.ListenTCP(b.stack, to, ipv4.ProtocolNumber)
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go testutil.Echo(ln)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := gonet.DialContextTCP(ctx, a.stack, to, ipv4.ProtocolNumber)
	if err != nil {
		t.Fatal(err)
	}
	if err := testutil.RoundTrip(c, 100_000); err != nil {
		t.Fatal(err)
	}
	c.Close()
	time.Sleep(100 * time.Millisecond) // the last ACKs

	qa.mu.Lock()
	sent := qa.sent
	qa.mu.Unlock()
	tap.mu.Lock()
	if len(tap.out) != sent || len(tap.in) == 0 || tap.badQueue {
		t.Errorf("tap saw %d frames out and %d in (queue other than 0: %v); the endpoint sent %d", len(tap.out), len(tap.in), tap.badQueue, sent)
	}
	if len(tap.out) > 0 {
		syn := header.TCP(header.IPv4(tap.out[0][header.EthernetMinimumSize:]).Payload())
		if syn.Flags() != header.TCPFlagSyn || syn.DestinationPort() != 7 {
			t.Errorf("first frame out: flags %v to port %d, want the SYN to port 7", syn.Flags(), syn.DestinationPort())
		}
	}
	tap.mu.Unlock()

	a.ep.StopTap(&recordingTap{}) // not the one on: stays
	if a.ep.StartTap(&recordingTap{}) {
		t.Error("StopTap of another tap took this one off")
	}
	a.ep.StopTap(tap)
	in, out := tap.counts()
	c2, err := gonet.DialContextTCP(ctx, a.stack, to, ipv4.ProtocolNumber)
	if err != nil {
		t.Fatal(err)
	}
	defer c2.Close()
	if err := testutil.RoundTrip(c2, 1000); err != nil {
		t.Fatal(err)
	}
	if in2, out2 := tap.counts(); in2 != in || out2 != out {
		t.Errorf("after StopTap the tap saw %d more in, %d more out", in2-in, out2-out)
	}
}
