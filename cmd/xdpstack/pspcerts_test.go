package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/xdpstack/xdpstack/userstack/psp/keyx"
)

// TestPSPCerts: psp certs makes a CA once and node certificates that
// load as the key exchange's identity (keys 0600) and that openssl
// verifies; bad arguments write nothing.
func TestPSPCerts(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "certs")
	code, out, errOut := run(t, "psp", "certs", "--dir", dir, "gw1=127.0.0.1,10.9.0.1", "gw2=fd00::2")
	if code != 0 || !strings.Contains(out, "ca.pem") {
		t.Fatalf("exit %d, stdout %q, stderr %q", code, out, errOut)
	}
	ca, _ := os.ReadFile(filepath.Join(dir, "ca.pem"))
	for _, name := range []string{"gw1", "gw2", "ca"} {
		if st, err := os.Stat(filepath.Join(dir, name+".key")); err != nil || st.Mode().Perm() != 0o600 {
			t.Fatalf("%s.key: %v %v, want mode 0600", name, st.Mode(), err)
		}
	}
	id, err := keyx.LoadTLS(filepath.Join(dir, "gw1.pem"), filepath.Join(dir, "gw1.key"), filepath.Join(dir, "ca.pem"))
	if err != nil {
		t.Fatal(err)
	}
	if ips := id.IPs(); len(ips) != 2 || ips[1].String() != "10.9.0.1" {
		t.Fatalf("gw1 names %v", ips)
	}
	if _, err := exec.LookPath("openssl"); err == nil {
		if b, err := exec.Command("openssl", "verify", "-CAfile", filepath.Join(dir, "ca.pem"), filepath.Join(dir, "gw2.pem")).CombinedOutput(); err != nil {
			t.Fatalf("openssl verify: %v: %s", err, b)
		}
	}
	// A second run keeps the CA.
	if code, _, errOut := run(t, "psp", "certs", "--dir", dir, "gw3=10.9.0.3"); code != 0 {
		t.Fatalf("second run: %s", errOut)
	}
	if again, _ := os.ReadFile(filepath.Join(dir, "ca.pem")); string(again) != string(ca) {
		t.Fatal("a second run replaced the ca")
	}
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"gw4=10.9.0.4"}, "psp certs: --dir missing"},
		{[]string{"--dir", dir}, "psp certs: no node given"},
		{[]string{"--dir", dir, "gw4=10.9.0.300"}, `psp certs: gw4: "10.9.0.300" is not an ip address`},
		{[]string{"--dir", dir, "ca=10.9.0.4"}, `psp certs: "ca=10.9.0.4": want NAME=IP[,IP...]`},
		{[]string{"--dir", dir, "gw4=10.9.0.4", "gw1=10.9.0.1"}, "gw1.pem exists (remove it to make a new one)"},
		{[]string{"--dir", dir, "--days", "0", "gw4=10.9.0.4"}, "psp certs: --days 0: want 1 to 3650"},
	} {
		code, _, errOut := run(t, append([]string{"psp", "certs"}, tc.args...)...)
		if code == 0 || !strings.Contains(errOut, tc.want) || strings.Count(strings.TrimSpace(errOut), "\n") > 0 {
			t.Errorf("%v: exit %d, stderr %q, want %q", tc.args, code, errOut, tc.want)
		}
		if _, err := os.Stat(filepath.Join(dir, "gw4.pem")); err == nil {
			t.Fatalf("%v: wrote gw4.pem", tc.args)
		}
	}
}
