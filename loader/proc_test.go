package loader

import (
	"os"
	"os/exec"
	"testing"
	"time"

	"github.com/xdpstack/xdpstack/internal/procstat"
	"github.com/xdpstack/xdpstack/maps"
)

// TestAttacherAlive: the attach process is alive only as the process
// that attached, not as a zombie or as another process with its PID.
func TestAttacherAlive(t *testing.T) {
	self, err := procstat.ReadStat(os.Getpid())
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
		if st, err := procstat.ReadStat(zombie.Process.Pid); err == nil && st.State == 'Z' {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("pid %d did not become a zombie", zombie.Process.Pid)
		}
	}
	zst, _ := procstat.ReadStat(zombie.Process.Pid)

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
