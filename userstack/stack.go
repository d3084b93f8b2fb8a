// Package userstack is the engine: a gVisor netstack that serves the
// flows the XDP program steers into AF_XDP sockets, next to the kernel
// and sharing the interface's addresses with it. It follows the
// kernel's neighbours and routes, reserves its ephemeral ports in the
// kernel, and offers Listen, Dial and ListenPacket in the shape of the
// net package, each listener steering its packets to itself.
package userstack

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"strconv"
	"sync"
	"time"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/adapters/gonet"
	"gvisor.dev/gvisor/pkg/tcpip/network/arp"
	"gvisor.dev/gvisor/pkg/tcpip/network/ipv4"
	"gvisor.dev/gvisor/pkg/tcpip/network/ipv6"
	"gvisor.dev/gvisor/pkg/tcpip/stack"
	"gvisor.dev/gvisor/pkg/tcpip/transport/tcp"
	"gvisor.dev/gvisor/pkg/tcpip/transport/udp"
	"gvisor.dev/gvisor/pkg/waiter"

	"github.com/xdpstack/xdpstack/loader"
	"github.com/xdpstack/xdpstack/maps"
	"github.com/xdpstack/xdpstack/userstack/afxdp"
	"github.com/xdpstack/xdpstack/userstack/gsotx"
	"github.com/xdpstack/xdpstack/userstack/link"
	"github.com/xdpstack/xdpstack/userstack/session"
)

const nicID tcpip.NICID = 1

// Stack is a running userstack on one interface.
type Stack struct {
	iface   loader.Interface
	opts    Options
	stack   *stack.Stack
	sockets []*afxdp.Socket
	// gso sends large TCP segments for the kernel to cut; nil when off.
	gso      *gsotx.Socket
	xsks     maps.XSKs
	info     maps.Info
	sessions *session.Table
	link     *link.Endpoint
	// resolving are the neighbours the netstack asked the kernel for.
	resolvingMu sync.Mutex
	resolving   map[tcpip.Address]bool
	// probe4 and probe6 make the kernel resolve neighbours (resolve).
	probe4, probe6 int
	// nl talks to the kernel of the interface's network namespace from
	// whatever thread a goroutine runs on.
	nl *netlink.Handle

	log          *slog.Logger
	restorePorts func() error
	done         chan struct{}
	wg           sync.WaitGroup
	closeOnce    sync.Once
	closeErr     error
}

