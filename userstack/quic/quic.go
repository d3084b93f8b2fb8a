// Package quic is the session layer's QUIC transport: quic-go over any
// net.PacketConn, the userstack's UDP or the kernel's. Its Server is the
// one accept loop for QUIC connections; its Listener hands the streams
// of those connections to applications as net.Conn, so that proxy and
// the rest serve QUIC streams with the code that serves TCP.
package quic

import (
	"context"
	"crypto/tls"
	"errors"
	"net"
	"sync"

	quicgo "github.com/quic-go/quic-go"
	"github.com/quic-go/quic-go/qlog"
)

// Config is the quic-go configuration of every QUIC endpoint here, client
// and server: quic-go's defaults, and a qlog trace of each connection in
// the directory QLOGDIR names, when it is set.
func Config() *quicgo.Config {
	return &quicgo.Config{Tracer: qlog.DefaultConnectionTracer}
}

// StreamConn is a bidirectional QUIC stream as a net.Conn. CloseWrite
// ends the sending side (a FIN); Close ends both sides.
type StreamConn struct {
	*quicgo.Stream
	conn *quicgo.Conn
}

var _ net.Conn = (*StreamConn)(nil)

// NewStreamConn wraps a stream of conn.
func NewStreamConn(conn *quicgo.Conn, s *quicgo.Stream) *StreamConn {
	return &StreamConn{Stream: s, conn: conn}
}

func (c *StreamConn) LocalAddr() net.Addr  { return c.conn.LocalAddr() }
func (c *StreamConn) RemoteAddr() net.Addr { return c.conn.RemoteAddr() }

// CloseWrite sends a FIN; the peer can still send.
func (c *StreamConn) CloseWrite() error { return c.Stream.Close() }

// Close stops reading and ends the sending side.
func (c *StreamConn) Close() error {
	c.Stream.CancelRead(0)
	return c.Stream.Close()
}

// Server is the one QUIC accept loop of the apps: it accepts
// connections on a packet conn and serves each on a goroutine of its
// own, with a handler that the stream listener, the echo app and HTTP/3
// each bring.
type Server struct {
	pc     net.PacketConn
	ql     *quicgo.Listener
	serve  func(ctx context.Context, conn *quicgo.Conn)
	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup

	mu    sync.Mutex
	conns map[*quicgo.Conn]struct{}
}

// Serve accepts QUIC connections on pc, which it owns from then on, with
// tlsConf (it must offer an ALPN protocol), and runs serve for each on a
// goroutine of its own; ctx ends when the server closes, and the
// connection is closed when serve returns.
func Serve(pc net.PacketConn, tlsConf *tls.Config, serve func(ctx context.Context, conn *quicgo.Conn)) (*Server, error) {
	ql, err := quicgo.Listen(pc, tlsConf, Config())
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithCancel(context.Background())
	s := &Server{pc: pc, ql: ql, serve: serve, ctx: ctx, cancel: cancel, conns: map[*quicgo.Conn]struct{}{}}
	s.wg.Add(1)
	go s.accept()
	return s, nil
}

func (s *Server) accept() {
	defer s.wg.Done()
	for {
		conn, err := s.ql.Accept(s.ctx)
		if err != nil {
			return
		}
		s.mu.Lock()
		if s.ctx.Err() != nil {
			s.mu.Unlock()
			conn.CloseWithError(0, "server closing")
			return
		}
		s.conns[conn] = struct{}{}
		s.wg.Add(1)
		s.mu.Unlock()
		go func() {
			defer s.wg.Done()
			s.serve(s.ctx, conn)
			s.mu.Lock()
			delete(s.conns, conn)
			s.mu.Unlock()
			conn.CloseWithError(0, "")
		}()
	}
}

// Addr is the address the server serves on.
func (s *Server) Addr() net.Addr { return s.ql.Addr() }

// Close stops accepting, closes every connection, waits for the
// handlers and closes the packet conn.
func (s *Server) Close() error {
	s.mu.Lock()
	s.cancel()
	for conn := range s.conns {
		conn.CloseWithError(0, "server closing")
	}
	s.mu.Unlock()
	err := s.ql.Close()
	s.wg.Wait()
	if errors.Is(err, quicgo.ErrServerClosed) {
		err = nil
	}
	return errors.Join(err, s.pc.Close())
}

// Listener accepts the bidirectional streams that peers open on any of
// its QUIC connections.
type Listener struct {
	*Server
	streams chan *StreamConn
}

var _ net.Listener = (*Listener)(nil)

// Listen serves QUIC on pc, which it owns from then on, with the given
// TLS configuration (it must offer an ALPN protocol).
func Listen(pc net.PacketConn, tlsConf *tls.Config) (*Listener, error) {
	l := &Listener{streams: make(chan *StreamConn)}
	var err error
	if l.Server, err = Serve(pc, tlsConf, l.acceptStreams); err != nil {
		return nil, err
	}
	return l, nil
}

func (l *Listener) acceptStreams(ctx context.Context, conn *quicgo.Conn) {
	for {
		s, err := conn.AcceptStream(ctx)
		if err != nil {
			return
		}
		select {
		case l.streams <- NewStreamConn(conn, s):
		case <-ctx.Done():
			s.CancelRead(0)
			s.CancelWrite(0)
			return
		}
	}
}

// Accept returns the next stream a peer opened.
func (l *Listener) Accept() (net.Conn, error) {
	select {
	case s := <-l.streams:
		return s, nil
	case <-l.ctx.Done():
		return nil, net.ErrClosed
	}
}
