package test

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	xdaemon "github.com/xdpstack/xdpstack/daemon"
	"github.com/xdpstack/xdpstack/internal/testing/testutil"
)

// testHost is the name in the test certificate.
const testHost = "xdpstack.test"

// writeCert writes a self-signed certificate for testHost and addr,
// valid from notBefore to notAfter, and its key; it returns the files.
func writeCert(t *testing.T, addr string, notBefore, notAfter time.Time) (certFile, keyFile string) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(time.Now().UnixNano()),
		Subject:      pkix.Name{CommonName: testHost},
		DNSNames:     []string{testHost},
		IPAddresses:  []net.IP{net.ParseIP(addr)},
		NotBefore:    notBefore, NotAfter: notAfter,
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true, IsCA: true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, _ := x509.MarshalECPrivateKey(key)
	dir := t.TempDir()
	certFile, keyFile = filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644)
	os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: keyDER}), 0o600)
	return certFile, keyFile
}

func needTools(t *testing.T, tools ...string) {
	t.Helper()
	for _, tool := range tools {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("needs %s (make deps installs it)", tool)
		}
	}
}

// backendFiles serves files of the given sizes from a kernel HTTP server
// on host a's loopback, port 8080, and returns their SHA-256 sums.
func backendFiles(t *testing.T, a *testutil.Host, sizes map[string]int) map[string][32]byte {
	t.Helper()
	dir := t.TempDir()
	sums := map[string][32]byte{}
	for name, size := range sizes {
		b := make([]byte, size)
		rand.Read(b)
		os.WriteFile(filepath.Join(dir, name), b, 0o644)
		sums[name] = sha256.Sum256(b)
	}
	var ln net.Listener
	a.Do(t, func() (err error) {
		ln, err = net.Listen("tcp", "127.0.0.1:8080")
		return err
	})
	srv := &http.Server{Handler: http.FileServer(http.Dir(dir))}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	return sums
}

