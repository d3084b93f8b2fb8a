package control

import (
	"context"
	"errors"
	"fmt"
	gomaps "maps"
	"net"
	"net/http"
	"os"
	"os/user"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/xdpstack/xdpstack/internal/buildinfo"
	"github.com/xdpstack/xdpstack/internal/httpserver"
	"github.com/xdpstack/xdpstack/maps"
)

// DefaultDir is the folder of the control sockets.
const DefaultDir = "/run/xdpstack"

// SocketPath is the control socket of the daemon on iface.
func SocketPath(dir, iface string) string { return filepath.Join(dir, iface+".sock") }

// Group is a group allowed to use a control socket.
type Group struct {
	Name string
	GID  int
}

// LookupGroup finds a group by name or number.
func LookupGroup(name string) (*Group, error) {
	g, err := user.LookupGroup(name)
	if err != nil {
		if g, err = user.LookupGroupId(name); err != nil {
			return nil, fmt.Errorf("no group %q (see: getent group)", name)
		}
	}
	gid, err := strconv.Atoi(g.Gid)
	if err != nil {
		return nil, fmt.Errorf("group %q has gid %q, not a number", name, g.Gid)
	}
	return &Group{Name: g.Name, GID: gid}, nil
}

// Options say where a control socket goes and who may use it.
type Options struct {
	// Dir holds the socket; it is made (0755) when missing.
	Dir string
	// Group, when set, may use the socket (0660, owned by the group);
	// else only its owner may (0600).
	Group *Group
}

// Server serves the control API on a socket.
type Server struct {
	Path string
	ln   *net.UnixListener
	// lock is held while the server lives, so that two daemons
	// starting at once cannot both take the socket's path.
	lock *os.File
	// inode is the socket file's, so that Close removes only its own.
	inode uint64

	mu       sync.Mutex
	handlers map[string]map[string]http.HandlerFunc // path, method
	http     *httpserver.Server
	// closing ends when Close starts, and with it the streams, which
	// would otherwise hold Close for as long as their clients read.
	closing    context.Context
	endStreams context.CancelFunc

	closeOnce sync.Once
	closeErr  error
}

// Listen binds the control socket of iface, so that requests wait in
// its backlog until Serve. A socket file left by a daemon that died is
// replaced; one that a daemon answers on is an error.
func Listen(iface string, o Options) (*Server, error) {
	if err := maps.CheckIfaceName(iface); err != nil {
		return nil, err
	}
	path := SocketPath(o.Dir, iface)
	if err := os.MkdirAll(o.Dir, 0o755); err != nil {
		return nil, fmt.Errorf("control socket: %w", err)
	}
	lock, err := lockPath(iface, path)
	if err != nil {
		return nil, err
	}
	s, err := listen(iface, path, o)
	if err != nil {
		lock.Close()
		return nil, err
	}
	s.lock = lock
	return s, nil
}

// lockPath takes path's lock file, which it leaves in place: removing
// it would let a third daemon lock a fresh file while a second still
// holds the removed one.
func lockPath(iface, path string) (*os.File, error) {
	f, err := os.OpenFile(path+".lock", os.O_RDWR|os.O_CREATE|syscall.O_NOFOLLOW|syscall.O_CLOEXEC, 0o600)
	if err != nil {
		return nil, fmt.Errorf("control socket: %w", err)
	}
	if err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
		f.Close()
		if errors.Is(err, unix.EWOULDBLOCK) {
			return nil, fmt.Errorf("xdpstack already runs on %s (a daemon holds %s.lock)", iface, path)
		}
		return nil, fmt.Errorf("control socket: lock %s.lock: %w", path, err)
	}
	return f, nil
}

