package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestInterfaceNames: every verb that takes an interface name refuses
// one that no interface can have, in one line, and what such a name
// would lead to outside the pin root stays as it is.
func TestInterfaceNames(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("the verbs need root before they read their arguments")
	}
	base := t.TempDir()
	root := filepath.Join(base, "a", "b")
	victim := filepath.Join(base, "victim", "file")
	for _, f := range []string{victim, filepath.Join(root, "keep")} {
		if err := os.MkdirAll(filepath.Dir(f), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(f, []byte("mine"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	for _, name := range []string{"../../victim", "..", ".", "a/b", "eth0:1", "eth 0", "sixteen-bytes-xx"} {
		for _, args := range [][]string{
			{"attach", name, "--metrics-addr", ""},
			{"detach", name, "--force"},
			{"status", name},
			{"stats", name},
			{"reload", name},
			{"echo", "client", "--iface", name, "--uri", "tcp://10.0.0.1:7"},
			{"run", "--iface", name, "true"},
		} {
			args = append([]string{"--pin-root", root}, args...)
			t.Run(strings.Join(args, " "), func(t *testing.T) {
				code, stdout, stderr := run(t, args...)
				if code == 0 || !strings.Contains(stderr, "interface name ") || strings.Count(stderr, "\n") != 1 || stdout != "" {
					t.Errorf("exit %d, stdout %q, stderr %q; want one line refusing the name", code, stdout, stderr)
				}
				for _, f := range []string{victim, filepath.Join(root, "keep")} {
					if _, err := os.Stat(f); err != nil {
						t.Fatalf("%s is gone: %v", f, err)
					}
				}
			})
		}
	}
}
