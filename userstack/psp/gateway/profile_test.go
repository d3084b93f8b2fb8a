package gateway

import (
	"os"
	"runtime/pprof"
	"testing"
)

// cpuProfile profiles the process into path until the returned
// function is called.
func cpuProfile(t *testing.T, path string) func() {
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		t.Fatal(err)
	}
	return func() { pprof.StopCPUProfile(); f.Close() }
}
