// Package quic is the session layer's QUIC transport: quic-go over any
// net.PacketConn, the userstack's UDP or the kernel's. It hands the
// streams of QUIC connections to applications as net.Conn, so that echo,
// proxy and the rest serve QUIC streams with the code that serves TCP.
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

// Listener accepts the bidirectional streams that peers open on any of
// its QUIC connections.
type Listener struct {
	ql      *quicgo.Listener
	streams chan *StreamConn
	ctx     context.Context
	cancel  context.CancelFunc
	conns   sync.WaitGroup
}

var _ net.Listener = (*Listener)(nil)

// Listen serves QUIC on pc with the given TLS configuration (it must
// offer an ALPN protocol) and quic-go settings (nil for defaults).
func Listen(pc net.PacketConn, tlsConf *tls.Config, conf *quicgo.Config) (*Listener, error) {
	ql, err := quicgo.Listen(pc, tlsConf, conf)
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithCancel(context.Background())
	l := &Listener{ql: ql, streams: make(chan *StreamConn), ctx: ctx, cancel: cancel}
	l.conns.Add(1)
	go l.acceptConns()
	return l, nil
}

func (l *Listener) acceptConns() {
	defer l.conns.Done()
	for {
		conn, err := l.ql.Accept(l.ctx)
		if err != nil {
			return
		}
		l.conns.Add(1)
		go l.acceptStreams(conn)
	}
}

func (l *Listener) acceptStreams(conn *quicgo.Conn) {
	defer l.conns.Done()
	for {
		s, err := conn.AcceptStream(l.ctx)
		if err != nil {
			return
		}
		select {
		case l.streams <- NewStreamConn(conn, s):
		case <-l.ctx.Done():
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

// Close stops accepting and closes the QUIC connections.
func (l *Listener) Close() error {
	l.cancel()
	err := l.ql.Close()
	l.conns.Wait()
	if errors.Is(err, quicgo.ErrServerClosed) {
		return nil
	}
	return err
}

// Addr is the address the listener serves on.
func (l *Listener) Addr() net.Addr { return l.ql.Addr() }
