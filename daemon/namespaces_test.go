package daemon

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/netip"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/xdpstack/xdpstack/daemon/control"
	"github.com/xdpstack/xdpstack/internal/testing/testutil"
	"github.com/xdpstack/xdpstack/loader"
	"github.com/xdpstack/xdpstack/maps"
	"github.com/xdpstack/xdpstack/userstack/appns"
)

// TestNamespaceEndpoints adds, lists and deletes namespaces and local
// rules through the control socket of a daemon that runs no userstack.
// Every bad request is a 400 with one line, and changes nothing; no
// answer holds a secret.
func TestNamespaceEndpoints(t *testing.T) {
	a, _ := testutil.HostPair(t, 0)
	dir := filepath.Join(t.TempDir(), "run")
	cfg := Config{Iface: a.Iface, Attach: loader.Options{PinRoot: testutil.PinRoot(t)}, Control: control.Options{Dir: dir},
		Namespaces: []appns.Config{{Name: "file-ns", Secret: "file-secret"}}}
	var d *Daemon
	a.Do(t, func() (err error) {
		d, err = Start(cfg)
		return err
	})
	defer d.Close()
	c := control.NewClient(dir, a.Iface)
	ctx := context.Background()

	added, err := NamespaceAddEndpoint.Call(ctx, c, NamespaceAdd{Name: "blue", Secret: "blue-secret", Addrs: []netip.Addr{a.Addr}})
	if err != nil || added.Name != "blue" || !slices.Equal(added.Addrs, []netip.Addr{a.Addr}) || added.From != "cli" {
		t.Fatalf("add blue: got %+v, %v", added, err)
	}
	deny := maps.RuleText{Proto: "tcp", Remote: "192.0.2.0/24", Action: "deny", Tag: "no-doc"}
	allow := maps.RuleText{Proto: "tcp", Remote: "192.0.2.7", Action: "allow"}
	for i, r := range []maps.RuleText{deny, allow} {
		got, err := LocalRuleAddEndpoint.Call(ctx, c, LocalRuleAdd{Namespace: "blue", Rule: r})
		if err != nil || len(got.Rules) != 1 || got.Rules[0].ID != uint32(i+1) {
			t.Fatalf("add local rule %+v: got %+v, %v", r, got, err)
		}
	}

	list := func() string {
		t.Helper()
		ns, err := NamespacesEndpoint.Call(ctx, c, control.None{})
		if err != nil {
			t.Fatal(err)
		}
		rules, err := LocalRulesEndpoint.Call(ctx, c, LocalRulesQuery{Namespace: "blue"})
		if err != nil {
			t.Fatal(err)
		}
		b, _ := json.Marshal([]any{ns, rules})
		return string(b)
	}
	before := list()
	for _, want := range []string{`"name":"blue","addrs":["` + a.Addr.String() + `"],"apps":0,"rules":2`, `"name":"file-ns","addrs":[],"apps":0,"rules":0,"refusals":{},"from":"file"`,
		`"name":"default","addrs":[]`, `"from":"built-in"`, `"local":"0.0.0.0/0","remote":"192.0.2.0/24","action":"deny","tag":"no-doc"`} {
		if !strings.Contains(before, want) {
			t.Errorf("listing: no %s in %s", want, before)
		}
	}
	if strings.Contains(before, "secret\"") || strings.Contains(before, "blue-secret") || strings.Contains(before, "file-secret") {
		t.Errorf("listing shows a secret: %s", before)
	}

	for _, tc := range []struct {
		name string
		call func() error
		want string
	}{
		{"add twice", func() error {
			_, err := NamespaceAddEndpoint.Call(ctx, c, NamespaceAdd{Name: "blue", Secret: "x"})
			return err
		}, "namespace blue: exists"},
		{"add without secret", func() error {
			_, err := NamespaceAddEndpoint.Call(ctx, c, NamespaceAdd{Name: "red"})
			return err
		}, "namespace red: needs a secret"},
		{"add bad name", func() error {
			_, err := NamespaceAddEndpoint.Call(ctx, c, NamespaceAdd{Name: "../red", Secret: "x"})
			return err
		}, `namespace "../red": want letters, digits and -_. only`},
		{"add foreign address", func() error {
			_, err := NamespaceAddEndpoint.Call(ctx, c, NamespaceAdd{Name: "red", Secret: "x", Addrs: []netip.Addr{netip.MustParseAddr("192.0.2.9")}})
			return err
		}, "namespace red: address 192.0.2.9: not an address of the interface"},
		{"add claimed address", func() error {
			_, err := NamespaceAddEndpoint.Call(ctx, c, NamespaceAdd{Name: "red", Secret: "x", Addrs: []netip.Addr{a.Addr}})
			return err
		}, "belongs to namespace blue"},
		{"del unknown", func() error {
			_, err := NamespaceDelEndpoint.Call(ctx, c, NamespaceDel{Name: "red"})
			return err
		}, "namespace red: no such namespace"},
		{"del default", func() error {
			_, err := NamespaceDelEndpoint.Call(ctx, c, NamespaceDel{Name: "default"})
			return err
		}, "namespace default: cannot be deleted"},
		{"rule to unknown namespace", func() error {
			_, err := LocalRuleAddEndpoint.Call(ctx, c, LocalRuleAdd{Namespace: "red", Rule: deny})
			return err
		}, "namespace red: no such namespace (see: xdpstack ns list " + a.Iface + ")"},
		{"pass rule", func() error {
			_, err := LocalRuleAddEndpoint.Call(ctx, c, LocalRuleAdd{Namespace: "blue", Rule: maps.RuleText{Local: ":80", Action: "pass"}})
			return err
		}, "pass is for global rules only"},
		{"bad rule", func() error {
			_, err := LocalRuleAddEndpoint.Call(ctx, c, LocalRuleAdd{Namespace: "blue", Rule: maps.RuleText{Remote: "10.0.0.0/33", Action: "deny"}})
			return err
		}, `namespace blue: rule: remote: "10.0.0.0/33": not an address or prefix`},
		{"rule without action", func() error {
			_, err := LocalRuleAddEndpoint.Call(ctx, c, LocalRuleAdd{Namespace: "blue", Rule: maps.RuleText{Remote: "10.0.0.0/8"}})
			return err
		}, "namespace blue: rule: action: missing"},
		{"same match", func() error {
			_, err := LocalRuleAddEndpoint.Call(ctx, c, LocalRuleAdd{Namespace: "blue", Rule: maps.RuleText{Proto: "tcp", Remote: "192.0.2.0/24", Action: "allow"}})
			return err
		}, "a rule with this match is already in the table"},
		{"del neither", func() error {
			_, err := LocalRulesDelEndpoint.Call(ctx, c, LocalRuleDel{Namespace: "blue"})
			return err
		}, "namespace blue: give either a tag or a match"},
		{"del unknown tag", func() error {
			_, err := LocalRulesDelEndpoint.Call(ctx, c, LocalRuleDel{Namespace: "blue", Tag: "nope"})
			return err
		}, `namespace blue: no local rule has tag "nope"`},
		{"del unknown match", func() error {
			_, err := LocalRulesDelEndpoint.Call(ctx, c, LocalRuleDel{Namespace: "blue", Match: &maps.RuleText{Local: ":81"}})
			return err
		}, "namespace blue: no local rule has the match --proto any --local :81 --remote any"},
		{"list unknown", func() error {
			_, err := LocalRulesEndpoint.Call(ctx, c, LocalRulesQuery{Namespace: "red"})
			return err
		}, "namespace red: no such namespace"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.call()
			refused, ok := errors.AsType[*control.RefusedError](err)
			if !ok || refused.Code != http.StatusBadRequest || !strings.Contains(err.Error(), tc.want) || strings.Contains(err.Error(), "\n") {
				t.Errorf("got %v, want a 400 with %q", err, tc.want)
			}
			if after := list(); after != before {
				t.Errorf("a refused request changed\n%s\ninto\n%s", before, after)
			}
		})
	}

	gone, err := LocalRulesDelEndpoint.Call(ctx, c, LocalRuleDel{Namespace: "blue", Match: &maps.RuleText{Proto: "tcp", Remote: "192.0.2.0/24"}})
	if err != nil || len(gone.Rules) != 1 || gone.Rules[0].Tag != "no-doc" {
		t.Errorf("del by match: got %+v, %v", gone, err)
	}
	if rules, err := LocalRulesEndpoint.Call(ctx, c, LocalRulesQuery{Namespace: "blue"}); err != nil || len(rules.Rules) != 1 || rules.Rules[0].ID != 1 || rules.Rules[0].Remote != "192.0.2.7/32" {
		t.Errorf("rules after del: got %+v, %v", rules, err)
	}
	app, err := d.Namespaces.Attach("blue", "blue-secret")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := NamespaceDelEndpoint.Call(ctx, c, NamespaceDel{Name: "blue"}); err == nil || !strings.Contains(err.Error(), "1 application(s) attached") {
		t.Errorf("del of a namespace in use: %v", err)
	}
	app.Detach()
	if _, err := NamespaceDelEndpoint.Call(ctx, c, NamespaceDel{Name: "blue"}); err != nil {
		t.Errorf("del blue: %v", err)
	}
	if ns, err := NamespacesEndpoint.Call(ctx, c, control.None{}); err != nil || len(ns.Namespaces) != 2 {
		t.Errorf("list after del: %+v, %v", ns, err)
	}
}

