// Package daemon runs what `xdpstack attach` keeps up in the foreground:
// the attached XDP program, the userstack with its apps, the metrics
// server and the control socket, started in an order that lets nothing
// half-started stay behind.
package daemon

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"

	"github.com/xdpstack/xdpstack/daemon/control"
	"github.com/xdpstack/xdpstack/internal/httpserver"
	"github.com/xdpstack/xdpstack/loader"
	"github.com/xdpstack/xdpstack/maps"
	"github.com/xdpstack/xdpstack/metrics"
	"github.com/xdpstack/xdpstack/userstack"
	"github.com/xdpstack/xdpstack/userstack/appns"
	"github.com/xdpstack/xdpstack/userstack/apps"
	"github.com/xdpstack/xdpstack/userstack/preload"
)

// Config is what to run.
type Config struct {
	Iface string
	// Attach says how to attach the XDP program.
	Attach loader.Options
	// MetricsAddr is HOST:PORT for /metrics; empty serves no metrics.
	// Port 0 picks a free port, reported in Daemon.MetricsAddr.
	MetricsAddr string
	// Apps run on the userstack, which starts only when there are some
	// or NeedUserstack says so.
	Apps []apps.Spec
	// AppRoot is the folder of files for the http apps without a root=.
	AppRoot       string
	NeedUserstack bool
	Userstack     userstack.Options

	// Control places the control socket; none when its Dir is empty.
	Control control.Options
	// Namespaces and Rules are the config file's application namespaces
	// and global session rules; how a reload changes them beside those
	// of the CLI is applyFile's to say.
	Namespaces []appns.Config
	Rules      []maps.Rule
	// PSP runs the PSP gateway on the userstack when set.
	PSP *PSPConfig
	// Settings are the effective value of every other configuration
	// key, as text: Reload refuses a change of any of them.
	Settings map[string]string
	// Reread, when set, reads the configuration again for Reread
	// (SIGHUP, the reload verb).
	Reread func() (Config, error)
}

// Daemon is a running attachment with its servers.
type Daemon struct {
	*loader.Attachment
	// MetricsAddr is the address /metrics is served on, if any.
	MetricsAddr net.Addr
	// Stack is the userstack, nil while none runs: without apps it
	// starts with the first preloaded program (startUserstack), under
	// stackMu.
	Stack   *userstack.Stack
	Apps    []apps.App
	specs   []apps.Spec
	metrics *httpserver.Server
	rates   rates
	control *control.Server

	// Namespaces are the interface's application namespaces, kept with
	// or without a userstack, so that they may be set up before the
	// applications that attach to them.
	Namespaces *appns.Registry
	netlink    *netlink.Handle
	// psp is the PSP gateway, nil without one.
	psp *pspGateway
	// preload serves the programs under `xdpstack run`, beside the
	// control socket.
	preload *preload.Server
	// startNetns is the network namespace Start ran in, where a
	// userstack started later must start too.
	startNetns netns.NsHandle
	stackMu    sync.Mutex
	// stackAtAttach says the userstack started with the apps, and
	// stopping that Close has begun: no userstack starts any more.
	stackAtAttach, stopping bool

	// cfg is the running configuration, as Reload leaves it.
	cfg Config
	// changing serializes reloads and the control socket's changes of
	// namespaces and local rules.
	changing sync.Mutex

	lost      chan error
	stopWatch chan struct{}
	watching  sync.WaitGroup
}

// checkInterval is how often the daemon checks that its program is
// still attached.
const checkInterval = time.Second

// Start checks the apps against the userstack's port range and binds
// the control socket and the metrics listener first, so that bad input,
// another daemon or a taken port changes nothing, then attaches and
// serves.
func Start(cfg Config) (*Daemon, error) {
	cfg.NeedUserstack = cfg.NeedUserstack || len(cfg.Apps) > 0 || cfg.PSP != nil
	// With a control socket the preload server runs, whose programs may
	// start the userstack later: its ports are steered (the replies to
	// their connects) and reserved in the kernel from the start.
	if (cfg.NeedUserstack || cfg.Control.Dir != "") && cfg.Attach.UserPorts == (maps.PortRange{}) {
		cfg.Attach.UserPorts = loader.DefaultUserPorts
	}
	for _, spec := range cfg.Apps {
		if cfg.Attach.UserPorts.Contains(spec.URI.Port) {
			return nil, fmt.Errorf("app %s: port %d is in the userstack's own port range %s (choose a port outside it)", spec, spec.URI.Port, cfg.Attach.UserPorts)
		}
	}
	var ctl *control.Server
	if cfg.Control.Dir != "" {
		var err error
		if ctl, err = control.Listen(cfg.Iface, cfg.Control); err != nil {
			return nil, err
		}
	}
	var ln net.Listener
	if cfg.MetricsAddr != "" {
		var err error
		if ln, err = net.Listen("tcp", cfg.MetricsAddr); err != nil {
			return nil, errors.Join(fmt.Errorf("listen for metrics on %s: %w (choose another --metrics-addr)", cfg.MetricsAddr, err), closeControl(ctl))
		}
	}
	spaces, nl, err := openNamespaces(cfg.Iface, cfg.Namespaces)
	if err != nil {
		if ln != nil {
			ln.Close()
		}
		return nil, errors.Join(err, closeControl(ctl))
	}
	cfg.Userstack.Namespaces = spaces
	if cfg.PSP != nil {
		cfg.Attach.PSP = cfg.PSP.xdpCheck()
		cfg.PSP.tune(&cfg.Userstack)
	}
	a, err := loader.Attach(cfg.Iface, cfg.Attach)
	if err != nil {
		if ln != nil {
			ln.Close()
		}
		nl.Close()
		return nil, errors.Join(err, closeControl(ctl))
	}
	// startNetns is none until startPreload: its zero value is descriptor 0.
	d := &Daemon{Attachment: a, control: ctl, cfg: cfg, Namespaces: spaces, netlink: nl, startNetns: netns.None()}
	err = d.applyFileRules(cfg.Rules)
	if err == nil {
		err = d.startApps(cfg)
	}
	if err == nil && cfg.PSP != nil {
		err = d.startPSP(cfg.PSP)
	}
	d.stackAtAttach = d.Stack != nil
	if err == nil && cfg.Control.Dir != "" {
		err = d.startPreload(cfg.Control.Dir)
	}
	if err != nil {
		if ln != nil {
			ln.Close()
		}
		return nil, errors.Join(err, d.Close())
	}
	if ln != nil {
		extra := []prometheus.Collector{namespaceCollector{a.Iface.Name, spaces}}
		if d.stackAtAttach {
			extra = append(extra, d.Stack.Collector())
		}
		if d.psp != nil {
			extra = append(extra, pspCollector{d.psp})
		}
		if d.preload != nil {
			extra = append(extra, preloadCollector{d})
		}
		d.MetricsAddr = ln.Addr()
		d.metrics = metrics.Serve(ln, metrics.NewRegistry(a.Iface.Name, a.Maps, extra...))
	}
	d.lost, d.stopWatch = make(chan error, 1), make(chan struct{})
	d.watching.Add(1)
	go d.watch()
	if d.control != nil {
		d.serveControl()
	}
	return d, nil
}

