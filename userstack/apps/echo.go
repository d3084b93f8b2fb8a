package apps

import (
	"context"
	"crypto/tls"
	"errors"
	"io"
	"net"
	"sync"

	quicgo "github.com/quic-go/quic-go"

	"github.com/xdpstack/xdpstack/userstack/apps/conns"
	"github.com/xdpstack/xdpstack/userstack/quic"
	"github.com/xdpstack/xdpstack/userstack/transport"
)

// EchoServer sends back whatever it receives: over TCP and TLS until the
// peer half-closes, datagram by datagram over UDP, and over QUIC on
// every bidirectional stream a client opens, or, for a unidirectional
// stream, on a unidirectional stream the server opens.
type EchoServer struct {
	ln   net.Listener
	pc   net.PacketConn
	quic *quic.Server
	wg   sync.WaitGroup
	open conns.Set
}

// StartEcho serves echo on uri; tlsConf is the server's configuration
// for tls:// and quic://.
func StartEcho(n transport.Network, uri transport.URI, tlsConf *tls.Config) (*EchoServer, error) {
	s := &EchoServer{}
	var err error
	switch uri.Scheme {
	case transport.UDP:
		if s.pc, err = n.ListenPacket("udp", uri.HostPort()); err != nil {
			return nil, err
		}
		s.run(s.serveUDP)
	case transport.QUIC:
		pc, err := n.ListenPacket("udp", uri.HostPort())
		if err != nil {
			return nil, err
		}
		if s.quic, err = quic.Serve(pc, tlsConf, s.echoQUIC); err != nil {
			pc.Close()
			return nil, err
		}
	default:
		if s.ln, err = transport.Listen(n, uri, tlsConf); err != nil {
			return nil, err
		}
		s.run(s.serveStreams)
	}
	return s, nil
}

func (s *EchoServer) Addr() net.Addr {
	switch {
	case s.quic != nil:
		return s.quic.Addr()
	case s.pc != nil:
		return s.pc.LocalAddr()
	}
	return s.ln.Addr()
}

// Counters: the echo app keeps none.
func (s *EchoServer) Counters() map[string]uint64 { return nil }

func (s *EchoServer) run(f func()) {
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		f()
	}()
}

func (s *EchoServer) serveStreams() {
	for {
		c, err := s.ln.Accept()
		if err != nil {
			return
		}
		if !s.open.Add(c) {
			return
		}
		s.run(func() {
			defer s.open.Remove(c)
			echoStream(c)
		})
	}
}

// copyBuffers are the buffers echoes copy through, reused: at thousands
// of connections a second, a fresh 64 KiB each cost the collector.
var copyBuffers = sync.Pool{New: func() any { return new([64 << 10]byte) }}

// copyThrough copies src to dst through a pooled buffer.
func copyThrough(dst io.Writer, src io.Reader) error {
	buf := copyBuffers.Get().(*[64 << 10]byte)
	defer copyBuffers.Put(buf)
	_, err := io.CopyBuffer(dst, src, buf[:])
	return err
}

// echoStream echoes until the peer's FIN, then sends its own.
func echoStream(c net.Conn) {
	if err := copyThrough(c, c); err != nil {
		return
	}
	if cw, ok := c.(interface{ CloseWrite() error }); ok {
		cw.CloseWrite()
	}
}

func (s *EchoServer) serveUDP() {
	buf := make([]byte, 64<<10)
	for {
		n, from, err := s.pc.ReadFrom(buf)
		if err != nil {
			return
		}
		s.pc.WriteTo(buf[:n], from)
	}
}

// echoQUIC echoes every stream a client opens on conn until it closes.
func (s *EchoServer) echoQUIC(ctx context.Context, conn *quicgo.Conn) {
	s.run(func() { s.echoUniStreams(ctx, conn) })
	for {
		st, err := conn.AcceptStream(ctx)
		if err != nil {
			return
		}
		s.run(func() { echoStream(quic.NewStreamConn(conn, st)) })
	}
}

// echoUniStreams reads each stream the client opens for sending to its
// end and sends it back on a stream of the server's own.
func (s *EchoServer) echoUniStreams(ctx context.Context, conn *quicgo.Conn) {
	for {
		in, err := conn.AcceptUniStream(ctx)
		if err != nil {
			return
		}
		s.run(func() {
			out, err := conn.OpenUniStreamSync(ctx)
			if err != nil {
				in.CancelRead(0)
				return
			}
			if err := copyThrough(out, in); err != nil {
				out.CancelWrite(0)
				return
			}
			out.Close()
		})
	}
}

// Close stops serving and closes every connection.
func (s *EchoServer) Close() error {
	var err error
	switch {
	case s.quic != nil:
		err = s.quic.Close()
	case s.pc != nil:
		err = s.pc.Close()
	default:
		err = s.ln.Close()
	}
	s.open.Close()
	s.wg.Wait()
	if errors.Is(err, net.ErrClosed) {
		err = nil
	}
	return err
}
