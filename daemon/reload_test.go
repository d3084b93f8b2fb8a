package daemon

import (
	"context"
	"errors"
	"fmt"
	gomaps "maps"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/xdpstack/xdpstack/daemon/control"
	"github.com/xdpstack/xdpstack/internal/testing/testutil"
	"github.com/xdpstack/xdpstack/loader"
	"github.com/xdpstack/xdpstack/maps"
	"github.com/xdpstack/xdpstack/userstack/appns"
)

// TestReloadRefusesRestartKeys: a change of any setting but the
// namespaces and rules is refused whole, naming the keys, and changes
// nothing.
func TestReloadRefusesRestartKeys(t *testing.T) {
	running := map[string]string{"mode": "auto", "metrics-addr": "127.0.0.1:9437"}
	with := func(kv ...string) map[string]string {
		s := gomaps.Clone(running)
		for i := 0; i < len(kv); i += 2 {
			s[kv[i]] = kv[i+1]
		}
		return s
	}
	for _, tc := range []struct {
		name     string
		settings map[string]string
		err      string
	}{
		{"mode", with("mode", "native"), "mode changed: needs a restart (detach and attach again)"},
		{"new key", with("tcp-cc", "cubic"), "tcp-cc changed: needs a restart (detach and attach again)"},
		{"two keys", with("mode", "native", "metrics-addr", ""), "metrics-addr, mode changed: need a restart (detach and attach again)"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d := &Daemon{cfg: Config{Settings: running}}
			applied, err := d.Reload(Config{Settings: tc.settings, Rules: []maps.Rule{{Action: maps.RuleDeny}}})
			if err == nil || err.Error() != tc.err || applied != nil {
				t.Fatalf("Reload: got %v, %v; want %q", applied, err, tc.err)
			}
			if !mapsEqual(d.cfg.Settings, running) || d.cfg.Rules != nil {
				t.Errorf("a refused reload changed the configuration: %+v", d.cfg)
			}
		})
	}
}

