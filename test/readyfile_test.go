package test

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/xdpstack/xdpstack/internal/testing/testutil"
)

// TestReadyFilePlantedSymlink plants a symlink at the ready file's
// predictable temporary name, PATH.tmp, pointing at a file of someone
// else's: attach writes its ready file without following it, with the
// mode the umask leaves, and removes it on exit.
func TestReadyFilePlantedSymlink(t *testing.T) {
	a, _ := testutil.HostPair(t, 0)
	root := testutil.PinRoot(t)
	dir := t.TempDir()
	secret := filepath.Join(dir, "secret")
	if err := os.WriteFile(secret, []byte("keep"), 0o600); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "ready")
	if err := os.Symlink(secret, path+".tmp"); err != nil {
		t.Fatal(err)
	}

	cmd := a.Command(context.Background(), binary, "--pin-root", root, "attach", a.Iface, "--metrics-addr", "", "--ready-file", path)
	out := &testutil.SyncBuffer{}
	cmd.Stdout, cmd.Stderr = out, out
	old := syscall.Umask(0o077) // the child inherits it
	err := cmd.Start()
	syscall.Umask(old)
	if err != nil {
		t.Fatal(err)
	}
	d := &daemon{cmd: cmd, output: out, exited: make(chan error, 1)}
	go func() { d.exited <- cmd.Wait() }()
	t.Cleanup(func() { d.stop(t) })

	for deadline := time.Now().Add(20 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		if _, err := os.Stat(path); err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no ready file after 20s:\n%s", out)
		}
	}
	b, _ := os.ReadFile(path)
	if err := json.Unmarshal(b, &d.ready); err != nil || d.ready.Iface != a.Iface {
		t.Errorf("ready file %q: %v", b, err)
	}
	if st, err := os.Lstat(path); err != nil || st.Mode() != 0o600 {
		t.Errorf("ready file: %v, %v; want a regular file of mode 0600 (0644 under umask 077)", st.Mode(), err)
	}
	if b, _ := os.ReadFile(secret); string(b) != "keep" {
		t.Errorf("the planted symlink's target now holds %q", b)
	}
	if err := d.signal(t, syscall.SIGTERM); err != nil {
		t.Fatalf("exit: %v\n%s", err, out)
	}
	if _, err := os.Stat(path); !os.IsNotExist(err) {
		t.Errorf("ready file still there after exit (%v)", err)
	}
	checkClean(t, a, root)
}
