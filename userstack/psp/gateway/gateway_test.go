package gateway

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/xdpstack/xdpstack/internal/testing/testutil"
	"github.com/xdpstack/xdpstack/loader"
	"github.com/xdpstack/xdpstack/maps"
	"github.com/xdpstack/xdpstack/userstack"
	"github.com/xdpstack/xdpstack/userstack/psp"
	"github.com/xdpstack/xdpstack/userstack/psp/tunnel"
)

// recordingRequester records the tunnels asked for.
type recordingRequester struct {
	mu    sync.Mutex
	asked []netip.Addr
}

func (r *recordingRequester) Request(remote netip.Addr) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.asked = append(r.asked, remote)
}

func (r *recordingRequester) requests() []netip.Addr {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]netip.Addr(nil), r.asked...)
}

// side is one host running a userstack with a gateway.
type side struct {
	host    *testutil.Host
	stack   *userstack.Stack
	dev     *psp.Device
	tunnels *tunnel.Table
	acl     *tunnel.ACL
	req     *recordingRequester
	gw      *Gateway
	secure  netip.Addr
}

// start attaches to h's interface and runs a userstack with opts and a
// gateway there until the test ends.
func start(t *testing.T, h *testutil.Host, opts userstack.Options, secure, virt4, virt6 netip.Addr, remote []netip.Prefix) *side {
	t.Helper()
	dev, err := psp.NewDeviceRandom()
	if err != nil {
		t.Fatal(err)
	}
	s := &side{host: h, dev: dev, tunnels: &tunnel.Table{}, req: &recordingRequester{}, secure: secure}
	root := testutil.PinRoot(t)
	var att *loader.Attachment
	// The XDP program's PSP check steers what its SPI map allows to the
	// userstack, as the daemon has it.
	check := maps.PSPSettings{Enabled: true, Versions: []psp.Version{psp.V0, psp.V1, psp.V2, psp.V3}}
	h.Do(t, func() (err error) {
		att, err = loader.Attach(h.Iface, loader.Options{PinRoot: root, UserPorts: loader.DefaultUserPorts, PSP: check})
		return err
	})
	t.Cleanup(func() { att.Close() })
	s.acl = tunnel.NewACL(att.Maps.PSP.SPIs)
	h.Do(t, func() (err error) {
		s.stack, err = userstack.Start(att.Iface, att.Maps, opts)
		return err
	})
	t.Cleanup(func() { s.stack.Close() })
	h.Do(t, func() (err error) {
		s.gw, err = New(s.stack, Options{
			Local:     []netip.Prefix{netip.PrefixFrom(virt4, 32), netip.PrefixFrom(virt6, 128)},
			Remote:    remote,
			Device:    dev,
			Tunnels:   s.tunnels,
			ACL:       s.acl,
			Requester: s.req,
			Secure:    secure,
		})
		return err
	})
	t.Cleanup(func() {
		if err := s.gw.Close(); err != nil {
			t.Errorf("close gateway: %v", err)
		}
	})
	return s
}

// connect installs the tunnel from a to b's virtual address remote,
// sent from a's local, under an SPI that b issues and lets in from
// local: what the key exchange does.
func connect(t *testing.T, a, b *side, local, remote netip.Addr, peerMAC net.HardwareAddr) {
	t.Helper()
	spi, key, err := b.dev.AllocSPI(psp.V0)
	if err != nil {
		t.Fatal(err)
	}
	if err := b.acl.Allow(tunnel.Grant{SPI: spi, Version: psp.V0, Src: local, Peer: "test"}); err != nil {
		t.Fatal(err)
	}
	sa, err := a.dev.NewTxSA(spi, psp.V0, key)
	if err != nil {
		t.Fatal(err)
	}
	tun := &tunnel.Tunnel{Peer: "test", Local: local, Remote: remote, SA: sa, PeerMAC: peerMAC,
		Encap: psp.Encap{Mode: psp.Tunnel, OuterSrc: a.secure, OuterDst: b.secure}, Created: time.Now()}
	if err := a.tunnels.Install(tun); err != nil {
		t.Fatal(err)
	}
}

// ipv6Chain turns IPv6 on in a chain's hosts, routed through the router
// as IPv4 is, with static neighbours, and returns the client's and the
// server's addresses.
func ipv6Chain(t *testing.T, c *testutil.Chain) (client, server netip.Addr) {
	t.Helper()
	client, server = netip.MustParseAddr("fd13:1::2"), netip.MustParseAddr("fd13:2::2")
	front, back := netip.MustParseAddr("fd13:1::1"), netip.MustParseAddr("fd13:2::1")
	for _, h := range []*testutil.Host{c.Client, c.Router, c.Server} {
		h.Exec(t, "sysctl", "-qw", "net.ipv6.conf.all.disable_ipv6=0", "net.ipv6.conf.all.forwarding=1")
	}
	for _, a := range []struct {
		h    *testutil.Host
		addr netip.Addr
	}{{c.Client, client}, {c.Router, front}, {c.RouterBack, back}, {c.Server, server}} {
		a.h.Exec(t, "ip", "addr", "add", a.addr.String()+"/64", "dev", a.h.Iface, "nodad")
	}
	for _, n := range []struct {
		h, peer *testutil.Host
		addr    netip.Addr
	}{{c.Client, c.Router, front}, {c.Router, c.Client, client}, {c.RouterBack, c.Server, server}, {c.Server, c.RouterBack, back}} {
		mac, err := n.peer.MAC()
		if err != nil {
			t.Fatal(err)
		}
		n.h.Exec(t, "ip", "neigh", "replace", n.addr.String(), "lladdr", mac.String(), "dev", n.h.Iface, "nud", "permanent")
	}
	c.Client.Exec(t, "ip", "-6", "route", "add", "default", "via", front.String())
	c.Server.Exec(t, "ip", "-6", "route", "add", "default", "via", back.String())
	return client, server
}

