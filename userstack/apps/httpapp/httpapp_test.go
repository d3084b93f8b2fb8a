package httpapp

import (
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/xdpstack/xdpstack/maps"
)

var noMatch = maps.Verdict{Action: maps.ActionPass, Reason: maps.ReasonNoMatch}

// fakeSource counts up by 100 packets per call.
func fakeSource() Source {
	var n uint64
	return func() (Snapshot, error) {
		n += 100
		return Snapshot{
			Iface:    "eth0",
			Mode:     "native",
			Counters: map[maps.Verdict]maps.Counter{noMatch: {Packets: n, Bytes: n * 64}},
			Sections: map[string][]map[string]any{
				"queues":   {{"queue": 0, "mode": "copy"}, {"queue": 1, "mode": "copy"}},
				"sessions": nil,
			},
		}, nil
	}
}

func get(t *testing.T, srv *httptest.Server, path string) (int, string, string) {
	t.Helper()
	resp, err := srv.Client().Get(srv.URL + path)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, resp.Header.Get("Content-Type"), string(body)
}

func TestStatus(t *testing.T) {
	h, err := New(fakeSource(), "")
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(h)
	defer srv.Close()

	code, ctype, body := get(t, srv, "/status.json")
	var st status
	if code != 200 || ctype != "application/json" || json.Unmarshal([]byte(body), &st) != nil {
		t.Fatalf("GET /status.json: %d %s %q", code, ctype, body)
	}
	if st.Iface != "eth0" || len(st.Counters) != 1 || st.Counters[0].Packets != 100 || len(st.Sections["queues"]) != 2 {
		t.Errorf("status: got %+v", st)
	}
	time.Sleep(minSampleGap)
	_, _, body = get(t, srv, "/status.json")
	json.Unmarshal([]byte(body), &st)
	if r := st.Counters[0].PacketsPerSecond; r <= 0 || r > 100 {
		t.Errorf("rate after %v: got %v packets/s, want (0, 100]", minSampleGap, r)
	}

	code, ctype, body = get(t, srv, "/status")
	if code != 200 || !strings.HasPrefix(ctype, "text/html") || !strings.Contains(body, "<td>no_match</td>") || !strings.Contains(body, "<th>queue</th>") {
		t.Errorf("GET /status: %d %s\n%s", code, ctype, body)
	}
	if code, _, _ := get(t, srv, "/missing"); code != 404 {
		t.Errorf("GET /missing: got %d, want 404", code)
	}
	resp, err := srv.Client().Post(srv.URL+"/status.json", "text/plain", nil)
	if err != nil || resp.StatusCode != http.StatusMethodNotAllowed {
		t.Errorf("POST /status.json: got %v, %v; want 405", resp.StatusCode, err)
	}
}

func TestStaticFiles(t *testing.T) {
	root := t.TempDir()
	os.WriteFile(filepath.Join(root, "hello.txt"), []byte("hello\n"), 0o644)
	h, err := New(fakeSource(), root)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(h)
	defer srv.Close()
	if code, _, body := get(t, srv, "/hello.txt"); code != 200 || body != "hello\n" {
		t.Errorf("GET /hello.txt: %d %q", code, body)
	}
	if code, _, _ := get(t, srv, "/status.json"); code != 200 {
		t.Errorf("GET /status.json with --root: %d", code)
	}
	if _, err := New(fakeSource(), filepath.Join(root, "hello.txt")); err == nil || !strings.Contains(err.Error(), "not a folder") {
		t.Errorf("New with a file as root: got %v", err)
	}
}

func TestSourceError(t *testing.T) {
	h, _ := New(func() (Snapshot, error) { return Snapshot{}, errors.New("maps gone") }, "")
	srv := httptest.NewServer(h)
	defer srv.Close()
	if code, _, body := get(t, srv, "/status.json"); code != 500 || !strings.Contains(body, "maps gone") {
		t.Errorf("GET /status.json with a failing source: %d %q", code, body)
	}
}
