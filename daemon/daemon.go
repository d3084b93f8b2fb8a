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
	"github.com/xdpstack/xdpstack/maps"
	"github.com/xdpstack/xdpstack/metrics"
	"github.com/xdpstack/xdpstack/userstack"
	"github.com/xdpstack/xdpstack/userstack/apps"
	"github.com/xdpstack/xdpstack/userstack/apps/httpapp"
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
}

// Daemon is a running attachment with its servers.
type Daemon struct {
	*loader.Attachment
	// MetricsAddr is the address /metrics is served on, if any.
	MetricsAddr net.Addr
	// Stack is the userstack, nil without apps.
	Stack   *userstack.Stack
	Apps    []apps.App
	specs   []apps.Spec
	metrics *metrics.Server
}

// Start checks the apps against the userstack's port range and binds
// the metrics listener first, so that bad input or a taken port changes
// nothing, then attaches and serves.
func Start(cfg Config) (*Daemon, error) {
	if cfg.NeedUserstack = cfg.NeedUserstack || len(cfg.Apps) > 0; cfg.NeedUserstack && cfg.Attach.UserPorts == (maps.PortRange{}) {
		cfg.Attach.UserPorts = loader.DefaultUserPorts
	}
	for _, spec := range cfg.Apps {
		if cfg.Attach.UserPorts.Contains(spec.URI.Port) {
			return nil, fmt.Errorf("app %s: port %d is in the userstack's own port range %s (choose a port outside it)", spec, spec.URI.Port, cfg.Attach.UserPorts)
		}
	}
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
		app, err := apps.Start(apps.Env{Network: d.Stack, Status: d.status, Root: cfg.AppRoot}, spec)
		if err != nil {
			return fmt.Errorf("start app %s: %w", spec, err)
		}
		d.Apps, d.specs = append(d.Apps, app), append(d.specs, spec)
	}
	return nil
}

// status is what the HTTP app's status page shows: the XDP verdicts, the
// AF_XDP queues, the netstack's counters, the listeners of the session
// layer, and the apps.
func (d *Daemon) status() (httpapp.Snapshot, error) {
	counters, err := d.Maps.Stats.Sum()
	if err != nil {
		return httpapp.Snapshot{}, err
	}
	snap := httpapp.Snapshot{Iface: d.Iface.Name, Mode: d.Mode.String(), Counters: counters, Sections: map[string][]map[string]any{}}
	for _, s := range d.Stack.Sockets() {
		st, err := s.Stats()
		if err != nil {
			return httpapp.Snapshot{}, err
		}
		frames := s.Frames()
		snap.Sections["queues"] = append(snap.Sections["queues"], map[string]any{
			"queue": s.Queue, "af_xdp_mode": s.Mode.String(),
			"rx_packets": st.RxPackets, "rx_bytes": st.RxBytes, "tx_packets": st.TxPackets, "tx_bytes": st.TxBytes,
			"rx_dropped": st.Kernel.Rx_dropped, "rx_fill_ring_empty": st.Kernel.Rx_fill_ring_empty_descs,
			"frames_free": frames.Free, "frames_in_kernel": frames.InKernel,
		})
	}
	snap.Sections["netstack"] = d.Stack.NetstackCounters()
	for l, id := range d.Stack.Sessions().Listeners() {
		snap.Sections["listeners"] = append(snap.Sections["listeners"], map[string]any{"id": id, "listener": l.String()})
	}
	for i, app := range d.Apps {
		row := map[string]any{"app": d.specs[i].String(), "addr": app.Addr().String()}
		if p, ok := app.(*apps.ProxyApp); ok {
			st := p.Stats()
			row["backend"], row["accepted"], row["active"] = d.specs[i].Backend.String(), st.Accepted, st.Active
			row["backend_errors"], row["bytes_in"], row["bytes_out"] = st.BackendErrors, st.BytesIn, st.BytesOut
		}
		snap.Sections["apps"] = append(snap.Sections["apps"], row)
	}
	return snap, nil
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
