package keyx

import (
	"context"
	"crypto/tls"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/xdpstack/xdpstack/internal/testing/testutil"
	"github.com/xdpstack/xdpstack/userstack/psp"
	"github.com/xdpstack/xdpstack/userstack/psp/pspconfig"
	"github.com/xdpstack/xdpstack/userstack/psp/psptest"
	"github.com/xdpstack/xdpstack/userstack/psp/tunnel"
)

// node is one in-process gateway on loopback.
type node struct {
	gw    *Gateway
	table *tunnel.Table
	acl   *tunnel.ACL
	dev   *psp.Device
	vip   netip.Addr
	l     net.Listener
}

func newCA(t testing.TB) PEM {
	t.Helper()
	ca, err := NewCA("test ca", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	return ca
}

func nodeTLS(t testing.TB, ca PEM, ips ...netip.Addr) *TLS {
	t.Helper()
	n, err := NewNode(ca, fmt.Sprintf("node %v", ips[len(ips)-1]), ips, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := tls.X509KeyPair(n.Cert, n.Key)
	if err != nil {
		t.Fatal(err)
	}
	id, err := NewTLS(cert, ca.Cert)
	if err != nil {
		t.Fatal(err)
	}
	return id
}

var loopback = netip.MustParseAddr("127.0.0.1")

func vipOf(i int) netip.Addr { return netip.AddrFrom4([4]byte{10, 9, 0, byte(i + 1)}) }

func vip6Of(i int) netip.Addr { return netip.AddrFrom16([16]byte{0xfd, 9, 15: byte(i + 1)}) }

// mesh makes n gateways, each configured with the others as peers, all
// with certificates from one CA (tlsOf may replace one's identity).
type meshOpts struct {
	n        int
	tlsOf    func(i int, ca PEM) *TLS
	extraVIP func(i, j int) []netip.Prefix // more remote vips node i gives peer j
	noServe  map[int]bool                  // listen but do not serve yet
	options  func(*pspconfig.Options)
	retire   time.Duration
	log      *slog.Logger
}

func mesh(t *testing.T, mo meshOpts) []*node {
	t.Helper()
	ca := newCA(t)
	nodes := make([]*node, mo.n)
	o := pspconfig.Defaults
	if mo.options != nil {
		mo.options(&o)
	}
	for i := range nodes {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { l.Close() })
		dev, err := psp.NewDeviceRandom()
		if err != nil {
			t.Fatal(err)
		}
		nodes[i] = &node{table: &tunnel.Table{}, acl: tunnel.NewACL(nil), dev: dev, vip: vipOf(i), l: l}
		if o.Inner == pspconfig.IPv6 {
			nodes[i].vip = vip6Of(i)
		}
	}
	for i, nd := range nodes {
		cfg := &pspconfig.Config{LocalGRPC: nd.l.Addr().String()}
		for j, other := range nodes {
			if j == i {
				continue
			}
			vips := []netip.Prefix{netip.PrefixFrom(other.vip, other.vip.BitLen())}
			if mo.extraVIP != nil {
				vips = append(vips, mo.extraVIP(i, j)...)
			}
			cfg.Peers = append(cfg.Peers, pspconfig.Peer{GRPC: other.l.Addr().String(),
				Sessions: []pspconfig.Session{{LocalVIP: nd.vip, RemoteVIPs: vips}}})
		}
		var id *TLS
		if mo.tlsOf != nil {
			id = mo.tlsOf(i, ca)
		}
		if id == nil {
			id = nodeTLS(t, ca, loopback, nd.vip)
		}
		addr := netip.AddrFrom16([16]byte{0xfd, 15: byte(i + 1)})
		if o.Outer == pspconfig.IPv4 {
			addr = netip.AddrFrom4([4]byte{192, 0, 2, byte(i + 1)})
		}
		gw, err := New(Settings{
			Config: cfg, Options: o, TLS: id,
			MAC:    net.HardwareAddr{2, 0, 0, 0, 0, byte(i + 1)},
			Addr:   addr,
			Device: nd.dev, Table: nd.table, ACL: nd.acl,
			Timeout: time.Second, RetireAfter: mo.retire, Log: mo.log,
		})
		if err != nil {
			t.Fatal(err)
		}
		nd.gw = gw
		t.Cleanup(func() { gw.Close() })
		if !mo.noServe[i] {
			nd.serve(t)
		}
	}
	return nodes
}

func (nd *node) serve(t *testing.T) {
	go func() {
		if err := nd.gw.Serve(nd.l); err != nil {
			t.Errorf("serve: %v", err)
		}
	}()
}

// waitTunnel waits for a tunnel to remote in nd's table.
func (nd *node) waitTunnel(t *testing.T, remote netip.Addr) *tunnel.Tunnel {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		if tun := nd.table.Lookup(remote); tun != nil {
			return tun
		}
		time.Sleep(5 * time.Millisecond)
	}
	t.Fatalf("no tunnel from %v to %v; peers %+v", nd.vip, remote, nd.gw.Peers())
	return nil
}

