package appns

import (
	"errors"
	"net/netip"
	"slices"
	"strings"
	"testing"

	"github.com/xdpstack/xdpstack/maps"
)

var (
	a1 = netip.MustParseAddr("10.0.0.1")
	a2 = netip.MustParseAddr("10.0.0.2")
	a3 = netip.MustParseAddr("10.0.0.3")
	a6 = netip.MustParseAddr("2001:db8::1")
)

func ifaceAddrs() []netip.Addr { return []netip.Addr{a1, a2, a3, a6} }

func mustAttach(t *testing.T, r *Registry, name, secret string) *App {
	t.Helper()
	app, err := r.Attach(name, secret)
	if err != nil {
		t.Fatal(err)
	}
	return app
}

func TestBadConfigsChangeNothing(t *testing.T) {
	r := New(ifaceAddrs)
	if err := r.Add(Config{Name: "blue", Secret: "s", Addrs: []netip.Addr{a1}}); err != nil {
		t.Fatal(err)
	}
	before := r.List()
	deny := maps.Rule{RuleMatch: maps.RuleMatch{LocalPort: 80}, Action: maps.RuleDeny}
	for _, tc := range []struct {
		c    Config
		want string
	}{
		{Config{Name: ""}, "empty name"},
		{Config{Name: "a b", Secret: "s"}, "letters, digits"},
		{Config{Name: strings.Repeat("n", 33), Secret: "s"}, "at most 32"},
		{Config{Name: "red"}, "needs a secret"},
		{Config{Name: "blue", Secret: "s"}, "exists"},
		{Config{Name: "default", Secret: "s"}, "has no secret"},
		{Config{Name: "red", Secret: "s", Addrs: []netip.Addr{a1}}, "belongs to namespace blue"},
		{Config{Name: "red", Secret: "s", Addrs: []netip.Addr{a2, a2}}, "given twice"},
		{Config{Name: "red", Secret: "s", Addrs: []netip.Addr{netip.MustParseAddr("192.0.2.9")}}, "not an address of the interface"},
		{Config{Name: "red", Secret: "s", Addrs: []netip.Addr{netip.IPv4Unspecified()}}, "unicast"},
		{Config{Name: "red", Secret: "s", Rules: []maps.Rule{{Action: maps.RulePass}}}, "global rules only"},
		{Config{Name: "red", Secret: "s", Rules: []maps.Rule{deny, deny}}, "already in the table"},
	} {
		err := r.Add(tc.c)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("Add(%+v) = %v, want %q", tc.c, err, tc.want)
		}
	}
	if err := r.Replace([]Config{{Name: "x", Secret: "s", Addrs: []netip.Addr{a2}}, {Name: "y", Secret: "s", Addrs: []netip.Addr{a2}}}); err == nil || !strings.Contains(err.Error(), "belongs to") {
		t.Errorf("Replace with one address twice = %v", err)
	}
	if got := r.List(); !slices.EqualFunc(got, before, func(a, b Info) bool { return a.Name == b.Name && slices.Equal(a.Addrs, b.Addrs) }) {
		t.Errorf("bad input changed the registry: %+v, was %+v", got, before)
	}
}

func TestAttachRefusalsCounted(t *testing.T) {
	r := New(nil)
	if err := r.Add(Config{Name: "blue", Secret: "right"}); err != nil {
		t.Fatal(err)
	}
	_, err := r.Attach("blue", "wrong")
	var e *Error
	if !errors.As(err, &e) || e.Reason != RefusedSecret || strings.Contains(err.Error(), "right") {
		t.Fatalf("wrong secret: %v", err)
	}
	if _, err := r.Attach("green", ""); !errors.As(err, &e) || e.Reason != RefusedUnknown {
		t.Fatalf("unknown namespace: %v", err)
	}
	app := mustAttach(t, r, "blue", "right")
	if app.Namespace() != "blue" {
		t.Errorf("namespace %q", app.Namespace())
	}
	if def := mustAttach(t, r, "", ""); def.Namespace() != Default {
		t.Errorf("no namespace attached to %q", def.Namespace())
	}
	got := r.RefusalCounts()
	if got["blue"][RefusedSecret] != 1 || got[""][RefusedUnknown] != 1 {
		t.Errorf("refusals %v", got)
	}
	if err := r.Delete("blue"); err == nil || !strings.Contains(err.Error(), "attached") {
		t.Errorf("delete with an app attached: %v", err)
	}
	app.Detach()
	app.Detach()
	if err := r.Delete("blue"); err != nil {
		t.Errorf("delete after detach: %v", err)
	}
	if err := r.Delete(Default); err == nil {
		t.Error("deleted the default namespace")
	}
}

