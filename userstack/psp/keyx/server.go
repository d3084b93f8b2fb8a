package keyx

import (
	"context"
	"fmt"
	"net/netip"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"

	"github.com/xdpstack/xdpstack/userstack/psp"
	"github.com/xdpstack/xdpstack/userstack/psp/keyx/pb"
	"github.com/xdpstack/xdpstack/userstack/psp/pspconfig"
	"github.com/xdpstack/xdpstack/userstack/psp/tunnel"
)

// wanted is one SingleTunnelRequest checked: the pair seen from this
// host (local is the request's virt_dst, remote its virt_src) and how to
// send back, if it came with reverse_params.
type wanted struct {
	p       pair
	reverse *params
}

// checkRequest checks a whole request before anything changes: the
// version, and for each tunnel the addresses, that the caller may speak
// for virt_src and this host owns virt_dst, and the reverse parameters.
// It returns the version of the SPIs to issue and the config peer the
// request comes from.
func (g *Gateway) checkRequest(req *pb.MultiTunnelRequest, id identity) (psp.Version, *peerState, []wanted, error) {
	v, ok := psp.Version(255), false
	for _, a := range req.GetPspVersionsAccepted() {
		if a <= uint32(psp.V3) {
			v, ok = psp.Version(a), true
			break
		}
	}
	if !ok {
		return 0, nil, nil, fmt.Errorf("psp_versions_accepted %v: none of 0 to 3", req.GetPspVersionsAccepted())
	}
	tunnels := req.GetTunnels()
	if len(tunnels) == 0 || len(tunnels) > g.s.Options.MaxTunnels {
		return 0, nil, nil, fmt.Errorf("%d tunnels asked for: want 1 to %d", len(tunnels), g.s.Options.MaxTunnels)
	}
	var from *peerState
	out := make([]wanted, 0, len(tunnels))
	seen := map[pair]bool{}
	for i, t := range tunnels {
		src, err := parseVIP("virt_src_ip", t.GetVirtSrcIp(), g.s.Options.Inner)
		if err == nil && t.GetInnerType() != uint32(g.s.Options.Inner) {
			err = fmt.Errorf("inner_type %d: this gateway's is %d", t.GetInnerType(), g.s.Options.Inner)
		}
		var dst netip.Addr
		if err == nil {
			dst, err = parseVIP("virt_dst_ip", t.GetVirtDstIp(), g.s.Options.Inner)
		}
		if err != nil {
			return 0, nil, nil, fmt.Errorf("tunnel %d: %w", i, err)
		}
		owner, _, ok := g.s.Config.Owner(src)
		switch {
		case !ok:
			return 0, nil, nil, fmt.Errorf("tunnel %d: virt_src_ip %v: no configured peer owns it", i, src)
		case !id.names(src):
			return 0, nil, nil, fmt.Errorf("tunnel %d: virt_src_ip %v: not named by the certificate of %s", i, src, id.subject)
		case from != nil && from.cfg != owner:
			return 0, nil, nil, fmt.Errorf("tunnel %d: virt_src_ip %v: of another peer than tunnel 0's", i, src)
		case !paired(owner, dst, src):
			return 0, nil, nil, fmt.Errorf("tunnel %d: virt_dst_ip %v: not a virtual address of this gateway that a session pairs with %v", i, dst, src)
		case seen[pair{dst, src}]:
			return 0, nil, nil, fmt.Errorf("tunnel %d: %v to %v asked for twice", i, src, dst)
		}
		seen[pair{dst, src}] = true
		from = g.peers[owner.GRPC]
		w := wanted{p: pair{local: dst, remote: src}}
		if t.GetReverseParams() != nil {
			pp, err := parseParams(t.GetReverseParams(), g.s.Options.Outer)
			if err != nil {
				return 0, nil, nil, fmt.Errorf("tunnel %d: reverse_params: %w", i, err)
			}
			w.reverse = &pp
		}
		out = append(out, w)
	}
	return v, from, out, nil
}

// paired reports whether a session with peer p sends from local to an
// address of remote's.
func paired(p *pspconfig.Peer, local, remote netip.Addr) bool {
	for _, s := range p.Sessions {
		if s.LocalVIP != local {
			continue
		}
		for _, vip := range s.RemoteVIPs {
			if vip.Contains(remote) {
				return true
			}
		}
	}
	return false
}

