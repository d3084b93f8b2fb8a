package keyx

import (
	"context"
	"net"
	"net/netip"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/xdpstack/xdpstack/userstack/psp"
	"github.com/xdpstack/xdpstack/userstack/psp/keyx/pb"
	"github.com/xdpstack/xdpstack/userstack/psp/pspconfig"
	"github.com/xdpstack/xdpstack/userstack/psp/tunnel"
)

// plainGateway is a gateway in plaintext mode whose only peer owns
// 10.9.0.2 and 10.9.8.0/24; its own virtual address is 10.9.0.1.
func plainGateway(t testing.TB, maxTunnels int) *Gateway {
	t.Helper()
	dev, err := psp.NewDeviceRandom()
	if err != nil {
		t.Fatal(err)
	}
	o := pspconfig.Defaults
	o.Plaintext, o.MaxTunnels = true, maxTunnels
	g, err := New(Settings{
		Config: &pspconfig.Config{LocalGRPC: "127.0.0.1:1", Peers: []pspconfig.Peer{{GRPC: "127.0.0.1:2", Sessions: []pspconfig.Session{{
			LocalVIP: netip.MustParseAddr("10.9.0.1"), RemoteVIPs: []netip.Prefix{netip.MustParsePrefix("10.9.0.2/32"), netip.MustParsePrefix("10.9.8.0/24")}}}}}},
		Options: o, MAC: net.HardwareAddr{2, 0, 0, 0, 0, 1}, Addr: netip.MustParseAddr("fd00::1"),
		Device: dev, Table: &tunnel.Table{}, ACL: tunnel.NewACL(nil),
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { g.Close() })
	return g
}

func goodParams() *pb.TunnelParameters {
	return &pb.TunnelParameters{MacAddr: "02:00:00:00:00:02", IpAddr: "fd00::2", PspVersion: 1, Spi: 0x10,
		EncryptionKey: make([]byte, 32), EncapType: 6}
}

func goodRequest() *pb.MultiTunnelRequest {
	return &pb.MultiTunnelRequest{RequestId: 7, PspVersionsAccepted: []uint32{1},
		Tunnels: []*pb.SingleTunnelRequest{{VirtSrcIp: "10.9.0.2", VirtDstIp: "10.9.0.1", InnerType: 4, ReverseParams: goodParams()}}}
}

func TestServeGoodRequest(t *testing.T) {
	g := plainGateway(t, 8)
	resp, err := g.RequestMultipleTunnelParams(context.Background(), goodRequest())
	if err != nil {
		t.Fatal(err)
	}
	tp := resp.GetTunnelsParams()
	if resp.GetRequestId() != 7 || len(tp) != 1 || tp[0].GetPspVersion() != 1 || len(tp[0].GetEncryptionKey()) != 32 ||
		tp[0].GetIpAddr() != "fd00::1" || tp[0].GetMacAddr() != "02:00:00:00:00:01" || tp[0].GetEncapType() != 6 {
		t.Fatalf("response %v", resp)
	}
	if !g.s.ACL.Check(tp[0].GetSpi(), psp.V1, netip.MustParseAddr("10.9.0.2")) {
		t.Fatal("issued spi not in the acl")
	}
	tun := g.s.Table.Lookup(netip.MustParseAddr("10.9.0.2"))
	if tun == nil || tun.SA.SPI() != 0x10 || tun.Encap.OuterDst != netip.MustParseAddr("fd00::2") || tun.Local != netip.MustParseAddr("10.9.0.1") {
		t.Fatalf("tunnel back %+v", tun)
	}
}

// TestBadRequestsChangeNothing: each bad request gets a status naming
// its fault, and leaves no grant and no tunnel.
func TestBadRequestsChangeNothing(t *testing.T) {
	for _, tc := range []struct {
		name string
		edit func(r *pb.MultiTunnelRequest)
		code codes.Code
		want string
	}{
		{"no version", func(r *pb.MultiTunnelRequest) { r.PspVersionsAccepted = []uint32{4, 9} }, codes.InvalidArgument, "psp_versions_accepted [4 9]: none of 0 to 3"},
		{"no tunnels", func(r *pb.MultiTunnelRequest) { r.Tunnels = nil }, codes.InvalidArgument, "0 tunnels asked for: want 1 to 8"},
		{"bad src", func(r *pb.MultiTunnelRequest) { r.Tunnels[0].VirtSrcIp = "10.9.0.300" }, codes.InvalidArgument, `tunnel 0: virt_src_ip "10.9.0.300": not an ip address`},
		{"src of no peer", func(r *pb.MultiTunnelRequest) { r.Tunnels[0].VirtSrcIp = "10.7.0.2" }, codes.InvalidArgument, "virt_src_ip 10.7.0.2: no configured peer owns it"},
		{"src of another family", func(r *pb.MultiTunnelRequest) { r.Tunnels[0].VirtSrcIp = "fd09::2" }, codes.InvalidArgument, "virt_src_ip fd09::2: not ipv4 (the inner ip type)"},
		{"inner type", func(r *pb.MultiTunnelRequest) { r.Tunnels[0].InnerType = 6 }, codes.InvalidArgument, "inner_type 6: this gateway's is 4"},
		{"dst not ours", func(r *pb.MultiTunnelRequest) { r.Tunnels[0].VirtDstIp = "10.9.0.3" }, codes.InvalidArgument, "virt_dst_ip 10.9.0.3: not a virtual address of this gateway"},
		{"twice", func(r *pb.MultiTunnelRequest) { r.Tunnels = append(r.Tunnels, r.Tunnels[0]) }, codes.InvalidArgument, "tunnel 1: 10.9.0.2 to 10.9.0.1 asked for twice"},
		{"bad mac", func(r *pb.MultiTunnelRequest) { r.Tunnels[0].ReverseParams.MacAddr = "zz" }, codes.InvalidArgument, `reverse_params: mac_addr "zz": not an ethernet address`},
		{"outer ipv4", func(r *pb.MultiTunnelRequest) {
			r.Tunnels[0].ReverseParams.IpAddr, r.Tunnels[0].ReverseParams.EncapType = "192.0.2.2", 4
		}, codes.InvalidArgument, "encap_type 4 with ip_addr 192.0.2.2: this gateway's outer ip type is ipv6"},
		{"multicast outer", func(r *pb.MultiTunnelRequest) { r.Tunnels[0].ReverseParams.IpAddr = "ff02::1" }, codes.InvalidArgument, "ip_addr ff02::1: not a unicast address"},
		{"short key", func(r *pb.MultiTunnelRequest) { r.Tunnels[0].ReverseParams.EncryptionKey = make([]byte, 16) }, codes.InvalidArgument, "encryption_key of 16 bytes: version 1 wants 32"},
		{"version 7", func(r *pb.MultiTunnelRequest) { r.Tunnels[0].ReverseParams.PspVersion = 7 }, codes.InvalidArgument, "psp_version 7: not accepted"},
		{"spi 0", func(r *pb.MultiTunnelRequest) { r.Tunnels[0].ReverseParams.Spi = 0 }, codes.InvalidArgument, "spi 0: reserved"},
		{"too many tunnels", func(r *pb.MultiTunnelRequest) {
			for i := 2; i < 12; i++ {
				tt := proto.Clone(r.Tunnels[0]).(*pb.SingleTunnelRequest)
				tt.VirtSrcIp = netip.AddrFrom4([4]byte{10, 9, 8, byte(i)}).String()
				r.Tunnels = append(r.Tunnels, tt)
			}
		}, codes.InvalidArgument, "11 tunnels asked for: want 1 to 8"},
		{"past max tunnels", func(r *pb.MultiTunnelRequest) {
			r.Tunnels = r.Tunnels[:0]
			for i := range 8 { // with the one there already, 9
				tt := proto.Clone(goodRequest().Tunnels[0]).(*pb.SingleTunnelRequest)
				tt.VirtSrcIp = netip.AddrFrom4([4]byte{10, 9, 8, byte(100 + i)}).String()
				r.Tunnels = append(r.Tunnels, tt)
			}
		}, codes.ResourceExhausted, "would pass --max-tunnels 8"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			g := plainGateway(t, 8)
			if tc.code == codes.ResourceExhausted { // one tunnel there already
				if _, err := g.RequestMultipleTunnelParams(context.Background(), goodRequest()); err != nil {
					t.Fatal(err)
				}
			}
			tunnels, grants := g.s.Table.Len(), countGrants(g.s.ACL)
			req := goodRequest()
			tc.edit(req)
			_, err := g.RequestMultipleTunnelParams(context.Background(), req)
			if status.Code(err) != tc.code || !strings.Contains(err.Error(), tc.want) || strings.Contains(err.Error(), "\n") {
				t.Fatalf("got %v, want %v %q", err, tc.code, tc.want)
			}
			if g.s.Table.Len() != tunnels || countGrants(g.s.ACL) != grants {
				t.Fatalf("a bad request changed the table (%d to %d) or the acl (%d to %d)", tunnels, g.s.Table.Len(), grants, countGrants(g.s.ACL))
			}
		})
	}
}

