package main

import (
	_ "embed"
	"fmt"
	"net"
	"strings"

	"github.com/urfave/cli/v2"
)

// completeFlag ends the words a completion script passes to xdpstack,
// which then prints the words that may take the last one's place, one
// a line with a tab and what each does. The name is urfave/cli's.
const completeFlag = "--generate-bash-completion"

var (
	//go:embed completions/xdpstack.bash
	bashCompletion string
	//go:embed completions/_xdpstack
	zshCompletion string
	//go:embed completions/xdpstack.fish
	fishCompletion string
)

func completionCommand() *cli.Command {
	shell := func(name, script, install string) *cli.Command {
		return &cli.Command{
			Name:   name,
			Usage:  "print the " + name + " completion script; install it as " + install,
			Before: noArgs,
			Action: func(c *cli.Context) error {
				_, err := fmt.Fprint(c.App.Writer, script)
				return err
			},
		}
	}
	return &cli.Command{
		Name:  "completion",
		Usage: "print a shell completion script for commands, subcommands, flags and interface names",
		Description: "The scripts ask xdpstack what may come next, so they follow the binary they run:\n" +
			"flags may follow IFACE, and global flags the command, as on the command line.",
		Subcommands: []*cli.Command{
			shell("bash", bashCompletion, "/usr/share/bash-completion/completions/xdpstack"),
			shell("zsh", zshCompletion, "_xdpstack in a folder of $fpath"),
			shell("fish", fishCompletion, "/usr/share/fish/vendor_completions.d/xdpstack.fish"),
		},
	}
}

// completions lists the words that may stand in place of the last of
// words (the one being typed: maybe empty, or left out), read as flagsFirst reads
// them: a command's flags may follow its arguments, and the global
// flags may follow the command. Nothing where a flag's value or a file
// goes: the shell completes file names there.
func completions(app *cli.App, words []string) []string {
	if len(words) == 0 {
		words = []string{""}
	}
	cur := words[len(words)-1]
	commands, flags := app.Commands, app.Flags
	var cmd *cli.Command
	seen := map[cli.Flag]bool{}
	positional := 0
	for i := 0; i < len(words)-1; i++ {
		w := words[i]
		switch {
		case w == "--", runsProgram(cmd) && !strings.HasPrefix(w, "-"):
			return nil // the program's words: the shell completes file names
		case strings.HasPrefix(w, "-") && w != "-":
			f := lookupFlag(flags, w)
			if f == nil {
				f = lookupFlag(app.Flags, w)
			}
			seen[f] = true
			if f != nil && takesValue(f, w) {
				if i++; i == len(words)-1 {
					return nil // cur is its value
				}
			}
		case positional == 0 && findCommand(commands, w) != nil:
			cmd = findCommand(commands, w)
			commands, flags = cmd.Subcommands, cmd.Flags
		default:
			positional++
		}
	}
	var out []string
	add := func(word, usage string) {
		if strings.HasPrefix(word, cur) {
			out = append(out, word+"\t"+usage)
		}
	}
	switch {
	case strings.HasPrefix(cur, "-"):
		all := []cli.Flag{cli.HelpFlag}
		if cmd == nil {
			all = append(all, cli.VersionFlag)
		} else {
			all = append(all, flags...)
		}
		for _, f := range append(all, app.Flags...) {
			if v, ok := f.(cli.VisibleFlag); (ok && !v.IsVisible()) || (seen[f] && !isSlice(f)) {
				continue
			}
			for _, name := range f.Names() {
				add(dashed(name), flagUsage(f))
			}
		}
	case positional == 0 && len(commands) > 0:
		for _, c := range commands {
			if !c.Hidden {
				add(c.Name, c.Usage)
			}
		}
	case positional == 0 && cmd != nil && strings.Contains(cmd.ArgsUsage, "IFACE"):
		ifaces, _ := net.Interfaces()
		for _, ifc := range ifaces {
			add(ifc.Name, "")
		}
	}
	return out
}

// flagUsage is f's usage with urfave/cli's `PLACEHOLDER` quotes taken
// off.
func flagUsage(f cli.Flag) string {
	d, ok := f.(cli.DocGenerationFlag)
	if !ok {
		return ""
	}
	return strings.ReplaceAll(d.GetUsage(), "`", "")
}
