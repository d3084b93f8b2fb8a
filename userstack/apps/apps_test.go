package apps

import (
	"context"
	"crypto/tls"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/xdpstack/xdpstack/userstack/transport"
)

func TestParseSpec(t *testing.T) {
	root := t.TempDir()
	file := filepath.Join(root, "file")
	os.WriteFile(file, nil, 0o644)
	for _, tc := range []struct {
		in   string
		want string // Spec.String(), or a part of the error
		ok   bool
	}{
		{"echo=tcp://:7", "echo=tcp://:7", true},
		{"echo=udp://10.0.0.1:7", "echo=udp://10.0.0.1:7", true},
		{"echo=tcp://[::1]:7", "echo=tcp://[::1]:7", true},
		{"echo=tls://:7,test-cert=echo.test", "echo=tls://:7", true},
		{"echo=quic://:7,test-cert=echo.test", "echo=quic://:7", true},
		{"http=tcp://:80", "http=tcp://:80", true},
		{"http=tcp://:80,root=" + root, "http=tcp://:80", true},
		{"http=tcp://:80,status=off", "http=tcp://:80", true},
		{"http=tcp://:80,status=public", `status "public": want local, all or off`, false},
		{"proxy=tls://:443,backend=tcp://127.0.0.1:8080,test-cert=a.test", "proxy=tls://:443", true},
		{"proxy=tcp://:80,backend=unix:///run/app.sock", "proxy=tcp://:80", true},
		{"echo", "want NAME=URI", false},
		{"ftp=tcp://:21", `unknown app "ftp" (known: echo, http, proxy)`, false},
		{"echo=sctp://:7", "unknown scheme", false},
		{"echo=tcp://:0", "needs a port from 1 to 65535", false},
		{"echo=tcp://host:7", "not an IP address", false},
		{"echo=tcp://:7,size=3", `unknown option "size" for echo`, false},
		{"echo=tcp://:7,ns=blue,secret=s", "echo=tcp://:7,ns=blue", true},
		{"http=tls://:443,test-cert=a,ns=blue,secret=s,scope=both", "http=tls://:443,ns=blue,scope=both", true},
		{"echo=tcp://:7,scope=local", "echo=tcp://:7,scope=local", true},
		{"echo=tcp://:7,scope=global", "echo=tcp://:7", true},
		{"echo=tcp://:7,ns=default", "echo=tcp://:7,ns=default", true},
		{"echo=tcp://:7,ns=blue", "ns=blue needs secret=", false},
		{"echo=tcp://:7,secret=s", "secret= goes with ns=NAME", false},
		{"echo=tcp://:7,ns=default,secret=s", "secret= goes with ns=NAME", false},
		{"echo=tcp://:7,ns=a/b,secret=s", "ns=: namespace \"a/b\": want letters", false},
		{"echo=tcp://:7,scope=near", `scope "near": want global, local or both`, false},
		{"echo=udp://:7,scope=local", "scope=local is for tcp:// and tls:// apps", false},
		{"echo=quic://:7,test-cert=a,scope=both", "scope=both is for tcp:// and tls:// apps", false},
		{"echo=tcp://:7,cert=a.pem", "go with tls:// or quic://", false},
		{"echo=tls://:7", "needs cert=FILE and key=FILE", false},
		{"echo=tls://:7,cert=/no/cert.pem,key=/no/key.pem", "no such file", false},
		{"http=udp://:80", "serves streams", false},
		{"http=tcp://:80,root=" + file, "is not a folder", false},
		{"proxy=tcp://:80", "proxy needs backend=", false},
		{"proxy=tcp://:80,backend=http://x:1", "want tcp://HOST:PORT or unix:///PATH", false},
		{"proxy=tls://:443,backend=tcp://127.0.0.1:8080,test-cert=a.test,alpn=h2", "proxy=tls://:443", true},
		{"proxy=tcp://:80,backend=tcp://127.0.0.1:99999", `port "99999" is not a number from 0 to 65535`, false},
		{"proxy=tcp://:80,backend=tcp://:", "want tcp://HOST:PORT", false},
		{"proxy=tcp://:80,backend=tcp://127.0.0.1:8080,alpn=h2", "alpn= goes with tls:// or quic://", false},
		{"http=tcp://:80,root=", "option root: empty value", false},
		{"echo=tls://:7,test-cert=", "option test-cert: empty value", false},
		{"echo=tls://:7,test-cert=a.test,test-cert=b.test", "option test-cert given twice", false},
		{"echo=tcp://:7,=x", `option "=x": want opt=val`, false},
		{"echo=tls://[echo.test]10.0.0.1:7,test-cert=echo.test", "[echo.test] names the server a client checks", false},
	} {
		t.Run(tc.in, func(t *testing.T) {
			s, err := ParseSpec(tc.in)
			if tc.ok {
				if err != nil || s.String() != tc.want {
					t.Fatalf("ParseSpec(%q): got %v, %v; want %s", tc.in, s, err, tc.want)
				}
				if s.URI.Secure() != (s.TLS != nil) {
					t.Errorf("ParseSpec(%q): TLS config %v for %s", tc.in, s.TLS != nil, s.URI.Scheme)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.want) || !strings.HasPrefix(err.Error(), "app ") {
				t.Fatalf("ParseSpec(%q): got error %v, want one containing %q", tc.in, err, tc.want)
			}
		})
	}
}

// TestSecretNeverShown: the secret is in no spec's String and in no
// error, wherever it is wrong.
func TestSecretNeverShown(t *testing.T) {
	const secret = "s3cr3t"
	for _, in := range []string{
		"echo=tcp://:7,ns=blue,secret=" + secret,
		"echo=tcp://:7,ns=blue,secret=" + secret + ",size=1",
		"echo=tcp://:7,ns=blue,secret=" + secret + ",scope=x",
		"echo=tcp://:7,secret=" + secret,
		"echo=tcp://:7,ns=blue,secret=" + secret + ",secret=" + secret,
		"echo=tcp://:7,ns=blue,secert=" + secret,
		"echo=tcp://:0,ns=blue,secret=" + secret,
	} {
		spec, err := ParseSpec(in)
		shown := spec.String() + fmt.Sprint(spec.Opts)
		if err != nil {
			shown = err.Error()
		}
		if strings.Contains(shown, secret) {
			t.Errorf("ParseSpec(%q) shows the secret: %s", in, shown)
		}
	}
}

func TestCheckSpecs(t *testing.T) {
	parse := func(specs ...string) []Spec {
		var out []Spec
		for _, s := range specs {
			spec, err := ParseSpec(s)
			if err != nil {
				t.Fatal(err)
			}
			out = append(out, spec)
		}
		return out
	}
	if err := CheckSpecs(parse("http=tls://:443,test-cert=a", "http=quic://:443,test-cert=a", "echo=udp://:7", "echo=tcp://:7")); err != nil {
		t.Errorf("TCP and UDP on the same ports: %v", err)
	}
	if err := CheckSpecs(parse("echo=tcp://10.0.0.1:7", "echo=tcp://10.0.0.2:7")); err != nil {
		t.Errorf("same port, other addresses: %v", err)
	}
	if err := CheckSpecs(parse("echo=tcp://:7,ns=blue,secret=b", "echo=tcp://:7,ns=red,secret=r")); err != nil {
		t.Errorf("same port, other namespaces: %v", err)
	}
	for _, pair := range [][]string{
		{"echo=tcp://:7", "http=tcp://:7"},
		{"echo=tcp://10.0.0.1:7", "http=tls://:7,test-cert=a"},
		{"echo=udp://:443", "http=quic://:443,test-cert=a"},
		{"echo=tcp://:7", "echo=tcp://:7,ns=default"},
		{"echo=tcp://:7,ns=blue,secret=b", "http=tcp://:7,ns=blue,secret=b"},
	} {
		if err := CheckSpecs(parse(pair...)); err == nil || !strings.Contains(err.Error(), "both on") {
			t.Errorf("CheckSpecs(%v): got %v, want a clash", pair, err)
		}
	}
}

// TestEchoKernel runs the echo server and client over loopback kernel
// sockets on every transport, with every byte verified.
func TestEchoKernel(t *testing.T) {
	for _, tc := range []struct {
		name    string
		uri     string
		bytes   int64
		streams int
		uni     bool
	}{
		{"tcp", "tcp://127.0.0.1:0", 1 << 20, 1, false},
		{"udp", "udp://127.0.0.1:0", 64 << 10, 1, false},
		{"tls", "tls://127.0.0.1:0", 1 << 20, 1, false},
		{"quic", "quic://127.0.0.1:0", 256 << 10, 1, false},
		{"quic streams", "quic://127.0.0.1:0", 256 << 10, 4, false},
		{"quic uni streams", "quic://127.0.0.1:0", 256 << 10, 4, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			uri, err := transport.ParseURI(tc.uri)
			if err != nil {
				t.Fatal(err)
			}
			opts := map[string]string{}
			if uri.Secure() {
				opts["test-cert"] = "127.0.0.1"
			}
			uri.Port = 1 // NewSpec wants a real port; the server binds port 0 below
			spec, err := NewSpec("echo", uri, opts)
			if err != nil {
				t.Fatal(err)
			}
			uri.Port = 0
			srv, err := StartEcho(transport.Kernel, uri, spec.TLS)
			if err != nil {
				t.Fatal(err)
			}
			defer srv.Close()
			target, err := transport.ParseURI(string(uri.Scheme) + "://" + srv.Addr().String())
			if err != nil {
				t.Fatal(err)
			}
			cfg := ClientConfig{URI: target, Bytes: tc.bytes, Clients: 3, Streams: tc.streams, Uni: tc.uni, Reflect: true, Verify: true,
				TLS: &tls.Config{InsecureSkipVerify: true}}
			r, err := RunClient(context.Background(), transport.Kernel, cfg)
			if err != nil {
				t.Fatal(err)
			}
			want := cfg.Bytes * int64(cfg.Clients) * int64(max(cfg.Streams, 1))
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