func TestBindAddrs(t *testing.T) {
	r := New(ifaceAddrs)
	def := mustAttach(t, r, "", "")
	if got, err := def.BindAddrs(netip.IPv4Unspecified()); got != nil || err != nil {
		t.Errorf("wildcard with no namespace claiming: %v %v, want the wildcard", got, err)
	}
	if err := r.Add(Config{Name: "blue", Secret: "s", Addrs: []netip.Addr{a2, a1, a6}}); err != nil {
		t.Fatal(err)
	}
	blue := mustAttach(t, r, "blue", "s")
	for _, tc := range []struct {
		app  *App
		bind netip.Addr
		want []netip.Addr
		err  string
	}{
		{blue, netip.IPv4Unspecified(), []netip.Addr{a1, a2}, ""},
		{blue, netip.Addr{}, []netip.Addr{a1, a2, a6}, ""},
		{blue, a2, []netip.Addr{a2}, ""},
		{blue, a3, nil, "not an address of namespace blue"},
		{def, netip.IPv4Unspecified(), []netip.Addr{a3}, ""},
		{def, netip.IPv6Unspecified(), nil, "no address of that family"},
		{def, a1, nil, "belongs to namespace blue"},
		{def, a3, []netip.Addr{a3}, ""},
	} {
		got, err := tc.app.BindAddrs(tc.bind)
		if tc.err != "" {
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("%s bind %v: %v, want %q", tc.app.Namespace(), tc.bind, err, tc.err)
			}
			continue
		}
		if err != nil || !slices.Equal(got, tc.want) {
			t.Errorf("%s bind %v = %v, %v; want %v", tc.app.Namespace(), tc.bind, got, err, tc.want)
		}
	}
	if !blue.Owns(a1) || blue.Owns(a3) || def.Owns(a1) || !def.Owns(a3) {
		t.Error("Owns disagrees with the namespaces' addresses")
	}
	if n := r.RefusalCounts()["default"][RefusedAddress]; n != 2 {
		t.Errorf("default's address refusals %d, want 2", n)
	}
}

func TestLocalRules(t *testing.T) {
	r := New(nil)
	deny := maps.Rule{RuleMatch: maps.RuleMatch{Protocol: maps.TCP, Remote: netip.MustParsePrefix("192.0.2.0/24")}, Action: maps.RuleDeny, Tag: "no-doc"}
	allow := maps.Rule{RuleMatch: maps.RuleMatch{Protocol: maps.TCP, Remote: netip.MustParsePrefix("192.0.2.7/32")}, Action: maps.RuleAllow}
	if err := r.Add(Config{Name: "blue", Secret: "s", Rules: []maps.Rule{deny, allow}}); err != nil {
		t.Fatal(err)
	}
	app := mustAttach(t, r, "blue", "s")
	pkt := func(remote string) maps.RulePacket {
		return maps.RulePacket{Protocol: maps.TCP, Local: netip.MustParseAddrPort("10.0.0.1:40000"), Remote: netip.MustParseAddrPort(remote)}
	}
	err := app.Check(pkt("192.0.2.8:80"))
	if err == nil || !strings.Contains(err.Error(), "local rule 1") || !strings.Contains(err.Error(), "no-doc") {
		t.Errorf("denied connect: %v", err)
	}
	if err := app.Check(pkt("192.0.2.7:80")); err != nil {
		t.Errorf("the more specific allow lost: %v", err)
	}
	if err := app.Check(pkt("198.51.100.1:80")); err != nil {
		t.Errorf("no rule matched, still refused: %v", err)
	}
	if err := r.SetRules("blue", nil); err != nil {
		t.Fatal(err)
	}
	if err := app.Check(pkt("192.0.2.8:80")); err != nil {
		t.Errorf("after the rules went: %v", err)
	}
	if err := r.SetRules("nope", nil); err == nil {
		t.Error("rules for an unknown namespace taken")
	}
}

func TestReplaceKeepsAttachedApps(t *testing.T) {
	r := New(nil)
	if err := r.Replace([]Config{{Name: "blue", Secret: "s", Addrs: []netip.Addr{a1}}, {Name: "red", Secret: "t"}}); err != nil {
		t.Fatal(err)
	}
	app := mustAttach(t, r, "blue", "s")
	if err := r.Replace([]Config{{Name: "red", Secret: "t"}}); err == nil || !strings.Contains(err.Error(), "cannot go") {
		t.Errorf("dropping a namespace in use: %v", err)
	}
	if err := r.Replace([]Config{{Name: "blue", Secret: "s", Addrs: []netip.Addr{a2}}}); err == nil || !strings.Contains(err.Error(), "addresses cannot change") {
		t.Errorf("moving a namespace in use: %v", err)
	}
	deny := maps.Rule{RuleMatch: maps.RuleMatch{RemotePort: 25}, Action: maps.RuleDeny}
	if err := r.Replace([]Config{{Name: "blue", Secret: "new", Addrs: []netip.Addr{a1}, Rules: []maps.Rule{deny}}}); err != nil {
		t.Fatal(err)
	}
	names := []string{}
	for _, in := range r.List() {
		names = append(names, in.Name)
		if in.Name == "blue" && (in.Apps != 1 || len(in.Rules) != 1) {
			t.Errorf("blue after reload: %+v", in)
		}
	}
	if !slices.Equal(names, []string{"blue", "default"}) {
		t.Errorf("namespaces after reload %v", names)
	}
	if err := app.Check(maps.RulePacket{Protocol: maps.TCP, Local: netip.MustParseAddrPort("10.0.0.1:1"), Remote: netip.MustParseAddrPort("10.9.9.9:25")}); err == nil {
		t.Error("the reloaded rule does not apply to an attached app")
	}
}

