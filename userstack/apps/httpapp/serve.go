package httpapp

import (
	"context"
	"crypto/tls"
	"errors"
	"net"
	"net/http"

	quicgo "github.com/quic-go/quic-go"
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
	quic  *quic.Server
	addr  net.Addr
}

// Addr is where the server listens.
func (s *Server) Addr() net.Addr { return s.addr }

// Listen opens u on n and starts serving h there. tlsConf is the server's
// certificate for tls and quic; the ALPN protocols are set here.
func Listen(n transport.Network, u transport.URI, tlsConf *tls.Config, h http.Handler) (*Server, error) {
	s := &Server{}
	switch u.Scheme {
	case transport.QUIC:
		if tlsConf == nil {
			return nil, errors.New("http app on quic: needs a certificate (cert=FILE,key=FILE or test-cert=HOST)")
		}
		pc, err := n.ListenPacket("udp", u.HostPort())
		if err != nil {
			return nil, err
		}
		s.http3 = &http3.Server{Handler: h}
		serve := func(_ context.Context, conn *quicgo.Conn) { s.http3.ServeQUICConn(conn) }
		if s.quic, err = quic.Serve(pc, http3.ConfigureTLSConfig(tlsConf), serve); err != nil {
			pc.Close()
			return nil, err
		}
		s.addr = s.quic.Addr()
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

// Close stops serving, letting requests in flight finish until ctx
// ends.
func (s *Server) Close(ctx context.Context) error {
	if s.http != nil {
		return s.http.Shutdown(ctx)
	}
	// Shutdown sends every connection a GOAWAY and waits for their
	// requests; closing the QUIC server then ends the connections.
	err := s.http3.Shutdown(ctx)
	if errors.Is(err, http.ErrServerClosed) {
		err = nil
	}
	return errors.Join(err, s.quic.Close())
}