func rule(t *testing.T, text maps.RuleText) maps.Rule {
	t.Helper()
	r, err := text.Rule()
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// cliAddRules adds rules to the global table as `xdpstack rules add`
// does, through the pins under their lock.
func cliAddRules(d *Daemon, rules ...maps.Rule) error {
	unlock, err := maps.LockPinDir(d.PinDir)
	if err != nil {
		return err
	}
	defer unlock()
	have, err := d.Maps.Rules.All()
	if err == nil {
		_, err = d.Maps.Rules.Replace(append(have, rules...))
	}
	return err
}

// globalRules lists the table as `rules list` does, by rule text.
func globalRules(t *testing.T, d *Daemon) []string {
	t.Helper()
	rules, err := d.Maps.Rules.All()
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, r := range rules {
		out = append(out, r.String())
	}
	slices.Sort(out)
	return out
}

// ruleStrings are the rules as text, sorted.
func ruleStrings(rules ...maps.Rule) []string {
	var out []string
	for _, r := range rules {
		out = append(out, r.String())
	}
	slices.Sort(out)
	return out
}

// namespaces lists the registry as name:secret:addrs:rules.
func namespaces(d *Daemon) []string {
	var out []string
	for _, c := range d.Namespaces.Configs() {
		out = append(out, fmt.Sprintf("%s:%s:%v:%d", c.Name, c.Secret, c.Addrs, len(c.Rules)))
	}
	return out
}

// TestReloadFileAndCLI: the config file owns the namespaces and rules
// it names (a namespace by name, a rule by match); a reload sets them as
// the file says, removes those the file named before and names no more,
// and keeps what the CLI added that the file does not name. A reload
// that cannot be applied whole changes nothing.
func TestReloadFileAndCLI(t *testing.T) {
	a, _ := testutil.HostPair(t, 0)
	second := netip.AddrFrom4([4]byte{a.Addr.As4()[0], a.Addr.As4()[1], a.Addr.As4()[2], 9})
	a.Exec(t, "ip", "addr", "add", second.String()+"/24", "dev", a.Iface)
	sshDeny := rule(t, maps.RuleText{Proto: "tcp", Local: ":22", Action: "deny", Tag: "no-ssh"})
	sshLan := rule(t, maps.RuleText{Proto: "tcp", Local: ":22", Remote: "10.0.0.0/8", Action: "allow", Tag: "ssh-lan"})
	blue := appns.Config{Name: "blue", Secret: "b1", Addrs: []netip.Addr{a.Addr}}
	cfg := Config{Iface: a.Iface, Attach: loader.Options{PinRoot: testutil.PinRoot(t)}, Settings: map[string]string{"mode": "auto"},
		Namespaces: []appns.Config{blue}, Rules: []maps.Rule{sshDeny, sshLan}}
	var d *Daemon
	a.Do(t, func() (err error) {
		d, err = Start(cfg)
		return err
	})
	defer d.Close()
	if got, want := globalRules(t, d), ruleStrings(sshDeny, sshLan); !slices.Equal(got, want) {
		t.Fatalf("rules after Start: %v, want the file's %v", got, want)
	}
	if got := namespaces(d); !slices.Equal(got, []string{"blue:b1:[" + a.Addr.String() + "]:0", "default::[]:0"}) {
		t.Fatalf("namespaces after Start: %v", got)
	}

	// The CLI adds a rule and a namespace of its own.
	web := rule(t, maps.RuleText{Proto: "tcp", Local: ":80", Action: "pass", Tag: "web"})
	if err := cliAddRules(d, web); err != nil {
		t.Fatal(err)
	}
	if _, err := d.AddNamespace(NamespaceAdd{Name: "red", Secret: "r1", Addrs: []netip.Addr{second}}); err != nil {
		t.Fatal(err)
	}

	// The file changes its ssh rule (same match: it stays the file's),
	// drops ssh-lan, adds dns and a rule with the CLI's match for port
	// 80, which it takes over; blue gets a new secret and a local rule,
	// green comes.
	sshPass := rule(t, maps.RuleText{Proto: "tcp", Local: ":22", Action: "pass", Tag: "ssh-kernel"})
	dns := rule(t, maps.RuleText{Proto: "udp", Local: ":53", Action: "deny"})
	webFile := rule(t, maps.RuleText{Proto: "tcp", Local: ":80", Action: "deny", Tag: "no-web"})
	localDeny := rule(t, maps.RuleText{Remote: ":25", Action: "deny"})
	blue2 := appns.Config{Name: "blue", Secret: "b2", Addrs: []netip.Addr{a.Addr}, Rules: []maps.Rule{localDeny}}
	green := appns.Config{Name: "green", Secret: "g1"}
	next := cfg
	next.Namespaces, next.Rules = []appns.Config{blue2, green}, []maps.Rule{sshPass, dns, webFile}
	applied, err := d.Reload(next)
	if err != nil || !slices.Equal(applied, []string{"namespaces", "rules"}) {
		t.Fatalf("Reload: got %v, %v; want namespaces and rules applied", applied, err)
	}
	if got, want := globalRules(t, d), ruleStrings(sshPass, dns, webFile); !slices.Equal(got, want) {
		t.Errorf("rules after the reload: %v, want %v", got, want)
	}
	wantNS := []string{"blue:b2:[" + a.Addr.String() + "]:1", "default::[]:0", "green:g1:[]:0", "red:r1:[" + second.String() + "]:0"}
	if got := namespaces(d); !slices.Equal(got, wantNS) {
		t.Errorf("namespaces after the reload: %v, want %v", got, wantNS)
	}
	if applied, err := d.Reload(next); err != nil || len(applied) != 0 {
		t.Errorf("Reload of the same file: got %v, %v; want nothing applied", applied, err)
	}

	// The CLI deletes what the file names, puts a rule of its own on
	// one of the file's matches and adds another: a reload of the same
	// file puts the file's back and keeps the CLI's other rule and
	// namespace.
	unlock, err := maps.LockPinDir(d.PinDir)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := d.Maps.Rules.Replace([]maps.Rule{sshPass}); err != nil {
		t.Fatal(err)
	}
	unlock()
	cliOnly := rule(t, maps.RuleText{Remote: "192.0.2.7", Action: "deny"})
	if err := cliAddRules(d, web, cliOnly); err != nil {
		t.Fatal(err)
	}
	if err := d.DeleteNamespace("green"); err != nil {
		t.Fatal(err)
	}
	if applied, err := d.Reload(next); err != nil || !slices.Equal(applied, []string{"namespaces", "rules"}) {
		t.Errorf("Reload after the CLI's changes: got %v, %v; want both applied", applied, err)
	}
	if got, want := globalRules(t, d), ruleStrings(sshPass, dns, webFile, cliOnly); !slices.Equal(got, want) {
		t.Errorf("rules after the CLI's changes and a reload: %v, want %v", got, want)
	}
	if got := namespaces(d); !slices.Equal(got, wantNS) {
		t.Errorf("namespaces after the CLI's changes and a reload: %v, want %v", got, wantNS)
	}

	// All or nothing: a namespace that cannot change refuses the
	// rules with it, and rules that cannot go in refuse the namespaces.
	app, err := d.Namespaces.Attach("blue", "b2")
	if err != nil {
		t.Fatal(err)
	}
	defer app.Detach()
	moved := next
	moved.Namespaces = []appns.Config{{Name: "blue", Secret: "b2"}, green}
	moved.Rules = append(slices.Clone(next.Rules), rule(t, maps.RuleText{Local: ":443", Action: "deny"}))
	tooMany := next
	tooMany.Namespaces = append(slices.Clone(next.Namespaces), appns.Config{Name: "yellow", Secret: "y"})
	tooMany.Rules = slices.Clone(next.Rules)
	for bits := 1; bits <= maps.MaxRuleShapes; bits++ {
		tooMany.Rules = append(tooMany.Rules, rule(t, maps.RuleText{Remote: netip.PrefixFrom(netip.MustParseAddr("100.64.0.0"), bits).Masked().String(), Action: "deny"}))
	}
	for _, tc := range []struct {
		name string
		cfg  Config
		err  string
	}{
		{"namespace in use moved", moved, "namespaces: namespace blue: addresses cannot change while 1 application(s) are attached"},
		{"too many shapes", tooMany, "distinct shapes"},
	} {
		if applied, err := d.Reload(tc.cfg); err == nil || !strings.Contains(err.Error(), tc.err) {
			t.Errorf("Reload, %s: got %v, %v; want an error with %q", tc.name, applied, err, tc.err)
		}
		if got, want := globalRules(t, d), ruleStrings(sshPass, dns, webFile, cliOnly); !slices.Equal(got, want) {
			t.Errorf("rules after a refused reload (%s): %v, want %v", tc.name, got, want)
		}
		if got := namespaces(d); !slices.Equal(got, wantNS) {
			t.Errorf("namespaces after a refused reload (%s): %v, want %v", tc.name, got, wantNS)
		}
		if !slices.Equal(ruleStrings(d.cfg.Rules...), ruleStrings(next.Rules...)) {
			t.Errorf("the file's rules after a refused reload (%s): %v", tc.name, d.cfg.Rules)
		}
	}
}

func mapsEqual(a, b map[string]string) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if w, ok := b[k]; !ok || w != v {
			return false
		}
	}
	return true
}

