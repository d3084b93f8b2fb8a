package httpapp

import (
	"context"
	"crypto/tls"
	"errors"
	"net"
	"net/http"

	"github.com/quic-go/quic-go/http3"

	"github.com/xdpstack/xdpstack/internal/httpserver"
	"github.com/xdpstack/xdpstack/userstack/quic"
	"github.com/xdpstack/xdpstack/userstack/transport"
)

// Server serves a handler on one endpoint: HTTP/1.1 on tcp://, HTTP/1.1
// and HTTP/2 on tls://, HTTP/3 on quic://.
type Server struct {
	http  *httpserver.Server
	http3 *http3.Server
	// pc is the UDP socket under HTTP/3, which http3.Server leaves open.
	pc   net.PacketConn
	addr net.Addr
	// done is http3.Server.Serve's end.
	done chan error
}

// Addr is where the server listens.
func (s *Server) Addr() net.Addr { return s.addr }

// Listen opens u on n and starts serving h there. tlsConf is the server's
// certificate for tls and quic; the ALPN protocols are set here.
func Listen(n transport.Network, u transport.URI, tlsConf *tls.Config, h http.Handler) (*Server, error) {
	s := &Server{done: make(chan error, 1)}
	switch u.Scheme {
	case transport.QUIC:
		if tlsConf == nil {
			return nil, errors.New("http app on quic: needs a certificate (cert=FILE,key=FILE or test-cert=HOST)")
		}
		pc, err := n.ListenPacket("udp", u.HostPort())
		if err != nil {
			return nil, err
		}
		s.pc, s.addr = pc, pc.LocalAddr()
		s.http3 = &http3.Server{Handler: h, TLSConfig: http3.ConfigureTLSConfig(tlsConf), QUICConfig: quic.Config()}
		go func() { s.done <- s.http3.Serve(pc) }()
		return s, nil
	case transport.TLS:
		tlsConf = tlsConf.Clone()
		tlsConf.NextProtos = []string{"h2", "http/1.1"}
	}
	ln, err := transport.Listen(n, u, tlsConf)
	if err != nil {
		return nil, err
	}
	s.addr = ln.Addr()
	s.http = httpserver.Serve(ln, h)
	return s, nil
}

// Close stops serving, letting requests in flight finish for a while.
func (s *Server) Close(ctx context.Context) error {
	if s.http != nil {
		return s.http.Shutdown(ctx)
	}
	err := s.http3.Shutdown(ctx)
	defer s.pc.Close()
	if serveErr := <-s.done; serveErr != nil && !errors.Is(serveErr, http.ErrServerClosed) {
		err = errors.Join(err, serveErr)
	}
	return err
}
