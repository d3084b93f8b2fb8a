package transport

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"

	quicgo "github.com/quic-go/quic-go"

	"github.com/xdpstack/xdpstack/userstack/quic"
)

// Network is where endpoints are opened: the userstack, or the kernel.
type Network interface {
	Listen(network, address string) (net.Listener, error)
	ListenPacket(network, address string) (net.PacketConn, error)
	Dial(ctx context.Context, network, address string) (net.Conn, error)
}

// Kernel is the kernel's sockets as a Network.
var Kernel Network = kernel{}

type kernel struct{}

func (kernel) Listen(network, address string) (net.Listener, error) {
	return net.Listen(network, address)
}

func (kernel) ListenPacket(network, address string) (net.PacketConn, error) {
	return net.ListenPacket(network, address)
}

func (kernel) Dial(ctx context.Context, network, address string) (net.Conn, error) {
	return (&net.Dialer{}).DialContext(ctx, network, address)
}

// Listen opens a stream listener for a tcp, tls or quic URI; tlsConf is
// the server's configuration for tls and quic.
func Listen(n Network, u URI, tlsConf *tls.Config) (net.Listener, error) {
	if u.Secure() && tlsConf == nil {
		return nil, fmt.Errorf("listen on %s: needs a certificate (cert=FILE,key=FILE or test-cert=HOST)", u)
	}
	switch u.Scheme {
	case TCP:
		return n.Listen("tcp", u.HostPort())
	case TLS:
		ln, err := n.Listen("tcp", u.HostPort())
		if err != nil {
			return nil, err
		}
		return tls.NewListener(ln, tlsConf), nil
	case QUIC:
		pc, err := n.ListenPacket("udp", u.HostPort())
		if err != nil {
			return nil, err
		}
		ln, err := quic.Listen(pc, tlsConf)
		if err != nil {
			pc.Close()
			return nil, fmt.Errorf("listen on %s: %w", u, err)
		}
		return ln, nil
	}
	return nil, fmt.Errorf("listen on %s: %s carries datagrams, not streams", u, u.Scheme)
}

// Dial opens a stream to a tcp or tls URI; tlsConf is the client's
// configuration for tls (its ServerName defaults to the URI's).
func Dial(ctx context.Context, n Network, u URI, tlsConf *tls.Config) (net.Conn, error) {
	switch u.Scheme {
	case TCP:
		return n.Dial(ctx, "tcp", u.HostPort())
	case TLS:
		c, err := n.Dial(ctx, "tcp", u.HostPort())
		if err != nil {
			return nil, err
		}
		tc := tls.Client(c, clientConfig(u, tlsConf))
		if err := tc.HandshakeContext(ctx); err != nil {
			c.Close()
			return nil, fmt.Errorf("tls handshake with %s: %w", u, err)
		}
		return tc, nil
	}
	return nil, fmt.Errorf("dial %s: use DialQUIC for quic, a packet conn for udp", u)
}

// QUICConn is a client's QUIC connection with the packet conn under it.
type QUICConn struct {
	*quicgo.Conn
	pc net.PacketConn
}

// OpenStream opens a bidirectional stream as a net.Conn.
func (c *QUICConn) OpenStream(ctx context.Context) (net.Conn, error) {
	s, err := c.OpenStreamSync(ctx)
	if err != nil {
		return nil, err
	}
	return quic.NewStreamConn(c.Conn, s), nil
}

// Close closes the connection and its packet conn.
func (c *QUICConn) Close() error {
	return errors.Join(c.CloseWithError(0, ""), c.pc.Close())
}

// DialQUIC opens a QUIC connection to a quic URI, from a fresh UDP socket
// on n, so that a client can open several streams on it.
func DialQUIC(ctx context.Context, n Network, u URI, tlsConf *tls.Config) (*QUICConn, error) {
	if u.Scheme != QUIC {
		return nil, fmt.Errorf("dial %s: not a quic URI", u)
	}
	local := ":0"
	if u.Addr.Is6() {
		local = "[::]:0"
	}
	pc, err := n.ListenPacket("udp", local)
	if err != nil {
		return nil, err
	}
	addr, err := net.ResolveUDPAddr("udp", u.HostPort())
	if err != nil {
		pc.Close()
		return nil, err
	}
	conn, err := quicgo.Dial(ctx, pc, addr, clientConfig(u, tlsConf), quic.Config())
	if err != nil {
		pc.Close()
		return nil, fmt.Errorf("quic handshake with %s: %w", u, err)
	}
	return &QUICConn{conn, pc}, nil
}

// clientConfig fills in the server name from the URI when the
// configuration has none.
func clientConfig(u URI, tlsConf *tls.Config) *tls.Config {
	c := tlsConf.Clone()
	if c.ServerName == "" {
		c.ServerName = u.ServerName
		if c.ServerName == "" && u.Addr.IsValid() {
			c.ServerName = u.Addr.String()
		}
	}
	return c
}
