package main

import (
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/xdpstack/xdpstack/loader"
	"github.com/xdpstack/xdpstack/userstack/psp/keyx"
	"github.com/xdpstack/xdpstack/userstack/psp/pspconfig"
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
		{"rules not a list", "\nrules: {allow: all}\n", "line 2: rules: want a list, got a mapping"},
		{"rule not a mapping", "rules:\n  - deny\n", `line 2: rules: want a rule (proto, local, remote, action, tag), got "deny"`},
		{"unknown rule key", "rules:\n  - action: deny\n    port: 22\n", `line 3: rules: unknown key "port" (known: proto, local, remote, action, tag)`},
		{"rule key twice", "rules:\n  - action: deny\n    action: allow\n", "line 3: rules: action given twice (first on line 2)"},
		{"rule value a list", "rules:\n  - action: [deny]\n", "line 2: rules: action: want a value, got a list"},
		{"rule without action", "rules:\n  - local: \":22\"\n", "line 2: rules: action: missing (want allow, deny or pass)"},
		{"bad rule action", "rules:\n  - proto: tcp\n    local: :22\n    action: reject\n", `line 4: rules: action: action "reject": want allow, deny or pass`},
		{"bad rule proto", "rules:\n  - proto: icmp\n    action: deny\n", `line 2: rules: proto: protocol "icmp": want tcp, udp or any`},
		{"bad rule prefix", "rules:\n  - action: deny\n    remote: 10.0.0.0/33\n", `line 3: rules: remote: "10.0.0.0/33": not an address or prefix`},
		{"bad rule port", "rules:\n  - action: deny\n\n    local: 10.0.0.1:70000\n", `line 4: rules: local: "10.0.0.1:70000": port "70000" is not 0 to 65535`},
		{"bad rule tag", "rules:\n  - action: deny\n    tag: a b\n", `line 3: rules: tag: tag "a b": want letters`},
		{"rule of two families", "rules:\n  - action: deny\n    local: 10.0.0.1\n    remote: 2001:db8::1\n", "line 2: rules: local 10.0.0.1/32 and remote 2001:db8::1/128: prefixes of different families"},
		{"one match twice", "rules:\n  - {local: \":22\", action: deny}\n  - {local: \":22\", proto: any, action: allow}\n", "line 3: rules: the rule on line 2 has the same match"},
		{"namespaces not a list", "namespaces: blue\n", `line 1: namespaces: want a list, got "blue"`},
		{"namespace without name", "namespaces:\n  - secret: s\n", "line 2: namespaces: a namespace needs a name"},
		{"unknown namespace key", "namespaces:\n  - name: blue\n    secret: s\n    addr: 10.0.0.1\n", `line 4: namespaces: unknown key "addr" (known: name, secret, secret-file, addrs, rules)`},
		{"namespace without secret", "namespaces:\n  - name: blue\n", "line 2: namespaces: namespace blue: needs a secret"},
		{"secret and secret file", "namespaces:\n  - name: blue\n    secret: s\n    secret-file: /x\n", "line 2: namespaces: blue: secret and secret-file both given"},
		{"bad namespace name", "namespaces:\n  - name: a/b\n    secret: s\n", `line 2: namespaces: namespace "a/b": want letters, digits and -_. only`},
		{"default with a secret", "namespaces:\n  - name: default\n    secret: s\n", "line 2: namespaces: namespace default: has no secret"},
		{"namespace twice", "namespaces:\n  - {name: blue, secret: s}\n  - {name: red, secret: t}\n  - {name: blue, secret: u}\n", "line 4: namespaces: blue: given twice (first on line 2)"},
		{"bad address", "namespaces:\n  - name: blue\n    secret: s\n    addrs:\n      - 10.0.0.1\n      - 10.0.0.300\n", `line 6: namespaces: blue: addrs: "10.0.0.300": not an IP address`},
		{"addrs not a list", "namespaces:\n  - name: blue\n    secret: s\n    addrs: 10.0.0.1\n", `line 4: namespaces: addrs: want a list, got "10.0.0.1"`},
		{"address of two namespaces", "namespaces:\n  - {name: blue, secret: s, addrs: [10.0.0.1]}\n  - {name: red, secret: t, addrs: [10.0.0.2, 10.0.0.1]}\n", "line 3: namespaces: red: addrs: 10.0.0.1 belongs to namespace blue (line 2)"},
		{"address twice", "namespaces:\n  - {name: blue, secret: s, addrs: [10.0.0.1, 10.0.0.1]}\n", "line 2: namespaces: namespace blue: address 10.0.0.1 given twice"},
		{"bad local rule", "namespaces:\n  - name: blue\n    secret: s\n    rules:\n      - remote: 192.0.2.0/24\n        action: drop\n", `line 6: namespaces: blue: rules: action: action "drop": want allow, deny or pass`},
		{"local pass rule", "namespaces:\n  - name: blue\n    secret: s\n    rules:\n      - {remote: 192.0.2.0/24, action: pass}\n", "line 5: namespaces: blue: rules: action: pass is for global rules only"},
		{"secret file missing", "namespaces:\n  - name: blue\n    secret-file: /nonexistent/blue.secret\n", "line 3: namespaces: blue: secret-file /nonexistent/blue.secret: no such file or directory"},
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
	for _, text := range []string{"", "# nothing\n", "namespaces:\nrules: []\n", "namespaces: []\n"} {
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
	// nor /etc/xdpstack/web.secret
	secret := filepath.Join(t.TempDir(), "web.secret")
	os.WriteFile(secret, []byte("s3cret\n"), 0o600)
	f.values["namespaces"].value.([]configNamespace)[0].secretFile = secret
	// nor the PSP gateway's certificates in /etc/xdpstack/psp
	ca, err := keyx.NewCA("test ca", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	node, err := keyx.NewNode(ca, "node", []netip.Addr{netip.MustParseAddr("192.0.2.1")}, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	certs := t.TempDir()
	for key, data := range map[string][]byte{"psp-cert": node.Cert, "psp-key": node.Key, "psp-ca": ca.Cert} {
		path := filepath.Join(certs, key)
		os.WriteFile(path, data, 0o600)
		f.values[key] = configValue{line: f.values[key].line, value: path}
	}
	cfg, err := (settings{file: f}).check()
	if err != nil {
		t.Fatal(err)
	}
	if len(cfg.Namespaces) != 2 || len(cfg.Rules) != 3 {
		t.Errorf("the example's namespaces %v and rules %v, want 2 and 3", cfg.Namespaces, cfg.Rules)
	}
	for key := range configKeys() {
		if _, ok := f.values[key]; !ok {
			t.Errorf("the example leaves out %s", key)
		}
	}
}

// TestConfigNamespacesAndRules reads both sections whole, a secret from
// a file among them, and refuses a secret file that others may read,
// without showing the secret.
func TestConfigNamespacesAndRules(t *testing.T) {
	dir := t.TempDir()
	secretFile := filepath.Join(dir, "blue.secret")
	os.WriteFile(secretFile, []byte("blue-secret\n"), 0o600)
	text := fmt.Sprintf(`namespaces:
  - name: blue
    secret-file: %s
    addrs: [10.0.0.1, "2001:db8::1"]
    rules:
      - {proto: tcp, remote: 192.0.2.0/24, action: deny, tag: no-doc}
  - name: red
    secret: red-secret
  - name: default
    rules:
      - {remote: "[2001:db8:1::/48]:25", action: deny}
rules:
  - proto: tcp
    local: :22
    action: deny
    tag: no-ssh
  - {proto: udp, local: "[2001:db8::/32]:53", action: pass}
`, secretFile)
	f, err := parseConfig("x.yaml", []byte(text))
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := settings{file: f}.check()
	if err != nil {
		t.Fatal(err)
	}
	ns := cfg.Namespaces
	if len(ns) != 3 || ns[0].Name != "blue" || ns[0].Secret != "blue-secret" || fmt.Sprint(ns[0].Addrs) != "[10.0.0.1 2001:db8::1]" ||
		len(ns[0].Rules) != 1 || ns[0].Rules[0].String() != "--proto tcp --local 0.0.0.0/0 --remote 192.0.2.0/24 --action deny --tag no-doc" ||
		ns[1].Secret != "red-secret" || ns[2].Name != "default" || len(ns[2].Rules) != 1 {
		t.Errorf("namespaces: got %+v", ns)
	}
	if len(cfg.Rules) != 2 || cfg.Rules[0].String() != "--proto tcp --local :22 --remote any --action deny --tag no-ssh" ||
		cfg.Rules[1].String() != "--proto udp --local [2001:db8::/32]:53 --remote ::/0 --action pass" {
		t.Errorf("rules: got %v", cfg.Rules)
	}
	if _, ok := cfg.Settings["namespaces"]; ok {
		t.Error("the namespaces are in the settings a reload refuses to change")
	}
	path := writeConfig(t, text)
	if code, out, errOut := run(t, "config", "check", path); code != 0 || out != "ok: "+path+": auto mode, metrics on 127.0.0.1:9437, 3 namespaces, 2 global rules\n" {
		t.Errorf("config check: exit %d, %q, %q", code, out, errOut)
	}

	os.Chmod(secretFile, 0o640)
	_, err = settings{file: f}.check()
	want := "config x.yaml line 3: namespaces: blue: secret-file " + secretFile + ": mode 0640 lets others than its owner at the secret (chmod 600 " + secretFile + ")"
	if err == nil || err.Error() != want {
		t.Errorf("secret file others may read: got %v, want %q", err, want)
	}
	os.WriteFile(secretFile, []byte("secret-one\nsecret-two\n"), 0o600)
	os.Chmod(secretFile, 0o600)
	if _, err = (settings{file: f}).check(); err == nil || !strings.Contains(err.Error(), "more than one line") || strings.Contains(err.Error(), "secret-one") {
		t.Errorf("secret file of two lines: got %v", err)
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

// TestConfigPSP: the psp section reads as DOCA's JSON tree, and a bad
// value fails with its line and the key's path.
func TestConfigPSP(t *testing.T) {
	good := "psp:\n  config: {local-grpc-address: \"192.0.2.1:3000\"}\n  peers:\n    - remote-grpc-address: 192.0.2.2\n      sessions:\n        - {local-vip: 10.9.0.1, remote-vips: [10.9.0.2]}\n"
	f, err := readConfig(writeConfig(t, good))
	if err != nil {
		t.Fatal(err)
	}
	if c := f.values["psp"].value.(*pspconfig.Config); c.Peers[0].GRPC != "192.0.2.2:3000" {
		t.Fatalf("psp section read as %+v", c)
	}
	for _, tc := range []struct{ text, want string }{
		{"psp: [1]\n", "line 1: psp: want an object of config, peers, got a list"},
		{"psp:\n  peers: []\n", "line 2: psp: config.local-grpc-address: missing"},
		{strings.Replace(good, "10.9.0.2]", "10.9.0.2, nope]", 1), `line 6: psp: peers[0].sessions[0].remote-vips[1]: "nope" is not an address or prefix`},
		{strings.Replace(good, "sessions:", "session:", 1), `line 5: psp: peers[0].session: unknown key (known: remote-grpc-address, sessions)`},
	} {
		_, err := readConfig(writeConfig(t, tc.text))
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%q: got %v, want %q", tc.text, err, tc.want)
		}
	}
}
