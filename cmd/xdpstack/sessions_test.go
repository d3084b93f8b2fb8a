package main

import (
	"bytes"
	"encoding/json"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/xdpstack/xdpstack/daemon"
	"github.com/xdpstack/xdpstack/userstack"
)

// fixedReply has a listener, an open TCP session with its variables, a
// half-closed one and a QUIC socket, on two queues.
func fixedReply(verbose int) daemon.SessionsReply {
	vars := &userstack.TCPVars{SndUna: 100, SndNxt: 1548, RcvNxt: 2000, SndWnd: 65535, RcvWnd: 131072, SndWndScale: 7, RcvWndScale: 7,
		MSS: 1448, Cwnd: 10, Ssthresh: 2147483647, SRTT: 1250 * time.Microsecond, RTTVar: 500 * time.Microsecond, RTO: 200 * time.Millisecond,
		Retransmits: 2, Timeouts: 1, SACKBlocks: []userstack.SACKBlock{{Start: 3000, End: 4448}}}
	if verbose < 2 {
		vars = nil
	}
	return daemon.SessionsReply{
		Iface: "eth0", Verbose: verbose, Userstack: true,
		Sessions: []userstack.Session{
			{Queue: 0, Index: 0, Transport: "T", Protocol: "tcp", Local: netip.MustParseAddrPort("0.0.0.0:80"), State: userstack.StateListening, TCPState: "LISTEN", Namespace: "default", App: "http"},
			{Queue: 0, Index: 1, Transport: "U", Protocol: "udp", Local: netip.AddrPortFrom(netip.Addr{}, 443), State: userstack.StateListening, Namespace: "default", App: "echo"},
			{Queue: 1, Index: 0, Transport: "T", Protocol: "tcp", Local: netip.MustParseAddrPort("10.0.0.1:80"), Remote: netip.MustParseAddrPort("10.0.0.2:41234"),
				State: userstack.StateOpened, TCPState: "ESTABLISHED", RxFifo: 3000, TxFifo: 1448, Namespace: "default", App: "http", TCP: vars},
			{Queue: 1, Index: 1, Transport: "T", Protocol: "tcp", Local: netip.MustParseAddrPort("[2001:db8::1]:80"), Remote: netip.MustParseAddrPort("[2001:db8::2]:5000"),
				State: userstack.StateTransportClosing, TCPState: "CLOSE-WAIT", Namespace: "default"},
		},
		Queues: []daemon.QueueSessions{{Queue: 0, Sessions: 2}, {Queue: 1, Sessions: 2, RxFifo: 3000, TxFifo: 1448}},
	}
}

func TestPrintSessions(t *testing.T) {
	for _, tc := range []struct {
		verbose int
		want    string
	}{
		{0, `Connection                                     State                           Rx-f  Tx-f
[0:0][T] *:80->*                               listening (LISTEN)              0     0
[0:1][U] *:443->*                              listening                       0     0
[1:0][T] 10.0.0.1:80->10.0.0.2:41234           opened (ESTABLISHED)            3000  1448
[1:1][T] [2001:db8::1]:80->[2001:db8::2]:5000  transport-closing (CLOSE-WAIT)  0     0
queue 0: 2 sessions, Rx-f 0, Tx-f 0
queue 1: 2 sessions, Rx-f 3000, Tx-f 1448
`},
		{1, `Connection                                     State                           Rx-f  Tx-f  Namespace  App
[0:0][T] *:80->*                               listening (LISTEN)              0     0     default    http
[0:1][U] *:443->*                              listening                       0     0     default    echo
[1:0][T] 10.0.0.1:80->10.0.0.2:41234           opened (ESTABLISHED)            3000  1448  default    http
[1:1][T] [2001:db8::1]:80->[2001:db8::2]:5000  transport-closing (CLOSE-WAIT)  0     0     default    -
queue 0: 2 sessions, Rx-f 0, Tx-f 0
queue 1: 2 sessions, Rx-f 3000, Tx-f 1448
`},
		{2, `Connection                                     State                           Rx-f  Tx-f  Namespace  App
[0:0][T] *:80->*                               listening (LISTEN)              0     0     default    http
[0:1][U] *:443->*                              listening                       0     0     default    echo
[1:0][T] 10.0.0.1:80->10.0.0.2:41234           opened (ESTABLISHED)            3000  1448  default    http
    snd.una 100 snd.nxt 1548 rcv.nxt 2000 snd.wnd 65535 (wscale 7) rcv.wnd 131072 (wscale 7) mss 1448 cwnd 10 ssthresh 2147483647 srtt 1.250ms rttvar 0.500ms rto 200.000ms retrans 2 timeouts 1 sack 3000-4448
[1:1][T] [2001:db8::1]:80->[2001:db8::2]:5000  transport-closing (CLOSE-WAIT)  0     0     default    -
queue 0: 2 sessions, Rx-f 0, Tx-f 0
queue 1: 2 sessions, Rx-f 3000, Tx-f 1448
`},
	} {
		var b bytes.Buffer
		if err := printSessions(&b, fixedReply(tc.verbose)); err != nil {
			t.Fatal(err)
		}
		if got := b.String(); got != tc.want {
			t.Errorf("printSessions at verbose %d:\n%s\nwant:\n%s", tc.verbose, got, tc.want)
		}
	}
}

