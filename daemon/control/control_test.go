package control

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
)

type echoRequest struct {
	Text string `json:"text"`
}

var (
	echoEndpoint   = Endpoint[echoRequest, echoRequest]{Method: http.MethodPost, Name: "echo"}
	refuseEndpoint = Endpoint[None, None]{Method: http.MethodPost, Name: "refuse"}
)

// serve runs a server on iface in a temporary folder, with an echo
// endpoint that counts its calls.
func serve(t *testing.T, o Options) (*Server, *int) {
	t.Helper()
	if o.Dir == "" {
		o.Dir = t.TempDir()
	}
	s, err := Listen("xs0", o)
	if err != nil {
		t.Fatalf("Listen: %v", err)
	}
	calls := new(int)
	Register(s, echoEndpoint, func(_ context.Context, r echoRequest) (echoRequest, error) {
		*calls++
		return r, nil
	})
	Register(s, refuseEndpoint, func(context.Context, None) (None, error) {
		return None{}, Refuse(http.StatusConflict, errors.New("mode changed: needs a restart"))
	})
	s.Serve()
	t.Cleanup(func() { s.Close() })
	return s, calls
}

func TestCall(t *testing.T) {
	s, calls := serve(t, Options{})
	c := NewClient(filepath.Dir(s.Path), "xs0")
	got, err := echoEndpoint.Call(context.Background(), c, echoRequest{"hello"})
	if err != nil || got.Text != "hello" || *calls != 1 {
		t.Errorf("Call(echo hello): got %+v, %v after %d calls; want hello once", got, err, *calls)
	}
	v, err := VersionEndpoint.Call(context.Background(), c, None{})
	if err != nil || v.API != Version || v.PID != os.Getpid() {
		t.Errorf("Call(version): got %+v, %v; want API %d, pid %d", v, err, Version, os.Getpid())
	}
	_, err = refuseEndpoint.Call(context.Background(), c, None{})
	if refused, ok := errors.AsType[*RefusedError](err); !ok || refused.Code != http.StatusConflict || err.Error() != "mode changed: needs a restart" {
		t.Errorf("Call(refuse): got %v, want a 409 saying mode changed", err)
	}
}

// TestBadRequests: each gets a 4xx with a JSON error, and never reaches
// the endpoint.
func TestBadRequests(t *testing.T) {
	s, calls := serve(t, Options{})
	hc := &http.Client{Transport: &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
		return (&net.Dialer{}).DialContext(ctx, "unix", s.Path)
	}}}
	for _, tc := range []struct {
		name, method, path, body string
		code                     int
		want                     string
	}{
		{"unknown path", "GET", "/v1/nosuch", "", 404, `/v1/nosuch: no such endpoint`},
		{"other version", "GET", "/v2/version", "", 404, `no such endpoint (this daemon speaks API v1`},
		{"wrong method", "GET", "/v1/echo", "", 405, `GET /v1/echo: method not allowed (want POST)`},
		{"bad JSON", "POST", "/v1/echo", `{"text":`, 400, `POST /v1/echo: bad JSON body`},
		{"unknown field", "POST", "/v1/echo", `{"text":"a","mode":"x"}`, 400, `unknown field \"mode\"`},
		{"wrong type", "POST", "/v1/echo", `{"text":1}`, 400, `cannot unmarshal number`},
		{"two values", "POST", "/v1/echo", `{"text":"a"}{}`, 400, `more than one value`},
		{"body on a GET", "GET", "/v1/version", `{}`, 400, `GET /v1/version: takes no body`},
		{"huge body", "POST", "/v1/echo", `{"text":"` + strings.Repeat("a", maxBody) + `"}`, 400, `request body too large`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			req, _ := http.NewRequest(tc.method, "http://x"+tc.path, strings.NewReader(tc.body))
			r, err := hc.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			b, _ := io.ReadAll(r.Body)
			r.Body.Close()
			if r.StatusCode != tc.code || !strings.Contains(string(b), tc.want) || !strings.HasPrefix(string(b), `{"error":`) {
				t.Errorf("%s %s: got %d %s; want %d with an error containing %q", tc.method, tc.path, r.StatusCode, b, tc.code, tc.want)
			}
			if v := r.Header.Get(VersionHeader); v != "1" {
				t.Errorf("%s header: %q, want 1", VersionHeader, v)
			}
		})
	}
	if *calls != 0 {
		t.Errorf("the endpoint ran %d times on bad requests, want 0", *calls)
	}
}

func TestSocketMode(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "run", "xdpstack")
	s, _ := serve(t, Options{Dir: dir})
	if fi, err := os.Stat(dir); err != nil || fi.Mode().Perm() != 0o755 {
		t.Errorf("made folder %s: %v, %v; want 0755", dir, fi.Mode(), err)
	}
	fi, err := os.Stat(s.Path)
	if err != nil || fi.Mode().Type() != os.ModeSocket || fi.Mode().Perm() != 0o600 {
		t.Errorf("socket %s: %v, %v; want a socket 0600", s.Path, fi.Mode(), err)
	}
	if es, _ := os.ReadDir(dir); len(es) != 2 {
		t.Errorf("%s holds %v, want the socket and its lock file alone", dir, es)
	}
	if fi, err := os.Stat(s.Path + ".lock"); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("lock file: %v, %v; want 0600", fi.Mode(), err)
	}

	gid := 12345
	s2, _ := serve(t, Options{Group: &Group{Name: "test", GID: gid}})
	fi, err = os.Stat(s2.Path)
	if err != nil || fi.Mode().Perm() != 0o660 || fi.Sys().(*syscall.Stat_t).Gid != uint32(gid) {
		t.Errorf("socket with a group: %v, %v; want 0660 owned by gid %d", fi.Mode(), err, gid)
	}
}

