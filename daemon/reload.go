package daemon

import (
	"errors"
	"fmt"
	"log/slog"
	gomaps "maps"
	"net/netip"
	"slices"
	"strings"

	"github.com/xdpstack/xdpstack/internal/sdnotify"
	"github.com/xdpstack/xdpstack/maps"
	"github.com/xdpstack/xdpstack/userstack/appns"
)

// reloadable are the settings that a reload applies to a running
// daemon; a change of any other needs a restart. The namespaces and
// rules sections are not settings: applying them tells what changed.
var reloadable = map[string]bool{"sample-rate": true}

// errBadConfig marks a configuration that Config.Reread could not read.
var errBadConfig = errors.New("bad configuration")

// Reread reads the configuration again with Config.Reread, as SIGHUP
// and the reload verb ask, and applies it (Reload). It logs the outcome
// either way, and tells systemd that it reloads and then serves again.
func (d *Daemon) Reread() ([]string, error) {
	d.changing.Lock()
	defer d.changing.Unlock()
	sdnotify.Reloading("reloading the configuration")
	applied, err := d.reread()
	if err != nil {
		slog.Error("reload refused; nothing changed", "iface", d.Iface.Name, "err", err)
		sdnotify.Ready(d.Serving() + "; reload refused: " + err.Error())
		return nil, err
	}
	if len(applied) == 0 {
		slog.Info("reloaded: nothing to apply", "iface", d.Iface.Name)
		sdnotify.Ready(d.Serving() + "; reloaded: nothing to apply")
	} else {
		slog.Info("reloaded", "iface", d.Iface.Name, "applied", strings.Join(applied, ","))
		sdnotify.Ready(d.Serving() + "; reloaded: applied " + strings.Join(applied, ", "))
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

// Reload applies cfg to the running daemon, without detaching and
// without dropping a session: its namespaces and global rules
// (applyFile). A change of any other setting refuses the whole of cfg,
// naming the keys, and changes nothing. It returns the sections that
// changed: namespaces, rules, or none.
func (d *Daemon) Reload(cfg Config) ([]string, error) {
	d.changing.Lock()
	defer d.changing.Unlock()
	return d.reload(cfg)
}

func (d *Daemon) reload(cfg Config) ([]string, error) {
	var settings, fixed []string
	keys := slices.AppendSeq(slices.Collect(gomaps.Keys(d.cfg.Settings)), gomaps.Keys(cfg.Settings))
	slices.Sort(keys)
	for _, k := range slices.Compact(keys) {
		switch {
		case d.cfg.Settings[k] == cfg.Settings[k]:
		case reloadable[k]:
			settings = append(settings, k)
		default:
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
	applied, err := d.applyFile(d.cfg, cfg)
	if err != nil {
		return nil, err
	}
	if slices.Contains(settings, "sample-rate") {
		if err := d.setSampleRate(cfg.Attach.Sampling.Rate); err != nil {
			return nil, err
		}
	}
	applied = append(applied, settings...)
	slices.Sort(applied)
	cfg.Reread = d.cfg.Reread
	d.cfg = cfg
	return applied, nil
}

// applyFile sets the namespaces and global rules that the config file
// names as the file now says, all or nothing, and returns the sections
// it changed. What the file names: a namespace by its name, a rule by
// its match. Those the file named before and names no more go; those it
// never named (added through the control socket or `xdpstack rules`)
// stay. So the file's sections are true after every reload, changed in
// the file or not, and the CLI's changes to the rest are kept.
func (d *Daemon) applyFile(was, now Config) ([]string, error) {
	rules, rulesChanged, unlock, err := d.planRules(was.Rules, now.Rules)
	if err != nil {
		return nil, err
	}
	defer unlock()
	var changed []string
	nsHave := d.Namespaces.Configs()
	nsWant := mergeNamespaces(nsHave, was.Namespaces, now.Namespaces)
	nsChanged := !sameNamespaces(nsHave, nsWant)
	if nsChanged {
		if err := d.Namespaces.Replace(nsWant); err != nil {
			return nil, fmt.Errorf("namespaces: %w", err)
		}
		changed = append(changed, "namespaces")
	}
	if rulesChanged {
		if _, err := d.Maps.Rules.Replace(rules); err != nil {
			if nsChanged {
				err = errors.Join(err, d.Namespaces.Replace(nsHave))
			}
			return nil, fmt.Errorf("rules: %w", err)
		}
		changed = append(changed, "rules")
	}
	return changed, nil
}

// planRules works out the global rule table that holds the config
// file's rules (now) in place of those it held (was), and checks it.
// It holds the pin folder's lock, which `xdpstack rules` takes too, so
// that no change of the CLI's comes between the reading and the
// writing; the caller unlocks.
func (d *Daemon) planRules(was, now []maps.Rule) (want []maps.Rule, changed bool, unlock func(), err error) {
	if unlock, err = maps.LockPinDir(d.PinDir); err != nil {
		return nil, false, nil, err
	}
	have, err := d.Maps.Rules.All()
	if err == nil {
		want, err = maps.CheckRules(mergeRules(have, was, now))
	}
	if err != nil {
		unlock()
		return nil, false, nil, fmt.Errorf("rules: %w", err)
	}
	return want, !sameRules(have, want), unlock, nil
}

// applyFileRules puts the config file's rules in the table at Start.
func (d *Daemon) applyFileRules(rules []maps.Rule) error {
	want, changed, unlock, err := d.planRules(nil, rules)
	if err != nil {
		return err
	}
	defer unlock()
	if changed {
		if _, err := d.Maps.Rules.Replace(want); err != nil {
			return fmt.Errorf("rules: %w", err)
		}
	}
	return nil
}

// mergeRules is have without the rules whose match was or now holds,
// and with now's.
func mergeRules(have, was, now []maps.Rule) []maps.Rule {
	named := map[maps.RuleMatch]bool{}
	for _, r := range slices.Concat(was, now) {
		named[r.RuleMatch] = true
	}
	out := slices.DeleteFunc(slices.Clone(have), func(r maps.Rule) bool { return named[r.RuleMatch] })
	return append(out, now...)
}

// ruleContent is a rule but its id, which a table gives.
type ruleContent struct {
	maps.RuleMatch
	Action maps.RuleAction
	Tag    string
}

func contentOf(r maps.Rule) ruleContent { return ruleContent{r.RuleMatch, r.Action, r.Tag} }

// sameRules tells whether two tables hold the same rules, ids aside.
func sameRules(a, b []maps.Rule) bool {
	if len(a) != len(b) {
		return false
	}
	in := map[ruleContent]bool{}
	for _, r := range a {
		in[contentOf(r)] = true
	}
	for _, r := range b {
		if !in[contentOf(r)] {
			return false
		}
	}
	return true
}

// mergeNamespaces is have without the namespaces that was or now names,
// and with now's.
func mergeNamespaces(have, was, now []appns.Config) []appns.Config {
	named := map[string]bool{}
	for _, c := range slices.Concat(was, now) {
		named[c.Name] = true
	}
	out := slices.DeleteFunc(slices.Clone(have), func(c appns.Config) bool { return named[c.Name] })
	return append(out, now...)
}

// sameNamespaces tells whether a and b hold the same namespaces, in any
// order; the default namespace with nothing in it counts as absent, as
// Replace puts it in.
func sameNamespaces(a, b []appns.Config) bool {
	norm := func(cs []appns.Config) map[string]appns.Config {
		m := map[string]appns.Config{}
		for _, c := range cs {
			c.Addrs = slices.Clone(c.Addrs)
			for i, a := range c.Addrs {
				c.Addrs[i] = a.Unmap()
			}
			slices.SortFunc(c.Addrs, netip.Addr.Compare)
			if c.Name != appns.Default || c.Secret != "" || len(c.Addrs) > 0 || len(c.Rules) > 0 {
				m[c.Name] = c
			}
		}
		return m
	}
	ma, mb := norm(a), norm(b)
	return gomaps.EqualFunc(ma, mb, func(x, y appns.Config) bool {
		return x.Secret == y.Secret && slices.Equal(x.Addrs, y.Addrs) &&
			slices.EqualFunc(x.Rules, y.Rules, func(r, s maps.Rule) bool { return contentOf(r) == contentOf(s) })
	})
}
