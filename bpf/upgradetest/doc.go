// Package upgradetest is xdpstack's XDP program built with three more
// counter reasons than the real one (EXTRA_TEST_REASONS): a newer build
// for the loader's test that a build with more reasons takes over a
// running one's pins, counters kept, and the other way round.
package upgradetest
