package hostport

import "testing"

func TestSplit(t *testing.T) {
	for _, tc := range []struct {
		in, host string
		port     uint16
		err      string
	}{
		{in: ":7", port: 7},
		{in: "10.0.0.1:65535", host: "10.0.0.1", port: 65535},
		{in: "[::1]:0", host: "::1"},
		{in: "localhost:9437", host: "localhost", port: 9437},
		{in: "10.0.0.1:65536", err: `port "65536" is not a number from 0 to 65535`},
		{in: "10.0.0.1:99999", err: `port "99999" is not a number from 0 to 65535`},
		{in: ":", err: `port "" is not a number from 0 to 65535`},
		{in: ":http", err: `port "http" is not a number from 0 to 65535`},
		{in: ":-1", err: `port "-1" is not a number from 0 to 65535`},
		{in: "10.0.0.1", err: "address 10.0.0.1: missing port in address"},
	} {
		host, port, err := Split(tc.in)
		if tc.err != "" {
			if err == nil || err.Error() != tc.err {
				t.Errorf("Split(%q): got error %v, want %q", tc.in, err, tc.err)
			}
			continue
		}
		if err != nil || host != tc.host || port != tc.port {
			t.Errorf("Split(%q): got %q, %d, %v; want %q, %d", tc.in, host, port, err, tc.host, tc.port)
		}
	}
}
