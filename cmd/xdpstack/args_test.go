package main

import (
	"slices"
	"strings"
	"testing"
)

func TestFlagsFirst(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"x attach eth0 --mode native", "x attach --mode native eth0"},
		{"x attach --mode native eth0", "x attach --mode native eth0"},
		{"x --pin-root /p stats eth0 --rate --count 3", "x --pin-root /p stats --rate --count 3 eth0"},
		{"x attach eth0 --mode=generic", "x attach --mode=generic eth0"},
		{"x detach eth0 --force", "x detach --force eth0"},
		{"x attach -- -weird", "x attach -- -weird"},
		{"x help attach", "x help attach"},
		{"x attach eth0 --log-level debug --mode native", "x --log-level debug attach --mode native eth0"},
		{"x stats eth0 --pin-root=/p --rate", "x --pin-root=/p stats --rate eth0"},
	} {
		got := flagsFirst(newApp(), strings.Fields(tc.in))
		if !slices.Equal(got, strings.Fields(tc.want)) {
			t.Errorf("flagsFirst(%q): got %q, want %q", tc.in, got, tc.want)
		}
	}
}
