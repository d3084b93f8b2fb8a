// Package httpserver serves HTTP on a listener bound beforehand and
// shuts down without waiting for clients that connected and sent
// nothing: http.Server.Shutdown waits up to 5 s for those, as if a
// request were on its way, so one quiet client held attach's exit that
// long and then made it fail.
package httpserver

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"sync"
	"time"
)

// Server is an http.Server running on its own goroutine.
type Server struct {
	srv  *http.Server
	done chan error

	mu sync.Mutex
	// fresh are the connections that have sent no request yet.
	fresh map[net.Conn]struct{}
}

// Serve starts serving h on ln.
func Serve(ln net.Listener, h http.Handler) *Server {
	s := &Server{done: make(chan error, 1), fresh: map[net.Conn]struct{}{}}
	s.srv = &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second, ConnState: s.track}
	// Shutdown runs this once its listeners are closed, so no fresh
	// connection comes after.
	s.srv.RegisterOnShutdown(s.closeFresh)
	go func() { s.done <- s.srv.Serve(ln) }()
	return s
}

func (s *Server) track(c net.Conn, state http.ConnState) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if state == http.StateNew {
		s.fresh[c] = struct{}{}
	} else {
		delete(s.fresh, c)
	}
}

func (s *Server) closeFresh() {
	s.mu.Lock()
	defer s.mu.Unlock()
	for c := range s.fresh {
		c.Close()
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