// TestControlSocket runs a daemon with its control socket: status and
// reload answer through it, a second daemon on the interface is refused
// before it attaches anything, and Close removes the socket.
func TestControlSocket(t *testing.T) {
	a, _ := testutil.HostPair(t, 0)
	dir := filepath.Join(t.TempDir(), "run")
	reads := 0
	cfg := Config{Iface: a.Iface, Attach: loader.Options{PinRoot: testutil.PinRoot(t)}, Control: control.Options{Dir: dir},
		Settings: map[string]string{"mode": "auto"}}
	cfg.Reread = func() (Config, error) {
		reads++
		switch reads {
		case 1:
			return cfg, nil
		case 2:
			return Config{}, errors.New("config x.yaml line 3: unknown key \"bogus\"")
		}
		c := cfg
		c.Settings = map[string]string{"mode": "native"}
		return c, nil
	}
	var d *Daemon
	a.Do(t, func() (err error) {
		d, err = Start(cfg)
		return err
	})
	closed := false
	defer func() {
		if !closed {
			d.Close()
		}
	}()
	c := control.NewClient(dir, a.Iface)
	ctx := context.Background()
	st, err := StatusEndpoint.Call(ctx, c, control.None{})
	if err != nil || st.Iface != a.Iface || st.XDP.ProgramID != uint32(d.ProgramID) {
		t.Errorf("status: got %+v, %v", st, err)
	}
	if r, err := ReloadEndpoint.Call(ctx, c, control.None{}); err != nil || len(r.Applied) != 0 {
		t.Errorf("reload of the same configuration: got %+v, %v; want nothing applied", r, err)
	}
	for _, want := range []struct {
		code int
		err  string
	}{
		{http.StatusUnprocessableEntity, "bad configuration: config x.yaml line 3: unknown key \"bogus\""},
		{http.StatusConflict, "mode changed: needs a restart (detach and attach again)"},
	} {
		_, err := ReloadEndpoint.Call(ctx, c, control.None{})
		if r, ok := errors.AsType[*control.RefusedError](err); !ok || r.Code != want.code || err.Error() != want.err {
			t.Errorf("reload: got %v, want %d %q", err, want.code, want.err)
		}
	}
	if d.cfg.Settings["mode"] != "auto" {
		t.Errorf("mode after refused reloads: %q, want auto", d.cfg.Settings["mode"])
	}

	a.Do(t, func() error {
		d2, err := Start(cfg)
		if err == nil {
			d2.Close()
			t.Errorf("second daemon on %s started", a.Iface)
		}
		return nil
	})
	if st, err := StatusEndpoint.Call(ctx, c, control.None{}); err != nil || st.XDP.ProgramID != uint32(d.ProgramID) {
		t.Errorf("status after a refused second daemon: %+v, %v", st, err)
	}
	closed = true
	if err := d.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Lstat(control.SocketPath(dir, a.Iface)); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("socket after Close: %v, want removed", err)
	}
	if _, err := StatusEndpoint.Call(ctx, c, control.None{}); !errors.Is(err, control.ErrNotRunning) {
		t.Errorf("status after Close: %v, want not running", err)
	}
}

