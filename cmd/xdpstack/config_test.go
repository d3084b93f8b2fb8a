package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/urfave/cli/v2"

	"github.com/xdpstack/xdpstack/loader"
)

func writeConfig(t *testing.T, text string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "xdpstack.yaml")
	if err := os.WriteFile(path, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// TestConfigErrors: each bad file fails in one line that names the key
// and its line, whether the form or the value is wrong.
func TestConfigErrors(t *testing.T) {
	for _, tc := range []struct {
		name, text, want string
	}{
		{"unknown key", "mode: auto\nbogus: 1\n", `line 2: unknown key "bogus" (known: apps, check-checksums, control-group,`},
		{"key twice", "mode: auto\nmode: native\n", "line 2: mode given twice (first on line 1)"},
		{"not a mapping", "- mode\n", "line 1: want keys and values (key: value), got a list"},
		{"second document", "mode: auto\n---\nmode: native\n", "line 2: a second document (one document only)"},
		{"syntax", "mode: [auto\n", "line 1: did not find expected ',' or ']'"},
		{"bool", "\n\ntcp-sack: yes\n", `line 3: tcp-sack: want true or false, got "yes"`},
		{"int", "tcp-backlog: lots\n", `line 1: tcp-backlog: want a whole number, got "lots"`},
		{"int past int64", "tcp-backlog: 99999999999999999999\n", `line 1: tcp-backlog: want a whole number, got "99999999999999999999"`},
		{"string is a list", "mode:\n  - native\n", "line 2: mode: want a value (write \"\" for none), got a list"},
		{"string is null", "metrics-addr:\n", "line 1: metrics-addr: want a value (write \"\" for none), got nothing"},
		{"bad mode", "mode: fast\n", `line 1: mode: unknown XDP mode "fast"`},
		{"bad metrics addr", "metrics-addr: nope\n", `line 1: metrics-addr "nope"`},
		{"bad congestion control", "tcp-cc: bbr\n", `line 1: tcp-cc: tcp congestion control "bbr": want cubic or reno`},
		{"tiny buffer", "tcp-send-buffer: 100\n", "line 1: tcp-send-buffer: tcp send buffer 100: want 4096 to 1073741824 bytes"},
		{"bad size", "tcp-receive-buffer: lots\n", `line 1: tcp-receive-buffer: "lots" is not a byte count`},
		{"backlog 0", "tcp-backlog: 0\n", "line 1: tcp-backlog 0: want 1 to 65535"},
		{"huge backlog", "tcp-backlog: 70000\n", "line 1: tcp-backlog: tcp backlog 70000: want 1 to 65535"},
		{"procs", "procs: 0\n", `line 1: procs "0": want auto or a number from 1 to 4096`},
		{"log level", "log-level: loud\n", `line 1: log-level "loud": want debug, info, warn or error`},
		{"log format", "log-format: xml\n", `line 1: log-format "xml": want text or json`},
		{"control group", "control-group: xs-nosuch-group\n", `line 1: control-group: no group "xs-nosuch-group"`},
		{"root missing", "root: /nonexistent/www\n", "line 1: root"},
		{"apps not a list", "apps: echo=tcp://:7\n", `line 1: apps: want a list, got "echo=tcp://:7"`},
		{"bad app spec", "apps:\n  - echo=tcp://:7\n  - nosuch=tcp://:8\n", `line 3: apps: app "nosuch=tcp://:8": unknown app "nosuch"`},
		{"bad app part", "apps:\n  - name: echo\n    uri: tcp://:0\n", "line 2: apps: app echo: uri tcp://:0: an app needs a port"},
		{"bad app uri", "apps:\n  - name: echo\n    uri: ftp://:7\n", "line 2: apps: app echo:"},
		{"unknown app key", "apps:\n  - name: echo\n    uri: tcp://:7\n    port: 7\n", `line 4: apps: unknown key "port" (known: name, uri, options)`},
		{"app without uri", "apps:\n  - name: echo\n", "line 2: apps: an app needs a name and a uri"},
		{"app option", "apps:\n  - name: echo\n    uri: tcp://:7\n    options:\n      cert: x.pem\n", "line 2: apps: app echo: cert, key and test-cert go with tls:// or quic://"},
		{"app option not a mapping", "apps:\n  - name: echo\n    uri: tcp://:7\n    options: [a]\n", "line 4: apps: options: want opt: val pairs, got a list"},
		{"two apps on a port", "apps:\n  - echo=tcp://:7\n  - http=tcp://:7\n", "line 2: apps: apps echo=tcp://:7 and http=tcp://:7: both on tcp port 7"},
		{"namespaces", "namespaces:\n  - name: blue\n", "line 1: namespaces: not supported yet (leave it out or empty)"},
		{"rules", "\nrules: {allow: all}\n", "line 2: rules: not supported yet (leave it out or empty)"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := writeConfig(t, tc.text)
			f, err := readConfig(path)
			if err == nil {
				_, err = settings{file: f}.check()
			}
			want := "config " + path + " " + tc.want
			if err == nil || !strings.HasPrefix(err.Error(), want) || strings.Contains(err.Error(), "\n") {
				t.Errorf("config %q: got %v, want one line starting %q", tc.text, err, want)
			}
		})
	}
	if _, err := readConfig("/nonexistent.yaml"); err == nil || err.Error() != "config: open /nonexistent.yaml: no such file or directory" {
		t.Errorf("missing file: got %v", err)
	}
}

