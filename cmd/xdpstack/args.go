package main

import (
	"slices"
	"strings"

	"github.com/urfave/cli/v2"
)

// flagsFirst moves a command's flags ahead of its arguments, because
// urfave/cli v2 stops reading flags at the first argument and operators
// type `xdpstack attach eth0 --mode native`. Global flags given after the
// command (`attach eth0 --log-level debug`) go before it, where urfave/cli
// reads them. Arguments after "--" stay as they are.
func flagsFirst(app *cli.App, args []string) []string {
	out := []string{args[0]}
	commands, flags := app.Commands, app.Flags
	var global []string
	// take moves the flag at args[i], with its value, to dst.
	take := func(dst *[]string, flags []cli.Flag, i int) int {
		*dst = append(*dst, args[i])
		if takesValue(flags, args[i]) && i+1 < len(args) {
			*dst = append(*dst, args[i+1])
			i++
		}
		return i
	}
	i := 1
	// Walk global flags and the command path to the command that runs.
	for i < len(args) {
		a := args[i]
		if strings.HasPrefix(a, "-") {
			i = take(&out, flags, i) + 1
			continue
		}
		cmd := findCommand(commands, a)
		if cmd == nil {
			break
		}
		out = append(out, a)
		commands, flags = cmd.Subcommands, cmd.Flags
		i++
	}
	var positional []string
	for ; i < len(args); i++ {
		a := args[i]
		switch {
		case a == "--":
			positional = append(positional, args[i:]...)
			i = len(args)
		case strings.HasPrefix(a, "-") && a != "-" && !names(flags, a) && names(app.Flags, a):
			i = take(&global, app.Flags, i)
		case strings.HasPrefix(a, "-") && a != "-":
			i = take(&out, flags, i)
		default:
			positional = append(positional, a)
		}
	}
	out = append(out, positional...)
	return slices.Insert(out, 1, global...)
}

// names tells whether arg names one of flags.
func names(flags []cli.Flag, arg string) bool {
	name, _, _ := strings.Cut(strings.TrimLeft(arg, "-"), "=")
	for _, f := range flags {
		if slices.Contains(f.Names(), name) {
			return true
		}
	}
	return false
}

func findCommand(commands []*cli.Command, name string) *cli.Command {
	for _, c := range commands {
		if c.HasName(name) {
			return c
		}
	}
	return nil
}

// takesValue tells whether arg names a flag that reads the next
// argument as its value.
func takesValue(flags []cli.Flag, arg string) bool {
	name := strings.TrimLeft(arg, "-")
	if strings.Contains(name, "=") {
		return false
	}
	for _, f := range flags {
		for _, n := range f.Names() {
			if n != name {
				continue
			}
			_, isBool := f.(*cli.BoolFlag)
			return !isBool
		}
	}
	return false
}
