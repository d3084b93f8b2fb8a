package keyx

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/peer"

	"github.com/xdpstack/xdpstack/userstack/psp/keyx/pb"
	"github.com/xdpstack/xdpstack/userstack/psp/tunnel"
)

// Backoff bounds: a failed on-demand request waits backoffMin, doubled
// at each failure up to backoffMax, before the next Request tries again.
const (
	backoffMin = 250 * time.Millisecond
	backoffMax = 30 * time.Second
)

var _ tunnel.Requester = (*Gateway)(nil)

// Request asks the peer that owns remote for a tunnel to it, in the
// background: at most one request per address in flight, none during
// the backoff after a failure, none past --max-tunnels. The data path
// calls it for a packet it holds; the tunnel appears in the table.
func (g *Gateway) Request(remote netip.Addr) {
	remote = remote.Unmap()
	peerCfg, session, ok := g.s.Config.Owner(remote)
	if !ok {
		g.log.Debug("no peer owns the address", "remote", remote)
		return
	}
	if g.s.Table.Lookup(remote) == nil && !g.room([]netip.Addr{remote}) {
		g.log.Debug("tunnel not requested: --max-tunnels reached", "remote", remote, "max", g.s.Options.MaxTunnels)
		return
	}
	now := time.Now()
	g.mu.Lock()
	st := g.pending[remote]
	if st == nil {
		if len(g.pending) >= g.s.Options.MaxTunnels {
			g.prunePendingLocked(now)
		}
		if len(g.pending) >= g.s.Options.MaxTunnels {
			g.mu.Unlock()
			g.log.Debug("tunnel not requested: too many requests pending", "remote", remote)
			return
		}
		st = &pendingState{}
		g.pending[remote] = st
	}
	if st.inflight || now.Before(st.next) {
		g.mu.Unlock()
		return
	}
	st.inflight = true
	g.mu.Unlock()
	p := g.peers[peerCfg.GRPC]
	pairs := []pair{{local: session.LocalVIP, remote: remote}}
	if !g.spawn(func() {
		err := g.exchange(g.ctx, p, pairs)
		g.mu.Lock()
		defer g.mu.Unlock()
		st.inflight = false
		if err == nil {
			delete(g.pending, remote)
			return
		}
		st.failures++
		st.next = time.Now().Add(backoff(st.failures))
	}) {
		g.mu.Lock()
		st.inflight = false
		g.mu.Unlock()
	}
}

// prunePendingLocked forgets the failed requests whose backoff is over.
func (g *Gateway) prunePendingLocked(now time.Time) {
	for remote, st := range g.pending {
		if !st.inflight && now.After(st.next) {
			delete(g.pending, remote)
		}
	}
}

func backoff(failures int) time.Duration {
	d := backoffMin
	for i := 1; i < failures && d < backoffMax; i++ {
		d *= 2
	}
	return min(d, backoffMax)
}

