package main

import (
	"fmt"
	"strings"

	"github.com/urfave/cli/v2"

	"github.com/xdpstack/xdpstack/daemon"
	"github.com/xdpstack/xdpstack/daemon/control"
)

func reloadCommand() *cli.Command {
	return &cli.Command{
		Name:      "reload",
		Usage:     "make the daemon on IFACE read its config file again and apply what may change while it runs",
		ArgsUsage: "IFACE",
		Description: "Asks the daemon over its control socket, as SIGHUP does. Namespaces and rules are\n" +
			"applied without detaching and without dropping a session; a change of any other\n" +
			"setting, or a bad file, is refused whole and changes nothing.",
		Action: runReload,
	}
}

func runReload(c *cli.Context) error {
	ifname, err := oneIface(c)
	if err != nil {
		return err
	}
	r, err := daemon.ReloadEndpoint.Call(c.Context, control.NewClient(c.String("run-dir"), ifname), control.None{})
	if err != nil {
		return fmt.Errorf("reload %s: %w", ifname, err)
	}
	if len(r.Applied) == 0 {
		fmt.Fprintf(c.App.Writer, "reloaded %s: nothing to apply\n", ifname)
	} else {
		fmt.Fprintf(c.App.Writer, "reloaded %s: applied %s\n", ifname, strings.Join(r.Applied, ", "))
	}
	return nil
}
