// Package httpapp is the built-in HTTP application: the daemon's status
// page and its JSON (xdpstack's answer to VPP's `show run` over HTTP),
// open to the clients the operator chooses, and static files from a
// folder, confined to it. It is an http.Handler, so HTTP/1.1, HTTP/2
// over TLS and HTTP/3 over QUIC all serve it.
package httpapp

import (
	"fmt"
	"io/fs"
	"net/http"
	"net/netip"
	"os"
	"strings"
)

// Access says who may read the status pages.
type Access int

const (
	// AccessLocal: clients on loopback, or those Options.Local says are
	// local.
	AccessLocal Access = iota
	// AccessAll: every client.
	AccessAll
	// AccessOff: nobody; the pages are not there.
	AccessOff
)

// ParseAccess reads local, all or off.
func ParseAccess(s string) (Access, error) {
	switch s {
	case "local":
		return AccessLocal, nil
	case "all":
		return AccessAll, nil
	case "off":
		return AccessOff, nil
	}
	return 0, fmt.Errorf("status %q: want local, all or off", s)
}

// Options say what the application serves.
type Options struct {
	// Status serves /status and /status.json; nil serves neither.
	Status http.Handler
	// Access says who may read them.
	Access Access
	// Local tells whether a client's address is local, for AccessLocal;
	// loopback always is.
	Local func(netip.Addr) bool
	// Root is the folder whose files are served at /: none of a
	// symbolic link's that leads out of it, and no dotfile. Empty serves
	// none.
	Root string
}

// Handler is the application.
type Handler struct {
	http.Handler
	root *os.Root
}

// CheckRoot tells whether dir can be served as a root: the one check
// of the root= option, the --root flag and New.
func CheckRoot(dir string) error {
	if st, err := os.Stat(dir); err != nil || !st.IsDir() {
		return fmt.Errorf("%s is not a folder", dir)
	}
	return nil
}

// New returns the application's handler; Close it when done.
func New(opts Options) (*Handler, error) {
	h := &Handler{}
	mux := http.NewServeMux()
	if opts.Status != nil && opts.Access != AccessOff {
		status := opts.Status
		if opts.Access == AccessLocal {
			status = localOnly(status, opts.Local)
		}
		mux.Handle("GET /status", status)
		mux.Handle("GET /status.json", status)
	}
	switch {
	case opts.Root != "":
		if err := CheckRoot(opts.Root); err != nil {
			return nil, fmt.Errorf("http app: root %w", err)
		}
		var err error
		if h.root, err = os.OpenRoot(opts.Root); err != nil {
			return nil, fmt.Errorf("http app: open root %s: %w", opts.Root, err)
		}
		mux.Handle("GET /", http.FileServerFS(confined{h.root.FS()}))
	case opts.Status != nil && opts.Access != AccessOff:
		mux.HandleFunc("GET /{$}", func(w http.ResponseWriter, r *http.Request) {
			http.Redirect(w, r, "/status", http.StatusFound)
		})
	}
	h.Handler = mux
	return h, nil
}

// Close lets the root folder go.
func (h *Handler) Close() error {
	if h.root == nil {
		return nil
	}
	return h.root.Close()
}

// localOnly serves h to local clients and refuses the others.
func localOnly(h http.Handler, local func(netip.Addr) bool) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ap, err := netip.ParseAddrPort(r.RemoteAddr)
		addr := ap.Addr().Unmap()
		if err != nil || !addr.IsLoopback() && (local == nil || !local(addr)) {
			http.Error(w, "the status is for local clients (the http app's status=all opens it to all)", http.StatusForbidden)
			return
		}
		h.ServeHTTP(w, r)
	})
}

// confined serves a root folder's files: os.Root's FS lets no path,
// symbolic links included, lead out of it. Dotfiles, and everything in
// dot folders, are not there, and directory listings leave them out.
// Anything that cannot be opened is "not found", so that a link leading
// out looks like no file at all.
type confined struct{ fsys fs.FS }

func (c confined) Open(name string) (fs.File, error) {
	for part := range strings.SplitSeq(name, "/") {
		if strings.HasPrefix(part, ".") && part != "." {
			return nil, &fs.PathError{Op: "open", Path: name, Err: fs.ErrNotExist}
		}
	}
	f, err := c.fsys.Open(name)
	if err != nil {
		return nil, &fs.PathError{Op: "open", Path: name, Err: fs.ErrNotExist}
	}
	if st, err := f.Stat(); err == nil && st.IsDir() {
		if d, ok := f.(fs.ReadDirFile); ok {
			return noDotfiles{d}, nil
		}
	}
	return f, nil
}

// noDotfiles is a directory whose listing leaves dotfiles out.
type noDotfiles struct{ fs.ReadDirFile }

func (d noDotfiles) ReadDir(n int) ([]fs.DirEntry, error) {
	for {
		entries, err := d.ReadDirFile.ReadDir(n)
		kept := entries[:0]
		for _, e := range entries {
			if !strings.HasPrefix(e.Name(), ".") {
				kept = append(kept, e)
			}
		}
		// An empty batch without an error would read as the end.
		if len(kept) > 0 || err != nil || n <= 0 || len(entries) == 0 {
			return kept, err
		}
	}
}
