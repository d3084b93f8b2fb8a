package main

import (
	"errors"
	"fmt"
	"io"
	gomaps "maps"
	"net/netip"
	"slices"
	"strings"

	"github.com/urfave/cli/v2"

	"github.com/xdpstack/xdpstack/daemon"
	"github.com/xdpstack/xdpstack/daemon/control"
	"github.com/xdpstack/xdpstack/internal/hostport"
	"github.com/xdpstack/xdpstack/loader"
	"github.com/xdpstack/xdpstack/maps"
	"github.com/xdpstack/xdpstack/userstack/appns"
	"github.com/xdpstack/xdpstack/userstack/apps"
	"github.com/xdpstack/xdpstack/userstack/apps/httpapp"
	"github.com/xdpstack/xdpstack/userstack/psp/keyx"
	"github.com/xdpstack/xdpstack/userstack/psp/pspconfig"
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
	if cfg.Namespaces, err = s.namespaces(); err != nil {
		return cfg, err
	}
	if cfg.Rules, err = s.rules(); err != nil {
		return cfg, err
	}
	if cfg.PSP, err = s.psp(); err != nil {
		return cfg, err
	}
	cfg.Settings = s.text()
	return cfg, nil
}

// psp reads the PSP gateway's configuration, if there is one: DOCA's
// JSON file (--psp-config) or the config file's psp: section, with the
// PSP flags.
func (s settings) psp() (*daemon.PSPConfig, error) {
	path := s.String(pspconfig.FlagConfig)
	section, inFile := s.fileValue("psp")
	var c *pspconfig.Config
	switch {
	case path != "" && inFile:
		return nil, fmt.Errorf("%s and the config file's psp: section both configure the PSP gateway (give one)", s.label(pspconfig.FlagConfig))
	case path != "":
		var err error
		if c, err = pspconfig.ReadJSON(path); err != nil {
			return nil, fmt.Errorf("%s: %w", s.label(pspconfig.FlagConfig), err)
		}
	case inFile:
		c = section.value.(*pspconfig.Config)
	default:
		for _, f := range pspconfig.Flags() {
			if name := f.Names()[0]; s.fromFlag(name) || s.inFile(name) {
				return nil, fmt.Errorf("%s: no PSP gateway to apply it to (give --%s or a psp: section)", s.label(name), pspconfig.FlagConfig)
			}
		}
		return nil, nil
	}
	o, err := pspconfig.FromCLI(s)
	if err != nil {
		return nil, err
	}
	if err := c.CheckInner(o.Inner); err != nil {
		return nil, fmt.Errorf("psp config: %w (see --%s)", err, pspconfig.FlagInner)
	}
	if err := c.FillLocalVIP(); err != nil {
		return nil, fmt.Errorf("psp config: %w", err)
	}
	cfg := &daemon.PSPConfig{Config: c, Options: o}
	if !o.Plaintext {
		// Read now, so that a missing or bad file stops attach before
		// anything is attached.
		if cfg.TLS, err = keyx.LoadTLS(o.Cert, o.Key, o.CA); err != nil {
			return nil, err
		}
	}
	return cfg, nil
}

// inFile tells whether the config file gives key.
func (s settings) inFile(key string) bool {
	_, ok := s.fileValue(key)
	return ok
}

// rules reads and checks the global rules.
func (s settings) rules() ([]maps.Rule, error) {
	v, ok := s.fileValue("rules")
	if !ok {
		return nil, nil
	}
	rules, err := s.file.parseRules("rules", v.value.([]configRule), false)
	if err != nil {
		return nil, err
	}
	if _, err := maps.CheckRules(rules); err != nil {
		return nil, s.file.errorf(v.line, "rules: %v", err)
	}
	return rules, nil
}

