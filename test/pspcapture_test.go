package test

import (
	"encoding/hex"
	"encoding/json"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
)

// TestPSPCapture runs two gateways that set the S bit on 1 sent packet
// in 4 (--psp-sample-rate 2) and, while a ping each way and a TCP
// transfer run:
//   - `capture --point psp -w FILE` on host 0 writes the inner packets
//     both ways, which tshark reads as raw IP, each with its direction
//     and the SPI of its tunnel (as `psp tunnels` lists them) in its
//     comment, some of those sent marked "sampled";
//   - `capture --point psp --count 4` on host 1 stops by itself after 4
//     lines of the filter's (ICMP) packets;
//   - `capture` at the XDP hook of host 1, its sample rate 0, shows the
//     PSP packets from host 0 with the S bit, steered, and no others:
//     as many as host 0's psp capture marked sampled on the way out.
func TestPSPCapture(t *testing.T) {
	needTools(t, "tshark", "tcpdump")
	h := newPSPHosts(t, 2, "ipv4", "ipv4")
	d0 := h.start(t, 0, "--psp-sample-rate", "2")
	d1 := h.start(t, 1, "--psp-sample-rate", "2")
	iface0, iface1 := h.lan.Hosts[0].Iface, h.lan.Hosts[1].Iface

	file := filepath.Join(t.TempDir(), "psp.pcapng")
	inner := startCapture(t, h.root, iface0, d0, "--point", "psp", "-w", file)
	counted := startCapture(t, h.root, iface1, d1, "--point", "psp", "--count", "4", "--filter", "icmp", "--duration", "60s")
	xdpFile := filepath.Join(t.TempDir(), "xdp.pcapng")
	xdp := startCapture(t, h.root, iface1, d1, "-w", xdpFile)

	h.ping(t, 0, 1)
	h.ping(t, 1, 0)
	h.transferTCP(t, 0, 1, 256<<10)

	xdpSummary := xdp.stop(t)
	innerSummary := inner.stop(t)
	countedSummary := counted.wait(t)

	// The count: 4 lines of ICMP through the tunnel, each with its SPI.
	if n := capturedCount(t, countedSummary); n != 4 {
		t.Errorf("capture --count 4: %s", countedSummary)
	}
	lines := strings.Split(strings.TrimSpace(counted.stdout.String()), "\n")
	for _, l := range lines {
		if !strings.Contains(l, " psp ") || !strings.Contains(l, " spi 0x") || !strings.Contains(l, "ICMP") {
			t.Errorf("capture --point psp line %q: want the point, an spi and ICMP", l)
		}
	}
	if len(lines) != 4 {
		t.Errorf("capture --count 4 printed %d lines:\n%s", len(lines), counted.stdout)
	}

	// Host 0's tunnel to host 1, and the SPIs host 0 issued to it.
	var list struct {
		Tunnels []struct {
			TxSPI  uint32   `json:"tx_spi"`
			RxSPIs []uint32 `json:"rx_spis"`
		} `json:"tunnels"`
	}
	if out := mustXdpstack(t, h.root, "psp", "tunnels", iface0, "--json"); json.Unmarshal([]byte(out), &list) != nil || len(list.Tunnels) != 1 {
		t.Fatalf("psp tunnels %s: %s; want one tunnel", iface0, out)
	}
	tun := list.Tunnels[0]
	inSPIs := map[string]bool{}
	for _, spi := range tun.RxSPIs {
		inSPIs[fmt.Sprintf("%#x", spi)] = true
	}

	// The inner packets, as tshark reads a raw IP capture.
	rows := tsharkFields(t, file, "frame.comment", "ip.src", "ip.dst", "_ws.col.Protocol")
	if n := capturedCount(t, innerSummary); n != len(rows) || n == 0 {
		t.Fatalf("tshark reads %d packets, the summary says: %s", len(rows), innerSummary)
	}
	if n := tcpdumpCount(t, file); n != len(rows) {
		t.Errorf("tcpdump reads %d packets, tshark %d", n, len(rows))
	}
	seen := map[string]int{}
	outSampled := 0
	for _, r := range rows {
		comment, src, dst, proto := r[0], r[1], r[2], r[3]
		var spi, sampled string
		switch {
		case src == h.vips[0].String() && dst == h.vips[1].String():
			spi = fmt.Sprintf("%#x", tun.TxSPI)
			if !strings.HasPrefix(comment, "psp out spi "+spi) {
				t.Errorf("packet to host 1 (%s): comment %q, want psp out spi %s", proto, comment, spi)
			}
			if strings.HasSuffix(comment, " sampled") {
				outSampled++
				sampled = " sampled"
			}
			seen["out "+proto+sampled]++
		case src == h.vips[1].String() && dst == h.vips[0].String():
			var ok bool
			_, spi, ok = strings.Cut(strings.TrimSuffix(comment, " sampled"), "psp in spi ")
			if !ok || !inSPIs[spi] {
				t.Errorf("packet from host 1 (%s): comment %q, want psp in and an spi host 0 issued (%v)", proto, comment, tun.RxSPIs)
			}
			seen["in "+proto]++
		default:
			t.Errorf("an inner packet from %s to %s: not between the virtual addresses", src, dst)
		}
	}
	for _, want := range []string{"out ICMP", "in ICMP", "out TCP", "in TCP"} {
		if seen[want] == 0 && seen[want+" sampled"] == 0 {
			t.Errorf("no %s packet at host 0's psp point (saw %v)", want, seen)
		}
	}
	// 1 in 4 of some hundreds of packets: none, or half, is not that.
	if out := seen["out TCP"] + seen["out ICMP"] + outSampled; outSampled == 0 || outSampled*2 > out {
		t.Errorf("%d of %d packets sent sampled at rate 2 (%v)", outSampled, out, seen)
	}

	// The XDP hook of host 1 samples those with the S bit, and only
	// those: its own sample rate is 0.
	if !strings.Contains(xdp.stderr.String(), "capturing the PSP packets whose sender set the S bit only") {
		t.Errorf("capture at the XDP hook with sampling off: %s", xdp.stderr)
	}
	samples := tsharkFields(t, xdpFile, "frame.comment", "udp.dstport", "udp.payload")
	if n := capturedCount(t, xdpSummary); n != len(samples) {
		t.Errorf("tshark reads %d samples, the summary says: %s", len(samples), xdpSummary)
	}
	for _, r := range samples {
		payload, err := hex.DecodeString(strings.ReplaceAll(r[2], ":", ""))
		if !strings.HasPrefix(r[0], "xdp redirect/steered") || r[1] != "1000" || err != nil || len(payload) < 4 || payload[3]&0x80 == 0 {
			t.Errorf("a sample at host 1's XDP hook: %q, want a steered PSP packet with the S bit", r)
		}
	}
	t.Logf("host 0's psp point: %v; host 1's XDP hook: %d samples with the S bit", seen, len(samples))
	if len(samples) == 0 || len(samples) > outSampled || len(samples) < outSampled*9/10 {
		t.Errorf("host 1's XDP hook sampled %d packets with the S bit; host 0 sent %d", len(samples), outSampled)
	}
}
