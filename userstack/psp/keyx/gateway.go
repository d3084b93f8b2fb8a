package keyx

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/xdpstack/xdpstack/userstack/psp"
	"github.com/xdpstack/xdpstack/userstack/psp/keyx/pb"
	"github.com/xdpstack/xdpstack/userstack/psp/pspconfig"
	"github.com/xdpstack/xdpstack/userstack/psp/tunnel"
)

// Settings is what a Gateway stands on. Config, Device, Table and ACL
// are shared with the data path.
type Settings struct {
	Config  *pspconfig.Config
	Options pspconfig.Options
	// MAC and Addr are this host's on the secure side: where peers send
	// the sealed frames. Addr is of Options.Outer's family.
	MAC  net.HardwareAddr
	Addr netip.Addr
	// TLS is this node's identity; nil only with Options.Plaintext.
	TLS    *TLS
	Device *psp.Device
	Table  *tunnel.Table
	ACL    *tunnel.ACL
	// Timeout bounds one exchange; 0 means 5s.
	Timeout time.Duration
	// RetireAfter is how long the previous master key keeps working
	// after the tunnels were re-keyed; 0 means a minute. The next
	// rotation retires it in any case.
	RetireAfter time.Duration
	// ObserveExchange, if set, is told the latency and outcome of every
	// exchange this host starts (a prometheus.Histogram's Observe fits).
	ObserveExchange func(peer string, d time.Duration, err error)
	// Log defaults to slog.Default(). Keys are never logged.
	Log *slog.Logger
}

// Gateway is one host's key exchange: the PSP_Gateway gRPC service that
// issues SPIs to peers, and the client that asks peers for tunnels (a
// tunnel.Requester), sets up the static tunnels and re-keys them when
// the master keys rotate.
type Gateway struct {
	pb.UnimplementedPSP_GatewayServer
	s      Settings
	log    *slog.Logger
	server *grpc.Server

	peers map[string]*peerState // by gRPC address, as configured

	mu      sync.Mutex
	pending map[netip.Addr]*pendingState // on-demand requests by remote address
	issued  map[pair][]uint32            // SPIs granted per pair, newest last
	closed  bool

	rotateMu  sync.Mutex   // one rotation at a time
	keyMu     sync.RWMutex // SPIs are allocated under R, master keys change under W
	rotations atomic.Uint64
	// staleEvents counts the times packets this host could not open
	// sent it back to its peers for tunnels (WatchStale).
	staleEvents atomic.Uint64
	requestID   atomic.Uint64
	ctx         context.Context
	cancel      context.CancelFunc
	wg          sync.WaitGroup
}

// pair is a tunnel's two virtual addresses, seen from this host.
type pair struct {
	local, remote netip.Addr
}

type pendingState struct {
	inflight bool
	failures int
	next     time.Time // no new try before
}

type peerState struct {
	cfg  *pspconfig.Peer
	conn *grpc.ClientConn
	rpc  pb.PSP_GatewayClient

	mu    sync.Mutex
	stats PeerStats
}

// PeerStats are what the operator sees of a peer.
type PeerStats struct {
	// GRPC is the peer's gRPC address, as configured.
	GRPC string
	// Subject is its certificate's subject, from the last exchange either
	// way; empty in plaintext mode or before any.
	Subject string
	// LastExchange is when an exchange with it last succeeded, either way.
	LastExchange time.Time
	// Successes and Failures count the exchanges this host started.
	Successes, Failures uint64
	// LastError is the last failure, empty after a success.
	LastError string
}