// Lost receives, once, why the program left the interface while the
// daemon ran: loader.ErrDetached or loader.ErrInterfaceGone. What is
// still running keeps running until Close.
func (d *Daemon) Lost() <-chan error { return d.lost }

func (d *Daemon) watch() {
	defer d.watching.Done()
	t := time.NewTicker(checkInterval)
	defer t.Stop()
	warned := false
	for {
		select {
		case <-d.stopWatch:
			return
		case <-t.C:
		}
		err := d.Check()
		switch {
		case err == nil:
		case errors.Is(err, loader.ErrDetached), errors.Is(err, loader.ErrInterfaceGone):
			d.lost <- err
			return
		case !warned:
			slog.Warn("cannot check that the program is still attached", "iface", d.Iface.Name, "err", err)
			warned = true
		}
	}
}

func (d *Daemon) startApps(cfg Config) error {
	if !cfg.NeedUserstack {
		return nil
	}
	var err error
	if d.Stack, err = userstack.Start(d.Iface, d.Maps, cfg.Userstack); err != nil {
		return err
	}
	for _, spec := range cfg.Apps {
		app, err := d.startApp(cfg, spec)
		if err != nil {
			return fmt.Errorf("start app %s: %w", spec, err)
		}
		d.Apps, d.specs = append(d.Apps, app), append(d.specs, spec)
	}
	return nil
}

// startApp attaches an app to the userstack with its namespace and
// scope, and runs it there.
func (d *Daemon) startApp(cfg Config, spec apps.Spec) (apps.App, error) {
	att, err := d.Stack.Attach(userstack.AppOptions{Name: spec.Name, Namespace: spec.Namespace, Secret: spec.Secret, Scope: spec.Scope, Scheme: spec.URI.Scheme})
	if err != nil {
		return nil, err
	}
	app, err := apps.Start(apps.Env{Network: att, Status: d.StatusHandler(), Local: d.isLocal, Root: cfg.AppRoot}, spec)
	if err != nil {
		return nil, errors.Join(err, att.Close())
	}
	return attachedApp{app, att}, nil
}

// attachedApp is a running app with its attachment, which closing the
// app ends.
type attachedApp struct {
	apps.App
	att *userstack.App
}

func (a attachedApp) Close() error { return errors.Join(a.App.Close(), a.att.Close()) }

// isLocal tells whether a client is on one of the interface's own
// networks, for the http apps' status=local.
func (d *Daemon) isLocal(addr netip.Addr) bool {
	for _, p := range d.Iface.Addrs {
		if p.Masked().Contains(addr) {
			return true
		}
	}
	return false
}

// Close stops serving and detaches, in the reverse order of Start: the
// control socket; the preload server with every preloaded program's
// session; the check that the program is still attached; /metrics,
// while everything it reads is still there; the PSP gateway; the apps,
// last started first; the userstack; and the program.
func (d *Daemon) Close() error {
	errs := []error{closeControl(d.control)}
	if d.preload != nil {
		errs = append(errs, d.preload.Close())
	}
	d.stackMu.Lock()
	d.stopping = true
	d.stackMu.Unlock()
	if d.startNetns.IsOpen() {
		d.startNetns.Close()
	}
	if d.stopWatch != nil {
		close(d.stopWatch)
		d.watching.Wait()
	}
	if d.metrics != nil {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		errs = append(errs, d.metrics.Shutdown(ctx))
	}
	if d.psp != nil {
		errs = append(errs, d.psp.close())
	}
	for i := len(d.Apps) - 1; i >= 0; i-- {
		errs = append(errs, d.Apps[i].Close())
	}
	if d.Stack != nil {
		errs = append(errs, d.Stack.Close())
	}
	d.netlink.Close()
	return errors.Join(append(errs, d.Attachment.Close())...)
}