// marker fills the TCP transfers, for the capture to be searched for.
var marker = []byte("cleartext that must never reach the wire;")

// TestGateway runs two hosts with a gateway each, on either side of a
// kernel router, for each outer IP version, with inner IPv4 and IPv6:
// a packet sent before its tunnel exists arrives once it is installed;
// kernel programs ping and move TCP data through psp0, every byte
// checked; on the wire between them (tcpdump at the router) there is
// only UDP to port 1000 and none of the data; a packet under an SPI
// issued for another source is refused; Close leaves nothing behind.
func TestGateway(t *testing.T) {
	for _, outer := range []string{"ipv4", "ipv6"} {
		t.Run("outer "+outer, func(t *testing.T) { testGateway(t, outer == "ipv6") })
	}
}

func testGateway(t *testing.T, outer6 bool) {
	c := testutil.HostChain(t, 1)
	client6, server6 := ipv6Chain(t, c)
	clientSecure, serverSecure := c.Client.Addr, c.Server.Addr
	if outer6 {
		clientSecure, serverSecure = client6, server6
	}
	frontMAC, err := c.Router.MAC()
	if err != nil {
		t.Fatal(err)
	}
	backMAC, err := c.RouterBack.MAC()
	if err != nil {
		t.Fatal(err)
	}
	cv4, cv6 := netip.MustParseAddr("10.77.1.1"), netip.MustParseAddr("fd77:1::1")
	sv4, sv6 := netip.MustParseAddr("10.77.2.1"), netip.MustParseAddr("fd77:2::1")
	cl := start(t, c.Client, userstack.Options{}, clientSecure, cv4, cv6, []netip.Prefix{netip.MustParsePrefix("10.77.2.0/24"), netip.MustParsePrefix("fd77:2::/64")})
	sv := start(t, c.Server, userstack.Options{}, serverSecure, sv4, sv6, []netip.Prefix{netip.MustParsePrefix("10.77.1.0/24"), netip.MustParsePrefix("fd77:1::/64")})
	wantMTU := fmt.Sprint(TUNMTU(1500, clientSecure, false))
	if out := c.Client.Exec(t, "ip", "link", "show", DefaultTUN); !strings.Contains(out, "mtu "+wantMTU) || !strings.Contains(out, "UP") {
		t.Errorf("ip link show %s: %s, want it up with mtu %s", DefaultTUN, out, wantMTU)
	}

	// A second gateway on the same stack is refused, and changes
	// nothing: the first one's device carries the traffic below.
	c.Client.Do(t, func() error {
		_, err := New(cl.stack, Options{Device: cl.dev, Tunnels: cl.tunnels, ACL: cl.acl, Secure: clientSecure})
		if err == nil || !strings.Contains(err.Error(), "psp0: an interface of that name exists") {
			return fmt.Errorf("a second gateway with the same device name: %v, want it refused", err)
		}
		return nil
	})

	// Held: two datagrams to the server before any tunnel exists.
	pc, err := c.Server.ListenPacket("udp", netip.AddrPortFrom(sv4, 9000).String())
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Close()
	c.Client.Do(t, func() error {
		u, err := net.Dial("udp", netip.AddrPortFrom(sv4, 9000).String())
		if err != nil {
			return err
		}
		defer u.Close()
		for _, m := range []string{"first", "second"} {
			if _, err := u.Write([]byte(m)); err != nil {
				return err
			}
		}
		return nil
	})
	waitFor(t, "two packets held", func() bool { return cl.gw.Stats().Held == 2 })
	if got := cl.req.requests(); len(got) != 1 || got[0] != sv4 {
		t.Errorf("tunnels requested: %v, want %v once", got, sv4)
	}
	connect(t, cl, sv, cv4, sv4, frontMAC)
	connect(t, cl, sv, cv6, sv6, frontMAC)
	connect(t, sv, cl, sv4, cv4, backMAC)
	connect(t, sv, cl, sv6, cv6, backMAC)
	pc.SetReadDeadline(time.Now().Add(5 * time.Second))
	for _, want := range []string{"first", "second"} {
		buf := make([]byte, 100)
		n, _, err := pc.ReadFrom(buf)
		if err != nil || string(buf[:n]) != want {
			t.Fatalf("held datagram: %q, %v; want %q", buf[:n], err, want)
		}
	}

	capture := startTcpdump(t, c.Router)
	for _, dst := range []netip.Addr{sv4, sv6} {
		c.Client.Exec(t, "ping", "-c", "2", "-i", "0.2", "-W", "2", dst.String())
		echo := c.Server.KernelEcho(t, netip.AddrPortFrom(dst, 7000).String())
		c.Client.Do(t, func() error { return echoMarked(echo, 2<<20) })
	}
	wire := capture()
	if n := countPackets(t, wire, ""); n < 1000 {
		t.Errorf("capture at the router: %d packets, want the transfers' (over a thousand)", n)
	}
	if n := countPackets(t, wire, "not (udp dst port 1000) and not (ip6 and src net fe80::/10) and not ip6 multicast"); n != 0 {
		t.Errorf("capture at the router: %d packets other than udp to port 1000", n)
	}
	if b, _ := os.ReadFile(wire); bytes.Contains(b, marker) {
		t.Error("capture at the router: the cleartext is on the wire")
	}

	for _, s := range []*side{cl, sv} {
		st := s.gw.Stats()
		if st.PSP.TxPackets == 0 || st.PSP.RxPackets == 0 || st.PSP.RxAuthFail+st.PSP.RxError+st.PSP.RxBad+st.ACLDenied+st.TUNErrors+st.TxFull+st.TooBig != 0 {
			t.Errorf("%s stats: %+v, want packets both ways and no failure", s.host.Netns, st)
		}
	}

	// An SPI issued for another source: the server lets the client's
	// IPv6 tunnel in only from another IPv6 address. (One of another
	// family XDP refuses already, by the inner header's version; with
	// no crypt offset the source itself is only seen decrypted.)
	other6 := netip.MustParseAddr("fd77:1::99")
	sv.acl.Each(func(g tunnel.Grant) {
		if g.Src == cv6 {
			sv.acl.Allow(tunnel.Grant{SPI: g.SPI, Version: g.Version, Src: other6})
		}
	})
	if out, err := c.Client.Command(context.Background(), "ping", "-c", "1", "-W", "1", sv6.String()).CombinedOutput(); err == nil {
		t.Errorf("ping under an spi issued for another source: answered\n%s", out)
	}
	if n := sv.gw.Stats().ACLDenied; n == 0 {
		t.Error("the refused packet is not counted")
	}

	for _, s := range []*side{cl, sv} {
		if err := s.gw.Close(); err != nil {
			t.Fatal(err)
		}
		if out, err := s.host.Command(context.Background(), "ip", "link", "show", DefaultTUN).CombinedOutput(); err == nil {
			t.Errorf("after Close: %s", out)
		}
		if out := s.host.Exec(t, "ip", "-o", "route", "show", "table", "all"); strings.Contains(out, "10.77.") || strings.Contains(out, "fd77:") {
			t.Errorf("routes after Close:\n%s", out)
		}
	}
}

