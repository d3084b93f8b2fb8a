package test

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/xdpstack/xdpstack/internal/testing/testutil"
)

// pspHosts are gateways on one LAN, each with a virtual address that
// its psp0 device has and routes to the others'.
type pspHosts struct {
	lan   *testutil.LAN
	root  string
	certs string
	vips  []netip.Addr
	// inner is the virtual addresses' IP type, outer the wire's.
	inner, outer string
	daemons      []*daemon
}

// newPSPHosts builds n hosts on a LAN, the certificates of their key
// exchange (one CA), and virtual addresses of the inner type.
func newPSPHosts(t *testing.T, n int, inner, outer string) *pspHosts {
	t.Helper()
	h := &pspHosts{lan: testutil.HostLAN(t, n, 0), root: testutil.PinRoot(t), certs: t.TempDir(), inner: inner, outer: outer}
	args := []string{"psp", "certs", "--dir", h.certs}
	for i, host := range h.lan.Hosts {
		vip := netip.MustParseAddr(fmt.Sprintf("10.77.0.%d", i+1))
		if inner == "ipv6" {
			vip = netip.MustParseAddr(fmt.Sprintf("fd77::%d", i+1))
		}
		h.vips = append(h.vips, vip)
		args = append(args, fmt.Sprintf("h%d=%s,%s", i, host.Addr, vip))
	}
	mustXdpstack(t, h.root, args...)
	h.daemons = make([]*daemon, n)
	return h
}

