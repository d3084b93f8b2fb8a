// Package transport is the session layer's choice of transport by URI:
// tcp://, udp://, tls:// and quic:// endpoints, opened on any Network,
// the userstack or the kernel's sockets, so that an application is written
// once against net.Listener and net.Conn.
package transport

import (
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"strings"
)

// Scheme is a transport.
type Scheme string

const (
	TCP  Scheme = "tcp"
	UDP  Scheme = "udp"
	TLS  Scheme = "tls"
	QUIC Scheme = "quic"
)

// URI names an endpoint as SCHEME://[NAME]ADDR:PORT. The optional NAME in
// brackets before the address (VPP's form) is the host name that TLS and
// QUIC check the server's certificate against; ADDR may be left out when
// listening, for every address.
type URI struct {
	Scheme     Scheme
	ServerName string
	Addr       netip.Addr // invalid: every address
	Port       uint16
}

// ParseURI reads a URI; the error names what is wrong with it.
func ParseURI(s string) (URI, error) {
	scheme, rest, ok := strings.Cut(s, "://")
	if !ok {
		return URI{}, fmt.Errorf("uri %q: want SCHEME://ADDR:PORT", s)
	}
	u := URI{Scheme: Scheme(scheme)}
	switch u.Scheme {
	case TCP, UDP, TLS, QUIC:
	default:
		return URI{}, fmt.Errorf("uri %q: unknown scheme %q (want tcp, udp, tls or quic)", s, scheme)
	}
	// "[name]addr:port" names the server; "[::1]:port" is an IPv6 address.
	if strings.HasPrefix(rest, "[") {
		if end := strings.IndexByte(rest, ']'); end > 0 && end+1 < len(rest) && rest[end+1] != ':' {
			u.ServerName, rest = rest[1:end], rest[end+1:]
			if u.Scheme != TLS && u.Scheme != QUIC {
				return URI{}, fmt.Errorf("uri %q: a server name goes with tls or quic", s)
			}
		}
	}
	host, port, err := net.SplitHostPort(rest)
	if err != nil {
		return URI{}, fmt.Errorf("uri %q: %w", s, err)
	}
	if u.Port, err = ParsePort(port); err != nil {
		return URI{}, fmt.Errorf("uri %q: %w", s, err)
	}
	if host != "" {
		if u.Addr, err = netip.ParseAddr(host); err != nil {
			return URI{}, fmt.Errorf("uri %q: %q is not an IP address", s, host)
		}
		u.Addr = u.Addr.Unmap()
	}
	return u, nil
}

// ParsePort reads a port number, 0 to 65535, in decimal.
func ParsePort(s string) (uint16, error) {
	p, err := strconv.ParseUint(s, 10, 16)
	if err != nil {
		return 0, fmt.Errorf("port %q is not a number from 0 to 65535", s)
	}
	return uint16(p), nil
}

// HostPort is the address in the form net.Listen and net.Dial take.
func (u URI) HostPort() string {
	if !u.Addr.IsValid() {
		return ":" + strconv.Itoa(int(u.Port))
	}
	return netip.AddrPortFrom(u.Addr, u.Port).String()
}

// Network is the network the transport runs over: "tcp" or "udp".
func (u URI) Network() string {
	if u.Scheme == UDP || u.Scheme == QUIC {
		return "udp"
	}
	return "tcp"
}

// Secure tells whether the transport needs a TLS configuration.
func (u URI) Secure() bool { return u.Scheme == TLS || u.Scheme == QUIC }

func (u URI) String() string {
	name := ""
	if u.ServerName != "" {
		name = "[" + u.ServerName + "]"
	}
	return string(u.Scheme) + "://" + name + u.HostPort()
}