// Start opens an AF_XDP socket on every active RX queue of iface,
// registers them in m's xsks map and serves them with a netstack. It
// must run in iface's network namespace: its netlink handle,
// subscriptions and sysctl file belong to the namespace they were opened
// in, whichever thread uses them later.
func Start(iface loader.Interface, m *maps.Set, opts Options) (s *Stack, err error) {
	if err := opts.setDefaults(); err != nil {
		return nil, err
	}
	opts.AFXDP.FitMTU(iface.MTU)
	s = &Stack{iface: iface, opts: opts, log: slog.With("iface", iface.Name), xsks: m.XSKs, sessions: session.NewTable(m.Listeners), resolving: map[tcpip.Address]bool{}, done: make(chan struct{}), info: m.Info}
	defer func() {
		if err != nil {
			s.Close()
		}
	}()
	if s.nl, err = netlink.NewHandle(); err != nil {
		return nil, fmt.Errorf("open netlink: %w", err)
	}
	if err := s.openProbes(); err != nil {
		return nil, err
	}
	if s.restorePorts, err = reservePorts(opts.Ports); err != nil {
		return nil, err
	}
	queues := make([]link.Queue, 0, iface.RxQueues)
	for q := range max(iface.RxQueues, 1) {
		sock, err := afxdp.Open(iface.Index, q, opts.AFXDP)
		if err != nil {
			return nil, err
		}
		s.sockets = append(s.sockets, sock)
		queues = append(queues, sock)
	}
	s.stack = stack.New(stack.Options{
		NetworkProtocols: []stack.NetworkProtocolFactory{ipv4.NewProtocol, arp.NewProtocol, ipv6.NewProtocolWithOptions(ipv6.Options{
			// The addresses are the kernel's, which did DAD and owns
			// router discovery: the netstack must send neither.
			NDPConfigs: ipv6.NDPConfigurations{HandleRAs: ipv6.HandlingRAsDisabled},
		})},
		TransportProtocols: []stack.TransportProtocolFactory{tcp.NewProtocol, udp.NewProtocol},
	})
	if err := s.tune(); err != nil {
		return nil, err
	}
	linkOpts := link.Options{MTU: uint32(iface.MTU), MAC: iface.MAC, GRO: !opts.NoGRO, TrustChecksums: iface.Driver == "veth" && !opts.CheckChecksums, Stats: s.stack.Stats(), OnResolve: s.resolveLater}
	if s.gso, err = s.openGSO(opts); err != nil {
		return nil, err
	}
	if s.gso != nil {
		linkOpts.Segmenter = s.gso
		s.wg.Add(1)
		go s.refreshGSO()
	}
	ep := link.New(queues, linkOpts)
	s.link = ep
	// No queueing discipline: the netstack writes to the endpoint inline,
	// where a qdisc would hand every packet to a goroutine of its own.
	// TCP's 64 KiB segments (host GSO) already fill a kick with frames.
	if err := s.stack.CreateNIC(nicID, ep); err != nil {
		return nil, fmt.Errorf("create netstack nic: %s", err)
	}
	for _, p := range iface.Addrs {
		if !served(p.Addr()) {
			continue
		}
		pa := tcpip.ProtocolAddress{Protocol: addrProto(p.Addr()), AddressWithPrefix: tcpip.AddressWithPrefix{Address: tcpip.AddrFromSlice(p.Addr().AsSlice()), PrefixLen: p.Bits()}}
		if err := s.stack.AddProtocolAddress(nicID, pa, stack.AddressProperties{}); err != nil {
			return nil, fmt.Errorf("add address %s to the netstack: %s", p, err)
		}
	}
	if err := s.follow(s.done); err != nil {
		return nil, err
	}
	// Steer only once the netstack is ready for what comes.
	if err := m.LocalAddrs.Sync(localAddrs(iface.Addrs)); err != nil {
		return nil, err
	}
	var served, zeroCopy maps.QueueSet
	for q, sock := range s.sockets {
		if err := m.XSKs.Register(q, sock.FD()); err != nil {
			return nil, err
		}
		if err := served.Add(q); err != nil {
			return nil, err
		}
		if sock.Mode == afxdp.ModeZeroCopy {
			zeroCopy.Add(q)
		}
	}
	// For `xdpstack status`, which runs in another process.
	if err := s.info.SetSockets(served, zeroCopy); err != nil {
		return nil, err
	}
	return s, nil
}

// openGSO opens the socket that sends large TCP segments whole, unless
// told not to or a queue runs zero-copy (whose frames leave after
// Transmit returns, so a segment sent aside could overtake them).
func (s *Stack) openGSO(opts Options) (*gsotx.Socket, error) {
	if opts.NoKernelGSO {
		return nil, nil
	}
	for _, sock := range s.sockets {
		if sock.Mode != afxdp.ModeCopy {
			return nil, nil
		}
	}
	return gsotx.Open(s.iface.Index, s.iface.Name)
}

// refreshGSO re-reads the interface's TCP segmentation offload every
// second, since ethtool -K may turn it on or off at any time.
func (s *Stack) refreshGSO() {
	defer s.wg.Done()
	t := time.NewTicker(time.Second)
	defer t.Stop()
	logged := false
	for {
		select {
		case <-s.done:
			return
		case <-t.C:
			if err := s.gso.Refresh(); err != nil && !logged {
				s.log.Warn("cannot read the interface's segmentation offload; kept the last setting", "err", err)
				logged = true
			}
		}
	}
}

// resolveLater runs resolve on its own goroutine: the netstack calls
// OnResolve with its neighbour entry locked, and the answer may come at once.
func (s *Stack) resolveLater(addr tcpip.Address) {
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		s.resolve(addr)
	}()
}