// frame is an Ethernet frame of a UDP packet from src to dst.
func frame(src, dst netip.Addr, n int) []byte {
	f := psptest.Packet(src.Is6(), psptest.UDP, n)
	copy(f[14+srcOffset(src.Is6()):], src.AsSlice())
	copy(f[14+srcOffset(src.Is6())+src.BitLen()/8:], dst.AsSlice())
	return f
}

// srcOffset is where an IP header holds its source address.
func srcOffset(v6 bool) int {
	if v6 {
		return 8
	}
	return 12
}

// seal wraps a packet from nd to remote through nd's tunnel.
func (nd *node) seal(t testing.TB, tun *tunnel.Tunnel, remote netip.Addr) []byte {
	f := frame(nd.vip, remote, 100)
	out := make([]byte, len(f)+psp.EncapLen(&tun.Encap, remote.Is6())+64)
	n, err := tun.SA.Encrypt(out, f, &tun.Encap)
	if err != nil {
		t.Fatalf("seal to %v: %v", remote, err)
	}
	return out[:n]
}

// open decrypts a sealed frame at nd and checks it against nd's ACL as
// coming from src.
func (nd *node) open(sealed []byte, src netip.Addr) error {
	out := make([]byte, len(sealed))
	n, hdr, err := nd.dev.Decrypt(out, sealed)
	if err != nil {
		return err
	}
	off := 14 + srcOffset(src.Is6())
	inner, _ := netip.AddrFromSlice(out[off : off+src.BitLen()/8])
	if n == 0 || inner != src || !nd.acl.Check(hdr.SPI, hdr.Version, src) {
		return fmt.Errorf("spi %#x from %v: refused by the acl", hdr.SPI, inner)
	}
	return nil
}

// TestExchangeInteroperates: three gateways over loopback mutual TLS
// make tunnels on demand, and what each seals the other opens, both ways.
func TestExchangeInteroperates(t *testing.T) {
	var logs testutil.SyncBuffer
	nodes := mesh(t, meshOpts{n: 3, log: slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))})
	for i, a := range nodes {
		for j, b := range nodes {
			if i == j {
				continue
			}
			a.gw.Request(b.vip)
			tun := a.waitTunnel(t, b.vip)
			if err := b.open(a.seal(t, tun, b.vip), a.vip); err != nil {
				t.Fatalf("%v to %v: %v", a.vip, b.vip, err)
			}
			back := b.waitTunnel(t, a.vip) // installed from the reverse params
			if err := a.open(b.seal(t, back, a.vip), b.vip); err != nil {
				t.Fatalf("%v back to %v: %v", b.vip, a.vip, err)
			}
		}
	}
	for _, nd := range nodes {
		if err := nd.gw.Rotate(context.Background()); err != nil {
			t.Fatal(err)
		}
	}
	if text := logs.String(); !strings.Contains(text, "tunnels exchanged") || hexRun.MatchString(text) {
		t.Fatalf("logs without the exchanges, or with something like a key:\n%s", text)
	}
	st := nodes[0].gw.Peers()
	if len(st) != 2 || st[0].Successes == 0 || st[0].Subject == "" || st[0].LastExchange.IsZero() {
		t.Fatalf("peer stats %+v", st)
	}
}

