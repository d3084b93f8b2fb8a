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
		// The program's arguments are its own, flags or not.
		{"x run --iface eth0 nginx -g x --debug", "x run --iface eth0 -- nginx -g x --debug"},
		{"x run nginx --iface eth0", "x run -- nginx --iface eth0"},
		{"x run --debug -- nginx -g x", "x run --debug -- nginx -g x"},
		{"x run nginx --log-level debug", "x run -- nginx --log-level debug"},
	} {
		got, err := flagsFirst(newApp(), strings.Fields(tc.in))
		if err != nil || !slices.Equal(got, strings.Fields(tc.want)) {
			t.Errorf("flagsFirst(%q): got %q, %v; want %q", tc.in, got, err, tc.want)
		}
	}
}

// TestFlagsFirstRefuses what urfave/cli would misread.
func TestFlagsFirstRefuses(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"x attach eth0 --mode", "--mode needs a value"},
		{"x attach --mode", "--mode needs a value"},
		{"x attach eth0 --mode --metrics-addr :0", "--mode needs a value"},
		{"x attach eth0 --mode --log-level debug", "--mode needs a value"},
		{"x --pin-root", "--pin-root needs a value"},
		{"x attach eth0 --mode native --mode generic", "--mode given twice"},
		{"x attach eth0 --mode=native --mode generic", "--mode given twice"},
		{"x psp encrypt -r a --read b", "--read given twice"},
		{"x --pin-root /a attach eth0 --pin-root /b", "--pin-root given twice"},
		{"x detach eth0 --force --force", "--force given twice"},
	} {
		if got, err := flagsFirst(newApp(), strings.Fields(tc.in)); err == nil || !strings.HasPrefix(err.Error(), tc.want+" (see: ") {
			t.Errorf("flagsFirst(%q): got %q, %v; want the error %q", tc.in, got, err, tc.want)
		}
	}
	// Slice flags are given once per value.
	in := "x attach eth0 --app echo=tcp://:7 --app echo=udp://:7"
	if _, err := flagsFirst(newApp(), strings.Fields(in)); err != nil {
		t.Errorf("flagsFirst(%q): %v", in, err)
	}
}
