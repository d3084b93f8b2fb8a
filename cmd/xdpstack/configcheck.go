package main

import (
	"fmt"
	"strings"

	"github.com/urfave/cli/v2"
)

func configCommand() *cli.Command {
	return &cli.Command{
		Name:  "config",
		Usage: "work with attach's config files",
		Subcommands: []*cli.Command{{
			Name:      "check",
			Usage:     "check a config file as attach --config would, without attaching",
			ArgsUsage: "FILE",
			Description: "Checks every key and value that needs no interface, and reads the namespaces'\n" +
				"secret files and the PSP gateway's certificates; that the addresses of the apps and\n" +
				"namespaces belong to the interface is checked by attach.",
			Action: runConfigCheck,
		}},
	}
}

func runConfigCheck(c *cli.Context) error {
	if c.NArg() != 1 {
		return fmt.Errorf("config check: want one FILE argument, got %d (see: %s --help)", c.NArg(), c.Command.HelpName)
	}
	file, err := readConfig(c.Args().First())
	if err != nil {
		return err
	}
	cfg, err := settings{file: file}.check()
	if err != nil {
		return err
	}
	parts := []string{cfg.Attach.Mode.String() + " mode"}
	for _, a := range cfg.Apps {
		parts = append(parts, "app "+a.String())
	}
	if cfg.MetricsAddr != "" {
		parts = append(parts, "metrics on "+cfg.MetricsAddr)
	}
	if n := len(cfg.Namespaces); n > 0 {
		parts = append(parts, plural(n, "namespace"))
	}
	if n := len(cfg.Rules); n > 0 {
		parts = append(parts, plural(n, "global rule"))
	}
	if cfg.PSP != nil {
		parts = append(parts, "psp gateway with "+plural(len(cfg.PSP.Config.Peers), "peer"))
	}
	fmt.Fprintf(c.App.Writer, "ok: %s: %s\n", file.path, strings.Join(parts, ", "))
	return nil
}

// plural is "1 rule" or "n rules".
func plural(n int, what string) string {
	if n == 1 {
		return "1 " + what
	}
	return fmt.Sprintf("%d %ss", n, what)
}
