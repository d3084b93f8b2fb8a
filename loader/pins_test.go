package loader

import (
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/cilium/ebpf"

	"github.com/xdpstack/xdpstack/internal/procstat"
	"github.com/xdpstack/xdpstack/internal/testing/testutil"
	"github.com/xdpstack/xdpstack/maps"
)

// pinForeign pins a map that is not xdpstack's at path, as another
// program on the shared BPF filesystem would.
func pinForeign(t *testing.T, path string, typ ebpf.MapType) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		t.Fatal(err)
	}
	m, err := ebpf.NewMap(&ebpf.MapSpec{Type: typ, KeySize: 4, ValueSize: 8, MaxEntries: 4})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	if err := m.Pin(path); err != nil {
		t.Fatal(err)
	}
}

func exists(path string) bool {
	_, err := os.Stat(path)
	return err == nil
}

// TestNamesStayInsidePinRoot gives Attach, ReadInterfaceStatus and
// Detach names that lead out of the pin root: each is refused in one
// line, and the folders the names lead to keep what they hold.
func TestNamesStayInsidePinRoot(t *testing.T) {
	base := testutil.PinRoot(t)
	root := filepath.Join(base, "a", "b")
	victim := filepath.Join(base, "victim", "map")
	pinForeign(t, victim, ebpf.Array)
	beside := filepath.Join(base, "a", "map") // what ".." of root holds
	pinForeign(t, beside, ebpf.Array)
	if err := os.MkdirAll(root, 0o700); err != nil {
		t.Fatal(err)
	}

	for _, name := range []string{"../../victim", "..", ".", "", "a/b", "eth0:1", "eth 0", "tab\tname", "sixteen-bytes-xx"} {
		t.Run(name, func(t *testing.T) {
			calls := map[string]func() error{
				"Attach":              func() error { _, err := Attach(name, Options{PinRoot: root}); return err },
				"ReadInterfaceStatus": func() error { _, err := ReadInterfaceStatus(root, name); return err },
				"Detach":              func() error { return Detach(name, DetachOptions{PinRoot: root, Force: true}) },
			}
			for call, f := range calls {
				err := f()
				if err == nil || !strings.HasPrefix(err.Error(), "interface name ") || strings.Contains(err.Error(), "\n") {
					t.Errorf("%s(%q): got %v, want a one-line refusal of the name", call, name, err)
				}
			}
			if !exists(victim) || !exists(beside) {
				t.Fatalf("%q: the pins outside the pin root are gone", name)
			}
		})
	}
}

// TestForeignFoldersLeftAlone puts folders that are not xdpstack's
// under the pin root beside an attached interface: iproute2's
// tc/globals, a foreign map, a foreign map under xdpstack's own name.
// ReadStatus passes them over, ReadInterfaceStatus and Detach refuse
// them, Attach will not pin among them, and a foreign file in
// xdpstack's own folder outlives the detach.
func TestForeignFoldersLeftAlone(t *testing.T) {
	ifname, _ := testutil.Veth(t)
	root := testutil.PinRoot(t)
	if err := os.MkdirAll(filepath.Join(root, "tc", "globals"), 0o700); err != nil {
		t.Fatal(err)
	}
	pinForeign(t, filepath.Join(root, "xsforeign", "foreign_map"), ebpf.Array)
	namesake := filepath.Join(root, "xsnamesake", maps.InfoName)
	pinForeign(t, namesake, ebpf.Hash)
	pinForeign(t, filepath.Join(root, "xsnamesake", "other"), ebpf.Hash)

	a := attach(t, ifname, Options{PinRoot: root})
	die(t, a)
	all, err := ReadStatus(root)
	if err != nil || len(all) != 1 || all[0].Iface != ifname {
		t.Fatalf("ReadStatus: got %+v, %v; want %s alone", all, err, ifname)
	}
	for _, name := range []string{"tc", "xsforeign", "xsnamesake"} {
		if _, err := ReadInterfaceStatus(root, name); err == nil || !strings.Contains(err.Error(), "not xdpstack's") {
			t.Errorf("ReadInterfaceStatus(%s): got %v, want a refusal", name, err)
		}
		if err := Detach(name, DetachOptions{PinRoot: root, Force: true}); err == nil {
			t.Errorf("Detach(%s): got nil, want a refusal", name)
		}
	}
	if !exists(namesake) || !exists(filepath.Join(root, "xsforeign", "foreign_map")) || !exists(filepath.Join(root, "tc", "globals")) {
		t.Fatal("foreign pins gone")
	}

	// A file of someone else's in xdpstack's folder: the detach removes
	// xdpstack's pins, by name, and leaves the folder with that file.
	planted := filepath.Join(root, ifname, "planted")
	pinForeign(t, planted, ebpf.Array)
	if st, err := ReadInterfaceStatus(root, ifname); err != nil || slices.Contains(st.Pins, "planted") {
		t.Errorf("ReadInterfaceStatus with a planted file: got %+v, %v; want xdpstack's pins only", st, err)
	}
	if err := Detach(ifname, DetachOptions{PinRoot: root}); err != nil {
		t.Fatalf("Detach: %v", err)
	}
	if id, _ := programOn(t, ifname); id != 0 || !exists(planted) {
		t.Errorf("after Detach: program %d, planted file there: %v; want no program and the file kept", id, exists(planted))
	}
	for _, name := range pinNames {
		if exists(filepath.Join(root, ifname, name)) {
			t.Errorf("after Detach: pin %s still there", name)
		}
	}

	// A folder of foreign pins under the interface's name is not one to
	// pin into.
	if err := os.Remove(filepath.Join(root, ifname, "planted")); err != nil {
		t.Fatal(err)
	}
	pinForeign(t, filepath.Join(root, ifname, "foreign_map"), ebpf.Array)
	if _, err := Attach(ifname, Options{PinRoot: root}); err == nil || !strings.Contains(err.Error(), "not xdpstack's") {
		t.Errorf("Attach into a foreign folder: got %v, want a refusal", err)
	}
	if id, _ := programOn(t, ifname); id != 0 {
		t.Errorf("after the refused Attach: program %d attached", id)
	}
}

