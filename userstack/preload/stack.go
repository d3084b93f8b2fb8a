package preload

import (
	"fmt"
	"net"
	"net/netip"
	"slices"
	"sync"
	"syscall"
	"time"

	"github.com/xdpstack/xdpstack/maps"
	"github.com/xdpstack/xdpstack/userstack"
	"github.com/xdpstack/xdpstack/userstack/appns"
)

// StackBackend attaches each program to the userstack as an app of its
// namespace, named comm[pid] in the sessions view.
type StackBackend struct {
	// Iface names the interface in the reasons for declining.
	Iface string
	// Stack is the userstack, which it may start at the first program.
	Stack func() (*userstack.Stack, error)

	mu sync.Mutex
	// own are the host's addresses, read at most once a second.
	own     []netip.Addr
	ownRead time.Time
}

func (b *StackBackend) Attach(p Program) (Network, error) {
	s, err := b.Stack()
	if err != nil {
		return nil, fmt.Errorf("start the userstack of %s: %v: %w", b.Iface, err, syscall.ENETDOWN)
	}
	app, err := s.Attach(userstack.AppOptions{Name: p.Name, Namespace: p.Namespace, Secret: p.Secret, Scope: p.Scope})
	if err != nil {
		return nil, err
	}
	return &stackNetwork{b: b, s: s, app: app}, nil
}

// Takes judges as the programs' networks do, but for the namespace.
func (b *StackBackend) Takes(proto maps.Protocol, local, remote netip.AddrPort) error {
	s, err := b.Stack()
	if err != nil {
		return Decline("the userstack of %s did not start: %v", b.Iface, err)
	}
	if remote.IsValid() {
		return b.reaches(s, remote.Addr())
	}
	return b.serves(s, local.Addr())
}

// serves declines a bind to an address the userstack does not serve;
// the wildcards it serves.
func (b *StackBackend) serves(s *userstack.Stack, addr netip.Addr) error {
	if !addr.IsUnspecified() && !s.Serves(addr) {
		return Decline("%s is not an address the userstack of %s serves", addr, b.Iface)
	}
	return nil
}

// reaches declines what the userstack does not reach: loopback,
// multicast and unspecified addresses, the host's own, and peers
// routed through another interface.
func (b *StackBackend) reaches(s *userstack.Stack, remote netip.Addr) error {
	switch {
	case remote.IsLoopback(), remote.IsMulticast(), remote.IsUnspecified(), remote.IsLinkLocalUnicast():
		return Decline("%s is not reached through %s", remote, b.Iface)
	case b.ownAddr(remote):
		return Decline("%s is an address of this host (the kernel's)", remote)
	case s.Reaches(remote) != nil:
		return Decline("no route to %s through %s", remote, b.Iface)
	}
	return nil
}

// ownAddr tells whether addr is one of the host's addresses (of any
// interface): the kernel's to answer, unless a local listener of the
// app's namespace takes the connect.
func (b *StackBackend) ownAddr(addr netip.Addr) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	if time.Since(b.ownRead) > time.Second {
		b.own = b.own[:0]
		if addrs, err := net.InterfaceAddrs(); err == nil {
			for _, a := range addrs {
				if p, err := netip.ParsePrefix(a.String()); err == nil {
					b.own = append(b.own, p.Addr().Unmap())
				}
			}
		}
		b.ownRead = time.Now()
	}
	return slices.Contains(b.own, addr)
}

type stackNetwork struct {
	b   *StackBackend
	s   *userstack.Stack
	app *userstack.App
}

// CheckBind takes the wildcards and the addresses of the interface
// that the userstack serves, which the app's namespace may bind
// (EACCES for another namespace's).
func (n *stackNetwork) CheckBind(proto maps.Protocol, local netip.AddrPort) error {
	addr := local.Addr()
	if proto == maps.UDP && n.app.Scope() == appns.ScopeLocal {
		return Decline("scope local: udp stays with the kernel (local sessions carry tcp only)")
	}
	if err := n.b.serves(n.s, addr); err != nil || addr.IsUnspecified() {
		return err
	}
	return n.app.MayBind(addr)
}

func (n *stackNetwork) ListenTCP(local netip.AddrPort, backlog int, flags Flags) (net.Listener, error) {
	return n.app.ListenTCP(local, userstack.SocketOptions{V6Only: flags&FlagV6Only != 0, Backlog: backlog})
}

func (n *stackNetwork) ListenUDP(local netip.AddrPort, flags Flags) (net.PacketConn, error) {
	return n.app.ListenUDP(local, userstack.SocketOptions{V6Only: flags&FlagV6Only != 0})
}

// DialTCP takes a connect to a peer the userstack reaches through the
// interface, or to a local listener of the app's namespace.
func (n *stackNetwork) DialTCP(local, remote netip.AddrPort, flags Flags) (Dialing, error) {
	if !n.app.LocalListener(remote) {
		if err := n.b.reaches(n.s, remote.Addr()); err != nil {
			return nil, err
		}
		if n.app.Scope() == appns.ScopeLocal {
			return nil, Decline("scope local: no local listener for %s in namespace %s", remote, n.app.Namespace())
		}
	}
	p, err := n.app.DialTCP(local, remote, userstack.SocketOptions{ReuseAddr: flags&FlagReuseAddr != 0})
	if err != nil {
		return nil, err
	}
	return p, nil
}

func (n *stackNetwork) Source(remote netip.Addr) (netip.Addr, error) {
	if err := n.b.reaches(n.s, remote); err != nil {
		return netip.Addr{}, err
	}
	return n.app.Source(remote)
}

func (n *stackNetwork) Close() error { return n.app.Close() }

var (
	_ Backend = (*StackBackend)(nil)
	_ Dialing = (*userstack.PendingConn)(nil)
)