// TestReloadBesideCLIChanges: reloads that swap the file's rules while
// `xdpstack rules add` runs beside them lose none of the CLI's rules:
// both read and write the table under the pin folder's lock.
func TestReloadBesideCLIChanges(t *testing.T) {
	a, _ := testutil.HostPair(t, 0)
	cfg := Config{Iface: a.Iface, Attach: loader.Options{PinRoot: testutil.PinRoot(t)}}
	var d *Daemon
	a.Do(t, func() (err error) {
		d, err = Start(cfg)
		return err
	})
	defer d.Close()
	files := [2]Config{cfg, cfg}
	for i := range 20 {
		files[i%2].Rules = append(files[i%2].Rules, rule(t, maps.RuleText{Local: fmt.Sprintf(":%d", 1000+i), Action: "deny"}))
	}
	const cliRules = 40
	var cli []maps.Rule
	for i := range cliRules {
		cli = append(cli, rule(t, maps.RuleText{Remote: fmt.Sprintf("192.0.2.%d", i), Action: "deny"}))
	}
	done := make(chan error, 1)
	go func() {
		for _, r := range cli {
			if err := cliAddRules(d, r); err != nil {
				done <- err
				return
			}
		}
		done <- nil
	}()
	reloads := 0
	for running := true; running; reloads++ {
		select {
		case err := <-done:
			if err != nil {
				t.Fatal(err)
			}
			running = false
		default:
		}
		if _, err := d.Reload(files[reloads%2]); err != nil {
			t.Fatal(err)
		}
	}
	got := globalRules(t, d)
	if want := cliRules + len(files[(reloads-1)%2].Rules); len(got) != want {
		t.Errorf("after %d reloads beside %d CLI changes: %d rules, want %d", reloads, cliRules, len(got), want)
	}
}

