// Package pspconfig reads the PSP gateway's configuration: DOCA's JSON
// file as it is (comments included), the same tree as the psp: section
// of xdpstack's YAML config file, and the options DOCA takes as flags.
//
// A JSON file:
//
//	{
//	  "config": {"local-grpc-address": "192.0.2.1:3000"},
//	  "peers": [{
//	    "remote-grpc-address": "192.0.2.2",
//	    "sessions": [{"local-vip": "10.9.0.1", "remote-vips": ["10.9.1.0/24"]}]
//	  }]
//	}
//
// A gRPC address without a port gets DOCA's, 3000. A session without
// local-vip sends from the TUN device's address of the same family,
// which the gateway fills in (Config.FillLocalVIP). A remote virtual
// address belongs to one peer only.
package pspconfig

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"slices"
	"strconv"
	"strings"

	"go.yaml.in/yaml/v3"

	"github.com/xdpstack/xdpstack/internal/yamlnode"
)

// DefaultGRPCPort is DOCA's gRPC port, for addresses given without one.
const DefaultGRPCPort = 3000

// Config is the tree of the JSON file or of the psp: section.
type Config struct {
	// LocalGRPC is where this gateway serves the key exchange, host:port.
	LocalGRPC string
	Peers     []Peer
}

// Peer is another gateway and the virtual addresses it owns.
type Peer struct {
	// GRPC is the peer's key exchange address, host:port.
	GRPC     string
	Sessions []Session
}

// Session pairs a local virtual address with remote ones.
type Session struct {
	// LocalVIP is the inner source address; zero until FillLocalVIP when
	// the file gave none.
	LocalVIP   netip.Addr
	RemoteVIPs []netip.Prefix
}

// Error is a bad value at a key of the file: Path names the key
// (peers[0].sessions[1].local-vip), Line its line (0 if unknown).
type Error struct {
	Line int
	Path string
	Msg  string
}

func (e *Error) Error() string {
	s := e.Msg
	if e.Path != "" {
		s = e.Path + ": " + s
	}
	if e.Line > 0 {
		s = fmt.Sprintf("line %d: %s", e.Line, s)
	}
	return s
}

// ReadJSON reads DOCA's JSON config file.
func ReadJSON(path string) (*Config, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("psp config: %w", err)
	}
	c, err := ParseJSON(b)
	var e *Error
	if errors.As(err, &e) && e.Line > 0 {
		return nil, fmt.Errorf("psp config %s %w", path, err)
	} else if err != nil {
		return nil, fmt.Errorf("psp config %s: %w", path, err)
	}
	return c, nil
}

// ParseJSON reads the JSON form. Comments (// and /* */, as json-c
// takes them) are allowed.
func ParseJSON(b []byte) (*Config, error) {
	clean, err := stripComments(b)
	if err != nil {
		return nil, err
	}
	// JSON is YAML's flow style: the YAML parser gives the lines.
	dec := yaml.NewDecoder(bytes.NewReader(clean))
	var doc yaml.Node
	if err := dec.Decode(&doc); errors.Is(err, io.EOF) {
		return nil, &Error{Msg: "empty file (want {\"config\": ..., \"peers\": [...]})"}
	} else if err != nil {
		return nil, &Error{Msg: strings.TrimPrefix(err.Error(), "yaml: ")}
	}
	return FromYAML(doc.Content[0])
}

