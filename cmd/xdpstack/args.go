package main

import (
	"fmt"
	"slices"
	"strings"

	"github.com/urfave/cli/v2"
)

// flagsFirst moves a command's flags ahead of its arguments, because
// urfave/cli v2 stops reading flags at the first argument and operators
// type `xdpstack attach eth0 --mode native`. Global flags given after the
// command (`attach eth0 --log-level debug`) go before it, where urfave/cli
// reads them. Arguments after "--" stay as they are, and so do those
// from the program of a command that runs one (`run nginx -g ...`).
//
// It refuses what urfave/cli would misread: a flag that wants a value
// with none after it (`attach eth0 --mode` would take eth0 as the mode
// and then miss IFACE), and a flag given twice that keeps one value
// (urfave/cli keeps the last one, unsaid).
func flagsFirst(app *cli.App, args []string) ([]string, error) {
	out := []string{args[0]}
	commands, flags := app.Commands, app.Flags
	var current *cli.Command
	var global []string
	seen := map[cli.Flag]bool{}
	help := app.Name // the command path, for hints
	// take moves the flag at args[i], with its value, to dst.
	take := func(dst *[]string, flags []cli.Flag, i int) (int, error) {
		f := lookupFlag(flags, args[i])
		if f != nil && !isSlice(f) {
			if seen[f] {
				return i, fmt.Errorf("--%s given twice (see: %s --help)", f.Names()[0], help)
			}
			seen[f] = true
		}
		if o, ok := optional(f); ok && !strings.Contains(args[i], "=") && i+1 < len(args) && o.Accepts(args[i+1]) {
			*dst = append(*dst, args[i]+"="+args[i+1])
			return i + 1, nil
		}
		*dst = append(*dst, args[i])
		if !takesValue(f, args[i]) {
			return i, nil
		}
		if i+1 == len(args) || lookupFlag(flags, args[i+1]) != nil || lookupFlag(app.Flags, args[i+1]) != nil {
			return i, fmt.Errorf("--%s needs a value (see: %s --help)", f.Names()[0], help)
		}
		*dst = append(*dst, args[i+1])
		return i + 1, nil
	}
	i := 1
	// Walk global flags and the command path to the command that runs.
	for i < len(args) {
		a := args[i]
		if strings.HasPrefix(a, "-") && a != "--" {
			var err error
			if i, err = take(&out, flags, i); err != nil {
				return nil, err
			}
			i++
			continue
		}
		cmd := findCommand(commands, a)
		if cmd == nil {
			break
		}
		out = append(out, a)
		commands, flags, current = cmd.Subcommands, cmd.Flags, cmd
		help += " " + cmd.Name
		i++
	}
	var positional []string
	for ; i < len(args); i++ {
		a := args[i]
		var err error
		switch {
		case a == "--":
			positional = append(positional, args[i:]...)
			i = len(args)
		case runsProgram(current) && !strings.HasPrefix(a, "-"):
			positional = append(append(positional, "--"), args[i:]...)
			i = len(args)
		case strings.HasPrefix(a, "-") && a != "-" && lookupFlag(flags, a) == nil && lookupFlag(app.Flags, a) != nil:
			i, err = take(&global, app.Flags, i)
		case strings.HasPrefix(a, "-") && a != "-":
			i, err = take(&out, flags, i)
		default:
			positional = append(positional, a)
		}
		if err != nil {
			return nil, err
		}
	}
	out = append(out, positional...)
	return slices.Insert(out, 1, global...), nil
}

// runsProgram tells whether cmd's arguments are a program and its
// arguments, which are the program's to read.
func runsProgram(cmd *cli.Command) bool { return cmd != nil && cmd.Name == "run" }

// lookupFlag is the flag of flags that arg (-name, --name or
// --name=value) names; nil when none.
func lookupFlag(flags []cli.Flag, arg string) cli.Flag {
	if !strings.HasPrefix(arg, "-") {
		return nil
	}
	name, _, _ := strings.Cut(strings.TrimLeft(arg, "-"), "=")
	for _, f := range flags {
		if slices.Contains(f.Names(), name) {
			return f
		}
	}
	return nil
}

func findCommand(commands []*cli.Command, name string) *cli.Command {
	for _, c := range commands {
		if c.HasName(name) {
			return c
		}
	}
	return nil
}

// isSlice tells whether f may be given more than once.
func isSlice(f cli.Flag) bool {
	s, ok := f.(cli.DocGenerationSliceFlag)
	return ok && s.IsSliceFlag()
}

// optionalValue is the value of a flag that may be given without one
// (--verbose, or --verbose 2): as the flag package's boolean values, it
// is set to "true" when given alone.
type optionalValue interface {
	cli.Generic
	IsBoolFlag() bool
	// Accepts tells whether arg, after the flag, is its value.
	Accepts(arg string) bool
}

func optional(f cli.Flag) (optionalValue, bool) {
	g, ok := f.(*cli.GenericFlag)
	if !ok {
		return nil, false
	}
	o, ok := g.Value.(optionalValue)
	return o, ok
}

// takesValue tells whether arg, naming flag f, reads the next argument
// as its value.
func takesValue(f cli.Flag, arg string) bool {
	if _, ok := optional(f); f == nil || ok || strings.Contains(arg, "=") {
		return false
	}
	_, isBool := f.(*cli.BoolFlag)
	return !isBool
}
