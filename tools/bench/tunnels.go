package main

import (
	"context"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/xdpstack/xdpstack/tools/internal/tunnelbench"
)

// pspTunnel is the name the PSP tunnel's column takes (issue 22): the
// rows below that name it are printed once it is in the run.
const pspTunnel = "PSP"

// tunnelRatios are the rows of issue 22's table, each printed when the
// run measured both tunnels.
var tunnelRatios = []struct {
	num, den    string
	streams     int
	floor, goal string
}{
	{pspTunnel, wireGuardGo, 1, "0.5×", "1.2×"},
	{pspTunnel, wireGuardGo, 4, "0.5×", "1.2×"},
	{pspTunnel, bareVeth, 1, "reported", "0.5×"},
	{pspTunnel, bareVeth, 4, "reported", "0.5×"},
	{wireGuardGo, bareVeth, 1, "reported", "—"},
	{wireGuardGo, bareVeth, 4, "reported", "—"},
}

var (
	wireGuardGo = tunnelbench.WireGuardGo{}.Name()
	bareVeth    = tunnelbench.Bare{}.Name()
)

// tunnelFigures measures TCP through each tunnel and the bare veth, and
// returns the report's section.
func tunnelFigures(binary string, rounds int, tcpTime time.Duration) (string, error) {
	ctx := context.Background()
	dir, err := os.MkdirTemp("", "xdpstack-bench-wg")
	if err != nil {
		return "", err
	}
	defer os.RemoveAll(dir)
	wgBinary, err := tunnelbench.BuildWireGuardGo(ctx, dir)
	if err != nil {
		return "", err
	}
	wgVersion, err := tunnelbench.WireGuardGoVersion(wgBinary)
	if err != nil {
		return "", err
	}
	rep, err := tunnelbench.Run(ctx, tunnelbench.Config{
		Tunnels: []tunnelbench.Tunnel{tunnelbench.Bare{}, tunnelbench.WireGuardGo{Binary: wgBinary}, tunnelbench.PSP{Binary: binary}},
		Rounds:  rounds,
		Time:    tcpTime,
		Log:     logOut,
	})
	if err != nil {
		return "", err
	}
	fmt.Fprintln(logOut, "PSP tunnels on demand:")
	demand, err := tunnelbench.OnDemand(ctx, tunnelbench.OnDemandConfig{Binary: binary, Rounds: rounds, Log: logOut})
	if err != nil {
		return "", err
	}
	var r strings.Builder
	fmt.Fprintf(&r, "\n## Tunnels: TCP through a tunnel against the bare veth\n\n")
	fmt.Fprintf(&r, "`go run ./tools/bench -only tunnels`: iperf3 from host B to host A through each tunnel over one veth pair, each round bringing every tunnel up in turn, measuring, and taking it down. wireguard-go %s (`%s`) runs in each namespace with its TUN offloads, configured with `wg`; PSP is `xdpstack attach` with `--psp-config` on each veth end (IPv4 inside and out, AES-GCM-256, tunnels made by the first packet).\n\n", wgVersion, tunnelbench.WireGuardModule)
	r.WriteString(rep.Markdown())
	fmt.Fprintf(&r, "\n| figure | ratio | floor | goal |\n|---|---:|---|---|\n")
	for _, row := range tunnelRatios {
		ratio, ok := rep.Ratio(row.num, row.den, row.streams)
		if !ok {
			continue
		}
		fmt.Fprintf(&r, "| TCP throughput through %s against %s, %s | **%.2f×** | %s | %s |\n", row.num, row.den, tunnelbench.StreamCount(row.streams), ratio, row.floor, row.goal)
	}
	fmt.Fprintf(&r, "| PSP tunnels established on demand per second; first-packet-to-delivery p50 and p99 | **%.0f/s; %.1f ms, %.1f ms** | reported | — |\n",
		demand.PerSecond, demand.P50.Seconds()*1e3, demand.P99.Seconds()*1e3)
	fmt.Fprintf(&r, "| the first PSP tunnel to a peer, key exchange connection included: first packet to delivery | **%.1f ms** | reported | — |\n", demand.First.Seconds()*1e3)
	fmt.Fprintf(&r, "\nOn demand: host A's gateway has a /24 of remote virtual addresses, all host B's. A kernel UDP socket on A sends one datagram to one of them, which waits in the gateway for its tunnel and for the key exchange's mutual-TLS connection to B (the first tunnel); once it arrives, one datagram to each of %d others at once, each waiting for its own exchange (which installs the way back too). Tunnels per second are those datagrams delivered to a kernel socket on B over the time from the first of them sent to the last delivered; p50 and p99 of each one's send to delivery; median of %d rounds, each with fresh gateways (%d datagrams lost in all).\n",
		demand.Addresses, demand.Rounds, demand.Lost)
	return r.String(), nil
}