// stripComments blanks the comments out of a JSON text, keeping its
// lines, and turns tabs outside strings into spaces for the YAML parser.
func stripComments(b []byte) ([]byte, error) {
	out := slices.Clone(b)
	line := 1
	for i := 0; i < len(out); i++ {
		switch c := out[i]; {
		case c == '\n':
			line++
		case c == '\t':
			out[i] = ' '
		case c == '"':
			for i++; i < len(out) && out[i] != '"'; i++ {
				if out[i] == '\\' {
					i++
				} else if out[i] == '\n' {
					return nil, &Error{Line: line, Msg: "string not closed on its line"}
				}
			}
		case c == '/' && i+1 < len(out) && out[i+1] == '/':
			for ; i < len(out) && out[i] != '\n'; i++ {
				out[i] = ' '
			}
			i--
		case c == '/' && i+1 < len(out) && out[i+1] == '*':
			start := line
			out[i], out[i+1] = ' ', ' '
			for i += 2; ; i++ {
				if i+1 >= len(out) {
					return nil, &Error{Line: start, Msg: "comment not closed (want */)"}
				}
				if out[i] == '*' && out[i+1] == '/' {
					out[i], out[i+1] = ' ', ' '
					i++
					break
				}
				if out[i] == '\n' {
					line++
				} else {
					out[i] = ' '
				}
			}
		}
	}
	return out, nil
}

// FromYAML reads the tree from a YAML node: the psp: section's value, or
// a parsed JSON file.
func FromYAML(n *yaml.Node) (*Config, error) {
	c := &Config{}
	err := mapping(n, "", []string{"config", "peers"}, func(key string, v *yaml.Node) error {
		if key == "config" {
			return mapping(v, "config", []string{"local-grpc-address"}, func(_ string, v *yaml.Node) error {
				var err error
				c.LocalGRPC, err = grpcAddr(v, "config.local-grpc-address")
				return err
			})
		}
		return list(v, "peers", func(path string, v *yaml.Node) error {
			p, err := readPeer(path, v)
			c.Peers = append(c.Peers, p)
			return err
		})
	})
	if err != nil {
		return nil, err
	}
	if c.LocalGRPC == "" {
		return nil, &Error{Line: n.Line, Path: "config.local-grpc-address", Msg: "missing (where this gateway serves, e.g. 192.0.2.1:3000)"}
	}
	return c, c.checkOwners(n)
}

func readPeer(path string, n *yaml.Node) (Peer, error) {
	var p Peer
	err := mapping(n, path, []string{"remote-grpc-address", "sessions"}, func(key string, v *yaml.Node) error {
		var err error
		if key == "remote-grpc-address" {
			p.GRPC, err = grpcAddr(v, path+".remote-grpc-address")
			return err
		}
		return list(v, path+".sessions", func(path string, v *yaml.Node) error {
			s, err := readSession(path, v)
			p.Sessions = append(p.Sessions, s)
			return err
		})
	})
	if err == nil && p.GRPC == "" {
		err = &Error{Line: n.Line, Path: path + ".remote-grpc-address", Msg: "missing (the peer's gRPC address)"}
	}
	return p, err
}

func readSession(path string, n *yaml.Node) (Session, error) {
	var s Session
	err := mapping(n, path, []string{"local-vip", "remote-vips"}, func(key string, v *yaml.Node) error {
		if key == "local-vip" {
			text, err := scalar(v, path+".local-vip")
			if err != nil {
				return err
			}
			if s.LocalVIP, err = netip.ParseAddr(text); err != nil || s.LocalVIP.Zone() != "" {
				return &Error{Line: v.Line, Path: path + ".local-vip", Msg: fmt.Sprintf("%q is not an IP address", text)}
			}
			s.LocalVIP = s.LocalVIP.Unmap()
			return nil
		}
		return list(v, path+".remote-vips", func(path string, v *yaml.Node) error {
			p, err := prefix(v, path)
			s.RemoteVIPs = append(s.RemoteVIPs, p)
			return err
		})
	})
	if err != nil {
		return s, err
	}
	if len(s.RemoteVIPs) == 0 {
		return s, &Error{Line: n.Line, Path: path + ".remote-vips", Msg: "missing (the peer's virtual addresses or prefixes)"}
	}
	for i, p := range s.RemoteVIPs {
		if s.LocalVIP.IsValid() && s.LocalVIP.Is4() != p.Addr().Is4() {
			return s, &Error{Line: n.Line, Path: fmt.Sprintf("%s.remote-vips[%d]", path, i),
				Msg: fmt.Sprintf("%v and local-vip %v are not one family", p, s.LocalVIP)}
		}
	}
	return s, nil
}

