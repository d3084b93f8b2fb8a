package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/xdpstack/xdpstack/daemon"
	"github.com/xdpstack/xdpstack/daemon/control"
	"github.com/xdpstack/xdpstack/loader"
	"github.com/xdpstack/xdpstack/maps"
	"github.com/xdpstack/xdpstack/userstack/afxdp"
)

func statusCommand() *cli.Command {
	return &cli.Command{
		Name:      "status",
		Usage:     "show what xdpstack has attached, read from its pins, and what its daemons serve",
		ArgsUsage: "[IFACE]",
		Flags: []cli.Flag{
			&cli.BoolFlag{Name: "json", Usage: "print JSON"},
			&cli.BoolFlag{Name: "ready", Usage: "only ask IFACE's daemon over its control socket, and fail unless it answers (a readiness probe)"},
		},
		Before: needRoot,
		Action: runStatus,
	}
}

type statusJSON struct {
	Iface       string    `json:"iface"`
	ProgramID   uint32    `json:"program_id"`
	ProgramName string    `json:"program_name"`
	Mode        string    `json:"mode"`
	AttachedAt  time.Time `json:"attached_at"`
	PID         int       `json:"pid"`
	Running     bool      `json:"running"`
	PinDir      string    `json:"pin_dir"`
	Pins        []string  `json:"pins"`
	AFXDP       []xskJSON `json:"afxdp"`
	// Sampling is absent where the pins hold no sampling maps.
	Sampling *samplingJSON `json:"sampling,omitempty"`
	// Daemon is what the daemon says over its control socket; absent
	// when none answers.
	Daemon *daemon.Status `json:"daemon,omitempty"`
}

type samplingJSON struct {
	Rate    uint32 `json:"rate"`
	Snaplen uint32 `json:"snaplen"`
}

// samplingSummary says what the program samples, for a person.
func samplingSummary(set *maps.SampleSettings) string {
	switch {
	case set == nil:
		return "sampling unknown (pins of a build without it)"
	case set.Rate == 0:
		return "sampling off"
	}
	return fmt.Sprintf("sampling 1 packet in %d (rate %d), %d bytes each", 1<<set.Rate, set.Rate, set.Snaplen)
}

type xskJSON struct {
	Queue int    `json:"queue"`
	Mode  string `json:"mode"`
}

func xskMode(x loader.XSK) afxdp.Mode {
	if x.ZeroCopy {
		return afxdp.ModeZeroCopy
	}
	return afxdp.ModeCopy
}

// xskSummary says which queues AF_XDP sockets serve, by mode: "copy on
// queues 0,1".
func xskSummary(xsks []loader.XSK) string {
	if len(xsks) == 0 {
		return "none"
	}
	var parts []string
	for _, mode := range []afxdp.Mode{afxdp.ModeCopy, afxdp.ModeZeroCopy} {
		var queues []string
		for _, x := range xsks {
			if xskMode(x) == mode {
				queues = append(queues, strconv.Itoa(x.Queue))
			}
		}
		if len(queues) != 0 {
			parts = append(parts, fmt.Sprintf("%s on queues %s", mode, strings.Join(queues, ",")))
		}
	}
	return strings.Join(parts, "; ")
}

