package main

import (
	"strings"
	"testing"
)

func TestClosest(t *testing.T) {
	names := []string{"attach", "detach", "status", "stats", "sample-rate", "snaplen", "mode", "h", "help"}
	for _, tc := range []struct{ given, want string }{
		{"atach", "attach"},
		{"attahc", "attach"},
		{"sampel-rate", "sample-rate"},
		{"stat", "stats"},
		{"mdoe", "mode"},
		{"bogus", ""},
		{"x", ""},        // one letter is no typo of another
		{"snapshot", ""}, // too far from snaplen
	} {
		if got := closest(tc.given, names); got != tc.want {
			t.Errorf("closest(%q): got %q, want %q", tc.given, got, tc.want)
		}
	}
}

// TestTypoSuggestions: an unknown command or flag close to a real one
// names it, in one line on stderr, exit status 1, with flags anywhere
// flagsFirst takes them.
func TestTypoSuggestions(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"atach"}, `unknown command "atach" (did you mean attach? see: xdpstack --help)`},
		{[]string{"--log-level", "debug", "stauts"}, `unknown command "stauts" (did you mean status? see: xdpstack --help)`},
		{[]string{"rules", "ad", "xsnosuch0"}, `rules: unknown command "ad" (did you mean add? see: xdpstack rules --help)`},
		{[]string{"psp", "derivee"}, `psp: unknown command "derivee" (did you mean derive? see: xdpstack psp --help)`},
		{[]string{"florp"}, `unknown command "florp" (see: xdpstack --help)`},
		{[]string{"attach", "xsnosuch0", "--sampel-rate", "3"}, "attach: unknown flag --sampel-rate (did you mean --sample-rate? see: xdpstack attach --help)"},
		{[]string{"attach", "--sampel-rate", "3", "xsnosuch0"}, "attach: unknown flag --sampel-rate (did you mean --sample-rate? see: xdpstack attach --help)"},
		{[]string{"stats", "xsnosuch0", "--log-levl", "debug"}, "stats: unknown flag --log-levl (did you mean --log-level? see: xdpstack stats --help)"},
		{[]string{"rules", "add", "xsnosuch0", "--acton", "deny"}, "rules add: unknown flag --acton (did you mean --action? see: xdpstack rules add --help)"},
		{[]string{"--pin-rot", "/x", "status"}, "unknown flag --pin-rot (did you mean --pin-root? see: xdpstack --help)"},
		{[]string{"attach", "xsnosuch0", "--bogus"}, "attach: unknown flag --bogus (see: xdpstack attach --help)"},
	} {
		t.Run(strings.Join(tc.args, " "), func(t *testing.T) {
			code, stdout, stderr := run(t, tc.args...)
			if want := "xdpstack: " + tc.want + "\n"; code != 1 || stdout != "" || stderr != want {
				t.Errorf("got exit %d, stdout %q, stderr %q; want exit 1 and stderr %q", code, stdout, stderr, want)
			}
		})
	}
}
