package transport

import (
	"net/netip"
	"strings"
	"testing"
)

func TestParseURI(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want URI
		err  string
	}{
		{"tcp://:7", URI{Scheme: TCP, Port: 7}, ""},
		{"udp://10.0.0.1:53", URI{Scheme: UDP, Addr: netip.MustParseAddr("10.0.0.1"), Port: 53}, ""},
		{"tcp://[::1]:80", URI{Scheme: TCP, Addr: netip.MustParseAddr("::1"), Port: 80}, ""},
		{"tls://[echo.test]10.0.0.1:443", URI{Scheme: TLS, ServerName: "echo.test", Addr: netip.MustParseAddr("10.0.0.1"), Port: 443}, ""},
		{"quic://[echo.test][2001:db8::1]:443", URI{Scheme: QUIC, ServerName: "echo.test", Addr: netip.MustParseAddr("2001:db8::1"), Port: 443}, ""},
		{"tls://:443", URI{Scheme: TLS, Port: 443}, ""},
		{"http://:80", URI{}, `unknown scheme "http"`},
		{"tcp:7", URI{}, "want SCHEME://ADDR:PORT"},
		{"tcp://10.0.0.1", URI{}, "missing port"},
		{"tcp://10.0.0.1:70000", URI{}, "not a number from 0 to 65535"},
		{"tcp://example.com:80", URI{}, "not an IP address"},
		{"tcp://[name]10.0.0.1:80", URI{}, "server name goes with tls or quic"},
	} {
		got, err := ParseURI(tc.in)
		if tc.err != "" {
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("ParseURI(%q): got %v, want an error containing %q", tc.in, err, tc.err)
			}
			continue
		}
		if err != nil || got != tc.want {
			t.Errorf("ParseURI(%q): got %+v, %v; want %+v", tc.in, got, err, tc.want)
			continue
		}
		if again, err := ParseURI(got.String()); err != nil || again != got {
			t.Errorf("ParseURI(%q.String() = %q): got %+v, %v", tc.in, got.String(), again, err)
		}
	}
}
