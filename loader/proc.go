package loader

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"strconv"

	"github.com/xdpstack/xdpstack/maps"
)

// procStat is what xdpstack reads of a process in /proc/PID/stat.
type procStat struct {
	// State is field 3: R, S, D, Z (zombie), X (dead)...
	State byte
	// StartTime is field 22: when the process started, in clock ticks
	// after boot. With the PID it names one process: a PID reused by
	// another has another start time.
	StartTime uint64
}

func readProcStat(pid int) (procStat, error) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return procStat{}, err
	}
	st, err := parseProcStat(b)
	if err != nil {
		return procStat{}, fmt.Errorf("/proc/%d/stat: %w", pid, err)
	}
	return st, nil
}

// parseProcStat reads a /proc/PID/stat line. Field 2, the command name
// in parentheses, may hold spaces and parentheses of its own, so fields
// are counted from the last ')'.
func parseProcStat(b []byte) (procStat, error) {
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return procStat{}, errors.New("no command name in parentheses")
	}
	fields := bytes.Fields(b[i+1:]) // fields[0] is field 3
	const startTime = 22 - 3
	if len(fields) <= startTime || len(fields[0]) != 1 {
		return procStat{}, fmt.Errorf("%d fields after the command name, want at least %d", len(fields), startTime+1)
	}
	start, err := strconv.ParseUint(string(fields[startTime]), 10, 64)
	if err != nil {
		return procStat{}, fmt.Errorf("start time %q: not a number", fields[startTime])
	}
	return procStat{State: fields[0][0], StartTime: start}, nil
}

// attacherAlive tells whether the process an attach record names still
// runs: one with that PID and start time that is neither a zombie nor
// dead. kill(pid, 0) alone takes a zombie, or another process that got
// the PID, for the attacher. A record without a start time is judged by
// the PID alone.
func attacherAlive(rec maps.AttachInfo) bool {
	if rec.PID <= 0 {
		return false
	}
	st, err := readProcStat(rec.PID)
	if err != nil || st.State == 'Z' || st.State == 'X' {
		return false
	}
	return rec.PIDStartTime == 0 || st.StartTime == rec.PIDStartTime
}
