// Package daemon runs what `xdpstack attach` keeps up in the foreground:
// the attached XDP program and the metrics server, started in an order
// that lets nothing half-started stay behind.
package daemon

import (
	"context"
	"errors"
	"fmt"
	"net"
	"time"

	"github.com/xdpstack/xdpstack/loader"
	"github.com/xdpstack/xdpstack/metrics"
)

// Config is what to run.
type Config struct {
	Iface string
	// Attach says how to attach the XDP program.
	Attach loader.Options
	// MetricsAddr is HOST:PORT for /metrics; empty serves no metrics.
	// Port 0 picks a free port, reported in Daemon.MetricsAddr.
	MetricsAddr string
}

// Daemon is a running attachment with its servers.
type Daemon struct {
	*loader.Attachment
	// MetricsAddr is the address /metrics is served on, if any.
	MetricsAddr net.Addr
	metrics     *metrics.Server
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
	a, err := loader.Attach(cfg.Iface, cfg.Attach)
	if err != nil {
		if ln != nil {
			ln.Close()
		}
		return nil, err
	}
	d := &Daemon{Attachment: a}
	if ln != nil {
		d.MetricsAddr = ln.Addr()
		d.metrics = metrics.Serve(ln, metrics.NewRegistry(a.Iface.Name, a.Maps.Stats))
	}
	return d, nil
}

// Close stops serving and detaches, in the reverse order of Start.
func (d *Daemon) Close() error {
	var errs []error
	if d.metrics != nil {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		errs = append(errs, d.metrics.Shutdown(ctx))
	}
	return errors.Join(append(errs, d.Attachment.Close())...)
}
