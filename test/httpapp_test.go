package test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/xdpstack/xdpstack/internal/testing/testutil"
)

// TestHTTPAppServesOnlyWhatItShould serves a folder holding a dotfile
// and a link to a secret outside it, with the status pages open to local
// clients (the default), to all, and to none, and reads them with curl
// from the peer's own address (on the interface's network) and from an
// address routed through the peer.
func TestHTTPAppServesOnlyWhatItShould(t *testing.T) {
	needTools(t, "curl")
	a, b := testutil.HostPair(t, 0)
	root := testutil.PinRoot(t)
	outside := t.TempDir()
	secret := filepath.Join(outside, "secret")
	os.WriteFile(secret, []byte("the secret\n"), 0o600)
	www := t.TempDir()
	os.WriteFile(filepath.Join(www, "hello.txt"), []byte("hello\n"), 0o644)
	os.WriteFile(filepath.Join(www, ".env"), []byte("PASSWORD=x\n"), 0o644)
	if err := os.Symlink(secret, filepath.Join(www, "secret")); err != nil {
		t.Fatal(err)
	}
	// A client network behind b, routed to by a.
	routed := fmt.Sprintf("10.214.%d.2", b.Addr.As4()[2])
	b.Exec(t, "ip", "addr", "add", routed+"/32", "dev", "lo")
	a.Exec(t, "ip", "route", "add", routed+"/32", "via", b.Addr.String())
	startDaemon(t, a, root, "--metrics-addr", "", "--root", www,
		"--app", "http=tcp://:80", "--app", "http=tcp://:81,status=all", "--app", "http=tcp://:82,status=off")

	curl := func(from, url string) string {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		out, err := b.Command(ctx, "curl", "-sS", "--max-time", "20", "--interface", from, "-o", "/dev/null", "-w", "%{http_code}", url).CombinedOutput()
		if err != nil {
			t.Fatalf("curl %s from %s: %v\n%s", url, from, err, out)
		}
		return string(out)
	}
	peer := b.Addr.String()
	for _, tc := range []struct {
		from string
		port int
		path string
		want string
	}{
		{peer, 80, "/hello.txt", "200"},
		{peer, 80, "/.env", "404"},
		{peer, 80, "/secret", "404"},
		{peer, 80, "/status.json", "200"},
		{peer, 80, "/status", "200"},
		{routed, 80, "/status.json", "403"},
		{routed, 80, "/status", "403"},
		{routed, 80, "/hello.txt", "200"},
		{routed, 81, "/status.json", "200"},
		{peer, 82, "/status.json", "404"},
		{peer, 82, "/hello.txt", "200"},
	} {
		url := fmt.Sprintf("http://%s:%d%s", a.Addr, tc.port, tc.path)
		if got := curl(tc.from, url); got != tc.want {
			t.Errorf("curl %s from %s: %s, want %s", url, tc.from, got, tc.want)
		}
	}
}