// TestAttachOverZombie: an attach record naming a process that is now a
// zombie does not keep a new attach out, and status says it exited.
func TestAttachOverZombie(t *testing.T) {
	ifname, _ := testutil.Veth(t)
	root := testutil.PinRoot(t)
	zombie := exec.Command("true")
	if err := zombie.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { zombie.Wait() })
	time.Sleep(100 * time.Millisecond) // exited, not waited for

	first := attach(t, ifname, Options{PinRoot: root})
	rec, err := first.Maps.Info.Get()
	if err != nil {
		t.Fatal(err)
	}
	st, err := procstat.ReadStat(zombie.Process.Pid)
	if err != nil || st.State != 'Z' {
		t.Fatalf("pid %d: %+v, %v; want a zombie", zombie.Process.Pid, st, err)
	}
	rec.PID, rec.PIDStartTime = zombie.Process.Pid, st.StartTime
	if err := first.Maps.Info.Put(rec); err != nil {
		t.Fatal(err)
	}
	first.link.Close()
	first.objs.Close()

	if s, err := ReadInterfaceStatus(root, ifname); err != nil || s.Running {
		t.Errorf("status of a zombie's attachment: got %+v, %v; want it not running", s, err)
	}
	second := attach(t, ifname, Options{PinRoot: root})
	defer second.Close()
	if !second.Replaced {
		t.Error("Attach over a zombie's attachment did not replace it")
	}
	own, err := second.Maps.Info.Get()
	if err != nil || own.PID != os.Getpid() || own.PIDStartTime == 0 {
		t.Errorf("attach record: got %+v, %v; want this process with its start time", own, err)
	}
}

// TestRetiredPinsGo plants the maps of builds from before they moved
// into the sampling map (capture_lease, rule_active): an attach over
// them removes them, and a detach counts ones planted after as
// xdpstack's and removes them with the folder.
func TestRetiredPinsGo(t *testing.T) {
	ifname, _ := testutil.Veth(t)
	root := testutil.PinRoot(t)
	dir := filepath.Join(root, ifname)
	retired := []string{"capture_lease", "rule_active"}
	plant := func() {
		t.Helper()
		for _, name := range retired {
			pinForeign(t, filepath.Join(dir, name), ebpf.Array)
		}
	}
	plant()
	a := attach(t, ifname, Options{Mode: ModeGeneric, PinRoot: root})
	for _, name := range retired {
		if exists(filepath.Join(dir, name)) {
			t.Errorf("attach left the retired %s pin", name)
		}
	}
	if err := a.Close(); err != nil {
		t.Fatal(err)
	}
	die(t, attach(t, ifname, Options{Mode: ModeGeneric, PinRoot: root}))
	plant()
	if err := Detach(ifname, DetachOptions{PinRoot: root}); err != nil {
		t.Fatal(err)
	}
	if exists(dir) {
		t.Fatal("detach left the pin folder with the retired pins in it")
	}
}
