// Package apps holds the built-in applications (echo, http, proxy) and
// the NAME=URI[,opt=val] specs that start them. Apps run on a
// transport.Network: the userstack, or the kernel's sockets for
// comparison on the same wire. A spec is checked whole (its URI, its
// options, its certificate files) when it is parsed, so that bad input
// stops everything before anything starts.
package apps

import (
	"cmp"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"slices"
	"sort"
	"strings"

	"github.com/xdpstack/xdpstack/userstack/appns"
	"github.com/xdpstack/xdpstack/userstack/apps/httpapp"
	"github.com/xdpstack/xdpstack/userstack/apps/proxy"
	xtls "github.com/xdpstack/xdpstack/userstack/tls"
	"github.com/xdpstack/xdpstack/userstack/transport"
)

// EchoALPN is the application protocol the echo app speaks over TLS and
// QUIC. A proxy offers the alpn= option's protocol, else none over TLS
// (so that any client's protocol passes through) and ProxyALPN over QUIC,
// which needs one.
const (
	EchoALPN  = "xdpstack-echo"
	ProxyALPN = "xdpstack-proxy"
)

// Spec is one --app: NAME=URI[,opt=val...].
type Spec struct {
	Name string
	URI  transport.URI
	// Opts are the app's own options: all but the attach options.
	Opts map[string]string
	// Namespace, Secret and Scope say how the app attaches to the
	// userstack (ns=, secret=, scope=); an empty Namespace is the
	// default one. The secret is never printed.
	Namespace string
	Secret    string
	Scope     appns.Scope
	// TLS is the server configuration of a tls:// or quic:// app, loaded
	// when the spec is parsed.
	TLS *tls.Config
	// Backend is where a proxy forwards to.
	Backend proxy.Backend
	// Access says who may read an http app's status pages.
	Access httpapp.Access
}

// String is the spec as --app takes it, with its attach options but the
// secret, and without the app's own options.
func (s Spec) String() string {
	out := s.Name + "=" + s.URI.String()
	if s.Namespace != "" {
		out += ",ns=" + s.Namespace
	}
	if s.Scope != appns.ScopeGlobal {
		out += ",scope=" + s.Scope.String()
	}
	return out
}

// namespace is the spec's namespace, default when it names none.
func (s Spec) namespace() string { return cmp.Or(s.Namespace, appns.Default) }

// attachOptions are the options every app takes: how it attaches to
// the userstack.
var attachOptions = []string{"ns", "secret", "scope"}

// appOptions lists the options each app accepts besides attachOptions.
var appOptions = map[string][]string{
	"echo":  {"cert", "key", "test-cert"},
	"http":  {"cert", "key", "test-cert", "root", "status"},
	"proxy": {"cert", "key", "test-cert", "backend", "alpn"},
}

func appNames() string {
	names := make([]string, 0, len(appOptions))
	for n := range appOptions {
		names = append(names, n)
	}
	sort.Strings(names)
	return strings.Join(names, ", ")
}

// ParseSpec reads an app spec and checks its name, URI and options,
// loading its certificate. Its errors quote the spec without the
// secret.
func ParseSpec(s string) (Spec, error) {
	spec, err := parseSpec(s)
	if err != nil {
		return Spec{}, fmt.Errorf("app %q: %w", hideSecret(s), err)
	}
	return spec, nil
}

// hideSecret is a spec with the values of its secret= option, and of
// the options no app knows (a mistyped secret=), hidden.
func hideSecret(s string) string {
	parts := strings.Split(s, ",")
	for i, p := range parts[1:] {
		if k, _, ok := strings.Cut(p, "="); ok && (k == "secret" || !knownOption(k)) {
			parts[i+1] = k + "=..."
		}
	}
	return strings.Join(parts, ",")
}

func knownOption(k string) bool {
	if slices.Contains(attachOptions, k) {
		return true
	}
	for _, opts := range appOptions {
		if slices.Contains(opts, k) {
			return true
		}
	}
	return false
}

func parseSpec(s string) (Spec, error) {
	name, rest, ok := strings.Cut(s, "=")
	if !ok || name == "" {
		return Spec{}, fmt.Errorf("want NAME=URI[,opt=val] (e.g. echo=tcp://:7)")
	}
	parts := strings.Split(rest, ",")
	uri, err := transport.ParseURI(parts[0])
	if err != nil {
		return Spec{}, err
	}
	opts := map[string]string{}
	for _, p := range parts[1:] {
		k, v, ok := strings.Cut(p, "=")
		switch {
		case !ok || k == "":
			return Spec{}, fmt.Errorf("option %q: want opt=val", p)
		case v == "":
			return Spec{}, fmt.Errorf("option %s: empty value", k)
		}
		if _, dup := opts[k]; dup {
			return Spec{}, fmt.Errorf("option %s given twice", k)
		}
		opts[k] = v
	}
	return NewSpec(name, uri, opts)
}