func runStatus(c *cli.Context) error {
	if c.Bool("ready") {
		return runReady(c)
	}
	ifname, err := optionalIface(c)
	if err != nil {
		return err
	}
	root := c.String("pin-root")
	var all []loader.Status
	if ifname != "" {
		s, err := loader.ReadInterfaceStatus(root, ifname)
		if err != nil {
			return err
		}
		all = append(all, s)
	} else if all, err = loader.ReadStatus(root); err != nil {
		return err
	}

	daemons := make([]daemonAnswer, len(all))
	for i, s := range all {
		daemons[i] = askDaemon(c, s.Iface)
	}
	if c.Bool("json") {
		out := make([]statusJSON, 0, len(all))
		for i, s := range all {
			xsks := []xskJSON{}
			for _, x := range s.XSKs {
				xsks = append(xsks, xskJSON{x.Queue, xskMode(x).String()})
			}
			var sampling *samplingJSON
			if s.Sampling != nil {
				sampling = &samplingJSON{s.Sampling.Rate, s.Sampling.Snaplen}
			}
			out = append(out, statusJSON{s.Iface, uint32(s.ProgramID), s.ProgramName, modeOrNone(s), s.AttachedAt.UTC(), s.PID, s.Running, s.PinDir, s.Pins, xsks, sampling, daemons[i].status})
		}
		return json.NewEncoder(c.App.Writer).Encode(out)
	}
	if len(all) == 0 {
		fmt.Fprintf(c.App.Writer, "xdpstack is not attached anywhere (no pins in %s)\n", root)
		return nil
	}
	w := tabwriter.NewWriter(c.App.Writer, 0, 4, 2, ' ', 0)
	fmt.Fprintln(w, "IFACE\tPROGRAM\tMODE\tAF_XDP\tATTACHED\tBY\tPINS")
	for _, s := range all {
		prog := "none (detached)"
		if s.ProgramID != 0 {
			prog = fmt.Sprintf("%d %s", s.ProgramID, s.ProgramName)
		}
		by := fmt.Sprintf("pid %d (exited)", s.PID)
		if s.Running {
			by = fmt.Sprintf("pid %d (running)", s.PID)
		}
		fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%s\t%s\t%s/{%s}\n", s.Iface, prog, modeOrNone(s), xskSummary(s.XSKs),
			s.AttachedAt.UTC().Format(time.RFC3339), by, s.PinDir, strings.Join(s.Pins, ","))
	}
	if err := w.Flush(); err != nil {
		return err
	}
	for i, s := range all {
		fmt.Fprintf(c.App.Writer, "%s: %s\n", s.Iface, daemons[i].summary())
		fmt.Fprintf(c.App.Writer, "%s: %s\n", s.Iface, samplingSummary(s.Sampling))
	}
	return nil
}

// runReady answers a readiness probe: the daemon serves its control
// socket once its program is attached and its apps serve.
func runReady(c *cli.Context) error {
	if c.Bool("json") {
		return errors.New("--ready and --json: choose one")
	}
	ifname, err := oneIface(c)
	if err != nil {
		return err
	}
	a := askDaemon(c, ifname)
	if a.err != nil {
		return fmt.Errorf("status %s: %w", ifname, a.err)
	}
	fmt.Fprintf(c.App.Writer, "%s: %s\n", ifname, a.summary())
	return nil
}

// daemonAnswer is what the daemon on an interface said over its control
// socket, or why it said nothing.
type daemonAnswer struct {
	socket string
	status *daemon.Status
	err    error
}

// askTimeout bounds the wait for a daemon that does not answer.
const askTimeout = 3 * time.Second

func askDaemon(c *cli.Context, ifname string) daemonAnswer {
	ctx, cancel := context.WithTimeout(c.Context, askTimeout)
	defer cancel()
	client := control.NewClient(c.String("run-dir"), ifname)
	st, err := daemon.StatusEndpoint.Call(ctx, client, control.None{})
	if err != nil {
		return daemonAnswer{socket: client.Path, err: err}
	}
	return daemonAnswer{socket: client.Path, status: &st}
}

// summary says in one line what the daemon serves: its queues and apps.
func (a daemonAnswer) summary() string {
	switch {
	case errors.Is(a.err, control.ErrNotRunning):
		return "no daemon running (none answers on " + a.socket + ")"
	case a.err != nil:
		return "daemon: " + a.err.Error()
	case len(a.status.Queues) == 0:
		return "daemon running, no userstack"
	}
	st := a.status
	queues := make([]string, len(st.Queues))
	for i, q := range st.Queues {
		queues[i] = strconv.Itoa(q.Queue)
	}
	parts := []string{fmt.Sprintf("daemon running, userstack on queues %s (AF_XDP %s)", strings.Join(queues, ","), st.Queues[0].AFXDPMode)}
	for _, app := range st.Apps {
		parts = append(parts, fmt.Sprintf("app %s on %s", app.Spec, app.Addr))
	}
	return strings.Join(parts, ", ")
}

func modeOrNone(s loader.Status) string {
	if s.ProgramID == 0 {
		return "none"
	}
	return s.Mode.String()
}
