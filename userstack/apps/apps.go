// Package apps holds the built-in applications (echo now; http and
// proxy later) and the NAME=URI[,opt=val] specs that start them. Apps
// run on a Network: the userstack, or the kernel's sockets for
// comparison on the same wire.
package apps

import (
	"context"
	"fmt"
	"net"
	"net/url"
	"strconv"
	"strings"
)

// Network is where an app opens its sockets: *userstack.Stack or Kernel.
type Network interface {
	Listen(network, address string) (net.Listener, error)
	ListenPacket(network, address string) (net.PacketConn, error)
	Dial(ctx context.Context, network, address string) (net.Conn, error)
}

// Kernel is the kernel's sockets.
type Kernel struct{}

func (Kernel) Listen(network, address string) (net.Listener, error) {
	return net.Listen(network, address)
}

func (Kernel) ListenPacket(network, address string) (net.PacketConn, error) {
	return net.ListenPacket(network, address)
}

func (Kernel) Dial(ctx context.Context, network, address string) (net.Conn, error) {
	var d net.Dialer
	return d.DialContext(ctx, network, address)
}

// URI is tcp://HOST:PORT or udp://HOST:PORT; HOST may be empty to serve
// every address.
type URI struct {
	Network string // "tcp" or "udp"
	Address string // HOST:PORT
}

func (u URI) String() string { return u.Network + "://" + u.Address }

// ParseURI reads a tcp:// or udp:// URI.
func ParseURI(s string) (URI, error) {
	u, err := url.Parse(s)
	if err != nil {
		return URI{}, fmt.Errorf("uri %q: %w", s, err)
	}
	if u.Scheme != "tcp" && u.Scheme != "udp" {
		return URI{}, fmt.Errorf("uri %q: scheme must be tcp or udp", s)
	}
	if u.Path != "" || u.RawQuery != "" || u.User != nil {
		return URI{}, fmt.Errorf("uri %q: want %s://HOST:PORT and nothing more", s, u.Scheme)
	}
	host, port, err := net.SplitHostPort(u.Host)
	if err != nil {
		return URI{}, fmt.Errorf("uri %q: %w", s, err)
	}
	if p, err := strconv.ParseUint(port, 10, 16); err != nil || p == 0 {
		return URI{}, fmt.Errorf("uri %q: port %q is not a number from 1 to 65535", s, port)
	}
	if host != "" {
		if net.ParseIP(strings.Trim(host, "[]")) == nil {
			return URI{}, fmt.Errorf("uri %q: host %q is not an IP address", s, host)
		}
	}
	return URI{Network: u.Scheme, Address: u.Host}, nil
}

// Spec is one --app: NAME=URI[,opt=val...].
type Spec struct {
	Name string
	URI  URI
	Opts map[string]string
}

func (s Spec) String() string { return s.Name + "=" + s.URI.String() }

// options each app accepts.
var appOptions = map[string][]string{
	"echo": nil,
}

// ParseSpec reads an app spec and checks its name and options.
func ParseSpec(s string) (Spec, error) {
	name, rest, ok := strings.Cut(s, "=")
	if !ok || name == "" {
		return Spec{}, fmt.Errorf("app %q: want NAME=URI[,opt=val] (e.g. echo=tcp://:7)", s)
	}
	known, ok := appOptions[name]
	if !ok {
		return Spec{}, fmt.Errorf("app %q: unknown app %q (known: echo)", s, name)
	}
	parts := strings.Split(rest, ",")
	uri, err := ParseURI(parts[0])
	if err != nil {
		return Spec{}, fmt.Errorf("app %q: %w", s, err)
	}
	spec := Spec{Name: name, URI: uri, Opts: map[string]string{}}
	for _, p := range parts[1:] {
		k, v, ok := strings.Cut(p, "=")
		if !ok || !contains(known, k) {
			return Spec{}, fmt.Errorf("app %q: unknown option %q for %s", s, p, name)
		}
		spec.Opts[k] = v
	}
	return spec, nil
}

func contains(list []string, s string) bool {
	for _, v := range list {
		if v == s {
			return true
		}
	}
	return false
}

// App is a running application.
type App interface {
	// Addr is where it serves.
	Addr() net.Addr
	Close() error
}

// Start runs the app a spec names on n.
func Start(n Network, spec Spec) (App, error) {
	switch spec.Name {
	case "echo":
		return StartEcho(n, spec.URI)
	}
	return nil, fmt.Errorf("app %s: unknown", spec.Name)
}