// TestApps serves the HTTP, proxy and echo apps on the userstack over
// TCP, TLS and QUIC, and talks to them from the peer namespace with real
// clients: curl, openssl s_client, ngtcp2's client, wrk, and the echo
// tester (quic-go and crypto/tls on kernel sockets).
func TestApps(t *testing.T) {
	needTools(t, "curl", "openssl")
	a, b := testutil.HostPair(t, 2)
	root := testutil.PinRoot(t)
	cert, key := writeCert(t, a.Addr.String(), time.Now().Add(-time.Hour), time.Now().Add(24*time.Hour))
	tlsOpts := ",cert=" + cert + ",key=" + key
	sums := backendFiles(t, a, map[string]int{"empty": 0, "one": 1, "mib": 1 << 20, "big": 100 << 20})
	www := t.TempDir()
	os.WriteFile(filepath.Join(www, "hello.txt"), []byte("hello from the userstack\n"), 0o644)
	startDaemon(t, a, root, "--metrics-addr", "", "--root", www,
		"--app", "http=tcp://:80",
		"--app", "http=tls://:443"+tlsOpts,
		"--app", "http=quic://:443"+tlsOpts,
		"--app", "echo=tls://:7"+tlsOpts,
		"--app", "echo=quic://:7"+tlsOpts,
		"--app", "proxy=tcp://:8000,backend=tcp://127.0.0.1:8080",
		"--app", "proxy=tls://:8443,backend=tcp://127.0.0.1:8080"+tlsOpts,
	)
	addr := a.Addr.String()
	resolve := func(port int) string { return fmt.Sprintf("%s:%d:%s", testHost, port, addr) }
	curl := func(t *testing.T, args ...string) (string, error) {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		out, err := b.Command(ctx, "curl", append([]string{"-sS", "--max-time", "50"}, args...)...).CombinedOutput()
		return string(out), err
	}

	t.Run("curl http status", func(t *testing.T) {
		out, err := curl(t, "http://"+addr+"/status.json")
		var st xdaemon.Status
		if err != nil || json.Unmarshal([]byte(out), &st) != nil || st.Iface != a.Iface || len(st.Queues) != 2 || len(st.Verdicts) == 0 || len(st.Apps) != 7 {
			t.Fatalf("curl status.json: %v\n%s", err, out)
		}
		// This very request came in TCP segments.
		segments := map[string]uint64{}
		for _, c := range st.Netstack {
			segments[c.Name] = c.Value
		}
		if segments[`xdpstack_userstack_tcp_segments_total{direction="rx"}`] == 0 {
			t.Errorf("status.json netstack counters: %v, want TCP segments received", st.Netstack)
		}
		if out, err := curl(t, "http://"+addr+"/status"); err != nil || !strings.Contains(out, "XDP verdicts") {
			t.Errorf("curl status page: %v\n%.300s", err, out)
		}
		if out, err := curl(t, "http://"+addr+"/hello.txt"); err != nil || out != "hello from the userstack\n" {
			t.Errorf("curl a file from --root: %v, %q", err, out)
		}
	})
	t.Run("curl https verified, HTTP/2", func(t *testing.T) {
		out, err := curl(t, "--cacert", cert, "--resolve", resolve(443), "-o", "/dev/null", "-w", "%{http_code} %{http_version}",
			fmt.Sprintf("https://%s/status.json", testHost))
		if err != nil || out != "200 2" {
			t.Fatalf("curl https: %v, %q; want 200 over HTTP/2", err, out)
		}
	})
	t.Run("curl refuses a wrong host name", func(t *testing.T) {
		out, err := curl(t, "--cacert", cert, "--resolve", "wrong.test:443:"+addr, "https://wrong.test/status.json")
		if err == nil || !strings.Contains(out, "wrong.test") {
			t.Fatalf("curl with a wrong name: %v, %q; want a refusal", err, out)
		}
		if out, err := curl(t, "--resolve", resolve(443), "https://"+testHost+"/"); err == nil || !strings.Contains(out, "certificate") {
			t.Fatalf("curl without the CA: %v, %q; want a refusal", err, out)
		}
	})
	t.Run("openssl s_client tls echo", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		// The pause lets the echo come back before stdin's end closes.
		cmd := b.Command(ctx, "sh", "-c", fmt.Sprintf("(echo hello-over-tls; sleep 1) | openssl s_client -brief -connect %s:7 -servername %s -verify_hostname %s -CAfile %s -alpn xdpstack-echo",
			addr, testHost, testHost, cert))
		out, err := cmd.CombinedOutput()
		if err != nil || !strings.Contains(string(out), "Verification: OK") || !strings.Contains(string(out), "hello-over-tls") {
			t.Fatalf("openssl s_client: %v\n%s", err, out)
		}
	})
	t.Run("echo tester tls and quic", func(t *testing.T) {
		for _, tc := range []struct {
			name string
			args []string
			want int64
		}{
			{"tls", []string{"--uri", fmt.Sprintf("tls://[%s]%s:7", testHost, addr), "--bytes", "16M", "--nclients", "2"}, 32 << 20},
			{"quic streams", []string{"--uri", fmt.Sprintf("quic://[%s]%s:7", testHost, addr), "--bytes", "4M", "--nclients", "2", "--streams", "4"}, 32 << 20},
			{"quic uni streams", []string{"--uri", fmt.Sprintf("quic://[%s]%s:7", testHost, addr), "--bytes", "1M", "--streams", "4", "--uni"}, 4 << 20},
		} {
			t.Run(tc.name, func(t *testing.T) {
				r := echoClient(t, b, root, append(tc.args, "--ca-cert", cert, "--verify")...)
				if r.BytesReceived != tc.want || r.VerifyErrors != 0 || r.Errors != 0 {
					t.Fatalf("%s: %+v, want %d bytes verified", tc.name, r, tc.want)
				}
			})
		}
	})
	t.Run("echo tester refuses bad certificates", func(t *testing.T) {
		expiredCert, expiredKey := writeCert(t, addr, time.Now().Add(-48*time.Hour), time.Now().Add(-24*time.Hour))
		// A kernel echo server with the expired certificate, in host a.
		srv := a.Command(context.Background(), binary, "echo", "server", "--uri", "tls://"+addr+":9443", "--cert", expiredCert, "--key", expiredKey)
		if err := srv.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { srv.Process.Kill(); srv.Wait() })
		for _, tc := range []struct {
			name, uri, ca, want string
		}{
			{"wrong name", fmt.Sprintf("tls://[wrong.test]%s:7", addr), cert, "not wrong.test"},
			{"unknown CA", fmt.Sprintf("tls://[%s]%s:7", testHost, addr), expiredCert, "unknown authority"},
			{"expired", fmt.Sprintf("tls://[%s]%s:9443", testHost, addr), expiredCert, "expired"},
			{"quic wrong name", fmt.Sprintf("quic://[wrong.test]%s:7", addr), cert, "not wrong.test"},
		} {
			t.Run(tc.name, func(t *testing.T) {
				var out []byte
				var err error
				for range 20 { // the expired server may still be starting
					ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
					out, err = b.Command(ctx, binary, "echo", "client", "--uri", tc.uri, "--ca-cert", tc.ca, "--bytes", "1K", "--stats", "0").CombinedOutput()
					cancel()
					if !strings.Contains(string(out), "connection refused") {
						break
					}
					time.Sleep(100 * time.Millisecond)
				}
				if err == nil || !strings.Contains(string(out), tc.want) {
					t.Fatalf("echo client: %v, %q; want a refusal mentioning %q", err, out, tc.want)
				}
			})
		}
	})
	t.Run("ngtcp2 client over HTTP/3", func(t *testing.T) {
		needTools(t, "gtlsclient")
		dir := t.TempDir()
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		out, err := b.Command(ctx, "gtlsclient", "-q", "--exit-on-all-streams-close", "--download="+dir, "--sni="+testHost,
			addr, "443", fmt.Sprintf("https://%s:443/status.json", testHost)).CombinedOutput()
		body, rerr := os.ReadFile(filepath.Join(dir, "status.json"))
		if err != nil || rerr != nil || !bytes.Contains(body, []byte(`"iface"`)) {
			t.Fatalf("gtlsclient: %v, %v\n%s\nbody %q", err, rerr, out, body)
		}
	})
	t.Run("proxy bodies intact", func(t *testing.T) {
		for _, via := range []struct{ name, url string }{
			{"tcp", "http://" + addr + ":8000/"},
			{"tls", "https://" + testHost + ":8443/"},
		} {
			for file, want := range sums {
				t.Run(via.name+" "+file, func(t *testing.T) {
					out := filepath.Join(t.TempDir(), file)
					if msg, err := curl(t, "--cacert", cert, "--resolve", resolve(8443), "-o", out, via.url+file); err != nil {
						t.Fatalf("curl through the proxy: %v %s", err, msg)
					}
					got, _ := os.ReadFile(out)
					if sha256.Sum256(got) != want {
						t.Fatalf("%s through the %s proxy: %d bytes, wrong contents", file, via.name, len(got))
					}
				})
			}
		}
		out, err := curl(t, "http://"+addr+"/status.json")
		var st xdaemon.Status
		json.Unmarshal([]byte(out), &st)
		proxied := false
		for _, app := range st.Apps {
			proxied = proxied || app.Backend == "tcp://127.0.0.1:8080" && app.Counters["bytes_out"] > 0
		}
		if err != nil || !proxied {
			t.Errorf("proxy counters in the status: %v\n%s", err, out)
		}
	})
	t.Run("wrk load", func(t *testing.T) {
		needTools(t, "wrk")
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		out, err := b.Command(ctx, "wrk", "-t2", "-c16", "-d3s", "http://"+addr+"/status.json").CombinedOutput()
		s := string(out)
		if err != nil || !strings.Contains(s, "Requests/sec") || strings.Contains(s, "Socket errors") || strings.Contains(s, "Non-2xx") {
			t.Fatalf("wrk: %v\n%s", err, s)
		}
		t.Logf("wrk: %s", regexp.MustCompile(`Requests/sec:\s+\S+`).FindString(s))
	})
}