// New checks the settings and makes the peers' gRPC clients (which
// connect on their first call).
func New(s Settings) (*Gateway, error) {
	switch {
	case s.Config == nil || s.Device == nil || s.Table == nil || s.ACL == nil:
		return nil, errors.New("psp key exchange: config, device, table and acl are needed")
	case len(s.MAC) != 6:
		return nil, fmt.Errorf("psp key exchange: mac %v: not an ethernet address", s.MAC)
	case !s.Addr.IsValid() || s.Addr.Is4() != (s.Options.Outer == pspconfig.IPv4):
		return nil, fmt.Errorf("psp key exchange: secure-side address %v is not %s (the outer ip type)", s.Addr, s.Options.Outer)
	case s.TLS == nil && !s.Options.Plaintext:
		return nil, errors.New("psp key exchange: no certificates (give --psp-cert, --psp-key and --psp-ca, or --psp-plaintext)")
	}
	o := s.Options
	if s.TLS != nil { // the files were read already
		o.Plaintext, o.Cert, o.Key, o.CA = false, "cert", "key", "ca"
	}
	if err := o.Validate(); err != nil {
		return nil, fmt.Errorf("psp key exchange: %w", err)
	}
	if err := s.Config.CheckInner(s.Options.Inner); err != nil {
		return nil, fmt.Errorf("psp key exchange: %w", err)
	}
	for i, p := range s.Config.Peers {
		for j, ss := range p.Sessions {
			if !ss.LocalVIP.IsValid() {
				return nil, fmt.Errorf("psp key exchange: peers[%d].sessions[%d]: no local-vip (fill it from the tun device: Config.FillLocalVIP)", i, j)
			}
		}
	}
	if s.Timeout == 0 {
		s.Timeout = 5 * time.Second
	}
	if s.RetireAfter == 0 {
		s.RetireAfter = time.Minute
	}
	g := &Gateway{
		s: s, log: s.Log,
		peers:   map[string]*peerState{},
		pending: map[netip.Addr]*pendingState{},
		issued:  map[pair][]uint32{},
	}
	if g.log == nil {
		g.log = slog.Default()
	}
	g.log = g.log.With("part", "psp-keyx")
	g.ctx, g.cancel = context.WithCancel(context.Background())
	creds := insecure.NewCredentials()
	if s.TLS != nil {
		creds = s.TLS.client()
	}
	for i := range s.Config.Peers {
		p := &s.Config.Peers[i]
		conn, err := grpc.NewClient(p.GRPC, grpc.WithTransportCredentials(creds))
		if err != nil {
			g.Close()
			return nil, fmt.Errorf("psp key exchange: peer %s: %w", p.GRPC, err)
		}
		g.peers[p.GRPC] = &peerState{cfg: p, conn: conn, rpc: pb.NewPSP_GatewayClient(conn), stats: PeerStats{GRPC: p.GRPC}}
	}
	opts := []grpc.ServerOption{grpc.MaxRecvMsgSize(1 << 20)}
	if s.TLS != nil {
		opts = append(opts, grpc.Creds(s.TLS.server()))
	}
	g.server = grpc.NewServer(opts...)
	pb.RegisterPSP_GatewayServer(g.server, g)
	return g, nil
}

// Serve answers the peers on l (Config.LocalGRPC) until Close.
func (g *Gateway) Serve(l net.Listener) error {
	err := g.server.Serve(l)
	if errors.Is(err, grpc.ErrServerStopped) {
		return nil
	}
	return err
}

// Close stops serving, ends the background work (retries, rotation,
// static loop) and closes the peers' connections. The tunnels and
// grants stay in the table and the ACL, which the caller owns.
func (g *Gateway) Close() error {
	g.mu.Lock()
	g.closed = true
	g.mu.Unlock()
	if g.cancel != nil {
		g.cancel()
	}
	if g.server != nil {
		g.server.Stop()
	}
	g.wg.Wait()
	for _, p := range g.peers {
		p.conn.Close()
	}
	return nil
}

// go runs fn in the background unless the gateway is closed.
func (g *Gateway) spawn(fn func()) bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.closed {
		return false
	}
	g.wg.Add(1)
	go func() {
		defer g.wg.Done()
		fn()
	}()
	return true
}

// Peers are the peers' stats, in the config's order.
func (g *Gateway) Peers() []PeerStats {
	var out []PeerStats
	for i := range g.s.Config.Peers {
		p := g.peers[g.s.Config.Peers[i].GRPC]
		p.mu.Lock()
		out = append(out, p.stats)
		p.mu.Unlock()
	}
	return out
}

// Rotations counts the master key rotations this gateway made.
func (g *Gateway) Rotations() uint64 { return g.rotations.Load() }

// StaleEvents counts the times WatchStale found packets it could not
// open and asked the peers again ("stale-events" in Linux's PSP
// statistics: SAs found stale).
func (g *Gateway) StaleEvents() uint64 { return g.staleEvents.Load() }

func (p *peerState) record(subject string, err error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if subject != "" {
		p.stats.Subject = subject
	}
	if err != nil {
		p.stats.Failures++
		p.stats.LastError = err.Error()
		return
	}
	p.stats.Successes++
	p.stats.LastError = ""
	p.stats.LastExchange = time.Now()
}

// served notes an exchange a peer started with this host.
func (p *peerState) served(subject string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if subject != "" {
		p.stats.Subject = subject
	}
	p.stats.LastExchange = time.Now()
}

