package tls

import (
	cryptotls "crypto/tls"
	"encoding/pem"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/xdpstack/xdpstack/internal/testing/testutil"
)

// serve accepts one TLS connection on loopback with cfg, echoes a line
// and returns the address.
func serve(t *testing.T, cfg *cryptotls.Config) string {
	t.Helper()
	ln, err := cryptotls.Listen("tcp", "127.0.0.1:0", cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go testutil.Echo(ln)
	return ln.Addr().String()
}

func writePEM(t *testing.T, pem []byte) string {
	path := filepath.Join(t.TempDir(), "ca.pem")
	if err := os.WriteFile(path, pem, 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

func dial(addr string, cfg *cryptotls.Config) (*cryptotls.Conn, error) {
	c, err := cryptotls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", addr, cfg)
	if err != nil {
		return nil, err
	}
	if _, err := c.Write([]byte("ping")); err != nil {
		c.Close()
		return nil, err
	}
	buf := make([]byte, 4)
	if _, err := io.ReadFull(c, buf); err != nil {
		c.Close()
		return nil, err
	}
	return c, nil
}

func TestVerifiedConnection(t *testing.T) {
	server, err := ServerConfig(ServerOptions{TestCertHost: "echo.test", ALPN: []string{"h2", "http/1.1"}})
	if err != nil {
		t.Fatal(err)
	}
	addr := serve(t, server)
	_, certPEM, _ := TestCertificate("other.test")
	leafPEM := pemOf(t, server)
	for _, tc := range []struct {
		name    string
		opts    ClientOptions
		version uint16
		wantErr string
	}{
		{"tls 1.3 with alpn", ClientOptions{CAFile: writePEM(t, leafPEM), ServerName: "echo.test", ALPN: []string{"http/1.1"}}, 0, ""},
		{"tls 1.2", ClientOptions{CAFile: writePEM(t, leafPEM), ServerName: "echo.test"}, cryptotls.VersionTLS12, ""},
		{"wrong host name", ClientOptions{CAFile: writePEM(t, leafPEM), ServerName: "wrong.test"}, 0, "not wrong.test"},
		{"untrusted certificate", ClientOptions{CAFile: writePEM(t, certPEM), ServerName: "echo.test"}, 0, "unknown authority"},
		{"system bundle does not know it", ClientOptions{ServerName: "echo.test"}, 0, "unknown authority"},
		{"insecure by choice", ClientOptions{InsecureSkipVerify: true}, 0, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg, err := ClientConfig(tc.opts)
			if err != nil {
				t.Fatal(err)
			}
			if tc.version != 0 {
				cfg.MaxVersion = tc.version
			}
			c, err := dial(addr, cfg)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("dial: got %v, want an error containing %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("dial: %v", err)
			}
			defer c.Close()
			st := c.ConnectionState()
			if want := cmpOr(tc.version, cryptotls.VersionTLS13); st.Version != want {
				t.Errorf("version: got %x, want %x", st.Version, want)
			}
			if len(tc.opts.ALPN) > 0 && st.NegotiatedProtocol != tc.opts.ALPN[0] {
				t.Errorf("ALPN: got %q, want %q", st.NegotiatedProtocol, tc.opts.ALPN[0])
			}
		})
	}
}

func cmpOr(a, b uint16) uint16 {
	if a != 0 {
		return a
	}
	return b
}

// pemOf returns the PEM of the server's own certificate.
func pemOf(t *testing.T, cfg *cryptotls.Config) []byte {
	t.Helper()
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: cfg.Certificates[0].Certificate[0]})
}

func TestExpiredCertificateRefused(t *testing.T) {
	cert, certPEM, err := selfSigned("old.test", time.Now().Add(-48*time.Hour), time.Now().Add(-24*time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	addr := serve(t, &cryptotls.Config{Certificates: []cryptotls.Certificate{cert}})
	cfg, err := ClientConfig(ClientOptions{CAFile: writePEM(t, certPEM), ServerName: "old.test"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := dial(addr, cfg); err == nil || !strings.Contains(err.Error(), "expired") {
		t.Fatalf("dial to an expired certificate: got %v", err)
	}
}

func TestConfigErrors(t *testing.T) {
	dir := t.TempDir()
	notPEM := filepath.Join(dir, "not.pem")
	os.WriteFile(notPEM, []byte("hello"), 0o600)
	for _, tc := range []struct {
		name string
		err  error
		want string
	}{
		{"no cert", second(ServerConfig(ServerOptions{})), "needs cert=FILE and key=FILE"},
		{"both", second(ServerConfig(ServerOptions{CertFile: "a", KeyFile: "b", TestCertHost: "h"})), "not both"},
		{"missing files", second(ServerConfig(ServerOptions{CertFile: filepath.Join(dir, "c.pem"), KeyFile: filepath.Join(dir, "k.pem")})), "no such file"},
		{"missing CA", second(ClientConfig(ClientOptions{CAFile: filepath.Join(dir, "ca.pem")})), "read CA file"},
		{"CA not PEM", second(ClientConfig(ClientOptions{CAFile: notPEM})), "holds no PEM certificate"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if tc.err == nil || !strings.Contains(tc.err.Error(), tc.want) {
				t.Errorf("got %v, want an error containing %q", tc.err, tc.want)
			}
		})
	}
}

func second(_ *cryptotls.Config, err error) error { return err }
