package preload

import (
	"errors"
	"net"
	"net/netip"
	"sync"

	"golang.org/x/sys/unix"

	"github.com/xdpstack/xdpstack/maps"
)

// UDP sessions of one program on one local address and port share a
// socket of the Network, as SO_REUSEADDR lets kernel sockets share a
// port: iperf3's server connects the socket of its first client and
// binds another to the same port for the next. The server sorts each
// datagram as the kernel does: to the session connected to its sender,
// else to the last bound of the unconnected ones.

// maxDatagram is the largest UDP payload, with room for the header.
const maxDatagram = 65535 + DgramSize

type endpointKey struct {
	att   *attachment
	local netip.AddrPort
}

type udpEndpoint struct {
	s     *Server
	key   endpointKey
	pc    net.PacketConn
	bound netip.AddrPort

	mu sync.Mutex
	// sessions, in the order they were bound.
	sessions []*udpSession
}

type udpSession struct {
	att   *attachment
	ep    *udpEndpoint
	id    uint32
	end   *net.UnixConn
	flags Flags

	mu sync.Mutex
	// remote is the connected peer; invalid while unconnected.
	remote netip.AddrPort
	once   sync.Once
}

// bindUDP binds now: the reply carries the socket.
func (cl *client) bindUDP(req Request) response {
	return cl.openUDP(req, req.Local, netip.AddrPort{})
}

// connectUDP opens a socket connected to remote, from local when
// given, else from the address the network would leave from.
func (cl *client) connectUDP(req Request) response {
	local := req.Local
	if !local.Addr().IsValid() || local.Addr().IsUnspecified() {
		src, err := cl.att.net.Source(req.Remote.Addr())
		if err != nil {
			return failed(err)
		}
		local = netip.AddrPortFrom(src, local.Port())
	}
	return cl.openUDP(req, local, req.Remote)
}

func (cl *client) openUDP(req Request, local, remote netip.AddrPort) response {
	s := cl.s
	if err := cl.att.net.CheckBind(maps.UDP, local); err != nil {
		return failed(err)
	}
	ep, err := s.endpoint(cl.att, local, req.Flags)
	if err != nil {
		return failed(err)
	}
	id := s.newID()
	u := &udpSession{att: cl.att, ep: ep, id: id, flags: req.Flags, remote: remote}
	prog, end, err := s.pair(unix.SOCK_SEQPACKET, Name{Kind: KindUDP, Family: family(req.Flags), ID: id, Instance: s.instance,
		Local: show(ep.bound, req.Flags), Remote: show(remote, req.Flags)})
	if err != nil {
		ep.leave(nil)
		return failed(err)
	}
	u.end = end
	cl.att.hold()
	ep.join(u)
	if !s.add(id, u, u.send) {
		u.close()
		unix.Close(prog.fd)
		return failed(errClosing)
	}
	s.udpOpened.Add(1)
	return response{Reply: Reply{ID: id, Local: show(ep.bound, req.Flags)}, fd: prog.fd}
}

// endpoint is the program's shared socket on local, opened when it has
// none; a port another session holds is shared only when asked for
// (SO_REUSEADDR or SO_REUSEPORT); a bind to port 0 takes a port of
// its own. The caller joins it, or leaves it with nil.
func (s *Server) endpoint(att *attachment, local netip.AddrPort, flags Flags) (*udpEndpoint, error) {
	key := endpointKey{att, local}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil, errClosing
	}
	if ep, ok := s.endpoints[key]; ok && local.Port() != 0 {
		if flags&(FlagReuseAddr|FlagReusePort) == 0 {
			return nil, &net.OpError{Op: "bind", Net: "udp", Addr: net.UDPAddrFromAddrPort(local), Err: unix.EADDRINUSE}
		}
		ep.mu.Lock()
		ep.sessions = append(ep.sessions, nil) // a place, taken by join
		ep.mu.Unlock()
		return ep, nil
	}
	pc, err := att.net.ListenUDP(local, flags)
	if err != nil {
		return nil, err
	}
	ep := &udpEndpoint{s: s, pc: pc, bound: addrPortOf(pc.LocalAddr()), sessions: []*udpSession{nil}}
	if !ep.bound.Addr().IsValid() {
		ep.bound = netip.AddrPortFrom(local.Addr(), ep.bound.Port())
	}
	// Bound to port 0, it is found by the port it took.
	ep.key = endpointKey{att, netip.AddrPortFrom(local.Addr(), ep.bound.Port())}
	s.endpoints[ep.key] = ep
	s.wg.Add(1)
	go ep.receive()
	return ep, nil
}

// join puts u in the place endpoint kept for it.
func (ep *udpEndpoint) join(u *udpSession) {
	ep.mu.Lock()
	defer ep.mu.Unlock()
	for i, v := range ep.sessions {
		if v == nil {
			ep.sessions[i] = u
			return
		}
	}
}

