//go:build race

package cutthrough

// raceEnabled: the race detector slows copies down, so the bulk test
// moves less.
const raceEnabled = true
