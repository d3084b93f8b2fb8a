package test

import (
	"bytes"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/xdpstack/xdpstack/internal/testing/packet"
	"github.com/xdpstack/xdpstack/internal/testing/testutil"
	"github.com/xdpstack/xdpstack/maps"
	"github.com/xdpstack/xdpstack/userstack/psp"
)

// pspTunnelRow is a tunnel as `psp tunnels --json` lists it.
type pspTunnelRow struct {
	Peer      string   `json:"peer"`
	Local     string   `json:"local"`
	Remote    string   `json:"remote"`
	TxSPI     uint32   `json:"tx_spi"`
	RxSPIs    []uint32 `json:"rx_spis"`
	TxPackets uint64   `json:"tx_packets"`
	RxPackets uint64   `json:"rx_packets"`
	Created   string   `json:"created"`
}

// tunnels lists host i's tunnels.
func (h *pspHosts) tunnels(t *testing.T, i int) []pspTunnelRow {
	t.Helper()
	var list struct {
		Tunnels []pspTunnelRow `json:"tunnels"`
	}
	out := mustXdpstack(t, h.root, "psp", "tunnels", h.lan.Hosts[i].Iface, "--json")
	if err := json.Unmarshal([]byte(out), &list); err != nil {
		t.Fatalf("psp tunnels on host %d: %v\n%s", i, err, out)
	}
	return list.Tunnels
}

