package main

import (
	"slices"
	"strings"
	"testing"

	"github.com/urfave/cli/v2"
)

// commandPaths lists the path of every command a user may run ("rules
// add"), walking the whole tree; urfave/cli's help and the hidden man
// command left out.
func commandPaths(cmds []*cli.Command, path string) []string {
	var out []string
	for _, c := range cmds {
		if c.Hidden || c.Name == "help" {
			continue
		}
		p := strings.TrimSpace(path + " " + c.Name)
		out = append(out, p)
		out = append(out, commandPaths(c.Subcommands, p)...)
	}
	return out
}

// TestEveryCommandHasExamples: every command and subcommand has an
// example, every example runs the command it is filed under with flags
// that command takes, and no examples are filed under a command gone.
func TestEveryCommandHasExamples(t *testing.T) {
	app := newApp()
	paths := append([]string{""}, commandPaths(app.Commands, "")...)
	for _, path := range paths {
		if len(examples[path]) == 0 {
			t.Errorf("xdpstack %s has no example (add one to examples in examples.go)", path)
		}
		for _, ex := range examples[path] {
			// The words up to a pipe, a redirection or the program of
			// xdpstack run are xdpstack's.
			words := strings.Fields(ex.run)
			if i := slices.IndexFunc(words, func(w string) bool { return w == "|" || w == ">" || w == "--" }); i >= 0 {
				words = words[:i]
			}
			// Variables set for the command come first.
			for len(words) > 1 && strings.Contains(words[0], "=") {
				words = words[1:]
			}
			// The command it runs: path, or a subcommand of it.
			cmd, ran := &cli.Command{Subcommands: app.Commands}, ""
			for _, w := range words[1:] {
				c := findCommand(cmd.Subcommands, w)
				if c == nil {
					break
				}
				cmd, ran = c, strings.TrimSpace(ran+" "+w)
			}
			if words[0] != "xdpstack" || !strings.HasPrefix(ran+" ", strings.TrimLeft(path+" ", " ")) || ex.say == "" {
				t.Errorf("example %q of xdpstack %s: want a line that runs it, said what it does", ex.run, path)
				continue
			}
			for _, w := range words {
				if strings.HasPrefix(w, "-") && w != "-" && lookupFlag(cmd.Flags, w) == nil && lookupFlag(app.Flags, w) == nil {
					t.Errorf("example %q of xdpstack %s: no flag %s", ex.run, path, w)
				}
			}
			if _, err := flagsFirst(app, words); err != nil {
				t.Errorf("example %q of xdpstack %s: %v", ex.run, path, err)
			}
		}
	}
	for path := range examples {
		if !slices.Contains(paths, path) {
			t.Errorf("examples for xdpstack %s, which has no such command", path)
		}
	}
}

// TestHelpShowsExamples: --help of every command ends with its
// examples.
func TestHelpShowsExamples(t *testing.T) {
	paths := append([]string{""}, commandPaths(newApp().Commands, "")...)
	for _, path := range paths {
		t.Run("xdpstack "+path, func(t *testing.T) {
			code, stdout, stderr := run(t, append(strings.Fields(path), "--help")...)
			_, examplesText, found := strings.Cut(stdout, "\nEXAMPLES:\n")
			if code != 0 || stderr != "" || !found {
				t.Fatalf("exit %d, stderr %q, stdout %q; want help with EXAMPLES", code, stderr, stdout)
			}
			for _, ex := range examples[path] {
				if !strings.Contains(examplesText, "   # "+ex.say+"\n   "+ex.run+"\n") {
					t.Errorf("help's examples %q lack %q", examplesText, ex.run)
				}
			}
		})
	}
}

// TestFlagPlaceholders: a `quoted` word in a flag's usage is the name
// --help gives its value (--config FILE), so it must read as one.
func TestFlagPlaceholders(t *testing.T) {
	app := newApp()
	check := func(path string, flags []cli.Flag) {
		for _, f := range flags {
			d, ok := f.(cli.DocGenerationFlag)
			if !ok {
				continue
			}
			if _, quoted, ok := strings.Cut(d.GetUsage(), "`"); ok {
				if name, _, _ := strings.Cut(quoted, "`"); strings.ContainsAny(name, " \t") {
					t.Errorf("xdpstack %s --%s: placeholder %q (quote only the value's name)", path, f.Names()[0], name)
				}
			}
		}
	}
	check("", app.Flags)
	var walk func(path string, cmds []*cli.Command)
	walk = func(path string, cmds []*cli.Command) {
		for _, c := range cmds {
			p := strings.TrimSpace(path + " " + c.Name)
			check(p, c.Flags)
			walk(p, c.Subcommands)
		}
	}
	walk("", app.Commands)
}
