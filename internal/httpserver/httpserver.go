// Package httpserver serves HTTP on a listener bound beforehand and
// shuts down without waiting for connections that have no request in
// flight. http.Server.Shutdown waits up to 5 s for a connection that
// has sent nothing yet, as if a request were on its way, and an HTTP/2
// connection lingers a second after its GOAWAY: one quiet client held
// attach's exit that long, and with a 5 s limit made it fail.
package httpserver

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"
)

// Server is an http.Server running on its own goroutine.
type Server struct {
	srv  *http.Server
	done chan error

	mu    sync.Mutex
	conns map[net.Conn]*conn
}

// conn is an open connection and how many of its requests are being
// served.
type conn struct {
	net.Conn
	requests atomic.Int32
}

type connKey struct{}

// Serve starts serving h on ln.
func Serve(ln net.Listener, h http.Handler) *Server {
	s := &Server{done: make(chan error, 1), conns: map[net.Conn]*conn{}}
	s.srv = &http.Server{
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			c := r.Context().Value(connKey{}).(*conn)
			c.requests.Add(1)
			defer c.requests.Add(-1)
			h.ServeHTTP(w, r)
		}),
		ReadHeaderTimeout: 10 * time.Second,
		ConnContext:       s.track,
		ConnState:         s.forget,
	}
	// Shutdown runs this once its listeners are closed, so no
	// connection comes after.
	s.srv.RegisterOnShutdown(s.closeUnused)
	go func() { s.done <- s.srv.Serve(ln) }()
	return s
}

func (s *Server) track(ctx context.Context, c net.Conn) context.Context {
	tc := &conn{Conn: c}
	s.mu.Lock()
	s.conns[c] = tc
	s.mu.Unlock()
	return context.WithValue(ctx, connKey{}, tc)
}

func (s *Server) forget(c net.Conn, state http.ConnState) {
	if state != http.StateClosed && state != http.StateHijacked {
		return
	}
	s.mu.Lock()
	delete(s.conns, c)
	s.mu.Unlock()
}

// closeUnused closes the connections with no request being served.
func (s *Server) closeUnused() {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, c := range s.conns {
		if c.requests.Load() == 0 {
			c.Close()
		}
	}
}

// Shutdown stops serving, lets the requests in flight finish until ctx
// ends, then closes whatever is still open.
func (s *Server) Shutdown(ctx context.Context) error {
	err := s.srv.Shutdown(ctx)
	if err != nil {
		s.srv.Close()
		err = fmt.Errorf("stop http server: %w (closed the requests in flight)", err)
	}
	if serveErr := <-s.done; !errors.Is(serveErr, http.ErrServerClosed) {
		err = errors.Join(err, serveErr)
	}
	return err
}