func listen(iface, path string, o Options) (*Server, error) {
	if err := checkStale(iface, path); err != nil {
		return nil, err
	}
	// Bound under a temporary name and given its owner and mode there,
	// the socket appears at path whole, with no moment in which others
	// may connect, and replaces a stale one in one step.
	tmp := fmt.Sprintf("%s.%d.tmp", path, os.Getpid())
	os.Remove(tmp)
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: tmp, Net: "unix"})
	if err != nil {
		return nil, fmt.Errorf("control socket: %w", err)
	}
	ln.SetUnlinkOnClose(false)
	s := &Server{Path: path, ln: ln, handlers: map[string]map[string]http.HandlerFunc{}}
	s.closing, s.endStreams = context.WithCancel(context.Background())
	if err := s.place(tmp, o.Group); err != nil {
		ln.Close()
		os.Remove(tmp)
		return nil, fmt.Errorf("control socket %s: %w", path, err)
	}
	Register(s, VersionEndpoint, func(context.Context, None) (VersionInfo, error) {
		return VersionInfo{API: Version, Build: buildinfo.Read().Version, PID: os.Getpid()}, nil
	})
	return s, nil
}

// place gives the socket at tmp its mode and group and moves it to
// s.Path.
func (s *Server) place(tmp string, g *Group) error {
	mode := os.FileMode(0o600)
	if g != nil {
		if err := os.Chown(tmp, -1, g.GID); err != nil {
			return err
		}
		mode = 0o660
	}
	if err := os.Chmod(tmp, mode); err != nil {
		return err
	}
	fi, err := os.Stat(tmp)
	if err != nil {
		return err
	}
	s.inode = fi.Sys().(*syscall.Stat_t).Ino
	return os.Rename(tmp, s.Path)
}

// checkStale fails when a daemon answers on path, and leaves a socket
// nobody answers on to be replaced.
func checkStale(iface, path string) error {
	fi, err := os.Lstat(path)
	switch {
	case errors.Is(err, os.ErrNotExist):
		return nil
	case err != nil:
		return fmt.Errorf("control socket: %w", err)
	case fi.Mode().Type() != os.ModeSocket:
		return fmt.Errorf("control socket %s: a file that is not a socket is in the way (remove it)", path)
	}
	c, err := net.DialTimeout("unix", path, time.Second)
	if err != nil {
		return nil // connection refused: its daemon is gone
	}
	c.Close()
	return fmt.Errorf("xdpstack already runs on %s (a daemon answers on %s)", iface, path)
}

func (s *Server) handle(method, path string, h http.HandlerFunc) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.handlers[path] == nil {
		s.handlers[path] = map[string]http.HandlerFunc{}
	}
	if s.handlers[path][method] != nil {
		panic("control: " + method + " " + path + " registered twice")
	}
	s.handlers[path][method] = h
}

// ServeHTTP routes a request to its endpoint, or answers 404 or 405.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	w.Header().Set(VersionHeader, strconv.Itoa(Version))
	s.mu.Lock()
	methods, ok := s.handlers[r.URL.Path]
	h := methods[r.Method]
	s.mu.Unlock()
	switch {
	case !ok:
		writeError(w, http.StatusNotFound, fmt.Errorf("%s: no such endpoint (this daemon speaks API v%d; see: GET /v%d/version)", r.URL.Path, Version, Version))
	case h == nil:
		allowed := slices.Sorted(gomaps.Keys(methods))
		w.Header().Set("Allow", strings.Join(allowed, ", "))
		writeError(w, http.StatusMethodNotAllowed, fmt.Errorf("%s %s: method not allowed (want %s)", r.Method, r.URL.Path, strings.Join(allowed, " or ")))
	default:
		h(w, r)
	}
}

// Serve starts answering requests.
func (s *Server) Serve() { s.http = httpserver.Serve(s.ln, s) }

// Close stops serving and removes the socket file, unless another
// daemon's has taken its place. Only the first call does anything.
func (s *Server) Close() error {
	s.closeOnce.Do(func() { s.closeErr = s.close() })
	return s.closeErr
}

func (s *Server) close() error {
	s.endStreams()
	var err error
	if s.http != nil {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		err = s.http.Shutdown(ctx)
	} else {
		err = s.ln.Close()
	}
	if fi, serr := os.Stat(s.Path); serr == nil && fi.Sys().(*syscall.Stat_t).Ino == s.inode {
		if rerr := os.Remove(s.Path); rerr != nil {
			err = errors.Join(err, rerr)
		}
	}
	return errors.Join(err, s.lock.Close())
}
