package userstack

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"gvisor.dev/gvisor/pkg/tcpip/transport"
	"gvisor.dev/gvisor/pkg/tcpip/transport/tcp"

	"github.com/xdpstack/xdpstack/internal/testing/testutil"
	xtransport "github.com/xdpstack/xdpstack/userstack/transport"
)

func TestTCPSessionStates(t *testing.T) {
	for _, tc := range []struct {
		tcp  tcp.EndpointState
		want SessionState
	}{
		{tcp.StateInitial, StateCreated},
		{tcp.StateBound, StateCreated},
		{tcp.StateListen, StateListening},
		{tcp.StateConnecting, StateConnecting},
		{tcp.StateSynSent, StateConnecting},
		{tcp.StateSynRecv, StateAccepting},
		{tcp.StateEstablished, StateOpened},
		{tcp.StateCloseWait, StateTransportClosing},
		{tcp.StateFinWait1, StateClosing},
		{tcp.StateFinWait2, StateClosing},
		{tcp.StateClosing, StateClosing},
		{tcp.StateLastAck, StateAppClosed},
		{tcp.StateTimeWait, StateClosed},
		{tcp.StateClose, StateTransportClosed},
		{tcp.StateError, StateTransportClosed},
	} {
		t.Run(tc.tcp.String(), func(t *testing.T) {
			if got := tcpSessionState(tc.tcp); got != tc.want {
				t.Errorf("tcpSessionState(%s) = %s, want %s", tc.tcp, got, tc.want)
			}
		})
	}
}

func TestUDPSessionStates(t *testing.T) {
	for _, tc := range []struct {
		udp  transport.DatagramEndpointState
		want SessionState
	}{
		{transport.DatagramEndpointStateInitial, StateCreated},
		{transport.DatagramEndpointStateBound, StateListening},
		{transport.DatagramEndpointStateConnected, StateOpened},
		{transport.DatagramEndpointStateClosed, StateClosed},
	} {
		if got := udpSessionState(tc.udp); got != tc.want {
			t.Errorf("udpSessionState(%s) = %s, want %s", tc.udp, got, tc.want)
		}
	}
}

// TestTCPInternalsFound checks that the pinned gVisor still has the
// unexported fields the sessions view reads.
func TestTCPInternalsFound(t *testing.T) {
	if !tcpFields.ok {
		t.Fatal("tcp.Endpoint's snd, rcv, sndQueueInfo, sack or txHash moved or changed type: update tcpinternals_unsafe.go")
	}
}

