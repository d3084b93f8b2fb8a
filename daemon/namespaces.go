package daemon

import (
	"fmt"
	"net/netip"
	"slices"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/vishvananda/netlink"

	"github.com/xdpstack/xdpstack/maps"
	"github.com/xdpstack/xdpstack/userstack/appns"
)

// openNamespaces makes the interface's namespace registry, holding the
// config file's namespaces. It runs in the interface's network
// namespace: the netlink handle that the registry lists the
// interface's addresses through belongs to it, whichever goroutine
// asks later.
func openNamespaces(iface string, file []appns.Config) (*appns.Registry, *netlink.Handle, error) {
	h, err := netlink.NewHandle()
	if err != nil {
		return nil, nil, fmt.Errorf("open netlink: %w", err)
	}
	r := appns.New(kernelAddrs(h, iface))
	if err := r.Replace(file); err != nil {
		h.Close()
		return nil, nil, fmt.Errorf("namespaces: %w", err)
	}
	return r, h, nil
}

// kernelAddrs lists iface's addresses as the kernel has them at each
// call, so that a namespace may claim an address added after attach;
// none when the interface cannot be read.
func kernelAddrs(h *netlink.Handle, iface string) func() []netip.Addr {
	return func() []netip.Addr {
		l, err := h.LinkByName(iface)
		if err != nil {
			return nil
		}
		list, err := h.AddrList(l, netlink.FAMILY_ALL)
		if err != nil {
			return nil
		}
		addrs := make([]netip.Addr, 0, len(list))
		for _, a := range list {
			if ip, ok := netip.AddrFromSlice(a.IP); ok {
				addrs = append(addrs, ip.Unmap())
			}
		}
		return addrs
	}
}

// NamespaceAdd is a namespace to add (ns add). The secret travels only
// in requests, never in answers or logs.
type NamespaceAdd struct {
	Name   string       `json:"name"`
	Secret string       `json:"secret"`
	Addrs  []netip.Addr `json:"addrs,omitempty"`
}

// NamespaceDel names a namespace to delete (ns del).
type NamespaceDel struct {
	Name string `json:"name"`
}

// Namespace is a namespace as ns list shows it.
type Namespace struct {
	Name string `json:"name"`
	// Addrs are its own; none shares those that no namespace claims.
	Addrs []netip.Addr `json:"addrs"`
	// Apps are the applications attached to it.
	Apps int `json:"apps"`
	// Rules counts its local rules.
	Rules    int                      `json:"rules"`
	Refusals map[appns.Refusal]uint64 `json:"refusals"`
	// From says who keeps the namespace: "file" (the config file, which
	// a reload follows), "cli" (added through the control socket) or
	// "built-in" (the default namespace, which the file does not name).
	From string `json:"from"`
}

// Namespaces is the ns list.
type Namespaces struct {
	Iface      string      `json:"iface"`
	Namespaces []Namespace `json:"namespaces"`
	// UnknownRefusals counts attaches to namespaces that do not exist.
	UnknownRefusals uint64 `json:"unknown_refusals"`
}

// ListNamespaces lists the namespaces by name.
func (d *Daemon) ListNamespaces() Namespaces {
	list := Namespaces{Iface: d.Iface.Name, Namespaces: []Namespace{}}
	d.changing.Lock()
	file := d.fileNamespaces()
	d.changing.Unlock()
	for _, in := range d.Namespaces.List() {
		list.Namespaces = append(list.Namespaces, Namespace{
			Name: in.Name, Addrs: append([]netip.Addr{}, in.Addrs...), Apps: in.Apps, Rules: len(in.Rules),
			Refusals: in.Refusals, From: from(in.Name, file),
		})
	}
	list.UnknownRefusals = d.Namespaces.RefusalCounts()[""][appns.RefusedUnknown]
	return list
}

// fileNamespaces names the config file's namespaces; d.changing is
// held.
func (d *Daemon) fileNamespaces() map[string]bool {
	names := map[string]bool{}
	for _, c := range d.cfg.Namespaces {
		names[c.Name] = true
	}
	return names
}

func from(name string, file map[string]bool) string {
	switch {
	case file[name]:
		return "file"
	case name == appns.Default:
		return "built-in"
	}
	return "cli"
}

// AddNamespace adds a namespace, as ns add asks.
func (d *Daemon) AddNamespace(req NamespaceAdd) (Namespace, error) {
	d.changing.Lock()
	defer d.changing.Unlock()
	if err := d.Namespaces.Add(appns.Config{Name: req.Name, Secret: req.Secret, Addrs: req.Addrs, Rules: []maps.Rule{}}); err != nil {
		return Namespace{}, err
	}
	for _, in := range d.Namespaces.List() {
		if in.Name == req.Name {
			return Namespace{Name: in.Name, Addrs: in.Addrs, Refusals: in.Refusals, From: "cli"}, nil
		}
	}
	return Namespace{}, fmt.Errorf("namespace %s: gone as soon as added", req.Name)
}

// DeleteNamespace deletes a namespace that no application uses.
func (d *Daemon) DeleteNamespace(name string) error {
	d.changing.Lock()
	defer d.changing.Unlock()
	return d.Namespaces.Delete(name)
}

// LocalRulesQuery names the namespace whose local rules to list.
type LocalRulesQuery struct {
	Namespace string `json:"namespace"`
}

// LocalRules are rules of a namespace's local table: all of it, the
// rule added, or the rules deleted.
type LocalRules struct {
	Namespace string         `json:"namespace"`
	Rules     []maps.RuleRow `json:"rules"`
}

