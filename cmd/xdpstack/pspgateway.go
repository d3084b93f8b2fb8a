package main

import (
	"fmt"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/xdpstack/xdpstack/daemon"
	"github.com/xdpstack/xdpstack/daemon/control"
)

// pspGatewayCommands are the psp verbs that ask the daemon on IFACE
// about its PSP gateway (attach --psp-config), through its control
// socket.
func pspGatewayCommands() []*cli.Command {
	jsonFlag := []cli.Flag{&cli.BoolFlag{Name: "json", Usage: "print JSON"}}
	return []*cli.Command{
		{
			Name:      "tunnels",
			Usage:     "list the gateway's tunnels: peer, virtual addresses, SPIs each way, version, age, packets and bytes",
			ArgsUsage: "IFACE",
			Flags:     jsonFlag,
			Action:    runPSPTunnels,
		},
		{
			Name:      "peers",
			Usage:     "list the peer gateways: gRPC address, certificate subject, last exchange, failures",
			ArgsUsage: "IFACE",
			Flags:     jsonFlag,
			Action:    runPSPPeers,
		},
		{
			Name:        "rotate",
			Usage:       "rotate the master keys now and re-key every tunnel",
			ArgsUsage:   "IFACE",
			Description: "SAs under the previous key keep working until the tunnels are re-keyed and it is retired.",
			Action:      runPSPRotate,
		},
		{
			Name:      "keys",
			Usage:     "print the master keys in the form psp decrypt --master-keys takes (only with attach --debug-keys)",
			ArgsUsage: "IFACE",
			Action:    runPSPKeys,
		},
	}
}

// pspCall asks the daemon on the command's IFACE at endpoint e.
func pspCall[Resp any](c *cli.Context, e control.Endpoint[control.None, Resp]) (Resp, error) {
	var zero Resp
	iface, err := oneIface(c)
	if err != nil {
		return zero, err
	}
	r, err := e.Call(c.Context, control.NewClient(c.String("run-dir"), iface), control.None{})
	if err != nil {
		return zero, fmt.Errorf("%s %s: %w", commandName(c), iface, err)
	}
	return r, nil
}

func runPSPTunnels(c *cli.Context) error {
	list, err := pspCall(c, daemon.PSPTunnelsEndpoint)
	if err != nil || c.Bool("json") {
		return orPrintJSON(c, list, err)
	}
	w := tabwriter.NewWriter(c.App.Writer, 0, 8, 2, ' ', 0)
	fmt.Fprintln(w, "PEER\tLOCAL\tREMOTE\tVERSION\tTX SPI\tRX SPIS\tAGE\tTX PACKETS\tTX BYTES\tRX PACKETS\tRX BYTES")
	for _, t := range list.Tunnels {
		var rx []string
		for _, spi := range t.RxSPIs {
			rx = append(rx, fmt.Sprintf("%#x", spi))
		}
		fmt.Fprintf(w, "%s\t%s\t%s\t%d\t%#x\t%s\t%s\t%d\t%d\t%d\t%d\n", t.Peer, t.Local, t.Remote, t.Version, t.TxSPI,
			orDash(strings.Join(rx, ",")), time.Since(t.Created).Round(time.Second), t.TxPackets, t.TxBytes, t.RxPackets, t.RxBytes)
	}
	return w.Flush()
}

func runPSPPeers(c *cli.Context) error {
	list, err := pspCall(c, daemon.PSPPeersEndpoint)
	if err != nil || c.Bool("json") {
		return orPrintJSON(c, list, err)
	}
	w := tabwriter.NewWriter(c.App.Writer, 0, 8, 2, ' ', 0)
	fmt.Fprintln(w, "GRPC\tSUBJECT\tLAST EXCHANGE\tOK\tFAILED\tLAST ERROR")
	for _, p := range list.Peers {
		last := "never"
		if !p.LastExchange.IsZero() {
			last = time.Since(p.LastExchange).Round(time.Second).String() + " ago"
		}
		fmt.Fprintf(w, "%s\t%s\t%s\t%d\t%d\t%s\n", p.GRPC, orDash(p.Subject), last, p.Successes, p.Failures, orDash(p.LastError))
	}
	return w.Flush()
}

func runPSPRotate(c *cli.Context) error {
	r, err := pspCall(c, daemon.PSPRotateEndpoint)
	if err != nil {
		return err
	}
	fmt.Fprintf(c.App.Writer, "rotated the master keys (%d rotations since the start)\n", r.Rotations)
	return nil
}

func runPSPKeys(c *cli.Context) error {
	k, err := pspCall(c, daemon.PSPKeysEndpoint)
	if err != nil {
		return err
	}
	fmt.Fprintln(c.App.Writer, k.MasterKeys)
	return nil
}

// orPrintJSON returns err, or prints v as JSON.
func orPrintJSON(c *cli.Context, v any, err error) error {
	if err != nil {
		return err
	}
	return printJSON(c.App.Writer, v)
}
