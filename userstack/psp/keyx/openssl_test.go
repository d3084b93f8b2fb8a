package keyx

import (
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// openssl runs the openssl CLI in dir.
func openssl(t *testing.T, dir string, args ...string) {
	t.Helper()
	cmd := exec.Command("openssl", args...)
	cmd.Dir = dir
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("openssl %s: %v\n%s", strings.Join(args, " "), err, out)
	}
}

// opensslNode makes a node certificate signed by the CA in dir with the
// openssl CLI, naming ips, and loads it.
func opensslNode(t *testing.T, dir, name string, ips ...netip.Addr) *TLS {
	t.Helper()
	var san []string
	for _, ip := range ips {
		san = append(san, "IP:"+ip.String())
	}
	ext := fmt.Sprintf("subjectAltName=%s\nextendedKeyUsage=serverAuth,clientAuth\n", strings.Join(san, ","))
	if err := os.WriteFile(filepath.Join(dir, name+".ext"), []byte(ext), 0o600); err != nil {
		t.Fatal(err)
	}
	openssl(t, dir, "req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
		"-keyout", name+".key", "-out", name+".csr", "-subj", "/CN="+name)
	openssl(t, dir, "x509", "-req", "-in", name+".csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial",
		"-out", name+".pem", "-days", "1", "-extfile", name+".ext")
	key := filepath.Join(dir, name+".key")
	os.Chmod(key, 0o600)
	id, err := LoadTLS(filepath.Join(dir, name+".pem"), key, filepath.Join(dir, "ca.pem"))
	if err != nil {
		t.Fatal(err)
	}
	return id
}

// TestOpenSSLCertificates: certificates made with the openssl CLI carry
// an exchange, and a key others may read is refused.
func TestOpenSSLCertificates(t *testing.T) {
	if _, err := exec.LookPath("openssl"); err != nil {
		t.Skip("openssl not installed (make deps installs it)")
	}
	dir := t.TempDir()
	openssl(t, dir, "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
		"-keyout", "ca.key", "-out", "ca.pem", "-days", "1", "-subj", "/CN=openssl test ca")
	nodes := mesh(t, meshOpts{n: 2, tlsOf: func(i int, _ PEM) *TLS {
		return opensslNode(t, dir, fmt.Sprintf("node%d", i), loopback, vipOf(i))
	}})
	a, b := nodes[0], nodes[1]
	a.gw.Request(b.vip)
	if err := b.open(a.seal(t, a.waitTunnel(t, b.vip), b.vip), a.vip); err != nil {
		t.Fatal(err)
	}
	if st := a.gw.Peers()[0]; st.Subject != "CN=node1" {
		t.Fatalf("peer subject %q, want CN=node1", st.Subject)
	}
	key := filepath.Join(dir, "node0.key")
	os.Chmod(key, 0o644)
	_, err := LoadTLS(filepath.Join(dir, "node0.pem"), key, filepath.Join(dir, "ca.pem"))
	if err == nil || !strings.Contains(err.Error(), "readable by others (chmod 600)") {
		t.Fatalf("a key others may read: %v", err)
	}
}