// TestConfigGood: empty files, empty later sections and both forms of
// apps are accepted, with defaults for what is left out.
func TestConfigGood(t *testing.T) {
	for _, text := range []string{"", "# nothing\n", "namespaces:\nrules: []\n", "namespaces: {}\n"} {
		f, err := parseConfig("x.yaml", []byte(text))
		if err == nil {
			_, err = settings{file: f}.check()
		}
		if err != nil {
			t.Errorf("config %q: %v", text, err)
		}
	}
	f, err := parseConfig("x.yaml", []byte("apps:\n  - echo=tcp://:7\n  - name: http\n    uri: tcp://:80\n    options: {status: all}\n"))
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := settings{file: f}.check()
	if err != nil || len(cfg.Apps) != 2 || cfg.Apps[1].String() != "http=tcp://:80" || cfg.Apps[1].Opts["status"] != "all" {
		t.Fatalf("apps: got %+v, %v", cfg.Apps, err)
	}
	if cfg.Attach.Mode != loader.ModeAuto || cfg.MetricsAddr != "127.0.0.1:9437" || cfg.Userstack.TCP.Backlog != 4096 || cfg.Control.Group != nil {
		t.Errorf("defaults: got %+v", cfg)
	}
	if got := cfg.Settings["apps"]; got != "echo=tcp://:7\nhttp=tcp://:80,status=all" {
		t.Errorf("apps as text: %q", got)
	}
}

