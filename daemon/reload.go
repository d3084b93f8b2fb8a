package daemon

import (
	"errors"
	"fmt"
	"log/slog"
	gomaps "maps"
	"slices"
	"strings"
)

// reloadable are the configuration keys that a reload applies to a
// running daemon, without detaching and without dropping a session. A
// change of any other key needs a restart.
var reloadable = map[string]bool{"namespaces": true, "rules": true, "sample-rate": true}

// errBadConfig marks a configuration that Config.Reread could not read.
var errBadConfig = errors.New("bad configuration")

// Reread reads the configuration again with Config.Reread, as SIGHUP
// and the reload verb ask, and applies it (Reload). It logs the outcome
// either way.
func (d *Daemon) Reread() ([]string, error) {
	d.reloading.Lock()
	defer d.reloading.Unlock()
	applied, err := d.reread()
	if err != nil {
		slog.Error("reload refused; nothing changed", "iface", d.Iface.Name, "err", err)
		return nil, err
	}
	if len(applied) == 0 {
		slog.Info("reloaded: nothing to apply", "iface", d.Iface.Name)
	} else {
		slog.Info("reloaded", "iface", d.Iface.Name, "applied", strings.Join(applied, ","))
	}
	return applied, nil
}

func (d *Daemon) reread() ([]string, error) {
	if d.cfg.Reread == nil {
		return nil, errors.New("no configuration file to read again (attach with --config FILE)")
	}
	cfg, err := d.cfg.Reread()
	if err != nil {
		return nil, fmt.Errorf("%w: %w", errBadConfig, err)
	}
	return d.reload(cfg)
}

// Reload applies cfg where it differs from the running configuration,
// and returns the keys it applied. A change of a key that is not
// reloadable refuses the whole of cfg, naming the keys, and changes
// nothing.
func (d *Daemon) Reload(cfg Config) ([]string, error) {
	d.reloading.Lock()
	defer d.reloading.Unlock()
	return d.reload(cfg)
}

func (d *Daemon) reload(cfg Config) ([]string, error) {
	var applied, fixed []string
	keys := slices.AppendSeq(slices.Collect(gomaps.Keys(d.cfg.Settings)), gomaps.Keys(cfg.Settings))
	slices.Sort(keys)
	for _, k := range slices.Compact(keys) {
		if d.cfg.Settings[k] == cfg.Settings[k] {
			continue
		}
		if reloadable[k] {
			applied = append(applied, k)
		} else {
			fixed = append(fixed, k)
		}
	}
	switch len(fixed) {
	case 0:
	case 1:
		return nil, fmt.Errorf("%s changed: needs a restart (detach and attach again)", fixed[0])
	default:
		return nil, fmt.Errorf("%s changed: need a restart (detach and attach again)", strings.Join(fixed, ", "))
	}
	if slices.Contains(applied, "sample-rate") {
		if err := d.setSampleRate(cfg.Attach.Sampling.Rate); err != nil {
			return nil, err
		}
	}
	// The reloadable sections hold nothing yet (the config file accepts
	// them only empty): applying them is keeping the new configuration.
	cfg.Reread = d.cfg.Reread
	d.cfg = cfg
	return applied, nil
}
