package proxy

import (
	"bytes"
	"crypto/rand"
	"io"
	"net"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/xdpstack/xdpstack/internal/testing/testutil"
)

// backendServer reads a request until the client half-closes, then
// answers with a reply derived from it and closes.
func backendServer(t *testing.T, network, addr string) net.Listener {
	t.Helper()
	ln, err := net.Listen(network, addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go testutil.Serve(ln, func(c net.Conn) {
		req, _ := io.ReadAll(c)
		c.Write([]byte("got:"))
		c.Write(req)
	})
	return ln
}

func startProxy(t *testing.T, backend Backend) (*Proxy, string) {
	t.Helper()
	p := New(backend)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	served := make(chan error, 1)
	go func() { served <- p.Serve(ln) }()
	t.Cleanup(func() {
		ln.Close()
		if err := <-served; err != nil {
			t.Errorf("Serve: %v", err)
		}
	})
	return p, ln.Addr().String()
}

func TestForwardsWithHalfClose(t *testing.T) {
	sock := filepath.Join(t.TempDir(), "backend.sock")
	for _, b := range []Backend{
		{"tcp", backendServer(t, "tcp", "127.0.0.1:0").Addr().String()},
		{"unix", backendServer(t, "unix", sock).Addr().String()},
	} {
		t.Run(b.Network, func(t *testing.T) {
			p, addr := startProxy(t, b)
			var total uint64
			for _, size := range []int{0, 1, 1 << 20} {
				body := make([]byte, size)
				rand.Read(body)
				c, err := net.Dial("tcp", addr)
				if err != nil {
					t.Fatal(err)
				}
				c.SetDeadline(time.Now().Add(10 * time.Second))
				go func() {
					c.Write(body)
					c.(*net.TCPConn).CloseWrite()
				}()
				reply, err := io.ReadAll(c)
				c.Close()
				if err != nil || !bytes.Equal(reply, append([]byte("got:"), body...)) {
					t.Fatalf("%d-byte request: reply of %d bytes, err %v", size, len(reply), err)
				}
				total += uint64(size)
			}
			waitIdle(t, p)
			st := p.Stats()
			if st.Accepted != 3 || st.BytesIn != total || st.BytesOut != total+3*4 || st.BackendErrors != 0 {
				t.Errorf("Stats: got %+v, want 3 accepted, %d bytes in, %d out", st, total, total+12)
			}
		})
	}
}

func waitIdle(t *testing.T, p *Proxy) {
	t.Helper()
	for deadline := time.Now().Add(5 * time.Second); p.Stats().Active != 0; time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("connections still active: %+v", p.Stats())
		}
	}
}

func TestBackendDown(t *testing.T) {
	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	addr := ln.Addr().String()
	ln.Close()
	p, proxyAddr := startProxy(t, Backend{"tcp", addr})
	c, err := net.Dial("tcp", proxyAddr)
	if err != nil {
		t.Fatal(err)
	}
	c.SetDeadline(time.Now().Add(5 * time.Second))
	if n, err := c.Read(make([]byte, 1)); n != 0 || err == nil {
		t.Errorf("read from proxy with backend down: got %d, %v; want the connection closed", n, err)
	}
	c.Close()
	waitIdle(t, p)
	if st := p.Stats(); st.BackendErrors != 1 {
		t.Errorf("BackendErrors: got %d, want 1", st.BackendErrors)
	}
}

func TestParseBackend(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want Backend
		err  string
	}{
		{"tcp://127.0.0.1:8080", Backend{"tcp", "127.0.0.1:8080"}, ""},
		{"tcp://[::1]:80", Backend{"tcp", "[::1]:80"}, ""},
		{"unix:///run/app.sock", Backend{"unix", "/run/app.sock"}, ""},
		{"tcp://127.0.0.1", Backend{}, "want tcp://HOST:PORT"},
		{"tcp://127.0.0.1:99999", Backend{}, `port "99999" is not a number from 0 to 65535`},
		{"tcp://:", Backend{}, `port "" is not a number from 0 to 65535`},
		{"tcp://127.0.0.1:0", Backend{}, "port 0 is no port to dial"},
		{"unix://relative", Backend{}, "want unix:///PATH"},
		{"http://x:1", Backend{}, "want tcp://HOST:PORT or unix:///PATH"},
		{"tcp://backend.internal:8080", Backend{"tcp", "backend.internal:8080"}, ""},
		{"tcp://127.0.0.1:-1", Backend{}, `backend "tcp://127.0.0.1:-1": invalid port ":-1" after host`},
		{"tcp://:80", Backend{}, "want tcp://HOST:PORT"},
		{"tcp://127.0.0.1:80/path", Backend{}, "want tcp://HOST:PORT"},
		{"tcp://127.0.0.1:80?x=1", Backend{}, "want tcp://HOST:PORT"},
	} {
		got, err := ParseBackend(tc.in)
		if tc.err != "" {
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("ParseBackend(%q): got %v, want an error containing %q", tc.in, err, tc.err)
			}
			continue
		}
		if err != nil || got != tc.want {
			t.Errorf("ParseBackend(%q): got %v, %v; want %v", tc.in, got, err, tc.want)
		}
	}
}

func TestCloseEndsConnectionsInFlight(t *testing.T) {
	// A backend that never answers nor closes.
	backend, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer backend.Close()
	go func() {
		for {
			c, err := backend.Accept()
			if err != nil {
				return
			}
			defer c.Close()
		}
	}()
	p := New(Backend{"tcp", backend.Addr().String()})
	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	served := make(chan error, 1)
	go func() { served <- p.Serve(ln) }()
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	for deadline := time.Now().Add(5 * time.Second); p.Stats().Active == 0; time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("connection never became active")
		}
	}
	closed := make(chan error, 1)
	go func() { closed <- p.Close() }()
	select {
	case <-closed:
	case <-time.After(5 * time.Second):
		t.Fatal("Close did not end the connection in flight")
	}
	if err := <-served; err != nil {
		t.Errorf("Serve: %v", err)
	}
}
