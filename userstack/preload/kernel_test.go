package preload

import (
	"context"
	"net"
	"net/netip"
	"os"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/xdpstack/xdpstack/maps"
	"github.com/xdpstack/xdpstack/userstack/appns"
)

// kernelBackend serves the tests' programs with kernel sockets on
// loopback, so that the server runs under -race without XDP: it takes
// binds to loopback and the wildcards, connects to loopback, and
// declines everything else. Namespace "locked" wants secret "s".
type kernelBackend struct {
	spaces *appns.Registry

	mu       sync.Mutex
	attached []Program
	detached int
	// gate, when set, holds every connect until it is closed.
	gate chan struct{}
}

func newKernelBackend() *kernelBackend {
	reg := appns.New(nil)
	if err := reg.Add(appns.Config{Name: "locked", Secret: "s"}); err != nil {
		panic(err)
	}
	return &kernelBackend{spaces: reg}
}

func (b *kernelBackend) Attach(p Program) (Network, error) {
	ns, err := b.spaces.Attach(p.Namespace, p.Secret)
	if err != nil {
		return nil, err
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	b.attached = append(b.attached, p)
	return &kernelNetwork{b: b, ns: ns}, nil
}

func (b *kernelBackend) Takes(_ maps.Protocol, local, remote netip.AddrPort) error {
	if remote.IsValid() {
		if !remote.Addr().IsLoopback() {
			return Decline("%s is not loopback", remote.Addr())
		}
		return nil
	}
	return (&kernelNetwork{}).CheckBind(0, local)
}

func (b *kernelBackend) programs() []Program {
	b.mu.Lock()
	defer b.mu.Unlock()
	return append([]Program(nil), b.attached...)
}

func (b *kernelBackend) counts() (attached, detached int) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return len(b.attached), b.detached
}

type kernelNetwork struct {
	b  *kernelBackend
	ns *appns.App
}

func (n *kernelNetwork) CheckBind(_ maps.Protocol, local netip.AddrPort) error {
	if a := local.Addr(); !a.IsLoopback() && !a.IsUnspecified() {
		return Decline("%s is not loopback", a)
	}
	return nil
}

// network is the Go network that binds addr as a C program's socket
// would: 0.0.0.0 IPv4 only, :: both families unless v6-only.
func network(proto string, addr netip.Addr, flags Flags) string {
	switch {
	case addr.Is4():
		return proto + "4"
	case addr.IsUnspecified() && flags&FlagV6Only == 0:
		return proto
	}
	return proto + "6"
}

func reuse(flags Flags) net.ListenConfig {
	return net.ListenConfig{Control: func(_, _ string, rc syscall.RawConn) error {
		var err error
		rc.Control(func(fd uintptr) {
			if flags&FlagReuseAddr != 0 {
				err = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_REUSEADDR, 1)
			}
		})
		return err
	}}
}

func (n *kernelNetwork) ListenTCP(local netip.AddrPort, _ int, flags Flags) (net.Listener, error) {
	lc := reuse(flags)
	return lc.Listen(context.Background(), network("tcp", local.Addr(), flags), local.String())
}

func (n *kernelNetwork) ListenUDP(local netip.AddrPort, flags Flags) (net.PacketConn, error) {
	lc := reuse(flags)
	return lc.ListenPacket(context.Background(), network("udp", local.Addr(), flags), local.String())
}

func (n *kernelNetwork) Source(remote netip.Addr) (netip.Addr, error) {
	if !remote.IsLoopback() {
		return netip.Addr{}, Decline("%s is not loopback", remote)
	}
	return remote, nil
}

func (n *kernelNetwork) Close() error {
	n.ns.Detach()
	n.b.mu.Lock()
	defer n.b.mu.Unlock()
	n.b.detached++
	return nil
}

func sockaddr(ap netip.AddrPort) unix.Sockaddr {
	if ap.Addr().Is4() {
		return &unix.SockaddrInet4{Addr: ap.Addr().As4(), Port: int(ap.Port())}
	}
	return &unix.SockaddrInet6{Addr: ap.Addr().As16(), Port: int(ap.Port())}
}

// DialTCP binds a non-blocking kernel socket, so that its local address
// is known before the connect.
func (n *kernelNetwork) DialTCP(local, remote netip.AddrPort, flags Flags) (Dialing, error) {
	if !remote.Addr().IsLoopback() {
		return nil, Decline("%s is not loopback", remote.Addr())
	}
	domain := unix.AF_INET
	if remote.Addr().Is6() {
		domain = unix.AF_INET6
	}
	fd, err := unix.Socket(domain, unix.SOCK_STREAM|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, err
	}
	if flags&FlagReuseAddr != 0 {
		unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_REUSEADDR, 1)
	}
	if !local.Addr().IsValid() || local.Addr().IsUnspecified() {
		local = netip.AddrPortFrom(remote.Addr(), local.Port())
	}
	if err := unix.Bind(fd, sockaddr(local)); err != nil {
		unix.Close(fd)
		return nil, &net.OpError{Op: "bind", Net: "tcp", Err: err}
	}
	sa, err := unix.Getsockname(fd)
	if err != nil {
		unix.Close(fd)
		return nil, err
	}
	var bound netip.AddrPort
	switch sa := sa.(type) {
	case *unix.SockaddrInet4:
		bound = netip.AddrPortFrom(netip.AddrFrom4(sa.Addr), uint16(sa.Port))
	case *unix.SockaddrInet6:
		bound = netip.AddrPortFrom(netip.AddrFrom16(sa.Addr), uint16(sa.Port))
	}
	return &kernelDialing{n: n, fd: fd, local: bound, remote: remote}, nil
}

type kernelDialing struct {
	n      *kernelNetwork
	fd     int
	local  netip.AddrPort
	remote netip.AddrPort
}

func (d *kernelDialing) LocalAddr() netip.AddrPort { return d.local }

func (d *kernelDialing) Close() { unix.Close(d.fd) }

func (d *kernelDialing) Connect(ctx context.Context) (net.Conn, error) {
	d.n.b.mu.Lock()
	gate := d.n.b.gate
	d.n.b.mu.Unlock()
	if gate != nil {
		select {
		case <-gate:
		case <-ctx.Done():
			unix.Close(d.fd)
			return nil, ctx.Err()
		}
	}
	f := os.NewFile(uintptr(d.fd), "connect")
	defer f.Close()
	if err := unix.Connect(d.fd, sockaddr(d.remote)); err != nil && err != unix.EINPROGRESS {
		return nil, &net.OpError{Op: "connect", Net: "tcp", Err: err}
	}
	rc, err := f.SyscallConn()
	if err != nil {
		return nil, err
	}
	stop := context.AfterFunc(ctx, func() { f.SetWriteDeadline(time.Unix(1, 0)) })
	defer stop()
	var soErr int
	werr := rc.Write(func(fd uintptr) bool {
		fds := []unix.PollFd{{Fd: int32(fd), Events: unix.POLLOUT}}
		if n, _ := unix.Poll(fds, 0); n == 0 {
			return false
		}
		soErr, err = unix.GetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_ERROR)
		return true
	})
	switch {
	case werr != nil:
		return nil, werr
	case err != nil:
		return nil, err
	case soErr != 0:
		return nil, &net.OpError{Op: "connect", Net: "tcp", Err: syscall.Errno(soErr)}
	}
	return net.FileConn(f)
}