// config writes host i's DOCA JSON config: its gRPC address and one
// session with every other host.
func (h *pspHosts) config(t *testing.T, i int) string {
	t.Helper()
	type session struct {
		LocalVIP   string   `json:"local-vip"`
		RemoteVIPs []string `json:"remote-vips"`
	}
	type peer struct {
		Remote   string    `json:"remote-grpc-address"`
		Sessions []session `json:"sessions"`
	}
	var peers []peer
	for j, other := range h.lan.Hosts {
		if j != i {
			peers = append(peers, peer{Remote: other.Addr.String() + ":3000", Sessions: []session{{h.vips[i].String(), []string{h.vips[j].String()}}}})
		}
	}
	b, err := json.Marshal(map[string]any{"config": map[string]string{"local-grpc-address": h.lan.Hosts[i].Addr.String() + ":3000"}, "peers": peers})
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "psp.json")
	if err := os.WriteFile(path, b, 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

// start runs host i's gateway with extra flags; it serves no metrics
// unless they give --metrics-addr.
func (h *pspHosts) start(t *testing.T, i int, extra ...string) *daemon {
	t.Helper()
	if !slices.Contains(extra, "--metrics-addr") {
		extra = append(extra, "--metrics-addr", "")
	}
	args := append([]string{"--psp-config", h.config(t, i),
		"--psp-cert", filepath.Join(h.certs, fmt.Sprintf("h%d.pem", i)), "--psp-key", filepath.Join(h.certs, fmt.Sprintf("h%d.key", i)),
		"--psp-ca", filepath.Join(h.certs, "ca.pem"), "--inner-ip-type", h.inner, "--outer-ip-type", h.outer}, extra...)
	h.daemons[i] = startDaemon(t, h.lan.Hosts[i], h.root, args...)
	return h.daemons[i]
}

// ping pings to's virtual address from host from, through psp0; the
// first packets may wait for the tunnel.
func (h *pspHosts) ping(t *testing.T, from, to int) {
	t.Helper()
	out, err := h.lan.Hosts[from].Command(context.Background(), "ping", "-c", "3", "-i", "0.2", "-W", "3", h.vips[to].String()).CombinedOutput()
	if err != nil {
		t.Fatalf("ping %v from host %d: %v\n%s", h.vips[to], from, err, out)
	}
}

// transferTCP sends size random bytes over a kernel TCP connection from
// host from to host to's virtual address and back, and checks every
// byte.
func (h *pspHosts) transferTCP(t *testing.T, from, to, size int) {
	t.Helper()
	ln, err := h.lan.Hosts[to].Listen("tcp", netip.AddrPortFrom(h.vips[to], 5001).String())
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		io.Copy(c, c)
	}()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	c, err := h.lan.Hosts[from].Dial(ctx, "tcp", netip.AddrPortFrom(h.vips[to], 5001).String())
	if err != nil {
		t.Fatalf("dial %v from host %d: %v", h.vips[to], from, err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(60 * time.Second))
	sent := make([]byte, size)
	rand.Read(sent)
	go func() {
		c.Write(sent)
		c.(*net.TCPConn).CloseWrite()
	}()
	got, err := io.ReadAll(c)
	if err != nil || !bytes.Equal(got, sent) {
		t.Fatalf("tcp echo through the tunnel from host %d to %d: %d of %d bytes back, equal %v, %v", from, to, len(got), size, bytes.Equal(got, sent), err)
	}
}

// transferUDP sends n datagrams from host from to host to's virtual
// address and checks each that arrives; most must.
func (h *pspHosts) transferUDP(t *testing.T, from, to, n int) {
	t.Helper()
	pc, err := h.lan.Hosts[to].ListenPacket("udp", netip.AddrPortFrom(h.vips[to], 5002).String())
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := h.lan.Hosts[from].Dial(ctx, "udp", netip.AddrPortFrom(h.vips[to], 5002).String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	got := make(chan int)
	go func() {
		buf := make([]byte, 2048)
		count := 0
		pc.SetReadDeadline(time.Now().Add(10 * time.Second))
		for count < n {
			m, _, err := pc.ReadFrom(buf)
			if err != nil {
				break
			}
			if m != 1000 || !bytes.Equal(buf[:m], bytes.Repeat([]byte{buf[0]}, m)) {
				t.Errorf("a datagram of %d bytes came through changed", m)
			}
			count++
		}
		got <- count
	}()
	for i := range n {
		c.Write(bytes.Repeat([]byte{byte(i)}, 1000))
		time.Sleep(time.Millisecond)
	}
	if count := <-got; count < n*9/10 {
		t.Fatalf("udp through the tunnel from host %d to %d: %d of %d datagrams arrived", from, to, count, n)
	}
}

// capture runs tcpdump on host i's switch port until stop, and returns
// what it saw as tshark reads it: one line per frame of protocol,
// UDP destination port and payload in hex.
func (h *pspHosts) capture(t *testing.T, i int) (stop func() string) {
	t.Helper()
	stopFile := h.pcap(t, i, "not arp and not icmp6")
	return func() string {
		out, err := exec.Command("tshark", "-r", stopFile(), "-T", "fields", "-e", "_ws.col.Protocol", "-e", "udp.dstport", "-e", "tcp.dstport", "-e", "data.data").Output()
		if err != nil {
			t.Fatalf("tshark: %v", err)
		}
		return string(out)
	}
}

// pcap runs tcpdump with filter on host i's switch port until stop,
// which returns the pcap file.
func (h *pspHosts) pcap(t *testing.T, i int, filter string) (stop func() string) {
	t.Helper()
	file := filepath.Join(t.TempDir(), "wire.pcap")
	// Immediate mode, or the frames of the last second before stop may
	// still sit in the capture's ring, never written.
	cmd := exec.Command("ip", "netns", "exec", h.lan.Switch, "tcpdump", "-i", fmt.Sprintf("p%d", i), "--immediate-mode", "-U", "-w", file, filter)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(5 * time.Second); !strings.Contains(stderr.String(), "listening") && time.Now().Before(deadline); {
		time.Sleep(20 * time.Millisecond)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	return func() string {
		time.Sleep(200 * time.Millisecond)
		cmd.Process.Signal(os.Interrupt)
		cmd.Wait()
		return file
	}
}

// TestPSPGatewayThreeHosts runs three gateways on one LAN, each with a
// config naming the other two, tunnels on demand: kernel programs on
// every host reach the others' virtual addresses through psp0 (ping, a
// TCP echo with every byte checked, UDP datagrams), the wire carries
// only UDP to port 1000 with none of the payload in the clear, and
// each daemon lists its tunnels and peers.
func TestPSPGatewayThreeHosts(t *testing.T) {
	h := newPSPHosts(t, 3, "ipv4", "ipv6")
	for i := range 3 {
		h.start(t, i)
	}
	stop := h.capture(t, 1)
	for from := range 3 {
		for to := range 3 {
			if from != to {
				h.ping(t, from, to)
			}
		}
	}
	h.transferTCP(t, 0, 1, 4<<20)
	h.transferUDP(t, 1, 0, 200)
	wire := stop()
	frames := 0
	for _, line := range strings.Split(strings.TrimSpace(wire), "\n") {
		// protocol, UDP port, TCP port, payload
		f := append(strings.Split(line, "\t"), "", "", "", "")
		switch {
		case f[1] == "1000":
			frames++
		case f[2] == "3000" || strings.HasPrefix(f[0], "TLS") || f[0] == "TCP":
			// the key exchange, over mutual TLS on TCP 3000
		case f[0] == "ICMPv6":
			// the hosts' own neighbour discovery and MLD (behind a
			// hop-by-hop header, which tcpdump's "icmp6" misses)
		default:
			t.Errorf("a frame on the wire that is neither PSP nor the key exchange: %q", line)
		}
		if strings.Contains(f[3], strings.Repeat("01", 100)) {
			t.Errorf("a datagram's payload in the clear on the wire: %q", line)
		}
	}
	if frames < 1000 {
		t.Errorf("only %d PSP frames on host 1's wire", frames)
	}
	for i := range 3 {
		out := mustXdpstack(t, h.root, "psp", "tunnels", h.lan.Hosts[i].Iface, "--json")
		var list struct {
			Tunnels []struct {
				Remote    string `json:"remote"`
				TxPackets uint64 `json:"tx_packets"`
				RxPackets uint64 `json:"rx_packets"`
			} `json:"tunnels"`
		}
		if err := json.Unmarshal([]byte(out), &list); err != nil || len(list.Tunnels) != 2 {
			t.Errorf("host %d psp tunnels: %v, %s; want 2 tunnels", i, err, out)
		}
	}
}
