package apps

import (
	"context"
	"strings"
	"testing"
)

func TestParseSpec(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want string // Spec.String(), or the start of the error
		ok   bool
	}{
		{"echo=tcp://:7", "echo=tcp://:7", true},
		{"echo=udp://10.0.0.1:7", "echo=udp://10.0.0.1:7", true},
		{"echo=tcp://[::1]:7", "echo=tcp://[::1]:7", true},
		{"echo", "app \"echo\": want NAME=URI", false},
		{"http=tcp://:80", "app \"http=tcp://:80\": unknown app", false},
		{"echo=sctp://:7", "app \"echo=sctp://:7\": uri \"sctp://:7\": scheme", false},
		{"echo=tcp://:0", "app \"echo=tcp://:0\": uri \"tcp://:0\": port", false},
		{"echo=tcp://host:7", "app \"echo=tcp://host:7\": uri \"tcp://host:7\": host", false},
		{"echo=tcp://:7/x", "app \"echo=tcp://:7/x\": uri \"tcp://:7/x\": want", false},
		{"echo=tcp://:7,size=3", "app \"echo=tcp://:7,size=3\": unknown option", false},
	} {
		t.Run(tc.in, func(t *testing.T) {
			s, err := ParseSpec(tc.in)
			if tc.ok {
				if err != nil || s.String() != tc.want {
					t.Fatalf("ParseSpec(%q): got %v, %v; want %s", tc.in, s, err, tc.want)
				}
				return
			}
			if err == nil || !strings.HasPrefix(err.Error(), tc.want) {
				t.Fatalf("ParseSpec(%q): got error %v, want one starting %q", tc.in, err, tc.want)
			}
		})
	}
}

// TestEchoKernel runs the echo server and client over loopback kernel
// sockets, TCP and UDP, with every byte verified.
func TestEchoKernel(t *testing.T) {
	for _, network := range []string{"tcp", "udp"} {
		t.Run(network, func(t *testing.T) {
			srv, err := StartEcho(Kernel{}, URI{Network: network, Address: "127.0.0.1:0"})
			if err != nil {
				t.Fatal(err)
			}
			defer srv.Close()
			cfg := ClientConfig{URI: URI{Network: network, Address: srv.Addr().String()}, Bytes: 1 << 20, Clients: 4, Reflect: true, Verify: true}
			if network == "udp" {
				cfg.Bytes = 64 << 10
			}
			r, err := RunClient(context.Background(), Kernel{}, cfg)
			if err != nil {
				t.Fatal(err)
			}
			want := cfg.Bytes * int64(cfg.Clients)
			if r.BytesSent != want || r.BytesReceived != want || r.VerifyErrors != 0 || r.Connections != cfg.Clients {
				t.Errorf("RunClient: %+v, want %d bytes each way, no errors, %d connections", r, want, cfg.Clients)
			}
		})
	}
}

func TestMismatches(t *testing.T) {
	b := append([]byte(nil), pattern[10:200010%len(pattern)]...)
	if n := mismatches(b, 10); n != 0 {
		t.Fatalf("mismatches(pattern): %d", n)
	}
	b[5] ^= 1
	b[len(b)-1] ^= 1
	if n := mismatches(b, 10); n != 2 {
		t.Fatalf("mismatches with 2 flipped bytes: got %d", n)
	}
}
