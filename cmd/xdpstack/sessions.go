package main

import (
	"encoding/json"
	"fmt"
	"io"
	"net/netip"
	"strconv"
	"strings"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/xdpstack/xdpstack/daemon"
	"github.com/xdpstack/xdpstack/daemon/control"
	"github.com/xdpstack/xdpstack/userstack"
)

func sessionsCommand() *cli.Command {
	return &cli.Command{
		Name:      "sessions",
		Usage:     "list the userstack's listeners and connections, as VPP's show session does",
		ArgsUsage: "IFACE",
		Description: "Asks the daemon attached to IFACE over its control socket. Each line is\n" +
			"[QUEUE:INDEX][TRANSPORT] LOCAL->REMOTE, the state (VPP's session state names; the\n" +
			"TCP state in parentheses) and the bytes waiting: Rx-f received and not read by the\n" +
			"app, Tx-f written and not acknowledged. --verbose adds the namespace and the app,\n" +
			"--verbose 2 the TCP variables on a second line.",
		Flags: []cli.Flag{
			&cli.GenericFlag{Name: "verbose", Value: new(verbosity), Usage: "1: add namespace and app; 2: and the TCP variables (--verbose alone is 1)"},
			&cli.BoolFlag{Name: "json", Usage: "print the reply as JSON"},
			&cli.StringFlag{Name: "namespace", Usage: "only the sessions of namespace `NS`"},
			&cli.StringFlag{Name: "state", Usage: "only the sessions in `STATE` (VPP's names: listening, opened, transport-closing...)"},
			&cli.StringFlag{Name: "proto", Usage: "only tcp or udp sessions"},
		},
		Action: runSessions,
	}
}

// verbosity is --verbose [N]. A value that is no number is kept for
// runSessions to refuse: the flag package would call it a bad boolean.
type verbosity struct {
	level int
	bad   string
}

func (v *verbosity) Set(s string) error {
	if s == "true" {
		s = "1"
	}
	n, err := strconv.Atoi(s)
	if err != nil {
		v.bad = s
	}
	v.level = n
	return nil
}

func (v *verbosity) String() string {
	if v == nil {
		return "0"
	}
	return strconv.Itoa(v.level)
}

func (*verbosity) IsBoolFlag() bool { return true }

func (*verbosity) Accepts(arg string) bool {
	_, err := strconv.Atoi(arg)
	return err == nil
}

// fetchSessions asks the daemon on iface for its sessions, through its
// control socket; tests replace it.
var fetchSessions = func(c *cli.Context, iface string, q daemon.SessionsQuery) (daemon.SessionsReply, error) {
	r, err := daemon.SessionsEndpoint.Call(c.Context, control.NewClient(c.String("run-dir"), iface), q)
	if err != nil {
		return r, fmt.Errorf("sessions %s: %w", iface, err)
	}
	return r, nil
}

func runSessions(c *cli.Context) error {
	iface, err := oneIface(c)
	if err != nil {
		return err
	}
	verbose := c.Generic("verbose").(*verbosity)
	if verbose.bad != "" {
		return fmt.Errorf("sessions: verbose %q (want 0, 1 or 2)", verbose.bad)
	}
	q := daemon.SessionsQuery{
		Namespace: c.String("namespace"),
		State:     c.String("state"),
		Proto:     c.String("proto"),
		Verbose:   verbose.level,
	}
	if err := q.Check(); err != nil {
		return err
	}
	reply, err := fetchSessions(c, iface, q)
	if err != nil {
		return err
	}
	if c.Bool("json") {
		return json.NewEncoder(c.App.Writer).Encode(reply)
	}
	return printSessions(c.App.Writer, reply)
}

// printSessions renders the sessions view as text: a table of sessions,
// then a total per queue.
func printSessions(w io.Writer, r daemon.SessionsReply) error {
	if !r.Userstack {
		_, err := fmt.Fprintf(w, "%s runs no userstack: no sessions\n", r.Iface)
		return err
	}
	header := []string{"Connection", "State", "Rx-f", "Tx-f"}
	if r.Verbose >= 1 {
		header = append(header, "Namespace", "App")
	}
	rows := [][]string{header}
	var details []string
	for _, s := range r.Sessions {
		state := string(s.State)
		if s.TCPState != "" {
			state += " (" + s.TCPState + ")"
		}
		row := []string{
			fmt.Sprintf("[%d:%d][%s] %s->%s", s.Queue, s.Index, s.Transport, endpoint(s.Local), endpoint(s.Remote)),
			state, strconv.Itoa(s.RxFifo), strconv.Itoa(s.TxFifo),
		}
		if r.Verbose >= 1 {
			row = append(row, s.Namespace, orDash(s.App))
		}
		rows = append(rows, row)
		details = append(details, tcpDetail(s.TCP))
	}
	var b strings.Builder
	widths := columnWidths(rows)
	for i, row := range rows {
		for j, cell := range row {
			if j == len(row)-1 {
				b.WriteString(cell)
			} else {
				fmt.Fprintf(&b, "%-*s  ", widths[j], cell)
			}
		}
		b.WriteByte('\n')
		if i > 0 && r.Verbose >= 2 && details[i-1] != "" {
			b.WriteString("    " + details[i-1] + "\n")
		}
	}
	if len(r.Sessions) == 0 {
		b.WriteString("no sessions\n")
	}
	for _, q := range r.Queues {
		plural := "s"
		if q.Sessions == 1 {
			plural = ""
		}
		fmt.Fprintf(&b, "queue %d: %d session%s, Rx-f %d, Tx-f %d\n", q.Queue, q.Sessions, plural, q.RxFifo, q.TxFifo)
	}
	_, err := io.WriteString(w, b.String())
	return err
}

func columnWidths(rows [][]string) []int {
	var widths []int
	for _, row := range rows {
		for j, cell := range row {
			if j == len(widths) {
				widths = append(widths, 0)
			}
			widths[j] = max(widths[j], len(cell))
		}
	}
	return widths
}

// endpoint prints an address and port; * stands for any address or
// for no peer, as a listener has.
func endpoint(ap netip.AddrPort) string {
	switch {
	case !ap.Addr().IsValid() && ap.Port() == 0:
		return "*"
	case !ap.Addr().IsValid() || ap.Addr().IsUnspecified():
		return "*:" + strconv.Itoa(int(ap.Port()))
	}
	return ap.String()
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// tcpDetail is the line of TCP variables --verbose 2 adds.
func tcpDetail(v *userstack.TCPVars) string {
	if v == nil {
		return ""
	}
	ms := func(d time.Duration) string {
		return strconv.FormatFloat(float64(d)/float64(time.Millisecond), 'f', 3, 64) + "ms"
	}
	line := fmt.Sprintf("snd.una %d snd.nxt %d rcv.nxt %d snd.wnd %d (wscale %d) rcv.wnd %d (wscale %d) mss %d cwnd %d ssthresh %d srtt %s rttvar %s rto %s retrans %d timeouts %d",
		v.SndUna, v.SndNxt, v.RcvNxt, v.SndWnd, v.SndWndScale, v.RcvWnd, v.RcvWndScale, v.MSS, v.Cwnd, v.Ssthresh,
		ms(v.SRTT), ms(v.RTTVar), ms(v.RTO), v.Retransmits, v.Timeouts)
	if len(v.SACKBlocks) > 0 {
		blocks := make([]string, len(v.SACKBlocks))
		for i, sb := range v.SACKBlocks {
			blocks[i] = fmt.Sprintf("%d-%d", sb.Start, sb.End)
		}
		line += " sack " + strings.Join(blocks, ",")
	}
	return line
}