// parseRules reads a list of rules, global or (local) a namespace's.
// An error names the line of the field that is wrong.
func (f *configFile) parseRules(what string, list []configRule, local bool) ([]maps.Rule, error) {
	rules := make([]maps.Rule, 0, len(list))
	lines := map[maps.RuleMatch]int{}
	for _, cr := range list {
		r, err := cr.text.Rule()
		if fe, ok := errors.AsType[*maps.RuleFieldError](err); ok && cr.lines[fe.Field] != 0 {
			return nil, f.errorf(cr.lines[fe.Field], "%s: %v", what, err)
		}
		switch first, dup := lines[r.RuleMatch]; {
		case err != nil:
			return nil, f.errorf(cr.line, "%s: %v", what, err)
		case dup:
			return nil, f.errorf(cr.line, "%s: the rule on line %d has the same match (one match, one rule)", what, first)
		case local && r.Action == maps.RulePass:
			return nil, f.errorf(cr.lines["action"], "%s: action: pass is for global rules only (a local rule allows or denies)", what)
		}
		lines[r.RuleMatch] = cr.line
		rules = append(rules, r)
	}
	return rules, nil
}

// namespaces reads and checks the namespaces, their secrets from their
// files. That their addresses are the interface's, attach checks
// (checkNamespaceAddrs).
func (s settings) namespaces() ([]appns.Config, error) {
	v, ok := s.fileValue("namespaces")
	if !ok {
		return nil, nil
	}
	f := s.file
	var cs []appns.Config
	names := map[string]int{}
	owners := map[netip.Addr]configNamespace{}
	for _, ns := range v.value.([]configNamespace) {
		what := "namespaces: " + ns.name
		c := appns.Config{Name: ns.name, Secret: ns.secret}
		if ns.secretFile != "" {
			secret, err := readSecretFile(ns.secretFile)
			if err != nil {
				return nil, f.errorf(ns.fileLine, "%s: secret-file %s: %v", what, ns.secretFile, err)
			}
			c.Secret = secret
		}
		for _, a := range ns.addrs {
			addr, err := netip.ParseAddr(a.text)
			if err != nil {
				return nil, f.errorf(a.line, "%s: addrs: %q: not an IP address", what, a.text)
			}
			if other, taken := owners[addr.Unmap()]; taken && other.name != ns.name {
				return nil, f.errorf(a.line, "%s: addrs: %s belongs to namespace %s (line %d)", what, addr, other.name, other.line)
			}
			owners[addr.Unmap()] = ns
			c.Addrs = append(c.Addrs, addr)
		}
		var err error
		if c.Rules, err = f.parseRules(what+": rules", ns.rules, true); err != nil {
			return nil, err
		}
		if first, dup := names[ns.name]; dup {
			return nil, f.errorf(ns.line, "%s: given twice (first on line %d)", what, first)
		}
		names[ns.name] = ns.line
		// What else appns refuses (a name, a missing secret, an
		// address twice), it refuses here, with the namespace's line.
		if err := appns.New(nil).Replace([]appns.Config{c}); err != nil {
			return nil, f.errorf(ns.line, "namespaces: %v", err)
		}
		cs = append(cs, c)
	}
	return cs, nil
}

// checkNamespaceAddrs checks that the namespaces' addresses are iface's.
func (s settings) checkNamespaceAddrs(iface loader.Interface) error {
	v, ok := s.fileValue("namespaces")
	if !ok {
		return nil
	}
	for _, ns := range v.value.([]configNamespace) {
		for _, a := range ns.addrs {
			addr, _ := netip.ParseAddr(a.text) // checked with the rest
			if !slices.ContainsFunc(iface.Addrs, func(p netip.Prefix) bool { return p.Addr() == addr.Unmap() }) {
				return s.file.errorf(a.line, "namespaces: %s: addrs: %s is not an address of %s (see: ip address show %s)", ns.name, addr, iface.Name, iface.Name)
			}
		}
	}
	return nil
}

// text is the value of every key as text, for a reload to tell what
// changed. The sections that a reload applies are left out: applying
// them tells what changed (daemon.Reload).
func (s settings) text() map[string]string {
	out := map[string]string{}
	for key, k := range configKeys() {
		switch k.kind {
		case kindNamespaces, kindRules:
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
		case kindPSP:
			if v, ok := s.fileValue(key); ok {
				out[key] = v.value.(*pspconfig.Config).String()
			}
		default:
			out[key] = fmt.Sprint(s.value(key))
		}
	}
	return out
}
