package main

import (
	"fmt"

	"github.com/urfave/cli/v2"

	"github.com/xdpstack/xdpstack/loader"
)

func detachCommand() *cli.Command {
	return &cli.Command{
		Name:      "detach",
		Usage:     "remove the program and pins that xdpstack left on an interface",
		ArgsUsage: "IFACE",
		Description: "For cleaning up after an attach process that died. A running attach process is\n" +
			"stopped with SIGINT or SIGTERM instead; --force detaches from under it.",
		Flags: []cli.Flag{
			&cli.BoolFlag{Name: "force", Usage: "detach even while the attach process still runs"},
		},
		Before: needRoot,
		Action: func(c *cli.Context) error {
			ifname, err := oneIface(c)
			if err != nil {
				return err
			}
			if err := loader.Detach(ifname, loader.DetachOptions{PinRoot: c.String("pin-root"), Force: c.Bool("force")}); err != nil {
				return err
			}
			fmt.Fprintf(c.App.Writer, "detached from %s\n", ifname)
			return nil
		},
	}
}
