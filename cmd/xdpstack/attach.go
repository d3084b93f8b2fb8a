package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/features"
	"github.com/urfave/cli/v2"

	"github.com/xdpstack/xdpstack/daemon"
	"github.com/xdpstack/xdpstack/internal/atomicfile"
	"github.com/xdpstack/xdpstack/loader"
	"github.com/xdpstack/xdpstack/userstack"
	"github.com/xdpstack/xdpstack/userstack/apps"
	"github.com/xdpstack/xdpstack/userstack/transport"
)

func attachCommand() *cli.Command {
	return &cli.Command{
		Name:      "attach",
		Usage:     "attach to an interface and run in the foreground until SIGINT or SIGTERM",
		ArgsUsage: "IFACE",
		Description: "Loads the XDP program, pins its maps under the pin root, attaches it and serves\n" +
			"/metrics. On SIGINT or SIGTERM it detaches and removes its pins. If the process dies\n" +
			"instead, the program stays and keeps passing traffic to the kernel; `xdpstack detach`\n" +
			"or a new `xdpstack attach` takes over.",
		Flags: append([]cli.Flag{
			&cli.StringFlag{Name: "mode", Value: "auto", Usage: "XDP mode: native, generic, or auto (native, else generic, and say so)"},
			&cli.StringFlag{Name: "metrics-addr", Value: "127.0.0.1:9437", Usage: "HOST:PORT to serve Prometheus /metrics on (port 0 picks one; empty serves none)"},
			&cli.StringFlag{Name: "ready-file", Usage: "write a JSON line here once attached and serving; removed on exit"},
			&cli.StringSliceFlag{Name: "app", Usage: "serve a built-in app on the userstack: NAME=URI[,opt=val] (echo, http, proxy; e.g. http=tls://:443,cert=F,key=K); repeatable"},
			&cli.StringFlag{Name: "root", Usage: "serve the files in this folder from the http apps that have no root= of their own"},
		}, tcpFlags...),
		Before: needRoot,
		Action: runAttach,
	}
}

// readyInfo is what the ready file holds.
type readyInfo struct {
	PID         int    `json:"pid"`
	Iface       string `json:"iface"`
	Mode        string `json:"mode"`
	ProgramID   uint32 `json:"program_id"`
	MetricsAddr string `json:"metrics_addr,omitempty"`
	// Queues and AFXDPMode describe the userstack's sockets, when it runs.
	Queues    int      `json:"queues,omitempty"`
	AFXDPMode string   `json:"afxdp_mode,omitempty"`
	Apps      []string `json:"apps,omitempty"`
}

func runAttach(c *cli.Context) error {
	ifname, err := oneIface(c)
	if err != nil {
		return err
	}
	mode, err := loader.ParseMode(c.String("mode"))
	if err != nil {
		return fmt.Errorf("--mode: %w", err)
	}
	if addr := c.String("metrics-addr"); addr != "" {
		if err := checkHostPort(addr); err != nil {
			return fmt.Errorf("--metrics-addr %q: %w", addr, err)
		}
	}
	specs, err := parseApps(c.StringSlice("app"))
	if err != nil {
		return err
	}
	tuning, err := userstackOptions(c)
	if err != nil {
		return err
	}
	if root := c.String("root"); root != "" {
		if st, err := os.Stat(root); err != nil || !st.IsDir() {
			return fmt.Errorf("--root %s is not a folder", root)
		}
	}
	if err := features.HaveProgramType(ebpf.XDP); err != nil {
		return fmt.Errorf("this kernel cannot load XDP programs: %w (needs Linux 5.9 or later with BPF enabled)", err)
	}
	iface, err := loader.LookupInterface(ifname)
	if err != nil {
		return err
	}
	for _, spec := range specs {
		if err := userstack.CheckListenAddr(iface, spec.URI.Addr); err != nil {
			return fmt.Errorf("--app %s: %w", spec, err)
		}
	}
	// Made now, so that a ready file that cannot be written stops the
	// command before anything is attached.
	readyFile := c.String("ready-file")
	var ready *atomicfile.File
	if readyFile != "" {
		if ready, err = atomicfile.Create(readyFile, 0o644); err != nil {
			return fmt.Errorf("--ready-file: %w", err)
		}
		defer ready.Abort()
	}

	d, err := daemon.Start(daemon.Config{
		Iface:       ifname,
		Attach:      loader.Options{Mode: mode, PinRoot: c.String("pin-root")},
		MetricsAddr: c.String("metrics-addr"),
		Apps:        specs,
		AppRoot:     c.String("root"),
		Userstack:   tuning,
	})
	if err != nil {
		return err
	}
	if d.NativeErr != nil {
		slog.Warn("native XDP failed; attached in generic mode", "iface", ifname, "err", d.NativeErr)
	}
	verb := "attached to"
	if d.Replaced {
		verb = "replaced the program on"
	}
	fmt.Fprintf(c.App.Writer, "%s %s (%s mode, program %d, pins in %s)\n", verb, ifname, d.Mode, d.ProgramID, d.PinDir)
	info := readyInfo{PID: os.Getpid(), Iface: ifname, Mode: d.Mode.String(), ProgramID: uint32(d.ProgramID)}
	if d.MetricsAddr != nil {
		info.MetricsAddr = d.MetricsAddr.String()
		fmt.Fprintf(c.App.Writer, "metrics on http://%s/metrics\n", d.MetricsAddr)
	}
	if d.Stack != nil {
		info.Queues = len(d.Stack.Sockets())
		info.AFXDPMode = d.Stack.Sockets()[0].Mode.String()
		queues := "queues"
		if info.Queues == 1 {
			queues = "queue"
		}
		fmt.Fprintf(c.App.Writer, "userstack on %d %s (AF_XDP %s mode)\n", info.Queues, queues, info.AFXDPMode)
		for i, app := range d.Apps {
			info.Apps = append(info.Apps, specs[i].String())
			fmt.Fprintf(c.App.Writer, "app %s serving on %s\n", specs[i], app.Addr())
		}
	}
	if ready != nil {
		if err := writeReadyFile(ready, info); err != nil {
			return errors.Join(err, d.Close())
		}
		defer os.Remove(readyFile)
	}

	<-c.Context.Done()
	if err := d.Close(); err != nil {
		return fmt.Errorf("detach from %s: %w", ifname, err)
	}
	fmt.Fprintf(c.App.Writer, "detached from %s\n", ifname)
	return nil
}

func parseApps(args []string) ([]apps.Spec, error) {
	var specs []apps.Spec
	for _, a := range args {
		spec, err := apps.ParseSpec(a)
		if err != nil {
			return nil, fmt.Errorf("--app: %w", err)
		}
		specs = append(specs, spec)
	}
	if err := apps.CheckSpecs(specs); err != nil {
		return nil, fmt.Errorf("--app: %w", err)
	}
	return specs, nil
}

func checkHostPort(addr string) error {
	_, port, err := net.SplitHostPort(addr)
	if err != nil {
		return err
	}
	_, err = transport.ParsePort(port)
	return err
}

// writeReadyFile puts the ready file in place whole, so that a waiting
// test never reads half of it.
func writeReadyFile(f *atomicfile.File, info readyInfo) error {
	b, err := json.Marshal(info)
	if err == nil {
		_, err = f.Write(append(b, '\n'))
	}
	if err == nil {
		err = f.Commit()
	}
	if err != nil {
		return fmt.Errorf("write ready file: %w", err)
	}
	return nil
}
