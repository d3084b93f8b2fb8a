package test

import (
	"encoding/json"
	"fmt"
	"net"
	"net/netip"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/xdpstack/xdpstack/internal/testing/packet"
	"github.com/xdpstack/xdpstack/internal/testing/testutil"
	"github.com/xdpstack/xdpstack/maps"
	"github.com/xdpstack/xdpstack/userstack/psp"
	"github.com/xdpstack/xdpstack/userstack/psp/tunnel"
)

// pspDatagram is the UDP payload of a PSP packet the codec sealed under
// spi and version 1 in tunnel mode: the base header, the inner IPv4
// packet from src (a UDP datagram to port 7) and the ICV. The crypt
// offset leaves the inner source in the clear.
func pspDatagram(t *testing.T, src netip.Addr, spi uint32) []byte {
	t.Helper()
	inner := packet.Ethernet(packet.EtherTypeIPv4).
		IPv4(packet.IPv4{Src: src, Dst: netip.MustParseAddr("10.9.0.2"), Protocol: packet.ProtoUDP}).
		UDP(40000, 7).Payload(64).Bytes()
	// The outer addresses are the kernel's to choose: only the
	// datagram is sent.
	outer := netip.MustParseAddr("192.0.2.1")
	frame, err := packet.PSP(inner, spi, psp.V1, psp.Encap{Mode: psp.Tunnel, CryptOffset4: 4, OuterSrc: outer, OuterDst: outer})
	if err != nil {
		t.Fatal(err)
	}
	return frame[14+20+8:]
}

// sendPSP sends datagram n times from a kernel UDP socket of host from
// to to, PSP's port.
func sendPSP(t *testing.T, from *testutil.Host, to netip.AddrPort, datagram []byte, n int) {
	t.Helper()
	from.Do(t, func() error {
		c, err := net.ListenUDP("udp", nil)
		if err != nil {
			return err
		}
		defer c.Close()
		for range n {
			if _, err := c.WriteToUDPAddrPort(datagram, to); err != nil {
				return err
			}
		}
		return nil
	})
}

// TestPSPDroppedInXDP turns the PSP check on in a running daemon's pins
// (as attach does with loader.Options.PSP), and sends PSP over a kernel
// UDP socket of the peer: datagrams under an SPI never issued, or from
// another inner source than the SPI's, are dropped in XDP and counted
// by `xdpstack stats` under their reasons; those the ACL allows are
// steered to the userstack. bpftool prints the SPI table with named
// fields.
func TestPSPDroppedInXDP(t *testing.T) {
	a, b := testutil.HostPair(t, 0)
	root := testutil.PinRoot(t)
	// An app starts the userstack, which fills the addresses it serves.
	startDaemon(t, a, root, "--metrics-addr", "", "--app", "echo=tcp://:7")
	dir := filepath.Join(root, a.Iface)
	pspMaps, err := maps.OpenPinnedPSP(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer pspMaps.Close()
	if err := pspMaps.SetSettings(maps.PSPSettings{Enabled: true, Versions: []psp.Version{psp.V1}}); err != nil {
		t.Fatal(err)
	}
	granted := netip.MustParseAddr("10.9.0.1")
	const spi, unknownSPI = 0x80000001, 0x80000002
	acl := tunnel.NewACL(pspMaps.SPIs)
	if err := acl.Allow(tunnel.Grant{SPI: spi, Version: psp.V1, Src: granted}); err != nil {
		t.Fatal(err)
	}

	const n = 20
	to := netip.AddrPortFrom(a.Addr, psp.UDPPort)
	for _, tc := range []struct {
		name     string
		datagram []byte
		want     maps.Verdict
	}{
		{"unknown spi", pspDatagram(t, granted, unknownSPI), maps.Verdict{Action: maps.ActionDrop, Reason: maps.ReasonPSPSPI}},
		{"another inner source", pspDatagram(t, netip.MustParseAddr("10.9.0.66"), spi), maps.Verdict{Action: maps.ActionDrop, Reason: maps.ReasonPSPACL}},
		{"allowed", pspDatagram(t, granted, spi), maps.Verdict{Action: maps.ActionRedirect, Reason: maps.ReasonSteered}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := readStats(t, root, a.Iface)
			sendPSP(t, b, to, tc.datagram, n)
			after := waitVerdicts(t, root, a.Iface, before, tc.want.Action, tc.want.Reason, n)
			if got := counted(before, after, tc.want.Action, tc.want.Reason); got != n {
				t.Errorf("%d datagrams counted %v/%v, want %d (moved: %v)", got, tc.want.Action, tc.want.Reason, n, after)
			}
		})
	}

	var rows []struct {
		Action, Reason string
		Packets        uint64
	}
	if err := json.Unmarshal([]byte(mustXdpstack(t, root, "stats", a.Iface, "--json")), &rows); err != nil {
		t.Fatal(err)
	}
	got := map[string]uint64{}
	for _, r := range rows {
		got[r.Action+"/"+r.Reason] = r.Packets
	}
	if got["drop/psp_spi"] != n || got["drop/psp_acl"] != n {
		t.Errorf("xdpstack stats: drop/psp_spi %d, drop/psp_acl %d; want %d each", got["drop/psp_spi"], got["drop/psp_acl"], n)
	}

	if _, err := exec.LookPath("bpftool"); err != nil {
		t.Skip("needs bpftool for the rest")
	}
	out, err := exec.Command("bpftool", "map", "dump", "pinned", filepath.Join(dir, maps.PSPSPIsName)).CombinedOutput()
	want := fmt.Sprintf(`"spi": %d`, uint32(spi))
	if err != nil || !strings.Contains(string(out), want) || !strings.Contains(string(out), `"version": 1`) || !strings.Contains(string(out), `"src": [`) {
		t.Errorf("bpftool map dump psp_spis: %v; want %s, its version and source named:\n%s", err, want, out)
	}
}
