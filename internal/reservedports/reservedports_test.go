package reservedports

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/xdpstack/xdpstack/internal/procstat"
	"github.com/xdpstack/xdpstack/maps"
)

func TestPortSet(t *testing.T) {
	for _, tc := range []struct {
		name, text, want string
	}{
		{"empty", "", ""},
		{"kernel's format", "1000-1002,5000\n", "1000-1002,5000"},
		{"overlaps and adjacent ranges merge", "5,1-3,4,2-2,65535", "1-5,65535"},
		{"a range of one is one port", "7-7", "7"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s, err := parsePorts(tc.text)
			if err != nil || s.String() != tc.want {
				t.Errorf("parsePorts(%q): got %q, %v; want %q", tc.text, s, err, tc.want)
			}
		})
	}
	for _, bad := range []string{"x", "3-1", "1-", "65536", "1,,2", "-5"} {
		if s, err := parsePorts(bad); err == nil {
			t.Errorf("parsePorts(%q): got %q, want an error", bad, s)
		}
	}

	a, b := mustParse(t, "1-10,20-30"), mustParse(t, "5-25")
	for _, tc := range []struct {
		op        string
		got, want portSet
	}{
		{"union", a.union(b), mustParse(t, "1-30")},
		{"minus", a.minus(b), mustParse(t, "1-4,26-30")},
		{"intersect", a.intersect(b), mustParse(t, "5-10,20-25")},
		{"range", rangeSet(maps.PortRange{Min: 61000, Max: 62999}), mustParse(t, "61000-62999")},
		{"empty range", rangeSet(maps.PortRange{}), portSet{}},
	} {
		if tc.got != tc.want {
			t.Errorf("%s: got %q, want %q", tc.op, tc.got, tc.want)
		}
	}
}