// exchange asks p for tunnels for pairs, sending this host's reverse
// parameters (an SPI issued and allowed for each pair), and installs the
// answer. On failure the grants are taken back and nothing is installed.
func (g *Gateway) exchange(ctx context.Context, p *peerState, pairs []pair) (err error) {
	start := time.Now()
	var subject string
	defer func() {
		p.record(subject, err)
		if g.s.ObserveExchange != nil {
			g.s.ObserveExchange(p.cfg.GRPC, time.Since(start), err)
		}
		if err != nil {
			g.log.Info("tunnel exchange failed", "peer", p.cfg.GRPC, "tunnels", len(pairs), "err", err)
		} else {
			g.log.Debug("tunnels exchanged", "peer", p.cfg.GRPC, "tunnels", len(pairs), "took", time.Since(start))
		}
	}()
	remotes := make([]netip.Addr, len(pairs))
	for i, pr := range pairs {
		remotes[i] = pr.remote
	}
	if !g.room(remotes) {
		return fmt.Errorf("request tunnels from %s: %d more would pass --max-tunnels %d", p.cfg.GRPC, len(pairs), g.s.Options.MaxTunnels)
	}
	v := g.s.Options.Version
	req := &pb.MultiTunnelRequest{RequestId: g.requestID.Add(1), PspVersionsAccepted: []uint32{uint32(v)}}
	var granted []uint32
	defer func() {
		if err != nil {
			for i, spi := range granted {
				g.ungrant(pairs[i], spi)
			}
		}
	}()
	for _, pr := range pairs {
		spi, key, err := g.allocGrant(pr, v, p.cfg.GRPC)
		if err != nil {
			return fmt.Errorf("request tunnels from %s: %w", p.cfg.GRPC, err)
		}
		granted = append(granted, spi)
		req.Tunnels = append(req.Tunnels, &pb.SingleTunnelRequest{
			VirtSrcIp: pr.local.String(), VirtDstIp: pr.remote.String(), InnerType: uint32(g.s.Options.Inner),
			ReverseParams: g.ourParams(spi, v, key),
		})
	}
	ctx, cancel := context.WithTimeout(ctx, g.s.Timeout)
	defer cancel()
	var from peer.Peer
	resp, err := p.rpc.RequestMultipleTunnelParams(ctx, req, grpc.Peer(&from))
	subject = identityOf(&from).subject
	if err != nil {
		return fmt.Errorf("request tunnels from %s: %w", p.cfg.GRPC, err)
	}
	if len(resp.GetTunnelsParams()) != len(pairs) || resp.GetRequestId() != req.GetRequestId() {
		return fmt.Errorf("request tunnels from %s: %d tunnel parameters for request %d, want %d for %d",
			p.cfg.GRPC, len(resp.GetTunnelsParams()), resp.GetRequestId(), len(pairs), req.GetRequestId())
	}
	tuns := make([]*tunnel.Tunnel, len(pairs))
	for i, tp := range resp.GetTunnelsParams() {
		pp, err := parseParams(tp, g.s.Options.Outer, v)
		if err == nil {
			tuns[i], err = g.newTunnel(p.cfg.GRPC, pairs[i], pp)
		}
		if err != nil {
			return fmt.Errorf("request tunnels from %s: tunnel %d: %w", p.cfg.GRPC, i, err)
		}
	}
	for _, tun := range tuns {
		g.install(tun)
	}
	return nil
}

// staticPairs are a peer's tunnels made at start: one per remote address
// of each session (prefixes longer than a host's are left to Request).
func staticPairs(p *peerState) []pair {
	var out []pair
	for _, s := range p.cfg.Sessions {
		for _, vip := range s.RemoteVIPs {
			if vip.IsSingleIP() {
				out = append(out, pair{local: s.LocalVIP, remote: vip.Addr()})
			}
		}
	}
	return out
}

// RunStatic makes the configured tunnels (--static-tunnels) with DOCA's
// loop: each peer once, then the failed ones again after the others,
// waiting longer between rounds, until every peer is up or ctx ends.
func (g *Gateway) RunStatic(ctx context.Context) error {
	var todo []*peerState
	for i := range g.s.Config.Peers {
		p := g.peers[g.s.Config.Peers[i].GRPC]
		if len(staticPairs(p)) > 0 {
			todo = append(todo, p)
		}
	}
	for round := 1; len(todo) > 0; round++ {
		var failed []*peerState
		for _, p := range todo {
			if err := g.exchange(ctx, p, staticPairs(p)); err != nil {
				failed = append(failed, p)
			}
		}
		todo = failed
		if len(todo) == 0 {
			break
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("static tunnels: %d peers not up: %w", len(todo), ctx.Err())
		case <-g.ctx.Done():
			return errors.New("static tunnels: gateway closed")
		case <-time.After(backoff(round)):
		}
	}
	g.log.Info("static tunnels up", "peers", len(g.s.Config.Peers), "tunnels", g.s.Table.Len())
	return nil
}

// StartStatic runs RunStatic in the background until Close.
func (g *Gateway) StartStatic() {
	g.spawn(func() { _ = g.RunStatic(g.ctx) })
}

// Rotate rotates the master keys and re-keys every tunnel with every
// peer under the new key (the control socket's `psp rotate`). It
// returns once the re-keying is done; the error names the peers that
// failed, whose tunnels stay on the previous key until it is retired.
func (g *Gateway) Rotate(ctx context.Context) error {
	if err := g.rotateDevice(); err != nil {
		return err
	}
	return g.rekey(ctx)
}