// prefix reads an address (a host) or a prefix; like DOCA, the bits past
// the prefix length are cleared (7.7.7.7/24 is 7.7.7.0/24).
func prefix(v *yaml.Node, path string) (netip.Prefix, error) {
	text, err := scalar(v, path)
	if err != nil {
		return netip.Prefix{}, err
	}
	if a, err := netip.ParseAddr(text); err == nil && a.Zone() == "" {
		a = a.Unmap()
		return netip.PrefixFrom(a, a.BitLen()), nil
	}
	p, err := netip.ParsePrefix(text)
	if err != nil || p.Bits() == 0 {
		return netip.Prefix{}, &Error{Line: v.Line, Path: path, Msg: fmt.Sprintf("%q is not an address or prefix (e.g. 10.9.1.0/24)", text)}
	}
	return p.Masked(), nil
}

// grpcAddr reads host:port, or a host to which DOCA's port is added.
func grpcAddr(v *yaml.Node, path string) (string, error) {
	text, err := scalar(v, path)
	if err != nil {
		return "", err
	}
	host, port, err := net.SplitHostPort(text)
	if err != nil {
		host, port = strings.Trim(text, "[]"), strconv.Itoa(DefaultGRPCPort)
	}
	n, perr := strconv.ParseUint(port, 10, 16)
	if _, aerr := netip.ParseAddr(host); host == "" || perr != nil || n == 0 || (aerr != nil && !validHostname(host)) {
		return "", &Error{Line: v.Line, Path: path, Msg: fmt.Sprintf("%q is not HOST[:PORT] (e.g. 192.0.2.1:3000)", text)}
	}
	return net.JoinHostPort(host, port), nil
}

func validHostname(h string) bool {
	for _, label := range strings.Split(h, ".") {
		if label == "" || len(label) > 63 || strings.Trim(label, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-") != "" {
			return false
		}
	}
	return len(h) <= 253
}

// checkOwners refuses a remote virtual address that two peers would own.
func (c *Config) checkOwners(n *yaml.Node) error {
	type owner struct {
		peer int
		p    netip.Prefix
	}
	var seen []owner
	for i, p := range c.Peers {
		for j, s := range p.Sessions {
			for k, vip := range s.RemoteVIPs {
				for _, o := range seen {
					if o.peer != i && o.p.Overlaps(vip) {
						return &Error{Line: n.Line, Path: fmt.Sprintf("peers[%d].sessions[%d].remote-vips[%d]", i, j, k),
							Msg: fmt.Sprintf("%v overlaps %v of peers[%d] (an address has one owner)", vip, o.p, o.peer)}
					}
				}
				seen = append(seen, owner{i, vip})
			}
		}
	}
	return nil
}

// String is the tree in one line, the same for the same tree: what a
// reload compares.
func (c *Config) String() string {
	var b strings.Builder
	b.WriteString(c.LocalGRPC)
	for _, p := range c.Peers {
		fmt.Fprintf(&b, " peer %s", p.GRPC)
		for _, s := range p.Sessions {
			fmt.Fprintf(&b, " [%v <- %v]", s.LocalVIP, s.RemoteVIPs)
		}
	}
	return b.String()
}

// Owner finds the peer and session whose remote-vips hold remote, the
// longest prefix first.
func (c *Config) Owner(remote netip.Addr) (peer *Peer, session *Session, ok bool) {
	remote = remote.Unmap()
	best := -1
	for i := range c.Peers {
		for j := range c.Peers[i].Sessions {
			s := &c.Peers[i].Sessions[j]
			for _, p := range s.RemoteVIPs {
				if p.Contains(remote) && p.Bits() > best {
					best, peer, session = p.Bits(), &c.Peers[i], s
				}
			}
		}
	}
	return peer, session, best >= 0
}