// waitTunnels waits up to 10s for host i to list n tunnels.
func (h *pspHosts) waitTunnels(t *testing.T, i, n int) []pspTunnelRow {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		list := h.tunnels(t, i)
		if len(list) == n {
			return list
		}
		if time.Now().After(deadline) {
			t.Fatalf("host %d lists %d tunnels after 10s, want %d: %+v", i, len(list), n, list)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// tunnelTo is host i's tunnel to host j's virtual address, nil if none.
func (h *pspHosts) tunnelTo(t *testing.T, i, j int) *pspTunnelRow {
	t.Helper()
	for _, row := range h.tunnels(t, i) {
		if row.Remote == h.vips[j].String() {
			return &row
		}
	}
	return nil
}

// pspPeerRow is a peer as `psp peers --json` lists it.
type pspPeerRow struct {
	GRPC      string `json:"grpc"`
	Successes uint64 `json:"successes"`
	Failures  uint64 `json:"failures"`
	LastError string `json:"last_error"`
}

// peer is host i's view of host j's key exchange.
func (h *pspHosts) peer(t *testing.T, i, j int) pspPeerRow {
	t.Helper()
	var list struct {
		Peers []pspPeerRow `json:"peers"`
	}
	out := mustXdpstack(t, h.root, "psp", "peers", h.lan.Hosts[i].Iface, "--json")
	if err := json.Unmarshal([]byte(out), &list); err != nil {
		t.Fatalf("psp peers on host %d: %v\n%s", i, err, out)
	}
	for _, p := range list.Peers {
		if p.GRPC == h.lan.Hosts[j].Addr.String()+":3000" {
			return p
		}
	}
	t.Fatalf("psp peers on host %d: no host %d in %s", i, j, out)
	return pspPeerRow{}
}

// noPing checks that to's virtual address does not answer from.
func (h *pspHosts) noPing(t *testing.T, from, to int) {
	t.Helper()
	out, err := h.lan.Hosts[from].Command(t.Context(), "ping", "-c", "2", "-i", "0.5", "-W", "1", h.vips[to].String()).CombinedOutput()
	if err == nil {
		t.Errorf("ping %v from host %d answered, want no tunnel:\n%s", h.vips[to], from, out)
	}
}

// spiGrants are the SPIs in host i's XDP map, by SPI.
func (h *pspHosts) spiGrants(t *testing.T, i int) map[uint32]maps.SPIGrant {
	t.Helper()
	m, err := maps.OpenPinnedPSP(filepath.Join(h.root, h.lan.Hosts[i].Iface))
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	all, err := m.SPIs.All()
	if err != nil {
		t.Fatal(err)
	}
	return all
}

// pspError is host i's xdpstack_psp_errors_total of kind; its daemon
// serves metrics.
func (h *pspHosts) pspError(t *testing.T, i int, kind string) float64 {
	t.Helper()
	return metric(t, h.lan.Hosts[i], h.daemons[i], fmt.Sprintf(`xdpstack_psp_errors_total{iface=%q,kind=%q}`, h.lan.Hosts[i].Iface, kind))
}

// TestPSPStaticTunnelsEveryIPType runs two gateways with
// --static-tunnels for each inner and outer IP type: both list their
// tunnel before any traffic and never ask for one on demand; ping and a
// TCP echo with every byte checked go through, and the wire carries PSP
// in the outer type only.
func TestPSPStaticTunnelsEveryIPType(t *testing.T) {
	for _, inner := range []string{"ipv4", "ipv6"} {
		for _, outer := range []string{"ipv4", "ipv6"} {
			t.Run(inner+" in "+outer, func(t *testing.T) {
				h := newPSPHosts(t, 2, inner, outer)
				for i := range 2 {
					h.start(t, i, "--static-tunnels", "--metrics-addr", "127.0.0.1:0")
				}
				for i := range 2 {
					list := h.waitTunnels(t, i, 1)
					if list[0].Remote != h.vips[1-i].String() || list[0].TxPackets != 0 || len(list[0].RxSPIs) == 0 {
						t.Errorf("host %d before any traffic: %+v, want a tunnel to %v with SPIs both ways and nothing sent", i, list[0], h.vips[1-i])
					}
				}
				stop := h.pcap(t, 1, "udp port 1000")
				h.ping(t, 0, 1)
				h.ping(t, 1, 0)
				h.transferTCP(t, 0, 1, 1<<20)
				out, err := exec.Command("tshark", "-r", stop(), "-T", "fields", "-e", "ip.version").Output()
				if err != nil {
					t.Fatalf("tshark: %v", err)
				}
				want := strings.TrimPrefix(outer, "ipv")
				lines := strings.Split(strings.TrimSpace(string(out)), "\n")
				for _, line := range lines {
					if line != want {
						t.Fatalf("a PSP frame on the wire of IP version %q, want %s only", line, want)
					}
				}
				if len(lines) < 100 {
					t.Errorf("%d PSP frames on the wire, want the transfer's", len(lines))
				}
				for i := range 2 {
					series := fmt.Sprintf(`xdpstack_psp_tunnel_requests_total{iface=%q}`, h.lan.Hosts[i].Iface)
					if n := metric(t, h.lan.Hosts[i], h.daemons[i], series); n != 0 {
						t.Errorf("host %d asked for %v tunnels on demand, want none with static tunnels", i, n)
					}
				}
			})
		}
	}
}

// TestPSPOtherCANoTunnel gives one of three hosts a certificate from
// another CA: no tunnel is made with it either way (pings fail), the
// others' `psp peers` count failed exchanges with it and it with them,
// and no tunnel or SPI for it is installed on any side, while the two
// others still reach each other.
func TestPSPOtherCANoTunnel(t *testing.T) {
	h := newPSPHosts(t, 3, "ipv4", "ipv6")
	other := t.TempDir()
	mustXdpstack(t, h.root, "psp", "certs", "--dir", other, fmt.Sprintf("h2=%s,%s", h.lan.Hosts[2].Addr, h.vips[2]))
	h.start(t, 0)
	h.start(t, 1)
	h.certs = other // host 2 trusts only the other CA too
	h.start(t, 2)
	h.ping(t, 0, 1)
	h.noPing(t, 0, 2)
	h.noPing(t, 2, 0)
	h.noPing(t, 1, 2)
	for _, c := range []struct{ at, of int }{{0, 2}, {1, 2}, {2, 0}} {
		if p := h.peer(t, c.at, c.of); p.Failures == 0 || p.Successes != 0 || p.LastError == "" {
			t.Errorf("host %d's psp peers: host %d %+v, want failed exchanges only, the last one's error told", c.at, c.of, p)
		}
	}
	if p := h.peer(t, 0, 1); p.Successes == 0 || p.Failures != 0 {
		t.Errorf("host 0's psp peers: host 1 %+v, want exchanges that succeeded", p)
	}
	if list := h.tunnels(t, 2); len(list) != 0 {
		t.Errorf("host 2 has tunnels: %+v", list)
	}
	if grants := h.spiGrants(t, 2); len(grants) != 0 {
		t.Errorf("host 2's XDP SPI map holds %v, want nothing", grants)
	}
	for i := range 2 {
		if row := h.tunnelTo(t, i, 2); row != nil {
			t.Errorf("host %d has a tunnel to host 2: %+v", i, row)
		}
		for spi, g := range h.spiGrants(t, i) {
			if g.Src != h.vips[1-i] {
				t.Errorf("host %d's XDP SPI map grants %#x to %v, want only host %d's", i, spi, g.Src, 1-i)
			}
		}
	}
}

// sealed is the UDP payload of a PSP packet sealed under spi and
// version 1 with key, carrying an inner UDP datagram from src to dst,
// and crypt offset off (in 4-byte units).
func sealed(t *testing.T, src, dst netip.Addr, spi uint32, key []byte, off uint8) []byte {
	t.Helper()
	inner := packet.Ethernet(packet.EtherTypeIPv4).
		IPv4(packet.IPv4{Src: src, Dst: dst, Protocol: packet.ProtoUDP}).
		UDP(40000, 9).Payload(64).Bytes()
	sa, err := psp.NewSA(spi, psp.V1, key)
	if err != nil {
		t.Fatal(err)
	}
	outer := netip.MustParseAddr("192.0.2.1") // only the datagram goes out
	e := psp.Encap{Mode: psp.Tunnel, CryptOffset4: off, OuterSrc: outer, OuterDst: outer}
	frame := make([]byte, len(inner)+psp.EncapLen(&e, false))
	n, err := sa.Encrypt(frame, inner, &e)
	if err != nil {
		t.Fatal(err)
	}
	return frame[14+20+8 : n]
}

// TestPSPForgedPacketsDropped sends, from a kernel UDP socket on host 1,
// packets to host 0's PSP port under SPIs host 0 issued, sealed with
// keys derived from host 0's master keys (`psp keys`, --debug-keys):
// each kind of bad one is dropped and counted where it should be, in
// XDP where the crypt offset lets it see the inner source, else after
// decryption, while good ones are delivered.
func TestPSPForgedPacketsDropped(t *testing.T) {
	h := newPSPHosts(t, 3, "ipv4", "ipv6")
	h.start(t, 0, "--debug-keys", "--metrics-addr", "127.0.0.1:0")
	h.start(t, 1)
	h.start(t, 2)
	h.ping(t, 1, 0)
	h.ping(t, 2, 0)
	to1, to2 := h.tunnelTo(t, 0, 1), h.tunnelTo(t, 0, 2)
	if to1 == nil || to2 == nil || len(to1.RxSPIs) == 0 || len(to2.RxSPIs) == 0 {
		t.Fatalf("host 0's tunnels: %+v", h.tunnels(t, 0))
	}
	spi1, spi2 := to1.RxSPIs[0], to2.RxSPIs[0] // issued to host 1 and host 2
	masters, err := psp.ParseMasterKeys(mustXdpstack(t, h.root, "psp", "keys", h.lan.Hosts[0].Iface))
	if err != nil {
		t.Fatal(err)
	}
	key := func(spi uint32) []byte {
		k, err := psp.DeriveKey(&masters, spi, psp.V1)
		if err != nil {
			t.Fatal(err)
		}
		return k
	}
	vip0, vip1 := h.vips[0], h.vips[1]

	forged := sealed(t, vip1, vip0, spi1, key(spi1), 0)
	rand.Read(forged[16:]) // after the base header and the IV
	flipped := sealed(t, vip1, vip0, spi1, key(spi1), 0)
	flipped[16+20+3] ^= 0x10 // in the encrypted inner UDP header

	const n = 20
	to := netip.AddrPortFrom(h.lan.Addr6[0], psp.UDPPort)
	iface := h.lan.Hosts[0].Iface
	steered := maps.Verdict{Action: maps.ActionRedirect, Reason: maps.ReasonSteered}
	kinds := []string{"rx-auth-fail", "rx-acl-denied", "rx-error", "rx-bad"}
	for _, tc := range []struct {
		name     string
		datagram []byte
		// xdp is the verdict in XDP; kind the userstack's counter, or
		// "" for none; rx how many it decrypted (Linux's rx-packets
		// counts the packets that authenticate, refused after or not).
		xdp  maps.Verdict
		kind string
		rx   float64
	}{
		{"random bytes after the header", forged, steered, "rx-auth-fail", 0},
		{"a flipped bit", flipped, steered, "rx-auth-fail", 0},
		{"another peer's spi, source in the clear", sealed(t, vip1, vip0, spi2, key(spi2), 4), maps.Verdict{Action: maps.ActionDrop, Reason: maps.ReasonPSPACL}, "", 0},
		{"another peer's spi, source encrypted", sealed(t, vip1, vip0, spi2, key(spi2), 0), steered, "rx-acl-denied", n},
		{"good", sealed(t, vip1, vip0, spi1, key(spi1), 4), steered, "", n},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := readStats(t, h.root, iface)
			errsBefore := map[string]float64{}
			for _, k := range kinds {
				errsBefore[k] = h.pspError(t, 0, k)
			}
			rxBefore := metric(t, h.lan.Hosts[0], h.daemons[0], fmt.Sprintf(`xdpstack_psp_packets_total{direction="rx",iface=%q}`, iface))
			sendPSP(t, h.lan.Hosts[1], to, tc.datagram, n)
			after := waitVerdicts(t, h.root, iface, before, tc.xdp.Action, tc.xdp.Reason, n)
			if got := counted(before, after, tc.xdp.Action, tc.xdp.Reason); got < n {
				t.Errorf("%d of %d counted %v/%v in XDP", got, n, tc.xdp.Action, tc.xdp.Reason)
			}
			deadline := time.Now().Add(5 * time.Second)
			for tc.kind != "" && h.pspError(t, 0, tc.kind)-errsBefore[tc.kind] < n && time.Now().Before(deadline) {
				time.Sleep(50 * time.Millisecond)
			}
			for _, k := range kinds {
				want := 0.0
				if k == tc.kind {
					want = n
				}
				if got := h.pspError(t, 0, k) - errsBefore[k]; got != want {
					t.Errorf("%s went up by %v, want %v", k, got, want)
				}
			}
			if rx := metric(t, h.lan.Hosts[0], h.daemons[0], fmt.Sprintf(`xdpstack_psp_packets_total{direction="rx",iface=%q}`, iface)) - rxBefore; rx != tc.rx {
				t.Errorf("rx-packets went up by %v, want %v", rx, tc.rx)
			}
		})
	}
}