// grant allows spi from remote to local and keeps, per pair, the
// previous grant too (packets under it may be in flight) but not older
// ones.
func (g *Gateway) grant(p pair, spi uint32, v psp.Version, peer string) error {
	if !g.s.Options.DisableIngressACL {
		err := g.s.ACL.Allow(tunnel.Grant{SPI: spi, Version: v, Src: p.remote, Peer: peer, Issued: time.Now()})
		if err != nil {
			return err
		}
	}
	g.mu.Lock()
	spis := append(g.issued[p], spi)
	var old []uint32
	if len(spis) > 2 {
		old, spis = spis[:len(spis)-2], spis[len(spis)-2:]
	}
	g.issued[p] = spis
	g.mu.Unlock()
	g.revoke(old)
	return nil
}

// allocGrant allocates an SPI under the active key and grants it to the
// pair's remote address.
func (g *Gateway) allocGrant(p pair, v psp.Version, peer string) (uint32, []byte, error) {
	g.keyMu.RLock()
	defer g.keyMu.RUnlock()
	spi, key, err := g.s.Device.AllocSPI(v)
	if err == nil {
		err = g.grant(p, spi, v, peer)
	}
	return spi, key, err
}

// dropGrants revokes every grant under the master key in slot, which
// was retired or is about to be reused: its SPI numbers come again.
// Called under keyMu's write lock.
func (g *Gateway) dropGrants(slot int) {
	var old []uint32
	g.mu.Lock()
	for p, spis := range g.issued {
		keep := spis[:0]
		for _, spi := range spis {
			if int(spi>>31) == slot {
				old = append(old, spi)
			} else {
				keep = append(keep, spi)
			}
		}
		if len(keep) == 0 {
			delete(g.issued, p)
		} else {
			g.issued[p] = keep
		}
	}
	g.mu.Unlock()
	g.revoke(old)
}

// ungrant takes back a grant of an exchange that failed.
func (g *Gateway) ungrant(p pair, spi uint32) {
	g.mu.Lock()
	spis := g.issued[p]
	for i, s := range spis {
		if s == spi {
			g.issued[p] = append(spis[:i:i], spis[i+1:]...)
			break
		}
	}
	g.mu.Unlock()
	g.revoke([]uint32{spi})
}

func (g *Gateway) revoke(spis []uint32) {
	if g.s.Options.DisableIngressACL {
		return
	}
	for _, spi := range spis {
		if err := g.s.ACL.Revoke(spi); err != nil {
			g.log.Warn("revoke spi", "spi", fmt.Sprintf("%#x", spi), "err", err)
		}
	}
}

// newTunnel builds the tunnel that sends from local to remote with the
// parameters the peer made.
func (g *Gateway) newTunnel(peer string, p pair, pp params) (*tunnel.Tunnel, error) {
	sa, err := g.s.Device.NewTxSA(pp.spi, pp.version, pp.key)
	if err != nil {
		return nil, err
	}
	off := g.s.Options.CryptOffset
	tun := &tunnel.Tunnel{
		Peer: peer, Local: p.local, Remote: p.remote, SA: sa, PeerMAC: pp.mac, Created: time.Now(),
		Encap: psp.Encap{Mode: psp.Tunnel, CryptOffset4: off, CryptOffset6: off, VC: g.s.Options.Cookie,
			OuterSrc: g.s.Addr, OuterDst: pp.addr},
	}
	return tun, tun.Encap.Validate() // what Install checks, so that Install cannot fail
}

// install puts a checked tunnel in the table.
func (g *Gateway) install(tun *tunnel.Tunnel) {
	if err := g.s.Table.Install(tun); err != nil {
		g.log.Error("install tunnel", "remote", tun.Remote, "err", err) // newTunnel checked it
	}
}

// ourParams are this host's parameters for an SPI it issued.
func (g *Gateway) ourParams(spi uint32, v psp.Version, key []byte) *pb.TunnelParameters {
	return &pb.TunnelParameters{
		MacAddr: g.s.MAC.String(), IpAddr: g.s.Addr.String(), PspVersion: uint32(v), Spi: spi,
		EncryptionKey: key, EncapType: uint32(g.s.Options.Outer),
	}
}

// room reports whether n more tunnels fit under --max-tunnels, counting
// those that would replace one as none.
func (g *Gateway) room(remotes []netip.Addr) bool {
	n := g.s.Table.Len()
	for _, r := range remotes {
		if g.s.Table.Lookup(r) == nil {
			n++
		}
	}
	return n <= g.s.Options.MaxTunnels
}
