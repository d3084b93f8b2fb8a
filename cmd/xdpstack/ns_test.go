package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestNsBadInput: what the CLI can tell wrong it refuses in one line
// before it asks a daemon, and no error shows a secret; with no daemon,
// the verbs say so in one line.
func TestNsBadInput(t *testing.T) {
	dir := t.TempDir()
	open := filepath.Join(dir, "open.secret")
	os.WriteFile(open, []byte("open-secret\n"), 0o644)
	os.Chmod(open, 0o644)
	empty := filepath.Join(dir, "empty.secret")
	os.WriteFile(empty, nil, 0o600)
	good := filepath.Join(dir, "good.secret")
	os.WriteFile(good, []byte("good-secret\n"), 0o600)
	runDir := filepath.Join(dir, "run")
	for _, tc := range []struct {
		name string
		args []string
		want string
	}{
		{"no name", []string{"ns", "add", "xs0"}, `ns add: want IFACE and NAME, got ["xs0"]`},
		{"bad name", []string{"ns", "add", "xs0", "a/b", "--secret", "s"}, `ns add: namespace "a/b": want letters, digits and -_. only`},
		{"bad iface", []string{"ns", "del", "../x", "blue"}, `interface name "../x"`},
		{"no secret", []string{"ns", "add", "xs0", "blue"}, "ns add: --secret or --secret-file missing"},
		{"both secrets", []string{"ns", "add", "xs0", "blue", "--secret", "s", "--secret-file", good}, "--secret and --secret-file both given"},
		{"secret file others read", []string{"ns", "add", "xs0", "blue", "--secret-file", open}, "--secret-file " + open + ": mode 0644 lets others than its owner at the secret (chmod 600 " + open + ")"},
		{"empty secret file", []string{"ns", "add", "xs0", "blue", "--secret-file", empty}, "--secret-file " + empty + ": empty"},
		{"bad address", []string{"ns", "add", "xs0", "blue", "--secret", "s", "--addr", "10.0.0.300"}, `ns add: --addr "10.0.0.300": not an IP address`},
		{"no daemon", []string{"--run-dir", runDir, "ns", "add", "xs0", "blue", "--secret-file", good, "--addr", "10.0.0.1"}, "ns add xs0: xdpstack is not running on xs0 (no daemon answers on " + runDir + "/xs0.sock)"},
		{"list with no daemon", []string{"--run-dir", runDir, "ns", "list", "xs0"}, "ns list xs0: xdpstack is not running on xs0"},
		{"local rule with no daemon", []string{"--run-dir", runDir, "rules", "add", "xs0", "--namespace", "blue", "--remote", "192.0.2.0/24", "--action", "deny"}, "rules add xs0: xdpstack is not running on xs0"},
		{"bad local rule", []string{"--run-dir", runDir, "rules", "add", "xs0", "--namespace", "blue", "--remote", "192.0.2.0/33", "--action", "deny"}, `rules add: --remote: "192.0.2.0/33": not an address or prefix`},
		{"empty flag", []string{"rules", "del", "xs0", "--namespace", "blue", "--local", ""}, "rules del: --local: empty"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			code, stdout, stderr := run(t, tc.args...)
			if code == 0 || !strings.Contains(stderr, tc.want) || strings.Count(stderr, "\n") != 1 || stdout != "" {
				t.Errorf("exit %d, stdout %q, stderr %q; want one line with %q", code, stdout, stderr, tc.want)
			}
			for _, secret := range []string{"open-secret", "good-secret"} {
				if strings.Contains(stderr, secret) {
					t.Errorf("stderr %q shows a secret", stderr)
				}
			}
		})
	}
}