// leave takes u (or an unfilled place, for nil) out, and closes the
// socket with its last session.
func (ep *udpEndpoint) leave(u *udpSession) {
	s := ep.s
	s.mu.Lock()
	ep.mu.Lock()
	for i, v := range ep.sessions {
		if v == u {
			ep.sessions = append(ep.sessions[:i], ep.sessions[i+1:]...)
			break
		}
	}
	last := len(ep.sessions) == 0
	ep.mu.Unlock()
	if last && s.endpoints[ep.key] == ep {
		delete(s.endpoints, ep.key)
	}
	s.mu.Unlock()
	if last {
		ep.pc.Close()
	}
}

// receive hands each datagram to its session until the socket closes.
func (ep *udpEndpoint) receive() {
	defer ep.s.wg.Done()
	buf := make([]byte, maxDatagram)
	for {
		n, from, err := ep.pc.ReadFrom(buf[DgramSize:])
		if err != nil {
			if !errors.Is(err, net.ErrClosed) {
				ep.s.log.Debug("udp socket failed", "local", ep.bound, "err", err)
				// Its sessions see EOF.
				ep.mu.Lock()
				sessions := append([]*udpSession(nil), ep.sessions...)
				ep.mu.Unlock()
				for _, u := range sessions {
					if u != nil {
						u.close()
					}
				}
			}
			return
		}
		peer := addrPortOf(from)
		if u := ep.sessionFor(peer); u != nil {
			u.deliver(buf[:DgramSize+n], peer)
		}
	}
}

func (ep *udpEndpoint) sessionFor(peer netip.AddrPort) *udpSession {
	ep.mu.Lock()
	defer ep.mu.Unlock()
	var unconnected *udpSession
	for _, u := range ep.sessions {
		if u == nil {
			continue
		}
		switch remote := u.peer(); {
		case remote == peer:
			return u
		case !remote.Addr().IsValid():
			unconnected = u
		}
	}
	return unconnected
}

func (u *udpSession) peer() netip.AddrPort {
	u.mu.Lock()
	defer u.mu.Unlock()
	return u.remote
}

// deliver sends the program a datagram (b starts with room for its
// header) without waiting: when its socket's queue is full the
// datagram is dropped, as a full kernel socket drops it.
func (u *udpSession) deliver(b []byte, from netip.AddrPort) {
	putDgram(b, show(from, u.flags))
	rc, err := u.end.SyscallConn()
	if err != nil {
		return
	}
	var sendErr error
	rc.Control(func(fd uintptr) {
		sendErr = unix.Sendmsg(int(fd), b, nil, nil, unix.MSG_DONTWAIT|unix.MSG_NOSIGNAL)
	})
	if errors.Is(sendErr, unix.EPIPE) {
		u.close() // the program closed its socket
	}
}

// send sends the program's datagrams until it closes its socket (EOF).
func (u *udpSession) send() {
	buf := make([]byte, maxDatagram)
	for {
		n, err := u.end.Read(buf)
		if err != nil {
			u.close()
			return
		}
		to, payload, err := readDgram(buf[:n])
		if err == nil && !to.Addr().IsValid() {
			if to = u.peer(); !to.Addr().IsValid() {
				u.att.s.log.Debug("dropped a datagram with no destination from an unconnected socket", "app", u.att.prog.Name)
				continue
			}
		}
		if err != nil {
			u.att.s.log.Debug("dropped a datagram", "app", u.att.prog.Name, "err", err)
			continue
		}
		if _, err := u.ep.pc.WriteTo(payload, net.UDPAddrFromAddrPort(unmap(to))); err != nil {
			u.att.s.log.Debug("udp send failed", "app", u.att.prog.Name, "to", to, "err", err)
		}
	}
}

func (u *udpSession) close() {
	u.once.Do(func() {
		s := u.att.s
		u.end.Close()
		u.ep.leave(u)
		s.remove(u.id)
		u.att.release()
	})
}

// udpConnect connects a bound session to remote, or disconnects it.
func (cl *client) udpConnect(req Request) response {
	s := cl.s
	s.mu.Lock()
	sess, ok := s.sessions[req.ID]
	s.mu.Unlock()
	u, isUDP := sess.(*udpSession)
	if !ok || !isUDP {
		return invalid("udp connect: no udp session %d", req.ID)
	}
	remote := unmap(req.Remote)
	if remote.Addr().IsValid() && (remote.Addr().IsUnspecified() || remote.Port() == 0) {
		return invalid("udp connect: remote %s (want the address and port of a peer)", remote)
	}
	u.mu.Lock()
	u.remote = remote
	u.mu.Unlock()
	return response{Reply: Reply{ID: u.id, Local: show(u.ep.bound, u.flags)}, fd: -1}
}
