//go:build !race

package cutthrough

const raceEnabled = false
