// Package procstat reads what /proc/PID/stat says of a process. A PID
// alone names whichever process has it now; a PID with the process's
// start time names the one that was recorded, and no other.
package procstat

import (
	"bytes"
	"fmt"
	"os"
	"strconv"
)

// Process is one process as long as it lives: its PID and its start
// time, in clock ticks after boot (field 22 of /proc/PID/stat).
type Process struct {
	PID       int
	StartTime uint64
}

// Self is the calling process.
func Self() (Process, error) { return Lookup(os.Getpid()) }

// Lookup reads the process that has pid now; a zombie has gone already.
func Lookup(pid int) (Process, error) {
	st, err := ReadStat(pid)
	if err != nil {
		return Process{}, err
	}
	if st.Exited() {
		return Process{}, fmt.Errorf("read process %d: it has exited", pid)
	}
	return Process{PID: pid, StartTime: st.StartTime}, nil
}

// Stat is what xdpstack reads of /proc/PID/stat: the state (field 3)
// and the start time (field 22).
type Stat struct {
	State     byte
	StartTime uint64
}

// Exited tells whether the process is a zombie (Z) or dead (X).
func (s Stat) Exited() bool { return s.State == 'Z' || s.State == 'X' }

// ReadStat reads the stat of the process that has pid now, exited or
// not.
func ReadStat(pid int) (Stat, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return Stat{}, fmt.Errorf("read process %d: %w", pid, err)
	}
	state, start, err := parseStat(b)
	if err != nil {
		return Stat{}, fmt.Errorf("read process %d: %w", pid, err)
	}
	return Stat{State: state, StartTime: start}, nil
}

// Alive tells whether p still runs: a process has its PID, started when
// p did, and has not exited.
func (p Process) Alive() bool {
	now, err := Lookup(p.PID)
	return err == nil && now.StartTime == p.StartTime
}

// parseStat reads the state (field 3) and start time (field 22) of a
// /proc/PID/stat line. The command name before them is in parentheses
// and may hold anything, parentheses and spaces too, so the fields are
// counted from the last ')'.
func parseStat(b []byte) (state byte, start uint64, err error) {
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return 0, 0, fmt.Errorf("stat %q: no command name", b)
	}
	f := bytes.Fields(b[i+1:])
	// f[0] is field 3, so field 22 is f[19].
	if len(f) < 20 || len(f[0]) != 1 {
		return 0, 0, fmt.Errorf("stat %q: too few fields", b)
	}
	start, err = strconv.ParseUint(string(f[19]), 10, 64)
	if err != nil {
		return 0, 0, fmt.Errorf("stat start time %q: %w", f[19], err)
	}
	return f[0][0], start, nil
}