// TestMaxTunnelsOnDemand: Request asks for no tunnel past --max-tunnels.
func TestMaxTunnelsOnDemand(t *testing.T) {
	g := plainGateway(t, 1)
	if _, err := g.RequestMultipleTunnelParams(context.Background(), goodRequest()); err != nil {
		t.Fatal(err)
	}
	g.Request(netip.MustParseAddr("10.9.8.1"))
	g.mu.Lock()
	n := len(g.pending)
	g.mu.Unlock()
	if n != 0 {
		t.Fatal("a tunnel past --max-tunnels was requested")
	}
}

// TestRequestBacksOff: a failed on-demand request is not tried again
// before its backoff, and the failure is counted with its latency.
func TestRequestBacksOff(t *testing.T) {
	g := plainGateway(t, 8) // its peer 127.0.0.1:2 does not answer
	g.s.Timeout = 200 * time.Millisecond
	observed := make(chan error, 4)
	g.s.ObserveExchange = func(peer string, d time.Duration, err error) { observed <- err }
	remote := netip.MustParseAddr("10.9.8.1")
	g.Request(remote)
	g.Request(remote) // in flight: no second exchange
	if err := <-observed; err == nil {
		t.Fatal("an exchange with a peer that is down succeeded")
	}
	time.Sleep(10 * time.Millisecond)
	g.Request(remote) // within the backoff
	select {
	case <-observed:
		t.Fatal("a request within the backoff was sent")
	case <-time.After(100 * time.Millisecond):
	}
	if st := g.Peers()[0]; st.Failures != 1 || countGrants(g.s.ACL) != 0 {
		t.Fatalf("stats %+v, %d grants left after the failure", st, countGrants(g.s.ACL))
	}
}

