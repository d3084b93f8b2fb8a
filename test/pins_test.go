package test

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/xdpstack/xdpstack/internal/testing/testutil"
)

// TestPinsOfOthersSurvive runs the binary beside pins that are not
// xdpstack's, on the BPF filesystem that everyone shares: a victim
// folder that names with ".." lead to, iproute2's tc/globals and a
// folder of someone else's map under the pin root. Names that lead out
// of the pin root are refused, status and stats pass the foreign
// folders over, and every foreign pin outlives the daemon.
func TestPinsOfOthersSurvive(t *testing.T) {
	if _, err := exec.LookPath("bpftool"); err != nil {
		t.Skip("needs bpftool")
	}
	a, _ := testutil.HostPair(t, 0)
	base := testutil.PinRoot(t)
	root := filepath.Join(base, "pins", "xdp")
	pin := func(path string) string {
		t.Helper()
		if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
			t.Fatal(err)
		}
		if out, err := exec.Command("bpftool", "map", "create", path, "type", "array", "key", "4", "value", "8", "entries", "4", "name", "foreign").CombinedOutput(); err != nil {
			t.Fatalf("bpftool map create %s: %v\n%s", path, err, out)
		}
		return path
	}
	foreign := []string{
		pin(filepath.Join(base, "victim", "map")), // ../../victim from root
		pin(filepath.Join(base, "pins", "map")),   // .. from root
		pin(filepath.Join(root, "xsforeign", "foreign_map")),
	}
	globals := filepath.Join(root, "tc", "globals")
	if err := os.MkdirAll(globals, 0o700); err != nil {
		t.Fatal(err)
	}
	foreign = append(foreign, globals)

	d := startDaemon(t, a, root, "--metrics-addr", "")
	for _, args := range [][]string{{"detach", "../../victim"}, {"detach", "..", "--force"}, {"status", "../x"}, {"stats", "../../victim"}} {
		out, err := xdpstack(t, root, args...)
		if err == nil || !strings.Contains(out, "interface name") || strings.Contains(out, "\n") {
			t.Errorf("xdpstack %s: got %v, %q; want one line refusing the name", strings.Join(args, " "), err, out)
		}
	}
	for _, args := range [][]string{{"detach", "xsforeign"}, {"status", "tc"}, {"stats", "xsforeign"}} {
		if out, err := xdpstack(t, root, args...); err == nil || !strings.Contains(out, "not xdpstack's") {
			t.Errorf("xdpstack %s: got %v, %q; want a refusal", strings.Join(args, " "), err, out)
		}
	}

	var status []struct{ Iface string }
	out := mustXdpstack(t, root, "status", "--json")
	if err := json.Unmarshal([]byte(out), &status); err != nil || len(status) != 1 || status[0].Iface != a.Iface {
		t.Errorf("status --json: got %v, %s; want %s alone", err, out, a.Iface)
	}
	for _, line := range strings.Split(mustXdpstack(t, root, "stats"), "\n")[1:] {
		if !strings.HasPrefix(strings.TrimSpace(line), a.Iface+" ") {
			t.Errorf("stats: a row not of %s: %q", a.Iface, line)
		}
	}

	if err := d.signal(t, syscall.SIGTERM); err != nil {
		t.Fatalf("exit: %v\n%s", err, d.output)
	}
	checkClean(t, a, root)
	for _, f := range foreign {
		if _, err := os.Stat(f); err != nil {
			t.Errorf("%s is gone: %v", f, err)
		}
	}
}