// NewSpec checks an app's name, URI and options and loads its
// certificate, as ParseSpec does for the parts it has read.
func NewSpec(name string, uri transport.URI, opts map[string]string) (Spec, error) {
	known, ok := appOptions[name]
	if !ok {
		return Spec{}, fmt.Errorf("unknown app %q (known: %s)", name, appNames())
	}
	if uri.Port == 0 {
		return Spec{}, fmt.Errorf("uri %s: an app needs a port from 1 to 65535", uri)
	}
	if uri.ServerName != "" {
		return Spec{}, fmt.Errorf("uri %s: [%s] names the server a client checks; an app serves with cert=, key= or test-cert=", uri, uri.ServerName)
	}
	known = append(slices.Clone(known), attachOptions...)
	for k := range opts {
		if !slices.Contains(known, k) {
			// The key alone: the value may be a mistyped secret.
			return Spec{}, fmt.Errorf("unknown option %q for %s (known: %s)", k, name, strings.Join(known, ", "))
		}
	}
	spec := Spec{Name: name, URI: uri, Opts: map[string]string{}}
	for k, v := range opts {
		if !slices.Contains(attachOptions, k) {
			spec.Opts[k] = v
		}
	}
	if err := spec.readAttachOptions(opts); err != nil {
		return Spec{}, err
	}
	if name != "echo" && uri.Scheme == transport.UDP {
		return Spec{}, fmt.Errorf("%s serves streams: use tcp://, tls:// or quic://", name)
	}
	var err error
	switch name {
	case "proxy":
		if _, ok := opts["alpn"]; ok && !uri.Secure() {
			return Spec{}, fmt.Errorf("alpn= goes with tls:// or quic://")
		}
		if opts["backend"] == "" {
			return Spec{}, fmt.Errorf("proxy needs backend=tcp://HOST:PORT or backend=unix:///PATH")
		}
		if spec.Backend, err = proxy.ParseBackend(opts["backend"]); err != nil {
			return Spec{}, err
		}
	case "http":
		if root := opts["root"]; root != "" {
			if err := httpapp.CheckRoot(root); err != nil {
				return Spec{}, fmt.Errorf("root %w", err)
			}
		}
		if spec.Access, err = httpapp.ParseAccess(cmp.Or(opts["status"], "local")); err != nil {
			return Spec{}, err
		}
	}
	if spec.TLS, err = serverTLS(spec); err != nil {
		return Spec{}, err
	}
	return spec, nil
}

// readAttachOptions reads ns=, secret= and scope=.
func (s *Spec) readAttachOptions(opts map[string]string) error {
	s.Namespace, s.Secret = opts["ns"], opts["secret"]
	if s.Namespace != "" {
		if err := appns.CheckName(s.Namespace); err != nil {
			return fmt.Errorf("ns=: %w", err)
		}
	}
	switch {
	case s.Secret != "" && s.namespace() == appns.Default:
		return errors.New("secret= goes with ns=NAME (the default namespace has none)")
	case s.Secret == "" && s.namespace() != appns.Default:
		return fmt.Errorf("ns=%s needs secret= (the namespace's secret)", s.Namespace)
	}
	if v, ok := opts["scope"]; ok {
		var err error
		if s.Scope, err = appns.ParseScope(v); err != nil {
			return err
		}
	}
	if s.Scope.Local() && s.URI.Network() != "tcp" {
		return fmt.Errorf("scope=%s is for tcp:// and tls:// apps (a local session joins two streams in memory)", s.Scope)
	}
	return nil
}

// serverTLS builds the server side of an app on tls:// or quic:// from
// the cert, key and test-cert options, or returns nil for tcp and udp.
func serverTLS(spec Spec) (*tls.Config, error) {
	o := xtls.ServerOptions{CertFile: spec.Opts["cert"], KeyFile: spec.Opts["key"], TestCertHost: spec.Opts["test-cert"]}
	if !spec.URI.Secure() {
		if o.CertFile != "" || o.KeyFile != "" || o.TestCertHost != "" {
			return nil, fmt.Errorf("cert, key and test-cert go with tls:// or quic://")
		}
		return nil, nil
	}
	switch spec.Name {
	case "echo":
		o.ALPN = []string{EchoALPN}
	case "proxy":
		switch {
		case spec.Opts["alpn"] != "":
			o.ALPN = []string{spec.Opts["alpn"]}
		case spec.URI.Scheme == transport.QUIC:
			o.ALPN = []string{ProxyALPN}
		}
	}
	return xtls.ServerConfig(o)
}

// CheckSpecs checks specs that will run together: two apps of one
// namespace cannot serve the same port of the same transport protocol.
// TCP and UDP (so tls and quic) may share a port number, and so may
// namespaces, if their addresses differ (the userstack checks that).
func CheckSpecs(specs []Spec) error {
	for i, a := range specs {
		for _, b := range specs[:i] {
			if a.namespace() == b.namespace() && a.URI.Network() == b.URI.Network() && a.URI.Port == b.URI.Port &&
				(!a.URI.Addr.IsValid() || !b.URI.Addr.IsValid() || a.URI.Addr == b.URI.Addr) {
				return fmt.Errorf("apps %s and %s: both on %s port %d", b, a, a.URI.Network(), a.URI.Port)
			}
		}
	}
	return nil
}

// App is a running application.
type App interface {
	// Addr is where it serves.
	Addr() net.Addr
	// Counters are the app's own counters by name, for the status; nil
	// for an app that keeps none.
	Counters() map[string]uint64
	Close() error
}

// Env is what apps run with.
type Env struct {
	Network transport.Network
	// Status serves the http apps' /status and /status.json.
	Status http.Handler
	// Local tells whether a client's address is local, for the http
	// apps' status=local: loopback always is.
	Local func(netip.Addr) bool
	// Root is the folder of files for the http apps without a root= of
	// their own; empty serves none.
	Root string
}

// Start runs the app a spec names on env.Network: for the userstack,
// the app attached with the spec's namespace, secret and scope.
func Start(env Env, spec Spec) (App, error) {
	switch spec.Name {
	case "echo":
		return StartEcho(env.Network, spec.URI, spec.TLS)
	case "http":
		return startHTTP(env, spec)
	case "proxy":
		return startProxy(env.Network, spec)
	}
	return nil, fmt.Errorf("app %s: unknown", spec.Name)
}