func (s *Stack) tune() error {
	t := s.opts.TCP
	if err := s.stack.SetPortRange(s.opts.Ports.Min, s.opts.Ports.Max); err != nil {
		return fmt.Errorf("set userstack ports: %s", err)
	}
	sack := tcpip.TCPSACKEnabled(!t.NoSACK)
	cc := tcpip.CongestionControlOption(t.CongestionControl)
	moderate := tcpip.TCPModerateReceiveBufferOption(true)
	for _, opt := range []tcpip.SettableTransportProtocolOption{
		&sack, &cc, &moderate,
		&tcpip.TCPSendBufferSizeRangeOption{Min: minTCPBuffer, Default: min(defaultTCPBuffer, t.SendBuffer), Max: t.SendBuffer},
		&tcpip.TCPReceiveBufferSizeRangeOption{Min: minTCPBuffer, Default: min(defaultTCPBuffer, t.ReceiveBuffer), Max: t.ReceiveBuffer},
	} {
		if err := s.stack.SetTransportProtocolOption(tcp.ProtocolNumber, opt); err != nil {
			return fmt.Errorf("set tcp option %T: %s", opt, err)
		}
	}
	return nil
}

// Sockets are the AF_XDP sockets, one per queue, for status and metrics.
func (s *Stack) Sockets() []*afxdp.Socket { return s.sockets }

// Sessions is the listener table, for the HTTP app's status page.
func (s *Stack) Sessions() *session.Table { return s.sessions }

// Endpoints counts the netstack's transport endpoints: listeners,
// connections, and connections in TIME-WAIT.
func (s *Stack) Endpoints() int { return len(s.stack.RegisteredEndpoints()) }

// Close stops steering, then stops the netstack and closes the sockets;
// the kernel gets the interface's traffic back.
func (s *Stack) Close() error {
	s.closeOnce.Do(func() {
		var errs []error
		for l := range s.sessions.Listeners() {
			errs = append(errs, s.sessions.Remove(l))
		}
		for q := range s.sockets {
			errs = append(errs, s.xsks.Unregister(q))
		}
		if len(s.sockets) != 0 {
			errs = append(errs, s.info.SetSockets(maps.QueueSet{}, maps.QueueSet{}))
		}
		close(s.done)
		if s.link != nil {
			s.link.Stop()
		}
		if s.stack != nil {
			s.stack.Close()
			s.stack.Wait()
		}
		s.wg.Wait()
		for _, sock := range s.sockets {
			errs = append(errs, sock.Close())
		}
		if s.gso != nil {
			errs = append(errs, s.gso.Close())
		}
		if s.restorePorts != nil {
			errs = append(errs, s.restorePorts())
		}
		if s.nl != nil {
			s.nl.Close()
		}
		for _, fd := range []int{s.probe4, s.probe6} {
			if fd > 0 {
				unix.Close(fd)
			}
		}
		s.closeErr = errors.Join(errs...)
	})
	return s.closeErr
}

// parseAddr reads HOST:PORT; an empty host is every address.
func parseAddr(network, address string) (netip.AddrPort, maps.Protocol, error) {
	var proto maps.Protocol
	switch network {
	case "tcp", "tcp4", "tcp6":
		proto = maps.TCP
	case "udp", "udp4", "udp6":
		proto = maps.UDP
	default:
		return netip.AddrPort{}, 0, fmt.Errorf("network %q: want tcp or udp", network)
	}
	host, port, err := net.SplitHostPort(address)
	if err != nil {
		return netip.AddrPort{}, 0, err
	}
	p, err := strconv.ParseUint(port, 10, 16)
	if err != nil {
		return netip.AddrPort{}, 0, fmt.Errorf("port %q is not a number from 0 to 65535", port)
	}
	var addr netip.Addr
	if host != "" {
		if addr, err = netip.ParseAddr(host); err != nil {
			return netip.AddrPort{}, 0, fmt.Errorf("host %q is not an IP address", host)
		}
		addr = addr.Unmap()
	}
	return netip.AddrPortFrom(addr, uint16(p)), proto, nil
}

// fullAddr turns an address into the netstack's, choosing the network
// protocol: a wildcard is IPv4 unless the interface has IPv6 addresses,
// in which case it is dual-stack IPv6.
func (s *Stack) fullAddr(ap netip.AddrPort) (tcpip.FullAddress, tcpip.NetworkProtocolNumber) {
	fa := tcpip.FullAddress{Port: ap.Port()}
	if ap.Addr().IsValid() && !ap.Addr().IsUnspecified() {
		fa.Addr = tcpip.AddrFromSlice(ap.Addr().AsSlice())
		return fa, addrProto(ap.Addr())
	}
	for _, p := range s.iface.Addrs {
		if p.Addr().Is6() && !p.Addr().IsLinkLocalUnicast() {
			return fa, ipv6.ProtocolNumber
		}
	}
	return fa, ipv4.ProtocolNumber
}

