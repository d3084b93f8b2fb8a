// Package userstack is the engine: a gVisor netstack that serves the
// flows the XDP program steers into AF_XDP sockets, next to the kernel
// and sharing the interface's addresses with it. It follows the
// kernel's addresses, neighbours, routes and MTU (kernelview), reserves
// its ephemeral ports in the kernel, and offers Listen, Dial and
// ListenPacket in the shape of the net package, each listener steering
// its packets to itself.
package userstack

import (
	"errors"
	"fmt"
	"log/slog"
	"math"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/network/arp"
	"gvisor.dev/gvisor/pkg/tcpip/network/ipv4"
	"gvisor.dev/gvisor/pkg/tcpip/network/ipv6"
	"gvisor.dev/gvisor/pkg/tcpip/stack"
	"gvisor.dev/gvisor/pkg/tcpip/transport/tcp"
	"gvisor.dev/gvisor/pkg/tcpip/transport/udp"

	"github.com/xdpstack/xdpstack/internal/hostport"
	"github.com/xdpstack/xdpstack/loader"
	"github.com/xdpstack/xdpstack/maps"
	"github.com/xdpstack/xdpstack/userstack/afxdp"
	"github.com/xdpstack/xdpstack/userstack/appns"
	"github.com/xdpstack/xdpstack/userstack/cutthrough"
	"github.com/xdpstack/xdpstack/userstack/gsotx"
	"github.com/xdpstack/xdpstack/userstack/kernelview"
	"github.com/xdpstack/xdpstack/userstack/link"
	"github.com/xdpstack/xdpstack/userstack/session"
	"github.com/xdpstack/xdpstack/userstack/synproxy"
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
	// held are the endpoints apps hold, for the sessions view.
	held held
	link *link.Endpoint
	// view follows the kernel's addresses, neighbours, routes and MTU.
	view *kernelview.View

	// proxy answers SYNs while a SYN flood lasts (synproxy).
	proxy *synproxy.Proxy
	// local joins local-scope sessions in memory.
	local *cutthrough.Table
	// localPorts turns the ports of cut-through connects.
	localPorts atomic.Uint32
	// unlabeled is the app of Listen, ListenPacket and Dial.
	unlabeled     *App
	unlabeledErr  error
	unlabeledOnce sync.Once
	// ports are the attachment's range for the userstack's own
	// connections, steered to it and reserved in the kernel.
	ports     maps.PortRange
	log       *slog.Logger
	done      chan struct{}
	wg        sync.WaitGroup
	closeOnce sync.Once
	closeErr  error
}

