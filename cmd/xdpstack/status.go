package main

import (
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/xdpstack/xdpstack/loader"
	"github.com/xdpstack/xdpstack/userstack/afxdp"
)

func statusCommand() *cli.Command {
	return &cli.Command{
		Name:      "status",
		Usage:     "show what xdpstack has attached, read from its pins",
		ArgsUsage: "[IFACE]",
		Flags: []cli.Flag{
			&cli.BoolFlag{Name: "json", Usage: "print JSON"},
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

	if c.Bool("json") {
		out := make([]statusJSON, 0, len(all))
		for _, s := range all {
			xsks := []xskJSON{}
			for _, x := range s.XSKs {
				xsks = append(xsks, xskJSON{x.Queue, xskMode(x).String()})
			}
			out = append(out, statusJSON{s.Iface, uint32(s.ProgramID), s.ProgramName, modeOrNone(s), s.AttachedAt.UTC(), s.PID, s.Running, s.PinDir, s.Pins, xsks})
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
	return w.Flush()
}

func modeOrNone(s loader.Status) string {
	if s.ProgramID == 0 {
		return "none"
	}
	return s.Mode.String()
}