// waitSession polls the sessions view until one session satisfies ok.
func waitSession(t *testing.T, s *Stack, f SessionFilter, what string, ok func(Session) bool) Session {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	var last []Session
	for time.Now().Before(deadline) {
		last = s.ListSessions(f)
		for _, sess := range last {
			if ok(sess) {
				return sess
			}
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatalf("ListSessions(%+v): no session %s in %+v", f, what, last)
	return Session{}
}

// sessionGauges reads xdpstack_userstack_sessions from s's collector,
// by "transport/state".
func sessionGauges(t *testing.T, s *Stack) map[string]float64 {
	t.Helper()
	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(s.Collector())
	families, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	gauges := map[string]float64{}
	for _, f := range families {
		if f.GetName() != "xdpstack_userstack_sessions" {
			continue
		}
		for _, m := range f.GetMetric() {
			labels := map[string]string{}
			for _, l := range m.GetLabel() {
				labels[l.GetName()] = l.GetValue()
			}
			gauges[labels["transport"]+"/"+labels["state"]] = m.GetGauge().GetValue()
		}
	}
	return gauges
}

// waitGone polls the sessions view until no session has remote.
func waitGone(t *testing.T, s *Stack, remote netip.AddrPort) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	var last []Session
	for time.Now().Before(deadline) {
		last = s.ListSessions(SessionFilter{})
		found := false
		for _, sess := range last {
			found = found || sess.Remote == remote
		}
		if !found {
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatalf("ListSessions: the session from %s still listed after the app closed it: %+v", remote, last)
}

// TestSessionsView connects kernel clients to a listener on the
// userstack whose app accepts and holds without reading, and follows
// the sessions through the view: the listener, an open session whose
// unread bytes show as Rx-f, a half-close, a close, and a reset.
func TestSessionsView(t *testing.T) {
	a, b := testutil.HostPair(t, 2)
	s, _ := startOn(t, a, Options{})
	ln, err := attach(t, s, AppOptions{Name: "hold"}).Listen("tcp", ":7")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	accepted := make(chan net.Conn, 2)
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			accepted <- c
		}
	}()
	pc, err := attach(t, s, AppOptions{Name: "quic-app", Scheme: xtransport.QUIC}).ListenPacket("udp", ":9")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { pc.Close() })

	lsn := waitSession(t, s, SessionFilter{State: StateListening, Protocol: "tcp"}, "listening on port 7", func(s Session) bool { return s.Local.Port() == 7 })
	if lsn.Transport != TransportTCP || lsn.App != "hold" || lsn.Namespace != DefaultNamespace || lsn.Remote.IsValid() {
		t.Errorf("listener: %+v, want transport T, app hold, namespace default, no remote", lsn)
	}
	udp := waitSession(t, s, SessionFilter{Protocol: "udp"}, "on port 9", func(s Session) bool { return s.Local.Port() == 9 })
	if udp.Transport != TransportQUIC || udp.State != StateListening || udp.App != "quic-app" {
		t.Errorf("udp socket: %+v, want transport Q, listening, app quic-app", udp)
	}

	server := netip.AddrPortFrom(a.Addr, 7)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	client, err := b.Dial(ctx, "tcp", server.String())
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	held := <-accepted
	remote := client.LocalAddr().(*net.TCPAddr).AddrPort()
	open := waitSession(t, s, SessionFilter{}, "from "+remote.String(), func(s Session) bool { return s.Remote == remote })
	if open.State != StateOpened || open.TCPState != "ESTABLISHED" || open.Local != server || open.App != "hold" || open.Transport != TransportTCP {
		t.Errorf("session: %+v, want opened (ESTABLISHED) on %s, app hold", open, server)
	}
	if open.Queue < 0 || open.Queue >= len(s.Sockets()) {
		t.Errorf("session queue %d, want one of the %d queues", open.Queue, len(s.Sockets()))
	}
	gauges := sessionGauges(t, s)
	for _, want := range []string{"T/listening", "T/opened", "Q/listening"} {
		if gauges[want] != 1 {
			t.Errorf("xdpstack_userstack_sessions by transport/state: %v, want %s 1", gauges, want)
		}
	}

	const unread = 3000
	if _, err := client.Write(make([]byte, unread)); err != nil {
		t.Fatal(err)
	}
	waitSession(t, s, SessionFilter{State: StateOpened}, fmt.Sprintf("with Rx-f %d", unread), func(s Session) bool {
		return s.Remote == remote && s.RxFifo == unread
	})
	// The server's bytes reach the client's kernel, which acknowledges
	// them: Tx-f drains to 0.
	if _, err := held.Write(make([]byte, 5000)); err != nil {
		t.Fatal(err)
	}
	v := waitSession(t, s, SessionFilter{TCPVars: true}, "with Tx-f 0 after a write", func(s Session) bool {
		return s.Remote == remote && s.TxFifo == 0 && s.TCP != nil && s.TCP.SndUna == s.TCP.SndNxt
	}).TCP
	if v.MSS == 0 || v.RcvWnd == 0 || v.SndWnd == 0 || v.Cwnd == 0 || v.RTO == 0 || v.SndNxt == 0 {
		t.Errorf("tcp variables: %+v, want MSS, windows, cwnd, RTO and snd.nxt set", v)
	}

	// Half-close: the client's FIN leaves the session in CLOSE-WAIT
	// until the app closes.
	if err := client.(*net.TCPConn).CloseWrite(); err != nil {
		t.Fatal(err)
	}
	waitSession(t, s, SessionFilter{State: StateTransportClosing}, "in transport-closing", func(s Session) bool {
		return s.Remote == remote && s.TCPState == "CLOSE-WAIT"
	})
	held.Close()
	waitGone(t, s, remote)

	// A reset: the transport closes under the app, which still holds
	// the connection; the view shows it until the app closes it.
	client2, err := b.Dial(ctx, "tcp", server.String())
	if err != nil {
		t.Fatal(err)
	}
	held2 := <-accepted
	remote2 := client2.LocalAddr().(*net.TCPAddr).AddrPort()
	waitSession(t, s, SessionFilter{State: StateOpened}, "opened from "+remote2.String(), func(s Session) bool { return s.Remote == remote2 })
	client2.(*net.TCPConn).SetLinger(0)
	client2.Close()
	reset := waitSession(t, s, SessionFilter{State: StateTransportClosed}, "in transport-closed after a reset", func(s Session) bool { return s.Remote == remote2 })
	if reset.App != "hold" {
		t.Errorf("reset session: %+v, want app hold", reset)
	}
	held2.Close()
	waitGone(t, s, remote2)
}
