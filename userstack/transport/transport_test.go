package transport

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/tls"
	"encoding/pem"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	xtls "github.com/xdpstack/xdpstack/userstack/tls"

	"github.com/xdpstack/xdpstack/internal/testing/testutil"
)

// echoOn serves echo on a stream listener: everything until the peer's
// FIN, then a FIN back.
func echoOn(t *testing.T, ln net.Listener) {
	t.Cleanup(func() { ln.Close() })
	go testutil.Echo(ln)
}

func roundTrip(t *testing.T, c net.Conn, size int) {
	t.Helper()
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	data := make([]byte, size)
	rand.Read(data)
	go func() {
		c.Write(data)
		c.(interface{ CloseWrite() error }).CloseWrite()
	}()
	got, err := io.ReadAll(c)
	if err != nil || !bytes.Equal(got, data) {
		t.Fatalf("echo of %d bytes: got %d, %v", size, len(got), err)
	}
}

// testTLS returns a server configuration for "echo.test" and a client
// configuration that trusts it.
func testTLS(t *testing.T, alpn string) (*tls.Config, *tls.Config) {
	t.Helper()
	server, err := xtls.ServerConfig(xtls.ServerOptions{TestCertHost: "echo.test", ALPN: []string{alpn}})
	if err != nil {
		t.Fatal(err)
	}
	ca := filepath.Join(t.TempDir(), "ca.pem")
	os.WriteFile(ca, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: server.Certificates[0].Certificate[0]}), 0o600)
	client, err := xtls.ClientConfig(xtls.ClientOptions{CAFile: ca, ALPN: []string{alpn}})
	if err != nil {
		t.Fatal(err)
	}
	return server, client
}

func listen(t *testing.T, uri string, conf *tls.Config) (net.Listener, URI) {
	t.Helper()
	u, err := ParseURI(uri)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := Listen(Kernel, u, conf)
	if err != nil {
		t.Fatalf("Listen(%s): %v", u, err)
	}
	echoOn(t, ln)
	return ln, u
}

func dialURI(t *testing.T, scheme, name string, addr net.Addr) URI {
	t.Helper()
	u, err := ParseURI(scheme + "://" + name + addr.String())
	if err != nil {
		t.Fatal(err)
	}
	return u
}

func TestTCPAndTLS(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	ln, _ := listen(t, "tcp://127.0.0.1:0", nil)
	c, err := Dial(ctx, Kernel, dialURI(t, "tcp", "", ln.Addr()), nil)
	if err != nil {
		t.Fatal(err)
	}
	roundTrip(t, c, 1<<20)

	server, client := testTLS(t, "echo")
	tln, _ := listen(t, "tls://127.0.0.1:0", server)
	c, err = Dial(ctx, Kernel, dialURI(t, "tls", "[echo.test]", tln.Addr()), client)
	if err != nil {
		t.Fatalf("Dial tls with the right name: %v", err)
	}
	roundTrip(t, c, 1<<20)
	if _, err := Dial(ctx, Kernel, dialURI(t, "tls", "[other.test]", tln.Addr()), client); err == nil || !strings.Contains(err.Error(), "other.test") {
		t.Errorf("Dial tls with the wrong name: got %v", err)
	}
}

func TestQUIC(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	server, client := testTLS(t, "echo")
	ln, _ := listen(t, "quic://127.0.0.1:0", server)
	conn, err := DialQUIC(ctx, Kernel, dialURI(t, "quic", "[echo.test]", ln.Addr()), client)
	if err != nil {
		t.Fatalf("DialQUIC: %v", err)
	}
	defer conn.Close()
	for range 4 {
		s, err := conn.OpenStream(ctx)
		if err != nil {
			t.Fatal(err)
		}
		roundTrip(t, s, 256<<10)
	}
}

func TestListenErrors(t *testing.T) {
	for _, tc := range []struct {
		uri, want string
	}{
		{"tls://127.0.0.1:0", "needs a certificate"},
		{"quic://127.0.0.1:0", "needs a certificate"},
		{"udp://127.0.0.1:0", "carries datagrams"},
	} {
		u, _ := ParseURI(tc.uri)
		if _, err := Listen(Kernel, u, nil); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("Listen(%s): got %v, want an error containing %q", tc.uri, err, tc.want)
		}
	}
}
