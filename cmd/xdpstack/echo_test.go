package main

import (
	"strings"
	"testing"
)

// TestBadEchoInput checks that bad flags of echo and attach --app fail
// with one line naming what was wrong, before anything is attached.
func TestBadEchoInput(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"echo", "client", "--uri", "tcp://10.0.0.1"}, "--uri: uri \"tcp://10.0.0.1\""},
		{[]string{"echo", "client", "--uri", "http://10.0.0.1:80"}, "unknown scheme \"http\" (want tcp, udp, tls or quic)"},
		{[]string{"echo", "client", "--uri", "tcp://10.0.0.1:7", "--streams", "4"}, "--streams and --uni go with quic://"},
		{[]string{"echo", "client", "--uri", "tcp://10.0.0.1:7", "--insecure"}, "--ca-cert and --insecure go with tls:// or quic://"},
		{[]string{"echo", "client", "--uri", "tls://10.0.0.1:7", "--ca-cert", "/nonexistent.pem"}, "read CA file"},
		{[]string{"echo", "server", "--uri", "tls://:7"}, "needs cert=FILE and key=FILE"},
		{[]string{"echo", "server", "--uri", "tls://:7", "--cert", "/no/c.pem", "--key", "/no/k.pem"}, "no such file"},
		{[]string{"echo", "client", "--uri", "tcp://10.0.0.1:7", "--bytes", "12X"}, "--bytes: \"12X\" is not a byte count"},
		{[]string{"echo", "client", "--uri", "tcp://10.0.0.1:7", "--bytes", "17179869184G"}, "--bytes: \"17179869184G\" is more bytes than can be counted"},
		{[]string{"echo", "client", "--uri", "tcp://10.0.0.1:7", "--bytes", "-1K"}, "--bytes: \"-1K\" is not a byte count"},
		{[]string{"echo", "client", "--uri", "tcp://10.0.0.1:7", "--stats", "Inf"}, "--stats +Inf: want 0 to 86400 seconds"},
		{[]string{"echo", "client", "--uri", "tcp://10.0.0.1:7", "--nclients", "0"}, "--nclients 0: want 1 to 65535"},
		{[]string{"echo", "client", "--uri", "tcp://10.0.0.1:7", "--stats", "-1"}, "--stats -1: want 0 to 86400 seconds"},
		{[]string{"echo", "server", "--uri", "tcp://:99999"}, "port \"99999\""},
		{[]string{"echo", "server"}, "--uri is required"},
		{[]string{"echo", "client", "--uri", "tcp://10.0.0.1:7", "--tcp-sack=false"}, "--tcp-sack goes with --iface"},
		{[]string{"echo", "server", "--uri", "tcp://:7", "--iface", "lo", "--tcp-cc", "vegas"}, `congestion control "vegas"`},
		{[]string{"attach", "lo", "--app", "echo=tcp://:7,speed=9"}, "--app: app \"echo=tcp://:7,speed=...\": unknown option \"speed\""},
		{[]string{"attach", "lo", "--app", "ftp=tcp://:21"}, "unknown app \"ftp\""},
		{[]string{"attach", "lo", "--app", "http=tls://:443,cert=/no/c.pem,key=/no/k.pem"}, "no such file"},
		{[]string{"attach", "lo", "--app", "proxy=tcp://:80"}, "proxy needs backend="},
		{[]string{"attach", "lo", "--app", "http=tcp://:80", "--root", "/nonexistent"}, "root /nonexistent is not a folder"},
		{[]string{"attach", "lo", "--app", "echo=tcp://:7", "--app", "http=tcp://:7"}, "both on tcp port 7"},
	} {
		t.Run(strings.Join(tc.args, " "), func(t *testing.T) {
			code, stdout, stderr := run(t, tc.args...)
			if code == 0 || !strings.Contains(stderr, tc.want) {
				t.Fatalf("exit %d, stderr %q; want a failure mentioning %q", code, stderr, tc.want)
			}
			if n := strings.Count(strings.TrimSpace(stderr), "\n"); n != 0 || stdout != "" {
				t.Errorf("want one line on stderr and nothing on stdout; got %q and %q", stderr, stdout)
			}
		})
	}
}

func TestParseSize(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want int64
		ok   bool
	}{
		{"0", 0, true},
		{"1000", 1000, true},
		{"64K", 64 << 10, true},
		{"6M", 6 << 20, true},
		{"1G", 1 << 30, true},
		{"8589934591G", 8589934591 << 30, true},
		{"8589934592G", 0, false}, // 2^63 bytes
		{"18014398509486080K", 0, false},
		{"17179869184G", 0, false},
		{"9223372036854775808", 0, false},
		{"-1", 0, false},
		{"K", 0, false},
		{"1T", 0, false},
		{"", 0, false},
	} {
		got, err := parseSize(tc.in)
		if (err == nil) != tc.ok || got != tc.want {
			t.Errorf("parseSize(%q) = %d, %v; want %d, ok %v", tc.in, got, err, tc.want, tc.ok)
		}
	}
}
