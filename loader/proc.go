package loader

import (
	"github.com/xdpstack/xdpstack/internal/procstat"
	"github.com/xdpstack/xdpstack/maps"
)

// attacherAlive tells whether the process an attach record names still
// runs: the one with that PID and start time, not a zombie, and not
// another process that got the PID, as kill(pid, 0) would have it. A
// record without a start time, from a build before it had one, is
// judged by the PID alone.
func attacherAlive(rec maps.AttachInfo) bool {
	if rec.PID <= 0 {
		return false
	}
	if rec.PIDStartTime == 0 {
		_, err := procstat.Lookup(rec.PID)
		return err == nil
	}
	return procstat.Process{PID: rec.PID, StartTime: rec.PIDStartTime}.Alive()
}
