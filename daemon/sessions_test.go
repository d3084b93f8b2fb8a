package daemon

import (
	"context"
	"net"
	"testing"
	"time"

	"github.com/xdpstack/xdpstack/internal/testing/testutil"
	"github.com/xdpstack/xdpstack/userstack"
)

func TestSessionsQueryCheck(t *testing.T) {
	for _, tc := range []struct {
		q    SessionsQuery
		want string
	}{
		{SessionsQuery{}, ""},
		{SessionsQuery{State: "transport-closing", Proto: "tcp", Verbose: 2}, ""},
		{SessionsQuery{State: "ESTABLISHED"}, `sessions: unknown state "ESTABLISHED" (want one of created, listening, connecting, accepting, ready, opened, transport-closing, closing, app-closed, transport-closed, closed, transport-deleted)`},
		{SessionsQuery{Proto: "sctp"}, `sessions: unknown proto "sctp" (want tcp or udp)`},
		{SessionsQuery{Verbose: 3}, "sessions: verbose 3 (want 0, 1 or 2)"},
		{SessionsQuery{Verbose: -1}, "sessions: verbose -1 (want 0, 1 or 2)"},
	} {
		err := tc.q.Check()
		if got := ""; err != nil {
			got = err.Error()
			if got != tc.want {
				t.Errorf("%+v.Check() = %q, want %q", tc.q, got, tc.want)
			}
		} else if tc.want != "" {
			t.Errorf("%+v.Check() = nil, want %q", tc.q, tc.want)
		}
	}
}

func TestQueueTotals(t *testing.T) {
	got := queueTotals(2, []userstack.Session{{Queue: 1, RxFifo: 10, TxFifo: 1}, {Queue: 1, RxFifo: 5}, {Queue: 0, TxFifo: 7}})
	want := []QueueSessions{{Queue: 0, Sessions: 1, TxFifo: 7}, {Queue: 1, Sessions: 2, RxFifo: 15, TxFifo: 1}}
	if len(got) != len(want) || got[0] != want[0] || got[1] != want[1] {
		t.Errorf("queueTotals = %+v, want %+v", got, want)
	}
}

// TestSessions runs the echo app over TCP and QUIC and lists its
// sessions through the daemon: the listeners named after the app, a
// kernel client's connection, the filters and the TCP variables.
func TestSessions(t *testing.T) {
	a, b := testutil.HostPair(t, 2)
	d := start(t, a, "echo=tcp://:7", "echo=quic://:7,test-cert=localhost")
	t.Cleanup(func() { d.Close() })
	if _, err := d.Sessions(SessionsQuery{Proto: "icmp"}); err == nil {
		t.Error("Sessions(proto icmp) = nil error, want one")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := b.Dial(ctx, "tcp", net.JoinHostPort(a.Addr.String(), "7"))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := testutil.RoundTrip(c, 100); err != nil {
		t.Fatal(err)
	}
	remote := c.LocalAddr().(*net.TCPAddr).AddrPort()

	all, err := d.Sessions(SessionsQuery{Verbose: 2})
	if err != nil {
		t.Fatal(err)
	}
	if !all.Userstack || all.Iface != a.Iface || len(all.Queues) != 2 {
		t.Errorf("reply: userstack %v, iface %s, %d queue totals; want true, %s, 2", all.Userstack, all.Iface, len(all.Queues), a.Iface)
	}
	kinds := map[string]bool{}
	total := 0
	for _, s := range all.Sessions {
		kinds[s.Transport+"/"+string(s.State)+"/"+s.App] = true
		if s.Remote == remote && s.TCP == nil {
			t.Errorf("session from %s at verbose 2: no TCP variables", remote)
		}
	}
	for _, q := range all.Queues {
		total += q.Sessions
	}
	for _, want := range []string{"T/listening/echo", "Q/listening/echo", "T/opened/echo"} {
		if !kinds[want] {
			t.Errorf("sessions by transport/state/app: %v, want %s", kinds, want)
		}
	}
	if total != len(all.Sessions) {
		t.Errorf("queue totals count %d sessions, the list %d", total, len(all.Sessions))
	}

	udp, err := d.Sessions(SessionsQuery{Proto: "udp"})
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range udp.Sessions {
		if s.Protocol != "udp" || s.TCP != nil {
			t.Errorf("Sessions(proto udp) listed %+v", s)
		}
	}
	if len(udp.Sessions) != 1 {
		t.Errorf("Sessions(proto udp): %d sessions, want the QUIC listener's socket", len(udp.Sessions))
	}
}
