package daemon

import (
	"context"
	"errors"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/xdpstack/xdpstack/daemon/control"
	"github.com/xdpstack/xdpstack/internal/testing/testutil"
	"github.com/xdpstack/xdpstack/loader"
	"github.com/xdpstack/xdpstack/maps"
)

func TestReload(t *testing.T) {
	running := map[string]string{"mode": "auto", "metrics-addr": "127.0.0.1:9437", "namespaces": "", "rules": ""}
	with := func(k, v string) map[string]string {
		s := map[string]string{}
		for k, v := range running {
			s[k] = v
		}
		s[k] = v
		return s
	}
	for _, tc := range []struct {
		name     string
		settings map[string]string
		applied  []string
		err      string
	}{
		{"same", running, nil, ""},
		{"rules", with("rules", "[a rule]"), []string{"rules"}, ""},
		{"mode", with("mode", "native"), nil, "mode changed: needs a restart (detach and attach again)"},
		{"new key", with("tcp-cc", "cubic"), nil, "tcp-cc changed: needs a restart (detach and attach again)"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d := &Daemon{cfg: Config{Settings: running}}
			applied, err := d.Reload(Config{Settings: tc.settings})
			if !slices.Equal(applied, tc.applied) || (err == nil) != (tc.err == "") || err != nil && err.Error() != tc.err {
				t.Fatalf("Reload: got %v, %v; want %v, %q", applied, err, tc.applied, tc.err)
			}
			want := tc.settings
			if err != nil {
				want = running // a refused reload changes nothing
			}
			if !mapsEqual(d.cfg.Settings, want) {
				t.Errorf("settings after Reload: %v, want %v", d.cfg.Settings, want)
			}
		})
	}
	t.Run("two keys", func(t *testing.T) {
		d := &Daemon{cfg: Config{Settings: running}}
		s := with("mode", "native")
		s["metrics-addr"] = ""
		if _, err := d.Reload(Config{Settings: s}); err == nil || err.Error() != "metrics-addr, mode changed: need a restart (detach and attach again)" {
			t.Errorf("Reload of two fixed keys: %v", err)
		}
	})
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
		{CaptureRequest{Point: "userstack", Snaplen: 64}, http.StatusConflict, "no userstack runs here (attach with --app)"},
	} {
		_, err := CaptureEndpoint.Open(ctx, c, tc.req)
		if r, ok := errors.AsType[*control.RefusedError](err); !ok || r.Code != tc.code || !strings.Contains(err.Error(), tc.err) {
			t.Errorf("capture %+v: got %v, want %d %q", tc.req, err, tc.code, tc.err)
		}
	}
}
