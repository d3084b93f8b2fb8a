// Package appns keeps the userstack's application namespaces, after
// VPP's `app ns`: a namespace binds its applications to some of the
// interface's addresses, lets in only the applications that know its
// secret, and has a local rule table that filters the connects its
// applications make and the sessions their listeners accept.
//
// An address belongs to at most one named namespace. The default
// namespace (no secret) and the named namespaces given no addresses
// share the addresses that no namespace claims.
package appns

import (
	"crypto/subtle"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"sort"
	"strings"
	"sync"

	"github.com/xdpstack/xdpstack/maps"
)

// Default is the namespace of applications that name none.
const Default = "default"

// maxNameLen keeps names short enough for a listing and a metric label.
const maxNameLen = 32

// Config is a namespace as the operator gives it.
type Config struct {
	Name string
	// Secret is what applications attach with; required but for the
	// default namespace, which has none.
	Secret string
	// Addrs are the interface's addresses the namespace's applications
	// bind to; none shares the unclaimed ones with the default
	// namespace.
	Addrs []netip.Addr
	// Rules are the local rule table (allow and deny; the order of
	// maps.CompareRules decides). Their IDs are given by the registry.
	Rules []maps.Rule
}

// CheckName says what is wrong with a namespace name.
func CheckName(name string) error {
	if name == "" {
		return errors.New("namespace: empty name")
	}
	if len(name) > maxNameLen {
		return fmt.Errorf("namespace %q: %d bytes, want at most %d", name, len(name), maxNameLen)
	}
	for _, r := range name {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '_' || r == '.') {
			return fmt.Errorf("namespace %q: want letters, digits and -_. only", name)
		}
	}
	return nil
}

// check normalizes c: addresses unmapped and sorted, rules checked and
// numbered from 1.
func (c Config) check() (Config, error) {
	if err := CheckName(c.Name); err != nil {
		return c, err
	}
	switch {
	case c.Name == Default && c.Secret != "":
		return c, errors.New("namespace default: has no secret (applications attach to it without one)")
	case c.Name == Default && len(c.Addrs) > 0:
		return c, errors.New("namespace default: has the addresses no other namespace claims (give it none)")
	case c.Name != Default && c.Secret == "":
		return c, fmt.Errorf("namespace %s: needs a secret", c.Name)
	}
	addrs := make([]netip.Addr, 0, len(c.Addrs))
	for _, a := range c.Addrs {
		a = a.Unmap()
		if !a.IsValid() || a.IsUnspecified() || a.IsMulticast() || a.Zone() != "" {
			return c, fmt.Errorf("namespace %s: address %s: want a unicast address of the interface", c.Name, a)
		}
		if slices.Contains(addrs, a) {
			return c, fmt.Errorf("namespace %s: address %s given twice", c.Name, a)
		}
		addrs = append(addrs, a)
	}
	slices.SortFunc(addrs, netip.Addr.Compare)
	c.Addrs = addrs
	rules, err := checkLocalRules(c.Rules)
	if err != nil {
		return c, fmt.Errorf("namespace %s: %w", c.Name, err)
	}
	c.Rules = rules
	return c, nil
}

// checkLocalRules checks a local rule table and numbers it: pass has
// no meaning where no packet is steered, and one match may decide only
// one way.
func checkLocalRules(rules []maps.Rule) ([]maps.Rule, error) {
	out := make([]maps.Rule, 0, len(rules))
	seen := map[maps.RuleMatch]bool{}
	for i, r := range rules {
		r, err := r.Check()
		if err != nil {
			return nil, fmt.Errorf("rule %s: %w", r, err)
		}
		if r.Action == maps.RulePass {
			return nil, fmt.Errorf("rule %s: pass is for global rules only (a local rule allows or denies)", r)
		}
		if seen[r.RuleMatch] {
			return nil, fmt.Errorf("rule %s: a rule with this match is already in the table", r)
		}
		seen[r.RuleMatch] = true
		r.ID = uint32(i + 1)
		out = append(out, r)
	}
	return out, nil
}

// Refusal is why an application or a session was refused.
type Refusal string

const (
	RefusedUnknown Refusal = "unknown_namespace"
	RefusedSecret  Refusal = "bad_secret"
	RefusedAddress Refusal = "address"
	RefusedRule    Refusal = "rule"
)

// Refusals lists the refusal reasons, for metrics.
var Refusals = []Refusal{RefusedUnknown, RefusedSecret, RefusedAddress, RefusedRule}

// Error is a refusal, counted in the registry.
type Error struct {
	Namespace string
	Reason    Refusal
	msg       string
}

func (e *Error) Error() string { return e.msg }