// RunRotation rotates every Options.Rotation until ctx ends or Close;
// a failed rotation is logged and the next one tried on time.
func (g *Gateway) RunRotation(ctx context.Context) {
	if g.s.Options.Rotation <= 0 {
		return
	}
	t := time.NewTicker(g.s.Options.Rotation)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-g.ctx.Done():
			return
		case <-t.C:
			if err := g.Rotate(ctx); err != nil {
				g.log.Warn("scheduled key rotation", "err", err)
			}
		}
	}
}

// StartRotation runs RunRotation in the background until Close.
func (g *Gateway) StartRotation() {
	g.spawn(func() { g.RunRotation(g.ctx) })
}

// rotateDevice makes a new master key active; the previous one keeps
// working, the one before is retired with the grants under it.
func (g *Gateway) rotateDevice() error {
	g.rotateMu.Lock()
	defer g.rotateMu.Unlock()
	g.keyMu.Lock()
	defer g.keyMu.Unlock()
	// The slot that becomes active held the key before the previous one:
	// its grants go before its SPI numbers are issued again.
	g.dropGrants(g.s.Device.ActiveKey() ^ 1)
	if err := g.s.Device.Rotate(); err != nil {
		return err
	}
	n := g.rotations.Add(1)
	g.log.Info("psp master keys rotated", "rotations", n)
	return nil
}

// rekey asks every peer for new tunnels for every pair this host has
// issued SPIs for, with new SPIs under the active key; then, once all
// succeeded, retires the previous key after RetireAfter.
func (g *Gateway) rekey(ctx context.Context) error {
	byPeer := map[*peerState][]pair{}
	g.mu.Lock()
	for pr := range g.issued {
		if owner, _, ok := g.s.Config.Owner(pr.remote); ok {
			p := g.peers[owner.GRPC]
			byPeer[p] = append(byPeer[p], pr)
		}
	}
	g.mu.Unlock()
	var failed []string
	for p, pairs := range byPeer {
		if err := g.exchange(ctx, p, pairs); err != nil {
			failed = append(failed, p.cfg.GRPC)
		}
	}
	if len(failed) > 0 {
		return fmt.Errorf("re-key after rotation: peers %v failed (their tunnels stay on the previous key until the next rotation)", failed)
	}
	gen := g.rotations.Load()
	g.spawn(func() {
		select {
		case <-g.ctx.Done():
		case <-time.After(g.s.RetireAfter):
			g.retire(gen)
		}
	})
	return nil
}

// retire ends the previous master key, unless another rotation came
// since (gen), and revokes the grants under it.
func (g *Gateway) retire(gen uint64) {
	g.rotateMu.Lock()
	defer g.rotateMu.Unlock()
	if g.rotations.Load() != gen {
		return
	}
	g.keyMu.Lock()
	defer g.keyMu.Unlock()
	g.s.Device.Retire()
	g.dropGrants(g.s.Device.ActiveKey() ^ 1)
	g.log.Debug("previous psp master key retired")
}

// Reacquaint asks, through Request, for a tunnel to every remote virtual
// address of a session (a single address; a prefix's are asked for on
// demand only) that has none: its peer replaces its own tunnel back to
// this host with the parameters of the exchange. After a restart this
// host has no tunnels while its peers still send under SPIs of master
// keys that died with the previous run; only an exchange this host
// starts tells them.
func (g *Gateway) Reacquaint() {
	for i := range g.s.Config.Peers {
		for _, pr := range staticPairs(g.peers[g.s.Config.Peers[i].GRPC]) {
			if g.s.Table.Lookup(pr.remote) == nil {
				g.Request(pr.remote)
			}
		}
	}
}

// WatchStale checks count every interval until Close, and calls
// Reacquaint when it went up. The daemon counts there the packets this
// host could not open: under SPIs it does not know, or failing
// authentication, what a peer with a tunnel from before a restart sends.
func (g *Gateway) WatchStale(count func() uint64, every time.Duration) {
	g.spawn(func() {
		last := count()
		t := time.NewTicker(every)
		defer t.Stop()
		for {
			select {
			case <-g.ctx.Done():
				return
			case <-t.C:
			}
			if n := count(); n != last {
				last = n
				g.staleEvents.Add(1)
				g.Reacquaint()
			}
		}
	})
}