// TestConfigsRoundTrip: what Configs returns, Replace takes back
// without a change, secrets and rules included.
func TestConfigsRoundTrip(t *testing.T) {
	r := New(ifaceAddrs)
	deny := maps.Rule{RuleMatch: maps.RuleMatch{RemotePort: 25}, Action: maps.RuleDeny}
	if err := r.Add(Config{Name: "blue", Secret: "s", Addrs: []netip.Addr{a2, a1}, Rules: []maps.Rule{deny}}); err != nil {
		t.Fatal(err)
	}
	app := mustAttach(t, r, "blue", "s")
	before := r.Configs()
	if len(before) != 2 || before[0].Name != "blue" || before[0].Secret != "s" || !slices.Equal(before[0].Addrs, []netip.Addr{a1, a2}) || len(before[0].Rules) != 1 || before[1].Name != Default {
		t.Fatalf("Configs() = %+v", before)
	}
	before[0].Addrs[0] = a3 // a copy: the registry keeps its own
	if err := r.Replace(r.Configs()); err != nil {
		t.Fatalf("Replace(Configs()): %v", err)
	}
	if got := r.Configs(); got[0].Addrs[0] != a1 || got[0].Secret != "s" {
		t.Errorf("after Replace(Configs()): %+v", got)
	}
	if _, err := r.Attach("blue", "s"); err != nil {
		t.Errorf("attach after the round trip: %v", err)
	}
	app.Detach()
}

func TestAdmit(t *testing.T) {
	r := New(ifaceAddrs)
	def := mustAttach(t, r, "", "")
	deny := maps.Rule{RuleMatch: maps.RuleMatch{Protocol: maps.TCP, Remote: netip.MustParsePrefix("192.0.2.0/24")}, Action: maps.RuleDeny}
	if err := r.Add(Config{Name: "blue", Secret: "s", Addrs: []netip.Addr{a2}, Rules: []maps.Rule{deny}}); err != nil {
		t.Fatal(err)
	}
	blue := mustAttach(t, r, "blue", "s")
	session := func(local, remote string) maps.RulePacket {
		return maps.RulePacket{Protocol: maps.TCP, Local: netip.MustParseAddrPort(local), Remote: netip.MustParseAddrPort(remote)}
	}
	for _, tc := range []struct {
		app     *App
		session maps.RulePacket
		err     string
	}{
		{def, session("10.0.0.1:80", "198.51.100.1:4000"), ""},
		// A wildcard listener of the default namespace, opened before
		// blue claimed 10.0.0.2.
		{def, session("10.0.0.2:80", "198.51.100.1:4000"), "10.0.0.2 is not an address of namespace default"},
		{blue, session("10.0.0.2:80", "198.51.100.1:4000"), ""},
		{blue, session("10.0.0.2:80", "192.0.2.1:4000"), "local rule 1"},
	} {
		err := tc.app.Admit(tc.session)
		if tc.err == "" && err != nil || tc.err != "" && (err == nil || !strings.Contains(err.Error(), tc.err)) {
			t.Errorf("%s Admit(%v) = %v, want %q", tc.app.Namespace(), tc.session, err, tc.err)
		}
	}
	got := r.RefusalCounts()
	if got["default"][RefusedAddress] != 1 || got["blue"][RefusedRule] != 1 {
		t.Errorf("refusals %v, want one address refusal in default and one rule refusal in blue", got)
	}
}

func TestParseScope(t *testing.T) {
	for _, s := range []Scope{ScopeGlobal, ScopeLocal, ScopeBoth} {
		got, err := ParseScope(s.String())
		if err != nil || got != s {
			t.Errorf("ParseScope(%q) = %v, %v", s, got, err)
		}
	}
	if _, err := ParseScope("everywhere"); err == nil || !strings.Contains(err.Error(), "want global, local or both") {
		t.Errorf("ParseScope(everywhere): %v", err)
	}
	if !ScopeBoth.Local() || !ScopeBoth.Global() || ScopeLocal.Global() || ScopeGlobal.Local() {
		t.Error("Local and Global disagree with the scopes")
	}
}