// RequestMultipleTunnelParams issues an SPI and key for each tunnel
// asked for, allows it in the ACL for the tunnel's virt_src, and installs
// the reverse parameters as the tunnel back. A bad request changes
// nothing and gets InvalidArgument or PermissionDenied naming the fault.
func (g *Gateway) RequestMultipleTunnelParams(ctx context.Context, req *pb.MultiTunnelRequest) (*pb.MultiTunnelResponse, error) {
	p, _ := peer.FromContext(ctx)
	id := identityOf(p)
	if g.s.TLS != nil && !id.tls {
		return nil, status.Error(codes.Unauthenticated, "request tunnels: no verified certificate")
	}
	v, from, want, err := g.checkRequest(req, id)
	if err != nil {
		code := codes.InvalidArgument
		if id.tls && !allNamed(req, id) {
			code = codes.PermissionDenied
		}
		g.log.Info("refused tunnel request", "from", addrOf(p), "subject", id.subject, "err", err)
		return nil, status.Errorf(code, "request tunnels: %v", err)
	}
	var remotes []netip.Addr
	for _, w := range want {
		if w.reverse != nil {
			remotes = append(remotes, w.p.remote)
		}
	}
	if !g.room(remotes) {
		return nil, status.Errorf(codes.ResourceExhausted, "request tunnels: %d tunnels would pass --max-tunnels %d", len(remotes), g.s.Options.MaxTunnels)
	}
	resp := &pb.MultiTunnelResponse{RequestId: req.GetRequestId()}
	type done struct {
		p   pair
		spi uint32
	}
	var granted []done
	undo := func() {
		for _, d := range granted {
			g.ungrant(d.p, d.spi)
		}
	}
	peerName := from.cfg.GRPC
	for _, w := range want {
		spi, key, err := g.allocGrant(w.p, v, peerName)
		if err != nil {
			undo()
			return nil, status.Errorf(codes.ResourceExhausted, "request tunnels: %v", err)
		}
		granted = append(granted, done{w.p, spi})
		resp.TunnelsParams = append(resp.TunnelsParams, g.ourParams(spi, v, key))
	}
	// Build every tunnel back before installing any, so that a failure
	// installs none.
	var backs []*tunnel.Tunnel
	for _, w := range want {
		if w.reverse == nil {
			continue
		}
		tun, err := g.newTunnel(peerName, w.p, *w.reverse)
		if err != nil {
			undo()
			return nil, status.Errorf(codes.InvalidArgument, "request tunnels: reverse_params for %v: %v", w.p.remote, err)
		}
		backs = append(backs, tun)
	}
	for _, tun := range backs {
		g.install(tun)
	}
	from.served(id.subject)
	g.log.Debug("issued tunnels", "peer", peerName, "subject", id.subject, "count", len(want), "version", v)
	return resp, nil
}

func allNamed(req *pb.MultiTunnelRequest, id identity) bool {
	for _, t := range req.GetTunnels() {
		if a, err := netip.ParseAddr(t.GetVirtSrcIp()); err == nil && !id.names(a.Unmap()) {
			return false
		}
	}
	return true
}

func addrOf(p *peer.Peer) string {
	if p == nil || p.Addr == nil {
		return ""
	}
	return p.Addr.String()
}

// RequestKeyRotation rotates this host's master keys, as DOCA's does:
// the active key becomes the previous one and keeps working, the one
// before is retired. Unlike DOCA, this host then re-keys its tunnels
// (in the background), whether or not issue_new_keys asks it to.
func (g *Gateway) RequestKeyRotation(ctx context.Context, req *pb.KeyRotationRequest) (*pb.KeyRotationResponse, error) {
	p, _ := peer.FromContext(ctx)
	id := identityOf(p)
	if g.s.TLS != nil && !id.tls {
		return nil, status.Error(codes.Unauthenticated, "rotate keys: no verified certificate")
	}
	if err := g.rotateDevice(); err != nil {
		return nil, status.Errorf(codes.Internal, "rotate keys: %v", err)
	}
	g.log.Info("master keys rotated at a peer's request", "from", addrOf(p), "subject", id.subject)
	g.spawn(func() {
		if err := g.rekey(g.ctx); err != nil {
			g.log.Warn("re-key after a peer's rotation request", "err", err)
		}
	})
	return &pb.KeyRotationResponse{RequestId: req.GetRequestId()}, nil
}