// Registry holds an interface's namespaces. It is safe for concurrent
// use.
type Registry struct {
	// ifaceAddrs lists the interface's addresses now; nil takes any
	// address as the interface's.
	ifaceAddrs func() []netip.Addr

	mu     sync.RWMutex
	spaces map[string]*space
	// owner maps each claimed address to its namespace.
	owner map[netip.Addr]string
	// refused counts refusals by namespace and reason; unknown
	// namespaces are counted under the empty name, so that a client
	// trying names cannot grow the table.
	refused map[refusalKey]uint64
}

type refusalKey struct {
	namespace string
	reason    Refusal
}

type space struct {
	Config
	apps int
}

// New makes a registry with the default namespace. ifaceAddrs, when
// set, lists the interface's addresses: a namespace may claim only
// those, and they are what the unclaimed addresses are taken from.
func New(ifaceAddrs func() []netip.Addr) *Registry {
	return &Registry{
		ifaceAddrs: ifaceAddrs,
		spaces:     map[string]*space{Default: {Config: Config{Name: Default, Rules: []maps.Rule{}}}},
		owner:      map[netip.Addr]string{},
		refused:    map[refusalKey]uint64{},
	}
}

// Add adds a namespace.
func (r *Registry) Add(c Config) error {
	c, err := c.check()
	if err != nil {
		return err
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if _, ok := r.spaces[c.Name]; ok {
		return fmt.Errorf("namespace %s: exists (delete it first, or reload a config file)", c.Name)
	}
	if err := r.claimable(c, nil); err != nil {
		return err
	}
	r.put(c, 0)
	return nil
}

// claimable checks that c's addresses are the interface's and claimed
// by no namespace but those in except.
func (r *Registry) claimable(c Config, except map[string]bool) error {
	for _, a := range c.Addrs {
		if o, ok := r.owner[a]; ok && o != c.Name && !except[o] {
			return fmt.Errorf("namespace %s: address %s belongs to namespace %s", c.Name, a, o)
		}
		if r.ifaceAddrs != nil && !slices.Contains(r.ifaceAddrs(), a) {
			return fmt.Errorf("namespace %s: address %s: not an address of the interface", c.Name, a)
		}
	}
	return nil
}

func (r *Registry) put(c Config, apps int) {
	if old, ok := r.spaces[c.Name]; ok {
		for _, a := range old.Addrs {
			delete(r.owner, a)
		}
	}
	for _, a := range c.Addrs {
		r.owner[a] = c.Name
	}
	r.spaces[c.Name] = &space{Config: c, apps: apps}
}

// Delete removes a namespace that no application uses.
func (r *Registry) Delete(name string) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	sp, ok := r.spaces[name]
	switch {
	case name == Default:
		return errors.New("namespace default: cannot be deleted")
	case !ok:
		return fmt.Errorf("namespace %s: no such namespace", name)
	case sp.apps > 0:
		return fmt.Errorf("namespace %s: %d application(s) attached (stop them first)", name, sp.apps)
	}
	for _, a := range sp.Addrs {
		delete(r.owner, a)
	}
	delete(r.spaces, name)
	return nil
}