// hexRun is what a key would look like in a log: 32 hex digits or more.
var hexRun = regexp.MustCompile(`[0-9a-fA-F]{32,}`)

// TestInnerOuterCombinations: tunnels of each inner and outer IP type
// carry packets both ways (DOCA does IPv4 in IPv6 only).
func TestInnerOuterCombinations(t *testing.T) {
	for _, inner := range []pspconfig.IPType{pspconfig.IPv4, pspconfig.IPv6} {
		for _, outer := range []pspconfig.IPType{pspconfig.IPv4, pspconfig.IPv6} {
			t.Run(fmt.Sprintf("%v in %v", inner, outer), func(t *testing.T) {
				nodes := mesh(t, meshOpts{n: 2, options: func(o *pspconfig.Options) { o.Inner, o.Outer, o.CryptOffset, o.Cookie = inner, outer, 1, true }})
				a, b := nodes[0], nodes[1]
				a.gw.Request(b.vip)
				if err := b.open(a.seal(t, a.waitTunnel(t, b.vip), b.vip), a.vip); err != nil {
					t.Fatal(err)
				}
				if err := a.open(b.seal(t, b.waitTunnel(t, a.vip), a.vip), b.vip); err != nil {
					t.Fatal(err)
				}
			})
		}
	}
}

// TestOtherCAGetsNothing: a node whose certificate comes from another CA
// gets no tunnel, and the peer it asked changes nothing.
func TestOtherCAGetsNothing(t *testing.T) {
	nodes := mesh(t, meshOpts{n: 2, tlsOf: func(i int, _ PEM) *TLS {
		if i == 0 {
			return nodeTLS(t, newCA(t), loopback, vipOf(0))
		}
		return nil
	}})
	a, b := nodes[0], nodes[1]
	if err := a.gw.exchange(context.Background(), a.gw.peers[a.gw.s.Config.Peers[0].GRPC], []pair{{a.vip, b.vip}}); err == nil {
		t.Fatal("a certificate of another ca got a tunnel")
	}
	if b.table.Len() != 0 || countGrants(b.acl) != 0 || countGrants(a.acl) != 0 {
		t.Fatalf("after a refused exchange: %d tunnels at the peer, grants %d and %d", b.table.Len(), countGrants(b.acl), countGrants(a.acl))
	}
	if st := a.gw.Peers()[0]; st.Failures != 1 || st.LastError == "" {
		t.Fatalf("failure not counted: %+v", st)
	}
}

func countGrants(acl *tunnel.ACL) int {
	n := 0
	acl.Each(func(tunnel.Grant) { n++ })
	return n
}

// TestCertMustNameSource: a node asks for a tunnel from a virtual
// address the peer's config gives it but its certificate does not name.
func TestCertMustNameSource(t *testing.T) {
	other := netip.MustParseAddr("10.9.0.77")
	nodes := mesh(t, meshOpts{n: 2, extraVIP: func(i, j int) []netip.Prefix {
		if i == 1 { // b gives a both addresses
			return []netip.Prefix{netip.PrefixFrom(other, 32)}
		}
		return nil
	}})
	a, b := nodes[0], nodes[1]
	err := a.gw.exchange(context.Background(), a.gw.peers[a.gw.s.Config.Peers[0].GRPC], []pair{{other, b.vip}})
	if err == nil {
		t.Fatal("a source the certificate does not name got a tunnel")
	}
	t.Logf("refused as it should: %v", err)
	if b.table.Len() != 0 || countGrants(b.acl) != 0 {
		t.Fatal("the refused request changed the peer")
	}
}

