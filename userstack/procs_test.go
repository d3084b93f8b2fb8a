package userstack

import (
	"runtime"
	"testing"
)

func TestAutoProcs(t *testing.T) {
	for _, c := range []struct{ queues, cpus, want int }{
		{2, 2, 1}, // one CPU left to the kernel
		{1, 1, 1}, // never fewer than one
		{1, 8, 1}, // a P per queue
		{4, 8, 4},
		{8, 4, 3},
	} {
		if got := AutoProcs(c.queues, c.cpus); got != c.want {
			t.Errorf("AutoProcs(%d queues, %d cpus) = %d, want %d", c.queues, c.cpus, got, c.want)
		}
	}
}

func TestSetProcs(t *testing.T) {
	before := runtime.GOMAXPROCS(0)
	t.Cleanup(func() { runtime.GOMAXPROCS(before) })
	if got := setProcs(0, 4); got != before {
		t.Errorf("procs 0 changed GOMAXPROCS from %d to %d; want it left alone", before, got)
	}
	if got := setProcs(3, 1); got != 3 {
		t.Errorf("procs 3: GOMAXPROCS %d", got)
	}
	t.Setenv("GOMAXPROCS", "2")
	if got := setProcs(ProcsAuto, 1); got != 3 {
		t.Errorf("auto with GOMAXPROCS in the environment changed it to %d; want it left at 3", got)
	}
}