// FillLocalVIP gives the sessions without a local-vip the address of
// their family among addrs (the TUN device's), and says which session
// has none.
func (c *Config) FillLocalVIP(addrs ...netip.Addr) error {
	for i := range c.Peers {
		for j := range c.Peers[i].Sessions {
			s := &c.Peers[i].Sessions[j]
			if s.LocalVIP.IsValid() {
				continue
			}
			v4 := s.RemoteVIPs[0].Addr().Is4()
			for _, a := range addrs {
				if a.Unmap().Is4() == v4 {
					s.LocalVIP = a.Unmap()
					break
				}
			}
			if !s.LocalVIP.IsValid() {
				return &Error{Path: fmt.Sprintf("peers[%d].sessions[%d].local-vip", i, j), Msg: "missing, and the tun device has no address of its family"}
			}
		}
	}
	return nil
}

// LocalVIPs lists the local virtual addresses, each once.
func (c *Config) LocalVIPs() []netip.Addr {
	var out []netip.Addr
	for _, p := range c.Peers {
		for _, s := range p.Sessions {
			if s.LocalVIP.IsValid() && !slices.Contains(out, s.LocalVIP) {
				out = append(out, s.LocalVIP)
			}
		}
	}
	return out
}

// CheckInner says which virtual address is not of the inner IP type.
func (c *Config) CheckInner(inner IPType) error {
	for i, p := range c.Peers {
		for j, s := range p.Sessions {
			for k, vip := range s.RemoteVIPs {
				if vip.Addr().Is4() != (inner == IPv4) {
					return &Error{Path: fmt.Sprintf("peers[%d].sessions[%d].remote-vips[%d]", i, j, k),
						Msg: fmt.Sprintf("%v is not %s (the inner ip type)", vip, inner)}
				}
			}
		}
	}
	return nil
}

// mapping walks a mapping of known keys, each given once.
func mapping(n *yaml.Node, path string, known []string, field func(key string, v *yaml.Node) error) error {
	if n.Kind != yaml.MappingNode {
		return &Error{Line: n.Line, Path: path, Msg: fmt.Sprintf("want an object of %s, got %s", strings.Join(known, ", "), yamlnode.Describe(n))}
	}
	seen := map[string]int{}
	for i := 0; i < len(n.Content); i += 2 {
		k, v := n.Content[i], n.Content[i+1]
		at := join(path, k.Value)
		switch line, dup := seen[k.Value]; {
		case !slices.Contains(known, k.Value):
			return &Error{Line: k.Line, Path: at, Msg: fmt.Sprintf("unknown key (known: %s)", strings.Join(known, ", "))}
		case dup:
			return &Error{Line: k.Line, Path: at, Msg: fmt.Sprintf("given twice (first on line %d)", line)}
		}
		seen[k.Value] = k.Line
		if err := field(k.Value, v); err != nil {
			return err
		}
	}
	return nil
}

func list(n *yaml.Node, path string, item func(path string, v *yaml.Node) error) error {
	if n.Kind != yaml.SequenceNode {
		return &Error{Line: n.Line, Path: path, Msg: "want a list, got " + yamlnode.Describe(n)}
	}
	for i, v := range n.Content {
		if err := item(fmt.Sprintf("%s[%d]", path, i), v); err != nil {
			return err
		}
	}
	return nil
}

func scalar(n *yaml.Node, path string) (string, error) {
	if n.Kind != yaml.ScalarNode || n.Tag == "!!null" || n.Value == "" {
		return "", &Error{Line: n.Line, Path: path, Msg: "want a value, got " + yamlnode.Describe(n)}
	}
	return n.Value, nil
}

func join(path, key string) string {
	if path == "" {
		return key
	}
	return path + "." + key
}