// runAttachSettings runs the attach command line args up to its action
// and returns its settings.
func runAttachSettings(t *testing.T, args ...string) settings {
	t.Helper()
	app := newApp()
	var s settings
	for _, cmd := range app.Commands {
		if cmd.Name == "attach" {
			cmd.Before = nil
			cmd.Action = func(c *cli.Context) (err error) {
				s, err = attachSettings(c)
				return err
			}
		}
	}
	args, err := flagsFirst(app, append([]string{"xdpstack", "attach"}, args...))
	if err == nil {
		err = app.Run(args)
	}
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// TestConfigEveryFlag: every flag of attach has a key in the config
// file, which sets what the flag sets.
func TestConfigEveryFlag(t *testing.T) {
	var text strings.Builder
	want := map[string]any{}
	for _, f := range append(attachCommand().Flags, logFlags...) {
		name := f.Names()[0]
		switch f := f.(type) {
		case *cli.StringFlag:
			if name == "config" {
				continue
			}
			want[name] = f.Value + "x" // a value other than the default
		case *cli.BoolFlag:
			want[name] = !f.Value
		case *cli.IntFlag:
			want[name] = f.Value + 1
		case *cli.StringSliceFlag:
			fmt.Fprintf(&text, "%s:\n  - echo=tcp://:7\n", keyOfFlag(name))
			continue
		default:
			t.Fatalf("flag --%s is a %T, which the config file cannot hold", name, f)
		}
		if v, ok := want[name].(string); ok {
			fmt.Fprintf(&text, "%s: %q\n", name, v)
		} else {
			fmt.Fprintf(&text, "%s: %v\n", name, want[name])
		}
	}
	s := runAttachSettings(t, "--config", writeConfig(t, text.String()), "eth0")
	for key, v := range want {
		if got := s.value(key); got != v {
			t.Errorf("%s: got %v, want %v from the file", key, got, v)
		}
		if l := s.label(key); !strings.HasSuffix(l, ": "+key) || !strings.Contains(l, " line ") {
			t.Errorf("label of %s: %q, want the file's line", key, l)
		}
	}
	if v := s.file.values["apps"]; len(v.value.([]configApp)) != 1 {
		t.Errorf("apps: got %+v", v)
	}
}

// TestConfigFlagsOverride: a flag given wins over the file; the file
// wins over a flag's default.
func TestConfigFlagsOverride(t *testing.T) {
	path := writeConfig(t, "mode: generic\ntcp-sack: false\ntcp-backlog: 10\nprocs: \"2\"\napps:\n  - echo=tcp://:7\n")
	s := runAttachSettings(t, "eth0", "--config", path, "--mode", "native", "--tcp-sack", "--app", "http=tcp://:80", "--procs", "auto")
	for key, want := range map[string]any{"mode": "native", "tcp-sack": true, "procs": "auto", "tcp-backlog": 10, "tcp-cc": "reno"} {
		if got := s.value(key); got != want {
			t.Errorf("%s: got %v, want %v", key, got, want)
		}
	}
	if l := s.label("mode"); l != "--mode" {
		t.Errorf("label of an overridden key: %q, want --mode", l)
	}
	if l := s.label("tcp-backlog"); l != "config "+path+" line 3: tcp-backlog" {
		t.Errorf("label of a key from the file: %q", l)
	}
	specs, err := s.apps()
	if err != nil || len(specs) != 1 || specs[0].Name != "http" {
		t.Errorf("apps: --app must replace the file's: got %v, %v", specs, err)
	}
	cfg, err := s.check()
	if err != nil || cfg.Attach.Mode != loader.ModeNative || cfg.Userstack.TCP.Backlog != 10 || cfg.Userstack.TCP.NoSACK {
		t.Errorf("check: got %+v, %v", cfg, err)
	}
	if cfg.Settings["mode"] != "native" || cfg.Settings["apps"] != "http=tcp://:80" {
		t.Errorf("settings as text: %v", cfg.Settings)
	}
}

// TestConfigExample: the README's example file is one that attach
// takes, and it sets every key.
func TestConfigExample(t *testing.T) {
	f, err := readConfig("testdata/xdpstack.example.yaml")
	if err != nil {
		t.Fatal(err)
	}
	www := t.TempDir()
	f.values["root"] = configValue{line: f.values["root"].line, value: www} // /srv/www need not exist here
	if _, err := (settings{file: f}).check(); err != nil {
		t.Fatal(err)
	}
	for key := range configKeys() {
		if _, ok := f.values[key]; !ok {
			t.Errorf("the example leaves out %s", key)
		}
	}
}

// TestConfigCheckHidesSecret: config check prints the apps' namespaces
// and scopes, never their secrets, whether the file is good or bad.
func TestConfigCheckHidesSecret(t *testing.T) {
	const secret = "hunter2-secret"
	good := writeConfig(t, "apps:\n  - echo=tcp://:7,ns=blue,secret="+secret+",scope=both\n  - name: http\n    uri: tcp://:80\n    options: {ns: red, secret: "+secret+"}\n")
	code, stdout, stderr := run(t, "config", "check", good)
	if code != 0 || !strings.Contains(stdout, "app echo=tcp://:7,ns=blue,scope=both, app http=tcp://:80,ns=red") || strings.Contains(stdout+stderr, secret) {
		t.Errorf("config check of a good file: exit %d, %q %q", code, stdout, stderr)
	}
	for _, text := range []string{
		"apps:\n  - echo=tcp://:7,ns=blue,secret=" + secret + ",bogus=1\n",
		"apps:\n  - echo=tcp://:7,ns=blue,secert=" + secret + "\n",
		"apps:\n  - name: echo\n    uri: tcp://:7\n    options: {secret: " + secret + "}\n",
	} {
		code, stdout, stderr := run(t, "config", "check", writeConfig(t, text))
		if code == 0 || strings.Contains(stdout+stderr, secret) {
			t.Errorf("config check of %q: exit %d, %q %q; want a failure that hides the secret", text, code, stdout, stderr)
		}
	}
}