// echoMarked sends n bytes of marker to the echo server at addr and
// checks that the same come back.
func echoMarked(addr string, n int) error {
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		return err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(20 * time.Second))
	want := bytes.Repeat(marker, n/len(marker))
	go c.Write(want)
	got := make([]byte, len(want))
	if _, err := io.ReadFull(c, got); err != nil {
		return fmt.Errorf("echo through %s: %w", addr, err)
	}
	if !bytes.Equal(got, want) {
		return fmt.Errorf("echo through %s: the bytes differ", addr)
	}
	return nil
}

// startTcpdump captures on h's interface until the returned function
// is called, which returns the capture file.
func startTcpdump(t *testing.T, h *testutil.Host) func() string {
	t.Helper()
	file := filepath.Join(t.TempDir(), "wire.pcap")
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	cmd := h.Command(ctx, "tcpdump", "-i", h.Iface, "-n", "-U", "-s", "0", "-w", file)
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatalf("tcpdump: %v", err)
	}
	t.Cleanup(func() { cancel(); cmd.Wait() })
	line, err := bufio.NewReader(stderr).ReadString('\n') // "listening on ...": the capture runs
	if !strings.Contains(line, "listening") {
		t.Fatalf("tcpdump: %s %v", line, err)
	}
	return func() string {
		time.Sleep(100 * time.Millisecond)
		cmd.Process.Signal(syscall.SIGINT)
		go io.Copy(io.Discard, stderr)
		cmd.Wait()
		return file
	}
}

// countPackets counts the packets of a capture file that filter takes.
func countPackets(t *testing.T, file, filter string) int {
	t.Helper()
	args := []string{"-n", "-r", file}
	if filter != "" {
		args = append(args, filter)
	}
	out, err := exec.Command("tcpdump", args...).Output()
	if err != nil {
		t.Fatalf("tcpdump -r %s: %v", filter, err)
	}
	if filter != "" && len(out) > 0 {
		t.Logf("%s:\n%s", filter, out[:min(len(out), 2000)])
	}
	return bytes.Count(out, []byte("\n"))
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("waited 5s for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}
