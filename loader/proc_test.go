package loader

import (
	"os"
	"os/exec"
	"testing"
	"time"

	"github.com/xdpstack/xdpstack/maps"
)

func TestParseProcStat(t *testing.T) {
	// Fields 4 to 21 do not matter; field 22 is the start time.
	rest := " 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 4242 20 21\n"
	for _, tc := range []struct {
		name, line string
		want       procStat
		ok         bool
	}{
		{"plain", "123 (xdpstack) S" + rest, procStat{'S', 4242}, true},
		{"spaces and parentheses in the name", "123 (a) Z (b c)) R" + rest, procStat{'R', 4242}, true},
		{"zombie", "9 (true) Z" + rest, procStat{'Z', 4242}, true},
		{"no name", "123 xdpstack S" + rest, procStat{}, false},
		{"cut short", "123 (xdpstack) S 1 2 3", procStat{}, false},
		{"start time not a number", "123 (x) S 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 soon 20", procStat{}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := parseProcStat([]byte(tc.line))
			if (err == nil) != tc.ok || got != tc.want {
				t.Errorf("parseProcStat(%q) = %+v, %v; want %+v, ok %v", tc.line, got, err, tc.want, tc.ok)
			}
		})
	}
}

// TestAttacherAlive: the attach process is alive only as the process
// that attached, not as a zombie or as another process with its PID.
func TestAttacherAlive(t *testing.T) {
	self, err := readProcStat(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	zombie := exec.Command("true")
	if err := zombie.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { zombie.Wait() })
	// Not waited for, it stays a zombie once it has exited.
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(5 * time.Millisecond) {
		if st, err := readProcStat(zombie.Process.Pid); err == nil && st.State == 'Z' {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("pid %d did not become a zombie", zombie.Process.Pid)
		}
	}
	zst, _ := readProcStat(zombie.Process.Pid)

	for _, tc := range []struct {
		name string
		rec  maps.AttachInfo
		want bool
	}{
		{"this process", maps.AttachInfo{PID: os.Getpid(), PIDStartTime: self.StartTime}, true},
		{"a zombie", maps.AttachInfo{PID: zombie.Process.Pid, PIDStartTime: zst.StartTime}, false},
		{"a zombie, no start time recorded", maps.AttachInfo{PID: zombie.Process.Pid}, false},
		{"a reused pid", maps.AttachInfo{PID: os.Getpid(), PIDStartTime: self.StartTime + 1}, false},
		{"no such pid", maps.AttachInfo{PID: 1 << 30}, false},
		{"pid 0", maps.AttachInfo{}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := attacherAlive(tc.rec); got != tc.want {
				t.Errorf("attacherAlive(%+v) = %v, want %v", tc.rec, got, tc.want)
			}
		})
	}
}