func TestPrintSessionsEmpty(t *testing.T) {
	for _, tc := range []struct {
		reply daemon.SessionsReply
		want  string
	}{
		{daemon.SessionsReply{Iface: "eth0"}, "eth0 runs no userstack: no sessions\n"},
		{daemon.SessionsReply{Iface: "eth0", Userstack: true, Queues: []daemon.QueueSessions{{Queue: 0}}},
			"Connection  State  Rx-f  Tx-f\nno sessions\nqueue 0: 0 sessions, Rx-f 0, Tx-f 0\n"},
	} {
		var b bytes.Buffer
		if err := printSessions(&b, tc.reply); err != nil {
			t.Fatal(err)
		}
		if got := b.String(); got != tc.want {
			t.Errorf("printSessions(%+v) = %q, want %q", tc.reply, got, tc.want)
		}
	}
}

// runSessionsWith runs `xdpstack sessions` with a daemon that answers
// reply, and returns what it printed and the query it sent.
func runSessionsWith(t *testing.T, reply daemon.SessionsReply, args ...string) (string, daemon.SessionsQuery, error) {
	t.Helper()
	var sent daemon.SessionsQuery
	saved := fetchSessions
	t.Cleanup(func() { fetchSessions = saved })
	fetchSessions = func(_ *cli.Context, iface string, q daemon.SessionsQuery) (daemon.SessionsReply, error) {
		sent = q
		return reply, nil
	}
	app := newApp()
	var out bytes.Buffer
	app.Writer = &out
	full, err := flagsFirst(app, append([]string{"xdpstack", "sessions"}, args...))
	if err == nil {
		err = app.Run(full)
	}
	return out.String(), sent, err
}

func TestSessionsJSON(t *testing.T) {
	out, q, err := runSessionsWith(t, fixedReply(2), "eth0", "--json", "--verbose", "2", "--proto", "tcp", "--state", "opened", "--namespace", "default")
	if err != nil {
		t.Fatal(err)
	}
	if want := (daemon.SessionsQuery{Namespace: "default", State: "opened", Proto: "tcp", Verbose: 2}); q != want {
		t.Errorf("query sent: %+v, want %+v", q, want)
	}
	var got map[string]any
	if err := json.Unmarshal([]byte(out), &got); err != nil {
		t.Fatalf("--json printed %q: %v", out, err)
	}
	var keys []string
	for k := range got {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	if want := []string{"iface", "queues", "sessions", "userstack", "verbose"}; !slices.Equal(keys, want) {
		t.Errorf("reply keys %v, want %v", keys, want)
	}
	open := got["sessions"].([]any)[2].(map[string]any)
	for k, want := range map[string]any{"queue": 1.0, "index": 0.0, "transport": "T", "protocol": "tcp", "local": "10.0.0.1:80", "remote": "10.0.0.2:41234",
		"state": "opened", "tcp_state": "ESTABLISHED", "rx_fifo": 3000.0, "tx_fifo": 1448.0, "namespace": "default", "app": "http"} {
		if open[k] != want {
			t.Errorf("session %s: %v, want %v", k, open[k], want)
		}
	}
	tcp := open["tcp"].(map[string]any)
	for k, want := range map[string]any{"snd_una": 100.0, "snd_nxt": 1548.0, "rcv_nxt": 2000.0, "snd_wscale": 7.0, "cwnd": 10.0, "srtt_ns": 1.25e6, "retransmits": 2.0} {
		if tcp[k] != want {
			t.Errorf("tcp %s: %v, want %v", k, tcp[k], want)
		}
	}
}

func TestSessionsVerboseFlag(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want int
	}{
		{[]string{"eth0"}, 0},
		{[]string{"eth0", "--verbose"}, 1},
		{[]string{"--verbose", "eth0"}, 1},
		{[]string{"eth0", "--verbose", "2"}, 2},
		{[]string{"--verbose", "2", "eth0"}, 2},
		{[]string{"eth0", "--verbose=2"}, 2},
		{[]string{"eth0", "--verbose", "--json"}, 1},
	} {
		_, q, err := runSessionsWith(t, fixedReply(0), tc.args...)
		if err != nil || q.Verbose != tc.want {
			t.Errorf("sessions %v: verbose %d, %v; want %d", tc.args, q.Verbose, err, tc.want)
		}
	}
}

func TestSessionsBadFlags(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"eth0", "--verbose", "3"}, "sessions: verbose 3 (want 0, 1 or 2)"},
		{[]string{"eth0", "--state", "ESTABLISHED"}, `sessions: unknown state "ESTABLISHED"`},
		{[]string{"eth0", "--proto", "sctp"}, `sessions: unknown proto "sctp" (want tcp or udp)`},
		{[]string{"eth0", "--verbose=x"}, `sessions: verbose "x" (want 0, 1 or 2)`},
		{[]string{}, "missing IFACE argument"},
	} {
		_, q, err := runSessionsWith(t, fixedReply(0), tc.args...)
		if err == nil || !strings.HasPrefix(err.Error(), tc.want) || strings.Contains(err.Error(), "\n") {
			t.Errorf("sessions %v: %v, want one line starting %q", tc.args, err, tc.want)
		}
		if q != (daemon.SessionsQuery{}) {
			t.Errorf("sessions %v sent %+v despite the bad flag", tc.args, q)
		}
	}
}

func TestSessionsWithoutDaemon(t *testing.T) {
	app := newApp()
	dir := t.TempDir()
	full, _ := flagsFirst(app, []string{"xdpstack", "--run-dir", dir, "sessions", "eth0"})
	err := app.Run(full)
	want := "sessions eth0: xdpstack is not running on eth0 (no daemon answers on " + dir + "/eth0.sock)"
	if err == nil || err.Error() != want {
		t.Errorf("sessions with no daemon: %v, want %q", err, want)
	}
}