// Start opens an AF_XDP socket on every active RX queue of iface,
// registers them in m's xsks map and serves them with a netstack, which
// dials from the port range in m's attach record. It must run in
// iface's network namespace: its netlink handle and subscriptions
// belong to the namespace they were opened in, whichever thread uses
// them later.
func Start(iface loader.Interface, m *maps.Set, opts Options) (s *Stack, err error) {
	if err := opts.setDefaults(); err != nil {
		return nil, err
	}
	opts.AFXDP.FitMTU(iface.MTU)
	s = &Stack{iface: iface, log: slog.With("iface", iface.Name), xsks: m.XSKs, sessions: session.NewTable(m.Listeners), local: cutthrough.NewTable(), done: make(chan struct{}), info: m.Info}
	started := s // a failed Start returns a nil s, and closes this one
	defer func() {
		if err != nil {
			started.Close()
		}
	}()
	if opts.Namespaces == nil {
		opts.Namespaces = appns.New(s.servedAddrs)
	}
	s.opts = opts
	// Before our sockets take the packets: a stale listener would steer
	// them to a netstack that does not listen.
	stale, err := s.sessions.TakeOver()
	if err != nil {
		return nil, fmt.Errorf("take over the listeners map: %w", err)
	}
	if len(stale) != 0 {
		s.log.Info("removed the listeners a daemon that is gone left behind", "listeners", stale)
	}
	if s.view, err = kernelview.Open(iface.Index, iface.Name); err != nil {
		return nil, err
	}
	info, err := m.Info.Get()
	if err != nil {
		return nil, err
	}
	opts.AFXDP.Log = s.log
	if s.ports = info.UserPorts; s.ports == (maps.PortRange{}) {
		return nil, fmt.Errorf("start userstack on %s: the attachment steers no ports to it (attach with loader.Options.UserPorts)", iface.Name)
	}
	if opts.Procs != 0 {
		s.log.Info("go threads at once", "gomaxprocs", setProcs(opts.Procs, max(iface.RxQueues, 1)))
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
	var ep *link.Endpoint
	s.proxy, err = synproxy.New(synproxy.Options{
		Lookup:  s.owner,
		Deliver: func(frame []byte) { ep.Inject(frame) },
		MTU:     func() uint32 { return ep.MTU() },
		Stats:   s.stack.Stats(),
		Log:     s.log,
	})
	if err != nil {
		return nil, err
	}
	linkOpts := link.Options{MTU: uint32(iface.MTU), MAC: iface.MAC, GRO: !opts.NoGRO, TrustChecksums: iface.Driver == "veth" && !opts.CheckChecksums, Stats: s.stack.Stats(), OnResolve: s.resolve, Interceptor: s.proxy}
	if s.gso, err = s.openGSO(opts); err != nil {
		return nil, err
	}
	if s.gso != nil {
		linkOpts.Segmenter = s.gso
		s.wg.Add(1)
		go s.refreshGSO()
	}
	ep = link.New(queues, linkOpts)
	s.link = ep
	// No queueing discipline: the netstack writes to the endpoint inline,
	// where a qdisc would hand every packet to a goroutine of its own.
	// TCP's 64 KiB segments (host GSO) already fill a kick with frames.
	if err := s.stack.CreateNIC(nicID, ep); err != nil {
		return nil, fmt.Errorf("create netstack nic: %s", err)
	}
	s.proxy.Start()
	// Steer only once the netstack is ready for what comes: the view
	// fills local_addrs after the netstack has the addresses.
	if err := s.view.Follow(nic{s}, m.LocalAddrs); err != nil {
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

// resolve asks the kernel for a neighbour the netstack lacks.
func (s *Stack) resolve(addr tcpip.Address) {
	if a, ok := netip.AddrFromSlice(addr.AsSlice()); ok {
		s.view.Resolve(a)
	}
}

func (s *Stack) tune() error {
	t := s.opts.TCP
	if err := s.stack.SetPortRange(s.ports.Min, s.ports.Max); err != nil {
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

// maxMTU is the largest MTU whose packets every AF_XDP socket carries.
func (s *Stack) maxMTU() int {
	most := math.MaxInt
	for _, sock := range s.sockets {
		most = min(most, sock.MaxMTU())
	}
	return most
}

// owner tells the SYN proxy what in the netstack a segment of the flow
// id would reach.
func (s *Stack) owner(netProto tcpip.NetworkProtocolNumber, id stack.TransportEndpointID) synproxy.Owner {
	ep, ok := s.stack.FindTransportEndpoint(netProto, tcp.ProtocolNumber, id, nicID).(*tcp.Endpoint)
	switch {
	case !ok:
		return synproxy.Nobody
	case ep.EndpointState() == tcp.StateListen:
		return synproxy.Listener
	}
	return synproxy.Connection
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
		if s.unlabeled != nil {
			errs = append(errs, s.unlabeled.Close())
		}
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
		// The view hands the netstack what it learns: it stops first.
		if s.view != nil {
			errs = append(errs, s.view.Close())
		}
		if s.link != nil {
			s.link.Stop()
		}
		if s.proxy != nil {
			s.proxy.Close()
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
	host, port, err := hostport.Split(address)
	if err != nil {
		return netip.AddrPort{}, 0, err
	}
	var addr netip.Addr
	if host != "" {
		if addr, err = netip.ParseAddr(host); err != nil {
			return netip.AddrPort{}, 0, fmt.Errorf("host %q is not an IP address", host)
		}
		addr = addr.Unmap()
	}
	return netip.AddrPortFrom(addr, port), proto, nil
}

// servedAddrs are the interface's addresses that the userstack serves,
// which the namespaces of a registry of the stack's own may claim.
func (s *Stack) servedAddrs() []netip.Addr {
	var addrs []netip.Addr
	for _, p := range s.view.Addrs() {
		if kernelview.Served(p.Addr()) {
			addrs = append(addrs, p.Addr().Unmap())
		}
	}
	return addrs
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
	for _, p := range s.view.Addrs() {
		if p.Addr().Is6() && kernelview.Served(p.Addr()) {
			return fa, ipv6.ProtocolNumber
		}
	}
	return fa, ipv4.ProtocolNumber
}
