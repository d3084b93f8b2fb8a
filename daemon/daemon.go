// Package daemon runs what `xdpstack attach` keeps up in the foreground:
// the attached XDP program, the userstack with its apps, and the metrics
// server, started in an order that lets nothing half-started stay
// behind.
package daemon

import (
	"context"
	"errors"
	"fmt"
	"net"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/xdpstack/xdpstack/loader"
	"github.com/xdpstack/xdpstack/metrics"
	"github.com/xdpstack/xdpstack/userstack"
	"github.com/xdpstack/xdpstack/userstack/apps"
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
	Apps          []apps.Spec
	NeedUserstack bool
	Userstack     userstack.Options
}

// Daemon is a running attachment with its servers.
type Daemon struct {
	*loader.Attachment
	// MetricsAddr is the address /metrics is served on, if any.
	MetricsAddr net.Addr
	// Stack is the userstack, nil without apps.
	Stack   *userstack.Stack
	Apps    []apps.App
	metrics *metrics.Server
}

// Start binds the metrics listener first, so that a taken port changes
// nothing, then attaches and serves.
func Start(cfg Config) (*Daemon, error) {
	var ln net.Listener
	if cfg.MetricsAddr != "" {
		var err error
		if ln, err = net.Listen("tcp", cfg.MetricsAddr); err != nil {
			return nil, fmt.Errorf("listen for metrics on %s: %w (choose another --metrics-addr)", cfg.MetricsAddr, err)
		}
	}
	if cfg.NeedUserstack = cfg.NeedUserstack || len(cfg.Apps) > 0; cfg.NeedUserstack {
		if cfg.Userstack.Ports == (loader.PortRange{}) {
			cfg.Userstack.Ports = userstack.DefaultPorts
		}
		cfg.Attach.UserPorts = cfg.Userstack.Ports
	}
	a, err := loader.Attach(cfg.Iface, cfg.Attach)
	if err != nil {
		if ln != nil {
			ln.Close()
		}
		return nil, err
	}
	d := &Daemon{Attachment: a}
	if err := d.startApps(cfg); err != nil {
		if ln != nil {
			ln.Close()
		}
		return nil, errors.Join(err, d.Close())
	}
	if ln != nil {
		var extra []prometheus.Collector
		if d.Stack != nil {
			extra = append(extra, d.Stack.Collector())
		}
		d.MetricsAddr = ln.Addr()
		d.metrics = metrics.Serve(ln, metrics.NewRegistry(a.Iface.Name, a.Maps.Stats, extra...))
	}
	return d, nil
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
		app, err := apps.Start(d.Stack, spec)
		if err != nil {
			return fmt.Errorf("start app %s: %w", spec, err)
		}
		d.Apps = append(d.Apps, app)
	}
	return nil
}

// Close stops serving and detaches, in the reverse order of Start.
func (d *Daemon) Close() error {
	var errs []error
	for _, app := range d.Apps {
		errs = append(errs, app.Close())
	}
	if d.Stack != nil {
		errs = append(errs, d.Stack.Close())
	}
	if d.metrics != nil {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		errs = append(errs, d.metrics.Shutdown(ctx))
	}
	return errors.Join(append(errs, d.Attachment.Close())...)
}
