package httpapp

import (
	"io"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// fakeStatus stands in for the daemon's status pages.
var fakeStatus = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
	io.WriteString(w, "status at "+r.URL.Path)
})

func newHandler(t *testing.T, opts Options) *Handler {
	t.Helper()
	h, err := New(opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { h.Close() })
	return h
}

func get(t *testing.T, srv *httptest.Server, path string) (int, string) {
	t.Helper()
	resp, err := srv.Client().Get(srv.URL + path)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(body)
}

func TestStatus(t *testing.T) {
	srv := httptest.NewServer(newHandler(t, Options{Status: fakeStatus}))
	defer srv.Close()
	for path, want := range map[string]string{"/status": "status at /status", "/status.json": "status at /status.json", "/": "status at /status"} {
		if code, body := get(t, srv, path); code != 200 || body != want {
			t.Errorf("GET %s: %d %q, want 200 %q", path, code, body, want)
		}
	}
	if code, _ := get(t, srv, "/missing"); code != 404 {
		t.Errorf("GET /missing: got %d, want 404", code)
	}
	resp, err := srv.Client().Post(srv.URL+"/status.json", "text/plain", nil)
	if err != nil || resp.StatusCode != http.StatusMethodNotAllowed {
		t.Errorf("POST /status.json: got %v, %v; want 405", resp.StatusCode, err)
	}
}

// TestAccess checks who may read the status pages under each status=.
func TestAccess(t *testing.T) {
	lan := netip.MustParsePrefix("10.0.0.0/24")
	local := func(a netip.Addr) bool { return lan.Contains(a) }
	for _, tc := range []struct {
		access string
		from   string
		want   int
	}{
		{"local", "127.0.0.1:4000", 200},
		{"local", "[::1]:4000", 200},
		{"local", "10.0.0.2:4000", 200},
		{"local", "[::ffff:10.0.0.2]:4000", 200},
		{"local", "192.0.2.1:4000", 403},
		{"all", "192.0.2.1:4000", 200},
		{"off", "127.0.0.1:4000", 404},
	} {
		access, err := ParseAccess(tc.access)
		if err != nil {
			t.Fatal(err)
		}
		h := newHandler(t, Options{Status: fakeStatus, Access: access, Local: local})
		for _, path := range []string{"/status", "/status.json"} {
			r := httptest.NewRequest("GET", path, nil)
			r.RemoteAddr = tc.from
			w := httptest.NewRecorder()
			h.ServeHTTP(w, r)
			if w.Code != tc.want {
				t.Errorf("status=%s, GET %s from %s: got %d, want %d", tc.access, path, tc.from, w.Code, tc.want)
			}
		}
	}
	if _, err := ParseAccess("some"); err == nil || err.Error() != `status "some": want local, all or off` {
		t.Errorf("ParseAccess(some): got %v", err)
	}
}

// TestStaticFiles serves a root folder and checks that nothing outside
// it is served, through symbolic links either, and no dotfile.
func TestStaticFiles(t *testing.T) {
	outside := t.TempDir()
	secret := filepath.Join(outside, "secret")
	os.WriteFile(secret, []byte("the secret\n"), 0o600)
	root := t.TempDir()
	files := map[string]string{"hello.txt": "hello\n", ".secret": "dot\n", ".git/config": "git\n", "sub/in.txt": "in\n"}
	for name, body := range files {
		os.MkdirAll(filepath.Dir(filepath.Join(root, name)), 0o755)
		os.WriteFile(filepath.Join(root, name), []byte(body), 0o644)
	}
	for link, target := range map[string]string{"link-in": "hello.txt", "sub/link-up": "../hello.txt", "link-out": secret, "dir-out": outside, "link-up-out": "../" + filepath.Base(outside) + "/secret"} {
		if err := os.Symlink(target, filepath.Join(root, link)); err != nil {
			t.Fatal(err)
		}
	}
	srv := httptest.NewServer(newHandler(t, Options{Status: fakeStatus, Root: root}))
	defer srv.Close()
	for _, tc := range []struct {
		path string
		code int
		body string
	}{
		{"/hello.txt", 200, "hello\n"},
		{"/sub/in.txt", 200, "in\n"},
		{"/link-in", 200, "hello\n"},
		{"/sub/link-up", 200, "hello\n"},
		{"/status.json", 200, "status at /status.json"},
		{"/.secret", 404, ""},
		{"/.git/config", 404, ""},
		{"/sub/../.secret", 404, ""},
		{"/link-out", 404, ""},
		{"/dir-out/secret", 404, ""},
		{"/link-up-out", 404, ""},
		{"/%2e%2e/secret", 404, ""},
	} {
		code, body := get(t, srv, tc.path)
		if code != tc.code || tc.body != "" && body != tc.body || strings.Contains(body, "the secret") {
			t.Errorf("GET %s: %d %q, want %d %q", tc.path, code, body, tc.code, tc.body)
		}
	}
	if code, body := get(t, srv, "/"); code != 200 || !strings.Contains(body, "hello.txt") || strings.Contains(body, ".secret") || strings.Contains(body, ".git") {
		t.Errorf("GET /: %d, a listing with hello.txt and no dotfile wanted:\n%s", code, body)
	}
	if _, err := New(Options{Root: filepath.Join(root, "hello.txt")}); err == nil || !strings.Contains(err.Error(), "not a folder") {
		t.Errorf("New with a file as root: got %v", err)
	}
}
