package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/features"
	"github.com/urfave/cli/v2"
	"golang.org/x/sys/unix"

	"github.com/xdpstack/xdpstack/daemon"
	"github.com/xdpstack/xdpstack/internal/atomicfile"
	"github.com/xdpstack/xdpstack/internal/sdnotify"
	"github.com/xdpstack/xdpstack/loader"
	"github.com/xdpstack/xdpstack/maps"
	"github.com/xdpstack/xdpstack/userstack"
	"github.com/xdpstack/xdpstack/userstack/apps"
	"github.com/xdpstack/xdpstack/userstack/psp/pspconfig"
)

func attachCommand() *cli.Command {
	return &cli.Command{
		Name:      "attach",
		Usage:     "attach to an interface and run in the foreground until SIGINT or SIGTERM",
		ArgsUsage: "IFACE",
		Description: "Loads the XDP program, pins its maps under the pin root, attaches it and serves\n" +
			"/metrics and the control socket (RUN-DIR/IFACE.sock). On SIGINT or SIGTERM it detaches\n" +
			"and removes its pins. If the process dies instead, the program stays and keeps passing\n" +
			"traffic to the kernel; `xdpstack detach` or a new `xdpstack attach` takes over.\n" +
			"--config FILE (YAML) holds the same settings under the flags' names; flags given\n" +
			"override it. SIGHUP or `xdpstack reload IFACE` reads it again.",
		Flags: append([]cli.Flag{
			&cli.StringFlag{Name: "mode", Value: "auto", Usage: "XDP mode: native, generic, or auto (native, else generic, and say so)"},
			&cli.StringFlag{Name: "metrics-addr", Value: "127.0.0.1:9437", Usage: "HOST:PORT to serve Prometheus /metrics on (port 0 picks one; empty serves none)"},
			&cli.StringFlag{Name: "ready-file", Usage: "write a JSON line here once attached and serving; removed on exit"},
			&cli.StringSliceFlag{Name: "app", Usage: "serve a built-in app on the userstack: NAME=URI[,opt=val] (echo, http, proxy; e.g. http=tls://:443,cert=F,key=K); ns=NS,secret=S attach it to a namespace, scope=global|local|both; repeatable"},
			&cli.StringFlag{Name: "root", Usage: "serve the files in this folder from the http apps that have no root= of their own"},
			&cli.StringFlag{Name: "config", Usage: "read the settings from this YAML `FILE` (see xdpstack config check); flags given override it"},
			&cli.StringFlag{Name: "control-group", Usage: "let this group use the control socket (0660); else only root may (0600)"},
			&cli.IntFlag{Name: "sample-rate", Usage: "sample 1 packet in 2^`N` of every verdict for xdpstack capture to read (0 off, up to 16); reloadable"},
			&cli.IntFlag{Name: "snaplen", Value: int(maps.DefaultSnaplen), Usage: "bytes of each sample to copy, 1 to 65280 (a capture may ask for another while it runs)"},
		}, slices.Concat(tcpFlags, pspconfig.Flags())...),
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
	// Caught from the start: SIGHUP would otherwise kill the daemon.
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	s, err := attachSettings(c)
	if err != nil {
		return err
	}
	cfg, err := s.check()
	if err != nil {
		return err
	}
	if s.file != nil {
		h, _ := s.logHandler(c.App.ErrWriter) // checked with the rest
		slog.SetDefault(slog.New(h))
	}
	if err := checkCapabilities(len(cfg.Apps) > 0); err != nil {
		return err
	}
	if err := features.HaveProgramType(ebpf.XDP); err != nil {
		return fmt.Errorf("this kernel cannot load XDP programs: %w (needs Linux 5.9 or later with BPF enabled)", err)
	}
	iface, err := loader.LookupInterface(ifname)
	if err != nil {
		return err
	}
	if err := checkAppAddrs(s, iface, cfg.Apps); err != nil {
		return err
	}
	if err := s.checkNamespaceAddrs(iface); err != nil {
		return err
	}
	// Made now, so that a ready file that cannot be written stops the
	// command before anything is attached.
	readyFile := s.String("ready-file")
	var ready *atomicfile.File
	if readyFile != "" {
		if ready, err = atomicfile.Create(readyFile, 0o644); err != nil {
			return fmt.Errorf("%s: %w", s.label("ready-file"), err)
		}
		defer ready.Abort()
	}

	place := func(cfg *daemon.Config) {
		cfg.Iface, cfg.Attach.PinRoot, cfg.Control.Dir = ifname, c.String("pin-root"), c.String("run-dir")
	}
	place(&cfg)
	if s.file != nil {
		cfg.Reread = func() (daemon.Config, error) {
			s, err := attachSettings(c)
			if err != nil {
				return daemon.Config{}, err
			}
			cfg, err := s.check()
			if err == nil {
				err = checkAppAddrs(s, iface, cfg.Apps)
			}
			if err == nil {
				// A namespace may claim an address added since attach.
				var now loader.Interface
				if now, err = loader.LookupInterface(ifname); err == nil {
					err = s.checkNamespaceAddrs(now)
				}
			}
			place(&cfg)
			return cfg, err
		}
	}
	d, err := daemon.Start(cfg)
	if err != nil {
		return err
	}
	if d.NativeErr != nil {
		slog.Warn("native XDP failed; attached in generic mode", "iface", ifname, "err", d.NativeErr)
	}
	st, err := d.Status()
	if err != nil {
		return errors.Join(err, d.Close())
	}
	verb := "attached to"
	if d.Replaced {
		verb = "replaced the program on"
	}
	fmt.Fprintf(c.App.Writer, "%s %s (%s mode, program %d, pins in %s)\n", verb, ifname, st.XDP.Mode, st.XDP.ProgramID, st.XDP.PinDir)
	info := readyInfo{PID: os.Getpid(), Iface: ifname, Mode: st.XDP.Mode, ProgramID: st.XDP.ProgramID}
	if d.MetricsAddr != nil {
		info.MetricsAddr = d.MetricsAddr.String()
		fmt.Fprintf(c.App.Writer, "metrics on http://%s/metrics\n", d.MetricsAddr)
	}
	if len(st.Queues) > 0 {
		info.Queues = len(st.Queues)
		info.AFXDPMode = st.Queues[0].AFXDPMode
		queues := "queues"
		if info.Queues == 1 {
			queues = "queue"
		}
		fmt.Fprintf(c.App.Writer, "userstack on %d %s (AF_XDP %s mode)\n", info.Queues, queues, info.AFXDPMode)
		for _, app := range st.Apps {
			info.Apps = append(info.Apps, app.Spec)
			fmt.Fprintf(c.App.Writer, "app %s serving on %s\n", app.Spec, app.Addr)
		}
	}
	if ready != nil {
		if err := writeReadyFile(ready, info); err != nil {
			return errors.Join(err, d.Close())
		}
		defer os.Remove(readyFile)
	}
	sdnotify.Ready(d.Serving())
	// The watchdog is fed from the loop that answers signals, so that a
	// daemon stuck in it is restarted.
	var alive <-chan time.Time
	if every := sdnotify.WatchdogInterval(); every > 0 {
		t := time.NewTicker(every)
		defer t.Stop()
		alive = t.C
	}

serve:
	for {
		select {
		case <-c.Context.Done():
			break serve
		case <-hup:
			d.Reread() // logs what it did
		case <-alive:
			sdnotify.Alive()
		case lost := <-d.Lost():
			if errors.Is(lost, loader.ErrInterfaceGone) {
				sdnotify.Stopping(fmt.Sprintf("stopping: %s was deleted", ifname))
				return errors.Join(fmt.Errorf("stop serving %s: %w", ifname, lost), d.Close())
			}
			slog.Warn("the program was detached from outside (xdpstack detach --force); stopping", "iface", ifname)
			break serve
		}
	}
	sdnotify.Stopping("detaching from " + ifname)
	if err := d.Close(); err != nil {
		return fmt.Errorf("detach from %s: %w", ifname, err)
	}
	fmt.Fprintf(c.App.Writer, "detached from %s\n", ifname)
	return nil
}

// attachSettings are attach's flags over its config file, if any.
func attachSettings(c *cli.Context) (settings, error) {
	s := settings{flags: c}
	if path := c.String("config"); path != "" {
		var err error
		if s.file, err = readConfig(path); err != nil {
			return s, err
		}
	}
	return s, nil
}

// checkCapabilities fails when the process lacks a capability that
// attach needs: root in name is not enough where a bounding set
// (systemd's CapabilityBoundingSet=) took some away, and the kernel's
// EPERM would not say which.
func checkCapabilities(apps bool) error {
	hdr := unix.CapUserHeader{Version: unix.LINUX_CAPABILITY_VERSION_3}
	var data [2]unix.CapUserData
	if err := unix.Capget(&hdr, &data[0]); err != nil {
		return fmt.Errorf("read the capabilities: %w", err)
	}
	has := func(c int) bool { return data[c/32].Effective&(1<<(c%32)) != 0 }
	// CAP_SYS_ADMIN stands in for CAP_BPF and CAP_PERFMON, as the kernel has it.
	needs := []struct {
		name string
		ok   bool
	}{
		{"CAP_BPF", has(unix.CAP_BPF) || has(unix.CAP_SYS_ADMIN)},
		{"CAP_NET_ADMIN", has(unix.CAP_NET_ADMIN)},
		{"CAP_PERFMON", has(unix.CAP_PERFMON) || has(unix.CAP_SYS_ADMIN)},
		{"CAP_NET_RAW", has(unix.CAP_NET_RAW) || !apps},
	}
	var missing []string
	for _, n := range needs {
		if !n.ok {
			missing = append(missing, n.name)
		}
	}
	if len(missing) > 0 {
		return fmt.Errorf("attach: missing %s (needs CAP_BPF, CAP_NET_ADMIN, CAP_PERFMON, and CAP_NET_RAW with apps)", strings.Join(missing, ", "))
	}
	return nil
}

// checkAppAddrs checks that the apps serve on addresses of iface.
func checkAppAddrs(s settings, iface loader.Interface, specs []apps.Spec) error {
	for _, spec := range specs {
		if err := userstack.CheckListenAddr(iface, spec.URI.Addr); err != nil {
			return fmt.Errorf("%s %s: %w", s.label("apps"), spec, err)
		}
	}
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
