package userstack

import (
	"os"
	"runtime"
)

// ProcsAuto as Options.Procs sizes GOMAXPROCS to the queues (AutoProcs).
const ProcsAuto = -1

// AutoProcs is the GOMAXPROCS that suits a process running the
// userstack on queues RX queues on a machine with cpus CPUs: a P per
// queue, but leaving one CPU to the kernel, which in AF_XDP copy mode
// copies every frame in softirq and in the kicks' system calls.
//
// Every message crosses goroutines (the receive loop, the netstack's TCP
// processor, the application), and the Go runtime wakes an idle P's
// thread at each hand-off to look for work, which it rarely finds: a
// futex wake, a thread spinning on the CPU the kernel and the peers
// needed, and a futex sleep again. With two CPUs, one P instead of two
// cut a separate C client's 1-byte ping-pong p50 from 80 to 50 us and
// raised HTTP requests/s by a quarter, at the same echo throughput.
func AutoProcs(queues, cpus int) int {
	return max(1, min(queues, cpus-1))
}

// setProcs applies Options.Procs before the netstack starts: gVisor's
// TCP sizes its pool of processor goroutines by GOMAXPROCS then. An
// explicit GOMAXPROCS in the environment wins over ProcsAuto.
func setProcs(procs, queues int) int {
	switch {
	case procs == ProcsAuto && os.Getenv("GOMAXPROCS") != "":
	case procs == ProcsAuto:
		runtime.GOMAXPROCS(AutoProcs(queues, runtime.NumCPU()))
	case procs > 0:
		runtime.GOMAXPROCS(procs)
	}
	return runtime.GOMAXPROCS(0)
}
