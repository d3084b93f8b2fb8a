package procstat

import (
	"os/exec"
	"testing"
	"time"
)

func TestParseStat(t *testing.T) {
	for _, tc := range []struct {
		name, stat string
		state      byte
		start      uint64
		bad        bool
	}{
		{name: "plain", stat: "42 (xdpstack) S 1 42 42 0 -1 4194560 100 0 0 0 1 2 0 0 20 0 8 0 12345 1000 200 18446744073709551615", state: 'S', start: 12345},
		{name: "parentheses and spaces in the name", stat: "7 (a) b) (c d) Z 1 7 7 0 -1 0 0 0 0 0 0 0 0 0 20 0 1 0 99 0 0 0", state: 'Z', start: 99},
		{name: "truncated", stat: "7 (x) S 1 2 3", bad: true},
		{name: "no name", stat: "7 x S 1", bad: true},
		{name: "start time not a number", stat: "7 (x) S 1 7 7 0 -1 0 0 0 0 0 0 0 0 0 20 0 1 0 soon 0", bad: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			state, start, err := parseStat([]byte(tc.stat))
			if tc.bad {
				if err == nil {
					t.Errorf("parseStat(%q): got %c %d, want an error", tc.stat, state, start)
				}
				return
			}
			if err != nil || state != tc.state || start != tc.start {
				t.Errorf("parseStat(%q): got %c %d %v, want %c %d", tc.stat, state, start, err, tc.state, tc.start)
			}
		})
	}
}

func TestAlive(t *testing.T) {
	self, err := Self()
	if err != nil {
		t.Fatal(err)
	}
	if !self.Alive() {
		t.Errorf("%+v.Alive(): got false for the running test", self)
	}
	if reused := (Process{PID: self.PID, StartTime: self.StartTime + 1}); reused.Alive() {
		t.Errorf("%+v.Alive(): got true for another start time", reused)
	}

	// A child killed but not yet waited for is a zombie: gone.
	cmd := exec.Command("sleep", "10")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Wait()
	child, err := Lookup(cmd.Process.Pid)
	if err != nil || !child.Alive() {
		t.Fatalf("Lookup(%d) of a running child: got %+v, %v; want it alive", cmd.Process.Pid, child, err)
	}
	cmd.Process.Kill()
	deadline := time.Now().Add(5 * time.Second)
	for child.Alive() && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond)
	}
	if child.Alive() {
		t.Errorf("%+v.Alive() of a killed child: got true", child)
	}
	if _, err := Lookup(child.PID); err == nil {
		t.Errorf("Lookup(%d) of a zombie: got no error", child.PID)
	}
}