// TestSampling changes the sample rate through the control socket and
// through a reload, and has bad requests and captures refused.
func TestSampling(t *testing.T) {
	a, _ := testutil.HostPair(t, 0)
	dir := filepath.Join(t.TempDir(), "run")
	cfg := Config{Iface: a.Iface, Control: control.Options{Dir: dir}, Settings: map[string]string{"sample-rate": "2"},
		Attach: loader.Options{PinRoot: testutil.PinRoot(t), Sampling: maps.SampleSettings{Rate: 2, Snaplen: 128}}}
	var d *Daemon
	a.Do(t, func() (err error) {
		d, err = Start(cfg)
		return err
	})
	defer d.Close()
	c := control.NewClient(dir, a.Iface)
	ctx := context.Background()
	rate := func() uint32 {
		t.Helper()
		set, err := d.Maps.Sampling.Settings()
		if err != nil {
			t.Fatal(err)
		}
		return set.Rate
	}

	if got, err := SamplingEndpoint.Call(ctx, c, SamplingRequest{}); err != nil || got != (SamplingReply{Rate: 2, Snaplen: 128}) {
		t.Errorf("sampling: got %+v, %v; want rate 2, snaplen 128", got, err)
	}
	five, bad := 5, 17
	if got, err := SamplingEndpoint.Call(ctx, c, SamplingRequest{Rate: &five}); err != nil || got.Rate != 5 || rate() != 5 {
		t.Errorf("sampling rate 5: got %+v, %v, program's rate %d", got, err, rate())
	}
	_, err := SamplingEndpoint.Call(ctx, c, SamplingRequest{Rate: &bad})
	if r, ok := errors.AsType[*control.RefusedError](err); !ok || r.Code != http.StatusBadRequest || err.Error() != "sample rate 17: want 0 (off) to 16 (1 packet in 2^N)" || rate() != 5 {
		t.Errorf("sampling rate 17: got %v, rate %d; want a 400 and rate 5 kept", err, rate())
	}

	// A reload compares the file with the rate set meanwhile.
	reloaded := cfg
	reloaded.Settings = map[string]string{"sample-rate": "5"}
	if applied, err := d.Reload(reloaded); err != nil || len(applied) != 0 {
		t.Errorf("reload of the rate in force: got %v, %v; want nothing applied", applied, err)
	}
	reloaded.Settings = map[string]string{"sample-rate": "0"}
	reloaded.Attach.Sampling.Rate = 0
	if applied, err := d.Reload(reloaded); err != nil || !slices.Equal(applied, []string{"sample-rate"}) || rate() != 0 {
		t.Errorf("reload to rate 0: got %v, %v, program's rate %d", applied, err, rate())
	}

	for _, tc := range []struct {
		req  CaptureRequest
		code int
		err  string
	}{
		{CaptureRequest{Point: "xdp", Snaplen: 64}, http.StatusBadRequest, "the xdp point is captured through the pins, not the daemon"},
		{CaptureRequest{Point: "userstack", Snaplen: 0}, http.StatusBadRequest, "snaplen 0: want 1 to 65280 bytes"},
		{CaptureRequest{Point: "userstack", Snaplen: 64, Filter: "verdict drop"}, http.StatusBadRequest, "verdict, reason and rule are the XDP hook's"},
		{CaptureRequest{Point: "userstack", Snaplen: 64}, http.StatusConflict, "no userstack runs here (attach with --app, or run a program with xdpstack run)"},
		{CaptureRequest{Point: "psp", Snaplen: 64}, http.StatusConflict, "no psp gateway runs on this interface (attach with --psp-config)"},
		{CaptureRequest{Point: "psp", Snaplen: 64, Filter: "reason steered"}, http.StatusBadRequest, "verdict, reason and rule are the XDP hook's"},
	} {
		_, err := CaptureEndpoint.Open(ctx, c, tc.req)
		if r, ok := errors.AsType[*control.RefusedError](err); !ok || r.Code != tc.code || !strings.Contains(err.Error(), tc.err) {
			t.Errorf("capture %+v: got %v, want %d %q", tc.req, err, tc.code, tc.err)
		}
	}
}
