package main

import (
	"fmt"
	"io"
	gomaps "maps"
	"slices"
	"strings"

	"github.com/urfave/cli/v2"

	"github.com/xdpstack/xdpstack/daemon"
	"github.com/xdpstack/xdpstack/daemon/control"
	"github.com/xdpstack/xdpstack/internal/hostport"
	"github.com/xdpstack/xdpstack/loader"
	"github.com/xdpstack/xdpstack/maps"
	"github.com/xdpstack/xdpstack/userstack/apps"
	"github.com/xdpstack/xdpstack/userstack/apps/httpapp"
	"github.com/xdpstack/xdpstack/userstack/transport"
)

// settings are attach's settings as given: a flag on the command line
// wins over the config file, which wins over the flag's default. Flags
// and file go through the same checks (check), which name where a bad
// value came from (label).
type settings struct {
	// flags is nil when none are given (config check).
	flags *cli.Context
	// file is nil without --config.
	file *configFile
}

func (s settings) fromFlag(key string) bool {
	return s.flags != nil && s.flags.IsSet(flagOfKey(key))
}

// fileValue is key's value in the config file, unless a flag overrides
// it.
func (s settings) fileValue(key string) (configValue, bool) {
	if s.file == nil || s.fromFlag(key) {
		return configValue{}, false
	}
	v, ok := s.file.values[key]
	return v, ok
}

// label says where key's value came from, for errors: "--tcp-cc", or
// "config FILE line 7: tcp-cc".
func (s settings) label(key string) string {
	if v, ok := s.fileValue(key); ok {
		return fmt.Sprintf("config %s line %d: %s", s.file.path, v.line, key)
	}
	return "--" + flagOfKey(key)
}

// value is key's value: a string, bool or int.
func (s settings) value(key string) any {
	if v, ok := s.fileValue(key); ok {
		return v.value
	}
	k, ok := configKeys()[key]
	if !ok {
		panic("no config key " + key)
	}
	switch f := k.flag.(type) {
	case *cli.StringFlag:
		if s.flags != nil {
			return s.flags.String(key)
		}
		return f.Value
	case *cli.BoolFlag:
		if s.flags != nil {
			return s.flags.Bool(key)
		}
		return f.Value
	case *cli.IntFlag:
		if s.flags != nil {
			return s.flags.Int(key)
		}
		return f.Value
	}
	panic("config key " + key + " is not a string, bool or int")
}

func (s settings) String(key string) string { return s.value(key).(string) }
func (s settings) Bool(key string) bool     { return s.value(key).(bool) }
func (s settings) Int(key string) int       { return s.value(key).(int) }

// apps reads and checks the apps, from --app or the config file.
func (s settings) apps() ([]apps.Spec, error) {
	v, ok := s.fileValue("apps")
	if !ok {
		var args []string
		if s.flags != nil {
			args = s.flags.StringSlice("app")
		}
		return parseApps(args)
	}
	var specs []apps.Spec
	for _, a := range v.value.([]configApp) {
		spec, err := a.parse()
		if err != nil {
			return nil, s.file.errorf(a.line, "apps: %v", err)
		}
		specs = append(specs, spec)
	}
	if err := apps.CheckSpecs(specs); err != nil {
		return nil, s.file.errorf(v.line, "apps: %v", err)
	}
	return specs, nil
}

// sampling reads and checks --sample-rate and --snaplen.
func (s settings) sampling() (maps.SampleSettings, error) {
	rate, snaplen := s.Int("sample-rate"), s.Int("snaplen")
	if err := maps.CheckSampleRate(rate); err != nil {
		return maps.SampleSettings{}, fmt.Errorf("%s %d: %w", s.label("sample-rate"), rate, err)
	}
	if err := maps.CheckSnaplen(snaplen); err != nil {
		return maps.SampleSettings{}, fmt.Errorf("%s %d: %w", s.label("snaplen"), snaplen, err)
	}
	return maps.SampleSettings{Rate: uint32(rate), Snaplen: uint32(snaplen)}, nil
}

// parse checks an app of the config file as --app's are checked.
func (a configApp) parse() (apps.Spec, error) {
	if a.spec != "" {
		return apps.ParseSpec(a.spec)
	}
	uri, err := transport.ParseURI(a.uri)
	if err == nil {
		var spec apps.Spec
		if spec, err = apps.NewSpec(a.name, uri, a.opts); err == nil {
			return spec, nil
		}
	}
	return apps.Spec{}, fmt.Errorf("app %s: %w", a.name, err)
}

// text is an app as one string, with its options in order.
func (a configApp) text() string {
	if a.spec != "" {
		return a.spec
	}
	parts := []string{a.name + "=" + a.uri}
	for _, k := range slices.Sorted(gomaps.Keys(a.opts)) {
		parts = append(parts, k+"="+a.opts[k])
	}
	return strings.Join(parts, ",")
}

// check checks every setting that needs no interface, and returns the
// daemon's configuration without its interface and folders.
func (s settings) check() (daemon.Config, error) {
	var cfg daemon.Config
	mode, err := loader.ParseMode(s.String("mode"))
	if err != nil {
		return cfg, fmt.Errorf("%s: %w", s.label("mode"), err)
	}
	cfg.Attach.Mode = mode
	if cfg.MetricsAddr = s.String("metrics-addr"); cfg.MetricsAddr != "" {
		if _, _, err := hostport.Split(cfg.MetricsAddr); err != nil {
			return cfg, fmt.Errorf("%s %q: %w", s.label("metrics-addr"), cfg.MetricsAddr, err)
		}
	}
	if cfg.Attach.Sampling, err = s.sampling(); err != nil {
		return cfg, err
	}
	if cfg.Apps, err = s.apps(); err != nil {
		return cfg, err
	}
	if cfg.Userstack, err = userstackOptions(s); err != nil {
		return cfg, err
	}
	if cfg.AppRoot = s.String("root"); cfg.AppRoot != "" {
		if err := httpapp.CheckRoot(cfg.AppRoot); err != nil {
			return cfg, fmt.Errorf("%s %w", s.label("root"), err)
		}
	}
	if g := s.String("control-group"); g != "" {
		if cfg.Control.Group, err = control.LookupGroup(g); err != nil {
			return cfg, fmt.Errorf("%s: %w", s.label("control-group"), err)
		}
	}
	if _, err := s.logHandler(io.Discard); err != nil {
		return cfg, err
	}
	cfg.Settings = s.text()
	return cfg, nil
}

// text is the value of every key as text, for a reload to tell what
// changed.
func (s settings) text() map[string]string {
	out := map[string]string{}
	for key, k := range configKeys() {
		switch k.kind {
		case kindLater:
			out[key] = "" // accepted only empty, so far
		case kindApps:
			var list []string
			if v, ok := s.fileValue(key); ok {
				for _, a := range v.value.([]configApp) {
					list = append(list, a.text())
				}
			} else if s.flags != nil {
				list = s.flags.StringSlice("app")
			}
			out[key] = strings.Join(list, "\n")
		default:
			out[key] = fmt.Sprint(s.value(key))
		}
	}
	return out
}