func TestLookupGroup(t *testing.T) {
	if g, err := LookupGroup("root"); err != nil || g.GID != 0 {
		t.Errorf("LookupGroup(root): got %+v, %v", g, err)
	}
	if g, err := LookupGroup("0"); err != nil || g.Name != "root" {
		t.Errorf("LookupGroup(0): got %+v, %v", g, err)
	}
	if _, err := LookupGroup("xs-nosuch-group"); err == nil || err.Error() != `no group "xs-nosuch-group" (see: getent group)` {
		t.Errorf("LookupGroup(xs-nosuch-group): got %v", err)
	}
}

func TestSecondDaemonRefused(t *testing.T) {
	s, _ := serve(t, Options{})
	dir := filepath.Dir(s.Path)
	if _, err := Listen("xs0", Options{Dir: dir}); err == nil || !strings.Contains(err.Error(), "xdpstack already runs on xs0 (a daemon holds "+s.Path+".lock)") {
		t.Errorf("second Listen: got %v, want already runs", err)
	}
	// The first still answers.
	if _, err := VersionEndpoint.Call(context.Background(), NewClient(dir, "xs0"), None{}); err != nil {
		t.Errorf("first daemon after a refused second: %v", err)
	}
}

// TestDaemonsStartingAtOnce: of daemons that start together, one takes
// the socket and the others are refused, where each could pass the
// check for a live socket before any had placed its own.
func TestDaemonsStartingAtOnce(t *testing.T) {
	dir := t.TempDir()
	const n = 8
	servers := make(chan *Server, n)
	var wg sync.WaitGroup
	for range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if s, err := Listen("xs0", Options{Dir: dir}); err == nil {
				servers <- s
			} else if !strings.Contains(err.Error(), "already runs on xs0") {
				t.Errorf("Listen: %v", err)
			}
		}()
	}
	wg.Wait()
	close(servers)
	var won []*Server
	for s := range servers {
		won = append(won, s)
		t.Cleanup(func() { s.Close() })
	}
	if len(won) != 1 {
		t.Fatalf("%d of %d daemons starting at once took the socket, want 1", len(won), n)
	}
	// The winner's socket is the one at the path: closing it removes it.
	won[0].Close()
	if _, err := os.Lstat(won[0].Path); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("socket after the only daemon closed: %v", err)
	}
	if s, err := Listen("xs0", Options{Dir: dir}); err != nil {
		t.Errorf("after the daemon closed: %v", err)
	} else {
		s.Close()
	}
}

func TestStaleSocketReplaced(t *testing.T) {
	dir := t.TempDir()
	path := SocketPath(dir, "xs0")
	// A socket file whose listener is gone, as kill -9 leaves it.
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: path, Net: "unix"})
	if err != nil {
		t.Fatal(err)
	}
	ln.SetUnlinkOnClose(false)
	ln.Close()
	if _, err := VersionEndpoint.Call(context.Background(), NewClient(dir, "xs0"), None{}); !errors.Is(err, ErrNotRunning) {
		t.Errorf("call on a stale socket: got %v, want not running", err)
	}
	s, _ := serve(t, Options{Dir: dir})
	if _, err := VersionEndpoint.Call(context.Background(), NewClient(dir, "xs0"), None{}); err != nil {
		t.Errorf("call after the stale socket was replaced: %v", err)
	}
	s.Close()
	if _, err := os.Lstat(path); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("socket after Close: %v, want removed", err)
	}
}

func TestNotASocketInTheWay(t *testing.T) {
	dir := t.TempDir()
	path := SocketPath(dir, "xs0")
	os.WriteFile(path, []byte("x"), 0o600)
	if _, err := Listen("xs0", Options{Dir: dir}); err == nil || !strings.Contains(err.Error(), "not a socket is in the way") {
		t.Errorf("Listen over a file: got %v", err)
	}
	if b, _ := os.ReadFile(path); string(b) != "x" {
		t.Errorf("the file in the way became %q", b)
	}
}

func TestNotRunning(t *testing.T) {
	dir := t.TempDir()
	_, err := VersionEndpoint.Call(context.Background(), NewClient(dir, "xs0"), None{})
	want := "xdpstack is not running on xs0 (no daemon answers on " + SocketPath(dir, "xs0") + ")"
	if !errors.Is(err, ErrNotRunning) || err.Error() != want {
		t.Errorf("call with no daemon: got %v, want %q", err, want)
	}
}

// TestVersionMismatch: a daemon of another API version is named as such.
func TestVersionMismatch(t *testing.T) {
	dir := t.TempDir()
	ln, err := net.Listen("unix", SocketPath(dir, "xs0"))
	if err != nil {
		t.Fatal(err)
	}
	go http.Serve(ln, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set(VersionHeader, "2")
		http.NotFound(w, r)
	}))
	t.Cleanup(func() { ln.Close() })
	_, err = VersionEndpoint.Call(context.Background(), NewClient(dir, "xs0"), None{})
	if err == nil || err.Error() != "the daemon on xs0 speaks control API v2, this xdpstack v1 (run the xdpstack that attached it)" {
		t.Errorf("call to a v2 daemon: got %v", err)
	}
}

func TestBadIfaceName(t *testing.T) {
	if _, err := Listen("../x", Options{Dir: t.TempDir()}); err == nil {
		t.Error("Listen(../x) succeeded")
	}
}
