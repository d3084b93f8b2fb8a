package main

import (
	"fmt"
	"os"
	"strconv"

	"golang.org/x/sys/unix"
)

// packetCPU is the CPU the packet-rate figures run on.
const packetCPU = 0

// onOneCPU runs f with every thread of the bench, and so every process
// it starts meanwhile, on packetCPU. A veth receives on the CPU that
// sent: left to the scheduler, the generator and the receiver share a
// CPU in some rounds and not in others, and the rates of one setup
// split into two modes 30% apart, far more than the figures look for.
// On one CPU, every round measures the same thing: one CPU generating
// and taking in.
func onOneCPU(f func() error) error {
	var all, one unix.CPUSet
	if err := unix.SchedGetaffinity(0, &all); err != nil {
		return fmt.Errorf("read the bench's cpus: %w", err)
	}
	one.Set(packetCPU)
	// Twice: a thread the runtime starts meanwhile takes its creator's
	// set, which the first pass may not have reached yet.
	for range 2 {
		if err := setThreadsCPUs(&one); err != nil {
			return err
		}
	}
	defer setThreadsCPUs(&all)
	return f()
}

// setThreadsCPUs puts every thread of the process on set.
func setThreadsCPUs(set *unix.CPUSet) error {
	tasks, err := os.ReadDir("/proc/self/task")
	if err != nil {
		return fmt.Errorf("list the bench's threads: %w", err)
	}
	for _, t := range tasks {
		tid, err := strconv.Atoi(t.Name())
		if err != nil {
			continue
		}
		// A thread that exited meanwhile is no matter.
		if err := unix.SchedSetaffinity(tid, set); err != nil && err != unix.ESRCH {
			return fmt.Errorf("set the cpus of thread %d: %w", tid, err)
		}
	}
	return nil
}