func TestKeyRotationRPC(t *testing.T) {
	g := plainGateway(t, 8)
	resp, err := g.RequestKeyRotation(context.Background(), &pb.KeyRotationRequest{RequestId: 3})
	if err != nil || resp.GetRequestId() != 3 || g.Rotations() != 1 || g.s.Device.Rotations() != 1 {
		t.Fatalf("rotation: %v %v, %d rotations", resp, err, g.Rotations())
	}
}

// FuzzRequest: any request, as bytes on the wire, is served or refused
// with a status, and a refused one changes nothing.
func FuzzRequest(f *testing.F) {
	good, _ := proto.Marshal(goodRequest())
	f.Add(good)
	f.Add([]byte{})
	g := plainGateway(f, 8)
	f.Fuzz(func(t *testing.T, b []byte) {
		var req pb.MultiTunnelRequest
		if proto.Unmarshal(b, &req) != nil {
			return
		}
		tunnels, grants := g.s.Table.Len(), countGrants(g.s.ACL)
		resp, err := g.RequestMultipleTunnelParams(context.Background(), &req)
		if err != nil {
			if _, ok := status.FromError(err); !ok || strings.Contains(err.Error(), "\n") {
				t.Fatalf("not a one-line status: %v", err)
			}
			if g.s.Table.Len() != tunnels || countGrants(g.s.ACL) != grants {
				t.Fatal("a refused request changed the table or the acl")
			}
			return
		}
		if len(resp.GetTunnelsParams()) != len(req.GetTunnels()) {
			t.Fatalf("%d answers to %d tunnels", len(resp.GetTunnelsParams()), len(req.GetTunnels()))
		}
	})
}