// Listen listens for TCP connections on address (HOST:PORT, HOST may be
// empty) and steers them to the userstack until the listener closes.
func (s *Stack) Listen(network, address string) (net.Listener, error) {
	ap, proto, err := parseAddr(network, address)
	if err == nil && proto != maps.TCP {
		err = errors.New("use ListenPacket for udp")
	}
	if err != nil {
		return nil, fmt.Errorf("listen %s %s: %w", network, address, err)
	}
	fa, netProto := s.fullAddr(ap)
	var wq waiter.Queue
	ep, terr := s.stack.NewEndpoint(tcp.ProtocolNumber, netProto, &wq)
	if terr != nil {
		return nil, fmt.Errorf("listen %s %s: %s", network, address, terr)
	}
	if terr := ep.Bind(fa); terr != nil {
		ep.Close()
		return nil, fmt.Errorf("listen %s %s: bind: %s", network, address, terr)
	}
	if terr := ep.Listen(s.opts.TCP.Backlog); terr != nil {
		ep.Close()
		return nil, fmt.Errorf("listen %s %s: %s", network, address, terr)
	}
	ln := gonet.NewTCPListener(s.stack, &wq, ep)
	bound, _ := ep.GetLocalAddress()
	steer := maps.Listener{Protocol: maps.TCP, Addr: ap.Addr(), Port: bound.Port}
	if _, err := s.sessions.Add(steer); err != nil {
		ln.Close()
		return nil, err
	}
	return &listener{Listener: ln, release: func() error { return s.sessions.Remove(steer) }}, nil
}

type listener struct {
	net.Listener
	release func() error
	once    sync.Once
}

// Close stops steering first, so that new connections meet the
// kernel's refusal instead of a closed listener.
func (l *listener) Close() error {
	var err error
	l.once.Do(func() { err = errors.Join(l.release(), l.Listener.Close()) })
	return err
}

// Dial connects over TCP, or opens a UDP socket connected to one peer,
// from the userstack's port range.
func (s *Stack) Dial(ctx context.Context, network, address string) (net.Conn, error) {
	ap, proto, err := parseAddr(network, address)
	if err == nil && (!ap.Addr().IsValid() || ap.Addr().IsUnspecified() || ap.Port() == 0) {
		err = errors.New("want HOST:PORT of a peer")
	}
	if err != nil {
		return nil, fmt.Errorf("dial %s %s: %w", network, address, err)
	}
	fa, netProto := s.fullAddr(ap)
	if proto == maps.UDP {
		c, err := dialUDP(s.stack, fa, netProto)
		if err != nil {
			return nil, fmt.Errorf("dial %s %s: %w", network, address, err)
		}
		return c, nil
	}
	return gonet.DialContextTCP(ctx, s.stack, fa, netProto)
}

// ListenPacket opens a UDP socket on address and steers its datagrams
// to the userstack until it closes.
func (s *Stack) ListenPacket(network, address string) (net.PacketConn, error) {
	ap, proto, err := parseAddr(network, address)
	if err == nil && proto != maps.UDP {
		err = errors.New("use Listen for tcp")
	}
	if err != nil {
		return nil, fmt.Errorf("listen %s %s: %w", network, address, err)
	}
	fa, netProto := s.fullAddr(ap)
	c, err := newPacketConn(s.stack, fa, netProto)
	if err != nil {
		return nil, fmt.Errorf("listen %s %s: %w", network, address, err)
	}
	steer := maps.Listener{Protocol: maps.UDP, Addr: ap.Addr(), Port: c.LocalAddr().(*net.UDPAddr).AddrPort().Port()}
	if _, err := s.sessions.Add(steer); err != nil {
		c.Close()
		return nil, err
	}
	c.release = func() error { return s.sessions.Remove(steer) }
	return c, nil
}
