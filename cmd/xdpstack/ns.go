package main

import (
	"errors"
	"fmt"
	"net/netip"
	"strings"
	"text/tabwriter"

	"github.com/urfave/cli/v2"

	"github.com/xdpstack/xdpstack/daemon"
	"github.com/xdpstack/xdpstack/daemon/control"
	"github.com/xdpstack/xdpstack/maps"
	"github.com/xdpstack/xdpstack/userstack/appns"
)

func nsCommand() *cli.Command {
	return &cli.Command{
		Name:  "ns",
		Usage: "add, delete and list the application namespaces of the daemon on IFACE",
		Description: "A namespace binds its applications to some of the interface's addresses (or, with\n" +
			"none, to those no namespace claims), lets in only the applications that know its\n" +
			"secret, and has a local rule table (rules add IFACE --namespace NS). The daemon keeps\n" +
			"them, through its control socket; they are not written to its config file, and a\n" +
			"reload sets the namespaces the file names as it says.",
		Subcommands: []*cli.Command{
			{
				Name:      "add",
				Usage:     "add a namespace",
				ArgsUsage: "IFACE NAME",
				Flags: []cli.Flag{
					&cli.StringFlag{Name: "secret", Usage: "the secret applications attach with (others may read it in ps: prefer --secret-file)"},
					&cli.StringFlag{Name: "secret-file", Usage: "read the secret from this file, which only its owner may read (chmod 600)"},
					&cli.StringSliceFlag{Name: "addr", Usage: "an address of the interface that the namespace's applications bind to; repeatable"},
				},
				Action: runNsAdd,
			},
			{
				Name:      "del",
				Usage:     "delete a namespace that no application uses",
				ArgsUsage: "IFACE NAME",
				Action:    runNsDel,
			},
			{
				Name:      "list",
				Usage:     "list the namespaces: addresses, applications attached, local rules, refusals",
				ArgsUsage: "IFACE",
				Flags:     []cli.Flag{&cli.BoolFlag{Name: "json", Usage: "print JSON"}},
				Action:    runNsList,
			},
		},
	}
}

// ifaceAndName reads the IFACE NAME arguments of ns add and ns del.
func ifaceAndName(c *cli.Context) (string, string, error) {
	if c.NArg() != 2 {
		return "", "", fmt.Errorf("%s: want IFACE and NAME, got %q (see: %s --help)", commandName(c), c.Args().Slice(), c.Command.HelpName)
	}
	iface, name := c.Args().Get(0), c.Args().Get(1)
	if err := maps.CheckIfaceName(iface); err != nil {
		return "", "", err
	}
	if err := appns.CheckName(name); err != nil {
		return "", "", fmt.Errorf("%s: %w", commandName(c), err)
	}
	return iface, name, nil
}

// maxSecretFile bounds a secret file.
const maxSecretFile = 4096

// nsSecret reads the secret from --secret or --secret-file, never
// showing it in an error.
func nsSecret(c *cli.Context) (string, error) {
	switch {
	case c.IsSet("secret") && c.IsSet("secret-file"):
		return "", fmt.Errorf("%s: --secret and --secret-file both given (give one)", commandName(c))
	case c.IsSet("secret-file"):
		path := c.String("secret-file")
		secret, err := readSecretFile(path)
		if err != nil {
			return "", fmt.Errorf("--secret-file %s: %w", path, err)
		}
		return secret, nil
	case c.String("secret") != "":
		return c.String("secret"), nil
	}
	return "", fmt.Errorf("%s: --secret or --secret-file missing (see: %s --help)", commandName(c), c.Command.HelpName)
}

// readSecretFile reads a namespace's secret: the file's one line, which
// its owner alone may read.
func readSecretFile(path string) (string, error) {
	b, err := readPrivateFile(path, "secret", maxSecretFile)
	if err != nil {
		return "", err
	}
	secret := strings.TrimRight(string(b), "\r\n")
	switch {
	case secret == "":
		return "", errors.New("empty")
	case strings.ContainsAny(secret, "\r\n"):
		return "", errors.New("more than one line (want the secret alone)")
	}
	return secret, nil
}

func runNsAdd(c *cli.Context) error {
	iface, name, err := ifaceAndName(c)
	if err != nil {
		return err
	}
	req := daemon.NamespaceAdd{Name: name}
	for _, a := range c.StringSlice("addr") {
		addr, err := netip.ParseAddr(a)
		if err != nil {
			return fmt.Errorf("ns add: --addr %q: not an IP address", a)
		}
		req.Addrs = append(req.Addrs, addr)
	}
	if req.Secret, err = nsSecret(c); err != nil {
		return err
	}
	added, err := daemon.NamespaceAddEndpoint.Call(c.Context, control.NewClient(c.String("run-dir"), iface), req)
	if err != nil {
		return fmt.Errorf("ns add %s: %w", iface, err)
	}
	fmt.Fprintf(c.App.Writer, "namespace %s on %s: %s\n", added.Name, iface, addrsText(added.Addrs))
	return nil
}

func runNsDel(c *cli.Context) error {
	iface, name, err := ifaceAndName(c)
	if err != nil {
		return err
	}
	if _, err := daemon.NamespaceDelEndpoint.Call(c.Context, control.NewClient(c.String("run-dir"), iface), daemon.NamespaceDel{Name: name}); err != nil {
		return fmt.Errorf("ns del %s: %w", iface, err)
	}
	fmt.Fprintf(c.App.Writer, "deleted namespace %s on %s\n", name, iface)
	return nil
}

// addrsText says what a namespace binds to.
func addrsText(addrs []netip.Addr) string {
	if len(addrs) == 0 {
		return "the addresses no namespace claims"
	}
	s := make([]string, len(addrs))
	for i, a := range addrs {
		s[i] = a.String()
	}
	return strings.Join(s, ",")
}

func runNsList(c *cli.Context) error {
	iface, err := oneIface(c)
	if err != nil {
		return err
	}
	list, err := daemon.NamespacesEndpoint.Call(c.Context, control.NewClient(c.String("run-dir"), iface), control.None{})
	if err != nil {
		return fmt.Errorf("ns list %s: %w", iface, err)
	}
	if c.Bool("json") {
		return printJSON(c.App.Writer, list)
	}
	w := tabwriter.NewWriter(c.App.Writer, 0, 8, 2, ' ', 0)
	fmt.Fprintln(w, "NAME\tADDRS\tAPPS\tRULES\tREFUSALS\tFROM")
	for _, ns := range list.Namespaces {
		addrs := "-"
		if len(ns.Addrs) > 0 {
			addrs = addrsText(ns.Addrs)
		}
		fmt.Fprintf(w, "%s\t%s\t%d\t%d\t%s\t%s\n", ns.Name, addrs, ns.Apps, ns.Rules, refusalsText(ns.Refusals), ns.From)
	}
	if err := w.Flush(); err != nil {
		return fmt.Errorf("print namespaces: %w", err)
	}
	if list.UnknownRefusals > 0 {
		fmt.Fprintf(c.App.Writer, "refused attaches to namespaces that do not exist: %d\n", list.UnknownRefusals)
	}
	return nil
}

// refusalsText is reason=count, by reason; "-" for none.
func refusalsText(refusals map[appns.Refusal]uint64) string {
	var parts []string
	for _, why := range appns.Refusals {
		if n := refusals[why]; n > 0 {
			parts = append(parts, fmt.Sprintf("%s=%d", why, n))
		}
	}
	if len(parts) == 0 {
		return "-"
	}
	return strings.Join(parts, ",")
}
