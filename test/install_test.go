package test

import (
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// TestMakeInstall stages `make install` as a package would
// (PREFIX=/usr, DESTDIR), checks the tree it leaves, that the unit runs
// the installed binary and passes systemd-analyze verify, that the
// example config passes `config check`, and that `make uninstall`
// takes every file away again.
func TestMakeInstall(t *testing.T) {
	dest, build := t.TempDir(), t.TempDir()
	vars := []string{"DESTDIR=" + dest, "PREFIX=/usr", "BIN=" + filepath.Join(build, "xdpstack")}
	runMake := func(target string) {
		t.Helper()
		// make install builds as make build does, into BIN, here a
		// folder of the test's instead of the work tree's bin/.
		out, err := exec.Command("make", append([]string{"-C", "..", target}, vars...)...).CombinedOutput()
		if err != nil {
			t.Fatalf("make %s: %v\n%s", target, err, out)
		}
	}
	runMake("install")

	want := map[string]fs.FileMode{
		"usr/bin/xdpstack":                                  0o755,
		"usr/lib/xdpstack/libxdpstack.so":                   0o755,
		"usr/lib/systemd/system/xdpstack@.service":          0o644,
		"usr/lib/systemd/system/xdpstack-bpffs.service":     0o644,
		"usr/share/doc/xdpstack/example.yaml":               0o644,
		"usr/share/bash-completion/completions/xdpstack":    0o644,
		"usr/share/zsh/vendor-completions/_xdpstack":        0o644,
		"usr/share/fish/vendor_completions.d/xdpstack.fish": 0o644,
		"usr/share/man/man1/xdpstack.1":                     0o644,
		"usr/share/man/man1/xdpstack-attach.1":              0o644,
	}
	got := installedFiles(t, dest)
	for path, mode := range want {
		if m, ok := got[path]; !ok {
			t.Errorf("make install: no %s", path)
		} else if m != mode {
			t.Errorf("make install: %s has mode %v, want %v", path, m, mode)
		}
	}
	for path, mode := range got {
		// One page per command: the test names two of them.
		if strings.HasPrefix(path, "usr/share/man/man1/xdpstack-") && strings.HasSuffix(path, ".1") && mode == 0o644 {
			continue
		}
		if _, ok := want[path]; !ok {
			t.Errorf("make install: %s, which the test does not know (add it to want)", path)
		}
	}
	bin := filepath.Join(dest, "usr/bin/xdpstack")

	unit, err := os.ReadFile(filepath.Join(dest, "usr/lib/systemd/system/xdpstack@.service"))
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range []string{
		"ExecStart=/usr/bin/xdpstack attach %i --config /etc/xdpstack/%i.yaml",
		"ExecReload=/usr/bin/xdpstack reload %i",
	} {
		if !slices.Contains(strings.Split(string(unit), "\n"), line) {
			t.Errorf("installed unit: no line %q", line)
		}
	}
	if strings.Contains(string(unit), "/usr/local") {
		t.Errorf("installed unit with PREFIX=/usr still names /usr/local")
	}
	t.Run("systemd-analyze verify", func(t *testing.T) {
		if _, err := exec.LookPath("systemd-analyze"); err != nil {
			t.Fatalf("no systemd-analyze (make deps installs the systemd package): %v", err)
		}
		// The units as installed, but for the binary's place in
		// DESTDIR, which verify checks is executable.
		dir := t.TempDir()
		staged := strings.ReplaceAll(string(unit), "/usr/bin/xdpstack", bin)
		if err := os.WriteFile(filepath.Join(dir, "xdpstack@.service"), []byte(staged), 0o644); err != nil {
			t.Fatal(err)
		}
		bpffs, err := os.ReadFile(filepath.Join(dest, "usr/lib/systemd/system/xdpstack-bpffs.service"))
		if err == nil {
			err = os.WriteFile(filepath.Join(dir, "xdpstack-bpffs.service"), bpffs, 0o644)
		}
		if err != nil {
			t.Fatal(err)
		}
		// --man=no: the man pages are checked where they are made.
		out, err := exec.Command("systemd-analyze", "verify", "--man=no",
			filepath.Join(dir, "xdpstack@eth0.service"), filepath.Join(dir, "xdpstack-bpffs.service")).CombinedOutput()
		if err != nil || len(out) > 0 {
			t.Errorf("systemd-analyze verify: %v\n%s", err, out)
		}
	})
	t.Run("example config", func(t *testing.T) {
		out, err := exec.Command(bin, "config", "check", filepath.Join(dest, "usr/share/doc/xdpstack/example.yaml")).CombinedOutput()
		if err != nil || !strings.HasPrefix(string(out), "ok: ") {
			t.Errorf("config check of the installed example: %v: %s", err, out)
		}
	})

	runMake("uninstall")
	if left := installedFiles(t, dest); len(left) > 0 {
		t.Errorf("make uninstall left %v", left)
	}
}

// installedFiles lists the files under root (not folders) with their
// permission bits, by path relative to root.
func installedFiles(t *testing.T, root string) map[string]fs.FileMode {
	t.Helper()
	files := map[string]fs.FileMode{}
	err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, path)
		files[rel] = info.Mode().Perm()
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return files
}