func mustParse(t *testing.T, text string) portSet {
	t.Helper()
	s, err := parsePorts(text)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// testRegistry is a registry over a stand-in for the kernel's value,
// which starts as operator.
func testRegistry(t *testing.T, operator string) registry {
	t.Helper()
	dir := t.TempDir()
	g := registry{sysctl: filepath.Join(dir, "ip_local_reserved_ports"), dir: filepath.Join(dir, "state")}
	setKernel(t, g, operator)
	return g
}

func setKernel(t *testing.T, g registry, value string) {
	t.Helper()
	if err := os.WriteFile(g.sysctl, []byte(value+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
}

func checkKernel(t *testing.T, g registry, when, want string) {
	t.Helper()
	b, err := os.ReadFile(g.sysctl)
	if err != nil {
		t.Fatal(err)
	}
	if got, _, _ := strings.Cut(string(b), "\n"); got != want {
		t.Errorf("reserved ports %s: got %q, want %q", when, got, want)
	}
}

// otherProcess is a running process that the test may kill, standing
// in for another daemon.
func otherProcess(t *testing.T) (procstat.Process, func()) {
	t.Helper()
	cmd := exec.Command("sleep", "60")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	p, err := procstat.Lookup(cmd.Process.Pid)
	if err != nil {
		t.Fatal(err)
	}
	return p, func() {
		cmd.Process.Kill()
		for p.Alive() {
			time.Sleep(time.Millisecond)
		}
	}
}

func self(t *testing.T) procstat.Process {
	t.Helper()
	p, err := procstat.Self()
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func TestSharedReservation(t *testing.T) {
	ours := maps.PortRange{Min: 61000, Max: 62999}
	g := testRegistry(t, "1000-1002,61500")
	other, _ := otherProcess(t)

	a, err := g.reserve(self(t), ours)
	if err != nil {
		t.Fatal(err)
	}
	checkKernel(t, g, "with one holder", "1000-1002,61000-62999")
	b, err := g.reserve(other, maps.PortRange{Min: 62000, Max: 63999})
	if err != nil {
		t.Fatal(err)
	}
	checkKernel(t, g, "with two holders", "1000-1002,61000-63999")

	// What the operator changes outside the holders' ranges stays.
	setKernel(t, g, "1000-1002,2000,61000-63999")
	if err := a.Release(); err != nil {
		t.Fatal(err)
	}
	checkKernel(t, g, "after the first holder left", "1000-1002,2000,61500,62000-63999")
	if err := b.Release(); err != nil {
		t.Fatal(err)
	}
	checkKernel(t, g, "after the last holder left", "1000-1002,2000,61500")
	if entries, _ := os.ReadDir(g.dir); len(entries) != 0 {
		t.Errorf("state folder after the last holder left: %v, want it empty", entries)
	}
}

func TestSameRangeTwice(t *testing.T) {
	ours := maps.PortRange{Min: 61000, Max: 62999}
	g := testRegistry(t, "")
	other, _ := otherProcess(t)
	a, err := g.reserve(self(t), ours)
	if err != nil {
		t.Fatal(err)
	}
	b, err := g.reserve(other, ours)
	if err != nil {
		t.Fatal(err)
	}
	if err := a.Release(); err != nil {
		t.Fatal(err)
	}
	checkKernel(t, g, "while the other holds the same range", "61000-62999")
	if err := b.Release(); err != nil {
		t.Fatal(err)
	}
	checkKernel(t, g, "after both left", "")
}

// TestHeldTwice: one process with two attachments holds a range twice;
// releasing one keeps it.
func TestHeldTwice(t *testing.T) {
	ours := maps.PortRange{Min: 61000, Max: 62999}
	g := testRegistry(t, "")
	var rs []*Reservation
	for range 2 {
		r, err := g.reserve(self(t), ours)
		if err != nil {
			t.Fatal(err)
		}
		rs = append(rs, r)
	}
	if err := rs[0].Release(); err != nil {
		t.Fatal(err)
	}
	checkKernel(t, g, "with one of two held", "61000-62999")
	if err := rs[1].Release(); err != nil {
		t.Fatal(err)
	}
	checkKernel(t, g, "with both released", "")
}

func TestDeadHolders(t *testing.T) {
	ours := maps.PortRange{Min: 61000, Max: 62999}
	t.Run("release dead", func(t *testing.T) {
		g := testRegistry(t, "80")
		other, kill := otherProcess(t)
		if _, err := g.reserve(other, ours); err != nil {
			t.Fatal(err)
		}
		if err := g.releaseDead(); err != nil {
			t.Fatal(err)
		}
		checkKernel(t, g, "with a live holder", "80,61000-62999")
		kill()
		if err := g.releaseDead(); err != nil {
			t.Fatal(err)
		}
		checkKernel(t, g, "after the holder was killed", "80")
	})
	t.Run("the next holder drops them", func(t *testing.T) {
		g := testRegistry(t, "")
		other, kill := otherProcess(t)
		if _, err := g.reserve(other, maps.PortRange{Min: 50000, Max: 50009}); err != nil {
			t.Fatal(err)
		}
		kill()
		r, err := g.reserve(self(t), ours)
		if err != nil {
			t.Fatal(err)
		}
		checkKernel(t, g, "after a dead holder", "61000-62999")
		if err := r.Release(); err != nil {
			t.Fatal(err)
		}
		checkKernel(t, g, "after the last holder left", "")
	})
	t.Run("nothing recorded", func(t *testing.T) {
		g := testRegistry(t, "61000-62999")
		if err := g.releaseDead(); err != nil {
			t.Fatal(err)
		}
		checkKernel(t, g, "with no holders recorded", "61000-62999")
		if _, err := os.Stat(g.dir); !os.IsNotExist(err) {
			t.Errorf("state folder after releaseDead with nothing recorded: %v, want none made", err)
		}
	})
}

// TestStaleState: a state file left by a namespace that is gone, whose
// inode number a new namespace got, says nothing of the new one.
func TestStaleState(t *testing.T) {
	g := testRegistry(t, "100")
	ns, err := threadNetns()
	if err != nil {
		t.Fatal(err)
	}
	other, _ := otherProcess(t)
	stale := state{NetnsCookie: ns.cookie + 1, Operator: "61000-62999", Holders: []holder{{PID: other.PID, StartTime: other.StartTime, Min: 5000, Max: 5999}}}
	if err := os.MkdirAll(g.dir, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := g.record(ns, stale); err != nil {
		t.Fatal(err)
	}
	r, err := g.reserve(self(t), maps.PortRange{Min: 61000, Max: 62999})
	if err != nil {
		t.Fatal(err)
	}
	checkKernel(t, g, "over a stale state", "100,61000-62999")
	if err := r.Release(); err != nil {
		t.Fatal(err)
	}
	checkKernel(t, g, "after release over a stale state", "100")
}

func TestReserveBadRange(t *testing.T) {
	g := testRegistry(t, "")
	for _, r := range []maps.PortRange{{}, {Min: 0, Max: 5}, {Min: 9, Max: 8}} {
		if _, err := g.reserve(self(t), r); err == nil {
			t.Errorf("reserve(%v): got no error", r)
		}
	}
	checkKernel(t, g, "after bad ranges", "")
}