// Replace makes the registry hold cs (and the default namespace),
// as a reload asks: all of it or, on an error, none. A namespace that
// applications use may change its rules and secret (attached
// applications stay) but not its addresses, and may not go.
func (r *Registry) Replace(cs []Config) error {
	want := map[string]Config{}
	for _, c := range cs {
		c, err := c.check()
		if err != nil {
			return err
		}
		if _, dup := want[c.Name]; dup {
			return fmt.Errorf("namespace %s: given twice", c.Name)
		}
		want[c.Name] = c
	}
	if _, ok := want[Default]; !ok {
		want[Default] = Config{Name: Default, Rules: []maps.Rule{}}
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	claimed := map[netip.Addr]string{}
	for _, name := range sortedKeys(want) {
		c := want[name]
		for _, a := range c.Addrs {
			if o, ok := claimed[a]; ok {
				return fmt.Errorf("namespace %s: address %s belongs to namespace %s", name, a, o)
			}
			claimed[a] = name
		}
		if err := r.claimable(c, allNames(r.spaces)); err != nil {
			return err
		}
	}
	for name, sp := range r.spaces {
		c, kept := want[name]
		switch {
		case sp.apps == 0:
		case !kept:
			return fmt.Errorf("namespace %s: %d application(s) attached (it cannot go while they run)", name, sp.apps)
		case !slices.Equal(c.Addrs, sp.Addrs):
			return fmt.Errorf("namespace %s: addresses cannot change while %d application(s) are attached", name, sp.apps)
		}
	}
	apps := map[string]int{}
	for name, sp := range r.spaces {
		apps[name] = sp.apps
	}
	r.spaces, r.owner = map[string]*space{}, map[netip.Addr]string{}
	for _, name := range sortedKeys(want) {
		r.put(want[name], apps[name])
	}
	return nil
}

func allNames(spaces map[string]*space) map[string]bool {
	names := map[string]bool{}
	for n := range spaces {
		names[n] = true
	}
	return names
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// Info is a namespace as listings show it: never its secret.
type Info struct {
	Name      string             `json:"name"`
	Addrs     []netip.Addr       `json:"addrs"`
	Apps      int                `json:"apps"`
	Rules     []maps.Rule        `json:"rules"`
	Refusals  map[Refusal]uint64 `json:"refusals"`
	HasSecret bool               `json:"has_secret"`
}

// List lists the namespaces by name.
func (r *Registry) List() []Info {
	r.mu.RLock()
	defer r.mu.RUnlock()
	out := make([]Info, 0, len(r.spaces))
	for _, name := range sortedKeys(r.spaces) {
		sp := r.spaces[name]
		refusals := map[Refusal]uint64{}
		for _, why := range Refusals {
			if n := r.refused[refusalKey{name, why}]; n > 0 {
				refusals[why] = n
			}
		}
		out = append(out, Info{
			Name: name, Addrs: slices.Clone(sp.Addrs), Apps: sp.apps,
			Rules: slices.Clone(sp.Rules), Refusals: refusals, HasSecret: sp.Secret != "",
		})
	}
	return out
}

// Configs returns the namespaces as they were given, secrets included,
// by name: what a reload that changes some of them gives Replace for
// the others. Never show them.
func (r *Registry) Configs() []Config {
	r.mu.RLock()
	defer r.mu.RUnlock()
	out := make([]Config, 0, len(r.spaces))
	for _, name := range sortedKeys(r.spaces) {
		c := r.spaces[name].Config
		c.Addrs, c.Rules = slices.Clone(c.Addrs), slices.Clone(c.Rules)
		out = append(out, c)
	}
	return out
}

// RefusalCounts returns the refusal counters; the namespace of
// attaches to unknown namespaces is "".
func (r *Registry) RefusalCounts() map[string]map[Refusal]uint64 {
	r.mu.RLock()
	defer r.mu.RUnlock()
	out := map[string]map[Refusal]uint64{}
	for k, n := range r.refused {
		if out[k.namespace] == nil {
			out[k.namespace] = map[Refusal]uint64{}
		}
		out[k.namespace][k.reason] = n
	}
	return out
}

// SetRules replaces a namespace's local rule table.
func (r *Registry) SetRules(name string, rules []maps.Rule) error {
	checked, err := checkLocalRules(rules)
	if err != nil {
		return fmt.Errorf("namespace %s: %w", name, err)
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	sp, ok := r.spaces[name]
	if !ok {
		return fmt.Errorf("namespace %s: no such namespace", name)
	}
	sp.Rules = checked
	return nil
}

// refuse counts a refusal and makes its error; r.mu must not be held
// for reading.
func (r *Registry) refuse(name string, why Refusal, format string, args ...any) error {
	r.mu.Lock()
	r.refused[refusalKey{name, why}]++
	r.mu.Unlock()
	return &Error{Namespace: name, Reason: why, msg: fmt.Sprintf(format, args...)}
}

// Attach lets an application into a namespace ("" is the default) if
// it knows the secret. The application detaches when it stops.
func (r *Registry) Attach(name, secret string) (*App, error) {
	if name == "" {
		name = Default
	}
	r.mu.Lock()
	sp, ok := r.spaces[name]
	good := ok && subtle.ConstantTimeCompare([]byte(sp.Secret), []byte(secret)) == 1
	if good {
		sp.apps++
	}
	r.mu.Unlock()
	switch {
	case !ok:
		return nil, r.refuse("", RefusedUnknown, "attach to namespace %s: no such namespace", name)
	case !good:
		return nil, r.refuse(name, RefusedSecret, "attach to namespace %s: wrong secret", name)
	}
	return &App{r: r, ns: name}, nil
}

// App is an application attached to a namespace.
type App struct {
	r    *Registry
	ns   string
	once sync.Once
}

// Namespace is the name of the app's namespace.
func (a *App) Namespace() string { return a.ns }

// Detach lets the namespace go once no other application uses it.
func (a *App) Detach() {
	a.once.Do(func() {
		a.r.mu.Lock()
		defer a.r.mu.Unlock()
		if sp, ok := a.r.spaces[a.ns]; ok && sp.apps > 0 {
			sp.apps--
		}
	})
}

// BindAddrs says which addresses a bind to addr means in the app's
// namespace. A specific address must be the namespace's. The
// unspecified address means the namespace's addresses: its own, or
// those of the interface that no namespace claims, and stays the
// unspecified address (nil, nil) while no namespace claims any. The
// namespace's addresses are read once, at the bind.
func (a *App) BindAddrs(addr netip.Addr) ([]netip.Addr, error) {
	addr = addr.Unmap()
	specific := addr.IsValid() && !addr.IsUnspecified()
	mine, anyClaimed, err := a.addrs()
	if err != nil {
		return nil, err
	}
	if specific {
		a.r.mu.RLock()
		owner, claimed := a.r.owner[addr]
		a.r.mu.RUnlock()
		switch {
		case claimed && owner != a.ns:
			return nil, a.r.refuse(a.ns, RefusedAddress, "bind to %s: the address belongs to namespace %s", addr, owner)
		case !claimed && a.claims():
			return nil, a.r.refuse(a.ns, RefusedAddress, "bind to %s: not an address of namespace %s (it has %s)", addr, a.ns, joinAddrs(mine))
		}
		return []netip.Addr{addr}, nil
	}
	switch {
	case !anyClaimed:
		return nil, nil
	}
	mine = familyOf(mine, addr)
	if len(mine) == 0 {
		return nil, a.r.refuse(a.ns, RefusedAddress, "bind to %s: namespace %s has no address of that family", addr, a.ns)
	}
	return mine, nil
}

// Owns tells whether addr is one of the namespace's addresses, for a
// session that arrives at a wildcard listener.
func (a *App) Owns(addr netip.Addr) bool {
	addr = addr.Unmap()
	a.r.mu.RLock()
	defer a.r.mu.RUnlock()
	sp, ok := a.r.spaces[a.ns]
	if !ok {
		return false
	}
	if len(sp.Addrs) > 0 {
		return slices.Contains(sp.Addrs, addr)
	}
	_, claimed := a.r.owner[addr]
	return !claimed
}

// claims tells whether the namespace has addresses of its own.
func (a *App) claims() bool {
	a.r.mu.RLock()
	defer a.r.mu.RUnlock()
	sp, ok := a.r.spaces[a.ns]
	return ok && len(sp.Addrs) > 0
}

// addrs lists the namespace's addresses, and says whether any
// namespace claims an address (else every address is every
// namespace's and the list is that of the interface).
func (a *App) addrs() (mine []netip.Addr, anyClaimed bool, err error) {
	a.r.mu.RLock()
	defer a.r.mu.RUnlock()
	sp, ok := a.r.spaces[a.ns]
	if !ok {
		return nil, false, fmt.Errorf("namespace %s: was deleted", a.ns)
	}
	if len(sp.Addrs) > 0 {
		return slices.Clone(sp.Addrs), true, nil
	}
	anyClaimed = len(a.r.owner) > 0
	if a.r.ifaceAddrs == nil {
		return nil, anyClaimed, nil
	}
	for _, addr := range a.r.ifaceAddrs() {
		if _, claimed := a.r.owner[addr.Unmap()]; !claimed {
			mine = append(mine, addr.Unmap())
		}
	}
	return mine, anyClaimed, nil
}

// familyOf keeps the addresses of the unspecified address's family;
// the invalid address (a bind to ":80") keeps both.
func familyOf(addrs []netip.Addr, unspec netip.Addr) []netip.Addr {
	if !unspec.IsValid() {
		return addrs
	}
	var out []netip.Addr
	for _, a := range addrs {
		if a.Is4() == unspec.Is4() {
			out = append(out, a)
		}
	}
	return out
}

func joinAddrs(addrs []netip.Addr) string {
	s := make([]string, len(addrs))
	for i, a := range addrs {
		s[i] = a.String()
	}
	return strings.Join(s, ", ")
}

// Check applies the namespace's local rule table to a session: a
// connect the app makes, or one its listener accepts (local is the
// app's end either way). A deny is counted and its error names the
// rule.
func (a *App) Check(p maps.RulePacket) error {
	a.r.mu.RLock()
	sp, ok := a.r.spaces[a.ns]
	var rule maps.Rule
	var matched bool
	if ok {
		rule, matched = maps.MatchRule(sp.Rules, p)
	}
	a.r.mu.RUnlock()
	if !matched || rule.Action != maps.RuleDeny {
		return nil
	}
	return a.r.refuse(a.ns, RefusedRule, "%s %s -> %s: denied by namespace %s's local rule %d (%s)", protoName(p.Protocol), p.Local, p.Remote, a.ns, rule.ID, rule)
}

func protoName(p maps.Protocol) string {
	if p == maps.UDP {
		return "udp"
	}
	return "tcp"
}

// Admit checks a session that arrives at one of the app's listeners
// (local is the app's end): its local address must be the namespace's,
// which a wildcard listener opened before a namespace claimed the
// address would otherwise take, and the local rules must not deny it.
// A refusal is counted.
func (a *App) Admit(p maps.RulePacket) error {
	if !a.Owns(p.Local.Addr()) {
		return a.r.refuse(a.ns, RefusedAddress, "accept %s %s from %s: %s is not an address of namespace %s", protoName(p.Protocol), p.Local, p.Remote, p.Local.Addr(), a.ns)
	}
	return a.Check(p)
}
