// Command xdpstack attaches the xdpstack dataplane to an interface and
// inspects it.
package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/urfave/cli/v2"

	"github.com/xdpstack/xdpstack/daemon/control"
	"github.com/xdpstack/xdpstack/maps"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	app := newApp()
	if n := len(os.Args); n > 1 && os.Args[n-1] == completeFlag {
		for _, w := range completions(app, os.Args[1:n-1]) {
			fmt.Println(w)
		}
		return
	}
	args, err := flagsFirst(app, os.Args)
	if err == nil {
		err = app.RunContext(ctx, args)
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "xdpstack: %v\n", err)
		os.Exit(1)
	}
}

var pinRootFlag = &cli.StringFlag{
	Name:    "pin-root",
	Value:   maps.DefaultPinRoot,
	Usage:   "folder on a BPF filesystem holding one folder of pins per interface",
	EnvVars: []string{"XDPSTACK_PIN_ROOT"},
}

var runDirFlag = &cli.StringFlag{
	Name:    "run-dir",
	Value:   control.DefaultDir,
	Usage:   "folder of the daemons' control sockets, one per interface (IFACE.sock)",
	EnvVars: []string{"XDPSTACK_RUN_DIR"},
}

func newApp() *cli.App {
	app := &cli.App{
		Name:    "xdpstack",
		Usage:   "a kernel-cooperative XDP dataplane",
		Version: versionLine(),
		Flags:   append([]cli.Flag{pinRootFlag, runDirFlag}, logFlags...),
		Before:  func(c *cli.Context) error { return setupLogging(c, c.App.ErrWriter) },
		// `xdpstack help atach` names the command meant.
		Suggest: true,
		// App specs carry commas of their own (echo=tcp://:7,opt=val).
		DisableSliceFlagSeparator: true,
		Commands: []*cli.Command{
			attachCommand(),
			detachCommand(),
			statusCommand(),
			statsCommand(),
			sessionsCommand(),
			rulesCommand(),
			nsCommand(),
			captureCommand(),
			pspCommand(),
			echoCommand(),
			runCommand(),
			reloadCommand(),
			configCommand(),
			completionCommand(),
			versionCommand(),
			manCommand(),
		},
		OnUsageError: usageError,
		Action:       showApp,
	}
	for _, cmd := range app.Commands {
		cmd.OnUsageError = usageError
		cmd.HideHelpCommand = true
		if cmd.Action == nil {
			cmd.Action = showSubcommands
		}
		for _, sub := range cmd.Subcommands {
			sub.OnUsageError = usageError
		}
	}
	addExamples(app)
	return app
}

// needRoot fails commands that touch BPF objects when run without the
// privileges for it, before they try anything.
func needRoot(c *cli.Context) error {
	if os.Geteuid() != 0 {
		return fmt.Errorf("%s needs root (CAP_BPF and CAP_NET_ADMIN); run it with sudo", commandName(c))
	}
	return nil
}

// oneIface reads the single IFACE argument of a command.
func oneIface(c *cli.Context) (string, error) {
	switch c.NArg() {
	case 1:
		name := c.Args().First()
		return name, maps.CheckIfaceName(name)
	case 0:
		return "", errors.New("missing IFACE argument (see: ip link show)")
	}
	return "", fmt.Errorf("want one IFACE argument, got %d: %v", c.NArg(), c.Args().Slice())
}

// commandName is the command's path without the program's name:
// "psp derive".
func commandName(c *cli.Context) string {
	return strings.TrimPrefix(c.Command.HelpName, c.App.Name+" ")
}

// noArgs refuses arguments to a command that takes none, which would
// otherwise pass unseen.
func noArgs(c *cli.Context) error {
	if c.NArg() > 0 {
		return fmt.Errorf("%s takes no arguments, got %q (see: %s --help)", commandName(c), c.Args().Slice(), c.Command.HelpName)
	}
	return nil
}

// needFlags fails unless every string flag named is given a value.
// urfave/cli's Required would print the whole help text with the error.
func needFlags(c *cli.Context, names ...string) error {
	for _, name := range names {
		if c.String(name) == "" {
			return fmt.Errorf("%s: --%s missing (see: %s --help)", commandName(c), name, c.Command.HelpName)
		}
	}
	return nil
}

// optionalIface reads an IFACE argument that may be left out.
func optionalIface(c *cli.Context) (string, error) {
	if c.NArg() == 0 {
		return "", nil
	}
	return oneIface(c)
}