// LocalRuleAdd adds a rule to a namespace's local table.
type LocalRuleAdd struct {
	Namespace string        `json:"namespace"`
	Rule      maps.RuleText `json:"rule"`
}

// LocalRuleDel deletes from a namespace's local table every rule with
// Tag, or the rule with Match's match.
type LocalRuleDel struct {
	Namespace string         `json:"namespace"`
	Tag       string         `json:"tag,omitempty"`
	Match     *maps.RuleText `json:"match,omitempty"`
}

// localRules reads a namespace's local table; d.changing is held.
func (d *Daemon) localRules(ns string) ([]maps.Rule, error) {
	for _, c := range d.Namespaces.Configs() {
		if c.Name == ns {
			return c.Rules, nil
		}
	}
	if err := appns.CheckName(ns); err != nil {
		return nil, err
	}
	return nil, fmt.Errorf("namespace %s: no such namespace (see: xdpstack ns list %s)", ns, d.Iface.Name)
}

func rows(rules []maps.Rule) []maps.RuleRow {
	out := make([]maps.RuleRow, len(rules))
	for i, r := range rules {
		out[i] = r.Row()
	}
	return out
}

// LocalRules lists a namespace's local table.
func (d *Daemon) LocalRules(q LocalRulesQuery) (LocalRules, error) {
	d.changing.Lock()
	defer d.changing.Unlock()
	rules, err := d.localRules(q.Namespace)
	return LocalRules{Namespace: q.Namespace, Rules: rows(rules)}, err
}

// AddLocalRule adds a rule to a namespace's local table.
func (d *Daemon) AddLocalRule(req LocalRuleAdd) (LocalRules, error) {
	r, err := req.Rule.Rule()
	if err != nil {
		return LocalRules{}, fmt.Errorf("namespace %s: rule: %w", req.Namespace, err)
	}
	d.changing.Lock()
	defer d.changing.Unlock()
	rules, err := d.localRules(req.Namespace)
	if err != nil {
		return LocalRules{}, err
	}
	if err := d.Namespaces.SetRules(req.Namespace, append(rules, r)); err != nil {
		return LocalRules{}, err
	}
	// The table numbers its rules in order: the new one is the last.
	r.ID = uint32(len(rules) + 1)
	return LocalRules{Namespace: req.Namespace, Rules: rows([]maps.Rule{r})}, nil
}

// DeleteLocalRules deletes rules from a namespace's local table.
func (d *Daemon) DeleteLocalRules(req LocalRuleDel) (LocalRules, error) {
	if (req.Tag == "") == (req.Match == nil) {
		return LocalRules{}, fmt.Errorf("namespace %s: give either a tag or a match", req.Namespace)
	}
	sel := maps.RuleSelector{Tag: req.Tag}
	if req.Match != nil {
		m, err := req.Match.Match()
		if err != nil {
			return LocalRules{}, fmt.Errorf("namespace %s: match: %w", req.Namespace, err)
		}
		sel.Match = m
	}
	d.changing.Lock()
	defer d.changing.Unlock()
	rules, err := d.localRules(req.Namespace)
	if err != nil {
		return LocalRules{}, err
	}
	keep := slices.DeleteFunc(slices.Clone(rules), sel.Selects)
	if len(keep) == len(rules) {
		return LocalRules{}, fmt.Errorf("namespace %s: no local rule has %s (see: xdpstack rules list %s --namespace %s)", req.Namespace, sel, d.Iface.Name, req.Namespace)
	}
	if err := d.Namespaces.SetRules(req.Namespace, keep); err != nil {
		return LocalRules{}, err
	}
	gone := LocalRules{Namespace: req.Namespace, Rules: []maps.RuleRow{}}
	for _, r := range rules {
		if sel.Selects(r) {
			gone.Rules = append(gone.Rules, r.Row())
		}
	}
	return gone, nil
}

var (
	namespaceRefusals = prometheus.NewDesc("xdpstack_namespace_refusals_total",
		`Applications and sessions that a namespace refused, by reason; attaches to namespaces that do not exist under namespace="".`,
		[]string{"iface", "namespace", "reason"}, nil)
	namespaceApps = prometheus.NewDesc("xdpstack_namespace_apps",
		"Applications attached to a namespace.",
		[]string{"iface", "namespace"}, nil)
)

// namespaceCollector reads the namespaces' counters at each scrape.
type namespaceCollector struct {
	iface string
	r     *appns.Registry
}

func (c namespaceCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- namespaceRefusals
	ch <- namespaceApps
}

// Collect gives every namespace a series per reason, zero or not, so
// that rates start from the namespace's first scrape; a deleted
// namespace's counts stay.
func (c namespaceCollector) Collect(ch chan<- prometheus.Metric) {
	counts := c.r.RefusalCounts()
	refusals := func(ns string, why appns.Refusal) {
		ch <- prometheus.MustNewConstMetric(namespaceRefusals, prometheus.CounterValue, float64(counts[ns][why]), c.iface, ns, string(why))
	}
	refusals("", appns.RefusedUnknown)
	delete(counts, "")
	for _, in := range c.r.List() {
		ch <- prometheus.MustNewConstMetric(namespaceApps, prometheus.GaugeValue, float64(in.Apps), c.iface, in.Name)
		for _, why := range appns.Refusals {
			if why != appns.RefusedUnknown {
				refusals(in.Name, why)
			}
		}
		delete(counts, in.Name)
	}
	for ns, byReason := range counts {
		for why := range byReason {
			refusals(ns, why)
		}
	}
}
