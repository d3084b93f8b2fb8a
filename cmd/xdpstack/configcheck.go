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
			Description: "Checks every key and value that needs no interface; that the apps' addresses\n" +
				"belong to the interface is checked by attach.",
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
	fmt.Fprintf(c.App.Writer, "ok: %s: %s\n", file.path, strings.Join(parts, ", "))
	return nil
}