// TestStaticLoopWaitsForALatePeer: the static loop makes the tunnels to
// the peer that is up, and to the late one once it serves.
func TestStaticLoopWaitsForALatePeer(t *testing.T) {
	nodes := mesh(t, meshOpts{n: 3, noServe: map[int]bool{2: true}, options: func(o *pspconfig.Options) { o.StaticTunnels = true }})
	a := nodes[0]
	done := make(chan error, 1)
	go func() { done <- a.gw.RunStatic(context.Background()) }()
	a.waitTunnel(t, nodes[1].vip)
	time.Sleep(1500 * time.Millisecond) // a round or two fails on the late peer
	if a.table.Lookup(nodes[2].vip) != nil {
		t.Fatal("a tunnel to a peer that does not serve")
	}
	nodes[2].serve(t)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	a.waitTunnel(t, nodes[2].vip)
	if st := a.gw.Peers()[1]; st.Failures == 0 || st.Successes != 1 {
		t.Fatalf("late peer's stats %+v: want failures, then one success", st)
	}
}

// TestRotationLosesNothing: a stream of sealed packets, some in flight
// through a queue, while both sides rotate and re-key: every packet
// opens.
func TestRotationLosesNothing(t *testing.T) {
	nodes := mesh(t, meshOpts{n: 2, retire: 50 * time.Millisecond})
	a, b := nodes[0], nodes[1]
	a.gw.Request(b.vip)
	a.waitTunnel(t, b.vip)
	b.waitTunnel(t, a.vip)
	const packets = 3000
	inflight := make(chan []byte, 64)
	var lost, sent int
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for p := range inflight {
			if err := b.open(p, a.vip); err != nil {
				lost++
				t.Errorf("packet lost: %v", err)
			}
		}
	}()
	stop := make(chan struct{})
	rotated := make(chan int)
	go func() {
		n := 0
		for n < 6 {
			select {
			case <-stop:
				rotated <- n
				return
			case <-time.After(20 * time.Millisecond):
			}
			who := []*node{a, b}[n%2]
			if err := who.gw.Rotate(context.Background()); err != nil {
				t.Errorf("rotate: %v", err)
			}
			n++
		}
		<-stop
		rotated <- n
	}()
	for ; sent < packets; sent++ {
		inflight <- a.seal(t, a.table.Lookup(b.vip), b.vip)
		if sent%100 == 0 {
			time.Sleep(5 * time.Millisecond)
		}
	}
	close(stop)
	n := <-rotated
	close(inflight)
	wg.Wait()
	if lost != 0 || n < 4 {
		t.Fatalf("%d of %d packets lost over %d rotations", lost, sent, n)
	}
	if a.gw.Rotations() == 0 || b.gw.Rotations() == 0 {
		t.Fatal("rotations not counted")
	}
}

// TestWatchStaleReacquaints: a gateway that lost its tunnels (as after
// a restart) asks for them again once the count of packets it could not
// open goes up, which replaces its peer's tunnel back; while the count
// stays, it asks for nothing.
func TestWatchStaleReacquaints(t *testing.T) {
	nodes := mesh(t, meshOpts{n: 2})
	a, b := nodes[0], nodes[1]
	a.gw.Request(b.vip)
	before := a.waitTunnel(t, b.vip)
	b.waitTunnel(t, a.vip)
	b.table.Remove(a.vip)
	var unopened atomic.Uint64
	b.gw.WatchStale(unopened.Load, 5*time.Millisecond)
	time.Sleep(50 * time.Millisecond)
	if b.table.Lookup(a.vip) != nil || a.table.Lookup(b.vip) != before || b.gw.StaleEvents() != 0 {
		t.Fatal("tunnels asked for while nothing came that could not be opened")
	}
	unopened.Add(1)
	b.waitTunnel(t, a.vip)
	if n := b.gw.StaleEvents(); n != 1 {
		t.Errorf("stale events: %d, want 1", n)
	}
	for deadline := time.Now().Add(5 * time.Second); a.table.Lookup(b.vip) == before && time.Now().Before(deadline); {
		time.Sleep(5 * time.Millisecond)
	}
	after := a.table.Lookup(b.vip)
	if after == before || after.SA.SPI() == before.SA.SPI() {
		t.Fatalf("a's tunnel to b not replaced: spi %#x before, %#x after", before.SA.SPI(), after.SA.SPI())
	}
	if err := b.open(a.seal(t, after, b.vip), a.vip); err != nil {
		t.Fatalf("a's new tunnel to b: %v", err)
	}
}