// FuzzParams: whatever the peer answers, parseParams accepts only what
// builds a tunnel.
func FuzzParams(f *testing.F) {
	good, _ := proto.Marshal(goodParams())
	f.Add(good)
	g := plainGateway(f, 8)
	f.Fuzz(func(t *testing.T, b []byte) {
		var tp pb.TunnelParameters
		if proto.Unmarshal(b, &tp) != nil {
			return
		}
		pp, err := parseParams(&tp, pspconfig.IPv6, psp.V0, psp.V1, psp.V2, psp.V3)
		if err != nil {
			return
		}
		if _, err := g.newTunnel("fuzz", pair{netip.MustParseAddr("10.9.0.1"), netip.MustParseAddr("10.9.0.2")}, pp); err != nil {
			t.Fatalf("checked parameters make no tunnel: %v", err)
		}
	})
}

// TestNewRefuses: settings a gateway cannot run with, plaintext without
// asking for it first of all.
func TestNewRefuses(t *testing.T) {
	dev, _ := psp.NewDeviceRandom()
	base := func() Settings {
		o := pspconfig.Defaults
		o.Plaintext = true
		return Settings{Config: &pspconfig.Config{LocalGRPC: "127.0.0.1:1"}, Options: o,
			MAC: net.HardwareAddr{2, 0, 0, 0, 0, 1}, Addr: netip.MustParseAddr("fd00::1"),
			Device: dev, Table: &tunnel.Table{}, ACL: tunnel.NewACL(nil)}
	}
	for _, tc := range []struct {
		edit func(*Settings)
		want string
	}{
		{func(s *Settings) { s.Options.Plaintext = false }, "no certificates (give --psp-cert, --psp-key and --psp-ca, or --psp-plaintext)"},
		{func(s *Settings) { s.Addr = netip.MustParseAddr("192.0.2.1") }, "secure-side address 192.0.2.1 is not ipv6 (the outer ip type)"},
		{func(s *Settings) { s.MAC = nil }, "not an ethernet address"},
		{func(s *Settings) { s.ACL = nil }, "config, device, table and acl are needed"},
		{func(s *Settings) { s.Options.MaxTunnels = 0 }, "--max-tunnels 0: want 1 to"},
		{func(s *Settings) {
			s.Config.Peers = []pspconfig.Peer{{GRPC: "127.0.0.1:2", Sessions: []pspconfig.Session{{RemoteVIPs: []netip.Prefix{netip.MustParsePrefix("fd09::/64")}}}}}
		}, "peers[0].sessions[0].remote-vips[0]: fd09::/64 is not ipv4 (the inner ip type)"},
	} {
		s := base()
		tc.edit(&s)
		if g, err := New(s); err == nil || !strings.Contains(err.Error(), tc.want) {
			if g != nil {
				g.Close()
			}
			t.Errorf("got %v, want %q", err, tc.want)
		}
	}
}