// TestPSPKeysOnlyWithDebugKeys asks two daemons for their master keys:
// the one without --debug-keys refuses in one line, the other's keys
// (in a chmod 600 file) decrypt a capture of the datagrams sent to it
// with `psp decrypt --key-file`, every byte as sent.
func TestPSPKeysOnlyWithDebugKeys(t *testing.T) {
	h := newPSPHosts(t, 2, "ipv4", "ipv6")
	h.start(t, 0)
	h.start(t, 1, "--debug-keys")
	out, err := xdpstack(t, h.root, "psp", "keys", h.lan.Hosts[0].Iface)
	want := "the daemon keeps its keys to itself (attach with --debug-keys to see them)"
	if err == nil || !strings.Contains(out, want) || strings.Contains(out, "\n") {
		t.Errorf("psp keys without --debug-keys: %v, %q; want one line with %q", err, out, want)
	}
	keyFile := filepath.Join(t.TempDir(), "keys")
	if err := os.WriteFile(keyFile, []byte(mustXdpstack(t, h.root, "psp", "keys", h.lan.Hosts[1].Iface)+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	stop := h.pcap(t, 1, fmt.Sprintf("udp dst port 1000 and ip6 dst %s", h.lan.Addr6[1]))
	h.ping(t, 0, 1) // the tunnel first: held datagrams may overflow
	h.transferUDP(t, 0, 1, 50)
	clear := filepath.Join(t.TempDir(), "clear.pcap")
	out = mustXdpstack(t, h.root, "psp", "decrypt", "-r", stop(), "-w", clear, "--key-file", keyFile)
	if !strings.HasPrefix(out, "decrypted ") {
		t.Errorf("psp decrypt: %q", out)
	}
	fields, err := exec.Command("tshark", "-r", clear, "-T", "fields", "-e", "ip.src", "-e", "ip.dst", "-e", "udp.dstport", "-e", "data.data").Output()
	if err != nil {
		t.Fatalf("tshark: %v", err)
	}
	datagrams := 0
	for _, line := range strings.Split(strings.TrimSpace(string(fields)), "\n") {
		f := strings.Split(line, "\t")
		if len(f) != 4 || f[0] != h.vips[0].String() || f[1] != h.vips[1].String() {
			t.Errorf("a decrypted frame not from %v to %v: %q", h.vips[0], h.vips[1], line)
			continue
		}
		if f[2] == "5002" && len(f[3]) == 2000 && f[3] == strings.Repeat(f[3][:2], 1000) {
			datagrams++
		}
	}
	if datagrams < 45 {
		t.Errorf("%d of the 50 datagrams decrypted as sent (psp decrypt: %s):\n%s", datagrams, out, fields)
	}
}

// TestPSPRestartAfterKill kills one of three gateways with SIGKILL and
// starts it again: the two others still hold tunnels to it under SPIs
// of master keys that died with it, yet a transfer each starts to the
// restarted host goes through (their tunnels come back, new), and so
// does one the restarted host starts. Without the restarted host asking
// for its tunnels again when such packets come (keyx.WatchStale), the
// others' transfers never connect.
func TestPSPRestartAfterKill(t *testing.T) {
	h := newPSPHosts(t, 3, "ipv4", "ipv6")
	for i := range 3 {
		h.start(t, i)
	}
	var old [3]*pspTunnelRow
	for _, i := range []int{1, 2} {
		h.ping(t, i, 0)
		if old[i] = h.tunnelTo(t, i, 0); old[i] == nil {
			t.Fatalf("host %d's tunnels: %+v", i, h.tunnels(t, i))
		}
	}

	h.daemons[0].signal(t, syscall.SIGKILL)
	h.start(t, 0)
	for _, i := range []int{1, 2} {
		start := time.Now()
		h.transferTCP(t, i, 0, 256<<10)
		t.Logf("host %d's transfer to the restarted host 0 took %v", i, time.Since(start))
		// The SPI numbers may come again, under the new master keys.
		if now := h.tunnelTo(t, i, 0); now == nil || now.Created == old[i].Created {
			t.Errorf("host %d's tunnel to host 0 after the restart: %+v, want a new one (before: %+v)", i, now, old[i])
		}
	}
	h.transferTCP(t, 0, 1, 256<<10)
	if list := h.tunnels(t, 0); len(list) != 2 {
		t.Errorf("restarted host 0's tunnels: %+v, want one to each other host", list)
	}
}

// TestPSPRotationDuringTransfer rotates the master keys of one gateway
// and then of the other while a paced TCP echo of 8 MiB runs between
// them: every byte comes back, no PSP packet is refused on either side
// (in XDP or after decryption), and the tunnels run under new SPIs of
// the new keys.
func TestPSPRotationDuringTransfer(t *testing.T) {
	h := newPSPHosts(t, 2, "ipv4", "ipv6")
	for i := range 2 {
		h.start(t, i, "--metrics-addr", "127.0.0.1:0")
	}
	h.ping(t, 0, 1)
	before := [2]*pspTunnelRow{h.tunnelTo(t, 0, 1), h.tunnelTo(t, 1, 0)}

	ln, err := h.lan.Hosts[1].Listen("tcp", netip.AddrPortFrom(h.vips[1], 5003).String())
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go testutil.Echo(ln)
	c, err := h.lan.Hosts[0].Dial(t.Context(), "tcp", netip.AddrPortFrom(h.vips[1], 5003).String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(30 * time.Second))
	const size, chunk = 8 << 20, 64 << 10
	sent := make([]byte, size)
	rand.Read(sent)
	var written atomic.Bool
	go func() {
		// Paced over about 1.3s, so that both rotations fall inside.
		for off := 0; off < size; off += chunk {
			if _, err := c.Write(sent[off : off+chunk]); err != nil {
				return
			}
			time.Sleep(10 * time.Millisecond)
		}
		written.Store(true)
		c.(*net.TCPConn).CloseWrite()
	}()
	got := make(chan []byte)
	go func() {
		b, _ := io.ReadAll(c)
		got <- b
	}()
	for i := range 2 {
		time.Sleep(300 * time.Millisecond)
		if out := mustXdpstack(t, h.root, "psp", "rotate", h.lan.Hosts[i].Iface); out != "rotated the master keys (1 rotations since the start)" {
			t.Errorf("psp rotate on host %d: %q", i, out)
		}
	}
	if written.Load() {
		t.Error("the transfer was sent before the second rotation: pace it slower")
	}
	if b := <-got; !bytes.Equal(b, sent) {
		t.Fatalf("tcp echo across the rotations: %d of %d bytes back, equal %v", len(b), size, bytes.Equal(b, sent))
	}

	for i := range 2 {
		now := h.tunnelTo(t, i, 1-i)
		// Host 1-i issued the SPI host i sends under, last under its
		// new key (in the other slot: the SPI's top bit).
		if now == nil || now.TxSPI == before[i].TxSPI || now.TxSPI>>31 != 1 || now.RxSPIs[len(now.RxSPIs)-1]>>31 != 1 {
			t.Errorf("host %d's tunnel after the rotations: %+v, want SPIs of the new keys both ways (before: %+v)", i, now, before[i])
		}
		for v, n := range readStats(t, h.root, h.lan.Hosts[i].Iface) {
			if v.Action == maps.ActionDrop && strings.HasPrefix(v.Reason.String(), "psp") {
				t.Errorf("host %d dropped %d packets in XDP as %v", i, n.Packets, v)
			}
		}
		for _, kind := range []string{"rx-auth-fail", "rx-bad", "rx-error", "rx-acl-denied", "tx-error", "tx-hold-dropped", "tx-ring-full"} {
			if n := h.pspError(t, i, kind); n != 0 {
				t.Errorf("host %d counted %v %s", i, n, kind)
			}
		}
	}
}
