package atomicfile

import (
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

func write(t *testing.T, path string, perm os.FileMode, data string) error {
	t.Helper()
	f, err := Create(path, perm)
	if err != nil {
		return err
	}
	if _, err := f.WriteString(data); err != nil {
		f.Abort()
		return err
	}
	return f.Commit()
}

func entries(t *testing.T, dir string) []string {
	t.Helper()
	es, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range es {
		names = append(names, e.Name())
	}
	return names
}

// TestPlantedSymlinks: symlinks planted at the predictable names, the
// file's own and PATH.tmp, never lead the write to their targets.
func TestPlantedSymlinks(t *testing.T) {
	dir := t.TempDir()
	secret := filepath.Join(dir, "secret")
	if err := os.WriteFile(secret, []byte("keep"), 0o600); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "ready")
	for _, link := range []string{path + ".tmp", path} {
		if err := os.Symlink(secret, link); err != nil {
			t.Fatal(err)
		}
	}
	if err := write(t, path, 0o644, "hello"); err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(secret); string(b) != "keep" {
		t.Errorf("the symlinks' target now holds %q", b)
	}
	if st, err := os.Lstat(path); err != nil || !st.Mode().IsRegular() {
		t.Errorf("%s: %v, %v; want a regular file in place of the symlink", path, st, err)
	}
	if b, _ := os.ReadFile(path); string(b) != "hello" {
		t.Errorf("%s holds %q", path, b)
	}
	if got := entries(t, dir); len(got) != 3 {
		t.Errorf("folder holds %v, want secret, ready and ready.tmp alone", got)
	}
}

func TestUmask(t *testing.T) {
	old := syscall.Umask(0o027)
	defer syscall.Umask(old)
	path := filepath.Join(t.TempDir(), "out")
	if err := write(t, path, 0o666, "x"); err != nil {
		t.Fatal(err)
	}
	if st, err := os.Stat(path); err != nil || st.Mode().Perm() != 0o640 {
		t.Errorf("mode %v, %v; want 0640 (0666 under umask 027)", st.Mode().Perm(), err)
	}
}

func TestRefused(t *testing.T) {
	dir := t.TempDir()
	for _, tc := range []struct{ path, want string }{
		{dir, "is a folder"},
		{"/dev/null", "not a regular file"},
		{filepath.Join(dir, "missing", "f"), "no such file"},
		{"/proc/self/ready", "create a file in /proc/self"},
		{"/proc/sys/net/ipv4/ip_forward", "create a file in /proc/sys/net/ipv4"},
	} {
		if _, err := Create(tc.path, 0o644); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("Create(%s): got %v, want an error with %q", tc.path, err, tc.want)
		}
	}
}

func TestAbort(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "out")
	if err := os.WriteFile(path, []byte("old"), 0o644); err != nil {
		t.Fatal(err)
	}
	f, err := Create(path, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	f.WriteString("new")
	f.Abort()
	if b, _ := os.ReadFile(path); string(b) != "old" || len(entries(t, dir)) != 1 {
		t.Errorf("after Abort: %s holds %q, folder %v; want it as it was", path, b, entries(t, dir))
	}
}
