package main

import (
	"fmt"
	"slices"
	"strings"

	"github.com/urfave/cli/v2"
)

// undefinedFlag is how the flag package says a flag is unknown; the
// name follows, with one dash taken off.
const undefinedFlag = "flag provided but not defined: -"

// usageError keeps a bad flag's error to one line instead of the help
// text that urfave/cli prints by default, and names the flag meant when
// an unknown one is a typo away from it.
func usageError(c *cli.Context, err error, _ bool) error {
	name, ok := strings.CutPrefix(err.Error(), undefinedFlag)
	if !ok {
		return fmt.Errorf("%w (see: %s --help)", err, c.Command.HelpName)
	}
	name = strings.TrimPrefix(name, "-")
	var names []string
	for _, f := range slices.Concat(c.Command.Flags, c.App.Flags) {
		names = append(names, f.Names()...)
	}
	return fmt.Errorf("%sunknown flag %s (%ssee: %s --help)", operation(c), dashed(name), didYouMean(closest(name, names), dashed), c.Command.HelpName)
}

// dashed writes a flag name as it is typed: -h, --mode.
func dashed(name string) string {
	if len(name) == 1 {
		return "-" + name
	}
	return "--" + name
}

// unknownCommand is the error for a command or subcommand that c does
// not have, naming the one meant when name is a typo away from it.
func unknownCommand(c *cli.Context, name string) error {
	var names []string
	for _, cmd := range c.Command.Subcommands {
		if !cmd.Hidden {
			names = append(names, cmd.Names()...)
		}
	}
	return fmt.Errorf("%sunknown command %q (%ssee: %s --help)", operation(c), name, didYouMean(closest(name, names), nil), c.Command.HelpName)
}

// operation starts an error of command c with its name: "rules add: ",
// and nothing for xdpstack itself, which main names.
func operation(c *cli.Context) string {
	if c.Command.HelpName == c.App.Name {
		return ""
	}
	return commandName(c) + ": "
}

// didYouMean is the start of a hint naming suggestion, written by
// write; nothing when there is none.
func didYouMean(suggestion string, write func(string) string) string {
	if suggestion == "" {
		return ""
	}
	if write != nil {
		suggestion = write(suggestion)
	}
	return "did you mean " + suggestion + "? "
}

// showSubcommands is the action of a command that only holds
// subcommands: its help, or an error for a subcommand it lacks.
func showSubcommands(c *cli.Context) error {
	if c.NArg() == 0 {
		return cli.ShowSubcommandHelp(c)
	}
	return unknownCommand(c, c.Args().First())
}

// showApp is xdpstack's action when no command is given or found.
func showApp(c *cli.Context) error {
	if c.NArg() == 0 {
		return cli.ShowAppHelp(c)
	}
	return unknownCommand(c, c.Args().First())
}

// closest is the name a typo of given most likely meant: the one fewest
// edits away (a swap of neighbours counting as one), if at most a third
// of given (one letter of a short word, none of a single letter) is
// wrong; else "", as given is then another word.
func closest(given string, names []string) string {
	best, bestDist := "", max(len(given)/3, min(len(given)-1, 1))+1
	for _, n := range names {
		if d := editDistance(given, n); d < bestDist {
			best, bestDist = n, d
		}
	}
	return best
}

// editDistance counts the insertions, deletions, substitutions and
// swaps of neighbours that turn a into b (optimal string alignment).
func editDistance(a, b string) int {
	rows := make([][]int, len(a)+1)
	for i := range rows {
		rows[i] = make([]int, len(b)+1)
		rows[i][0] = i
	}
	for j := range rows[0] {
		rows[0][j] = j
	}
	for i := 1; i <= len(a); i++ {
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			rows[i][j] = min(rows[i-1][j]+1, rows[i][j-1]+1, rows[i-1][j-1]+cost)
			if i > 1 && j > 1 && a[i-1] == b[j-2] && a[i-2] == b[j-1] {
				rows[i][j] = min(rows[i][j], rows[i-2][j-2]+1)
			}
		}
	}
	return rows[len(a)][len(b)]
}