// TestNamespaceMetrics: every namespace has a series per refusal reason
// and one of its applications; refusals for namespaces that do not
// exist count under namespace="".
func TestNamespaceMetrics(t *testing.T) {
	r := appns.New(nil)
	if err := r.Add(appns.Config{Name: "blue", Secret: "s"}); err != nil {
		t.Fatal(err)
	}
	r.Attach("blue", "wrong")
	r.Attach("nosuch", "")
	app, err := r.Attach("blue", "s")
	if err != nil {
		t.Fatal(err)
	}
	defer app.Detach()
	reg := prometheus.NewRegistry()
	reg.MustRegister(namespaceCollector{"xs0", r})
	families, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]float64{}
	for _, f := range families {
		for _, m := range f.Metric {
			var labels []string
			for _, l := range m.Label {
				labels = append(labels, l.GetName()+"="+l.GetValue())
			}
			got[f.GetName()+"{"+strings.Join(labels, ",")+"}"] = m.GetCounter().GetValue() + m.GetGauge().GetValue()
		}
	}
	for series, want := range map[string]float64{
		"xdpstack_namespace_refusals_total{iface=xs0,namespace=,reason=unknown_namespace}": 1,
		"xdpstack_namespace_refusals_total{iface=xs0,namespace=blue,reason=bad_secret}":    1,
		"xdpstack_namespace_refusals_total{iface=xs0,namespace=blue,reason=address}":       0,
		"xdpstack_namespace_refusals_total{iface=xs0,namespace=default,reason=rule}":       0,
		"xdpstack_namespace_apps{iface=xs0,namespace=blue}":                                1,
		"xdpstack_namespace_apps{iface=xs0,namespace=default}":                             0,
	} {
		if v, ok := got[series]; !ok || v != want {
			t.Errorf("%s: got %v (%v), want %v", series, v, ok, want)
		}
	}
	if len(got) != 1+2*3+2 {
		t.Errorf("%d series, want 9: %v", len(got), got)
	}
}
