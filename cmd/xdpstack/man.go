package main

import (
	"cmp"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/xdpstack/xdpstack/internal/buildinfo"
)

// manCommand writes the man pages from the command definitions, so
// that they say what --help says. It is a hidden command rather than a
// program of tools/ because the definitions live in this package main.
func manCommand() *cli.Command {
	return &cli.Command{
		Name:      "man",
		Hidden:    true,
		Usage:     "write the man pages to DIR: xdpstack.1 and xdpstack-COMMAND.1 for each command (make man)",
		ArgsUsage: "DIR",
		Action:    runMan,
	}
}

func runMan(c *cli.Context) error {
	if c.NArg() != 1 {
		return fmt.Errorf("man: want one DIR argument, got %d (see: %s --help)", c.NArg(), c.Command.HelpName)
	}
	dir := c.Args().First()
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("man: %w", err)
	}
	// A fresh app: running this one added urfave/cli's help command.
	for name, page := range manPages(newApp()) {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(page), 0o644); err != nil {
			return fmt.Errorf("man: %w", err)
		}
	}
	return nil
}

// manPages are app's man pages in section 1 by file name: one for
// xdpstack and its global options, one for each command with its
// subcommands.
func manPages(app *cli.App) map[string]string {
	bi := buildinfo.Read()
	// An unstamped build has no date of its own: the pages get today's.
	date := time.Now().UTC().Format(time.DateOnly)
	if bi.BuildDate != "unknown" {
		date, _, _ = strings.Cut(bi.BuildDate, "T")
	}
	header := func(w *roff, name string) {
		fmt.Fprintf(w, ".TH \"%s\" 1 %s \"%s\" \"User Commands\"\n", escape(strings.ToUpper(name)), date, escape(app.Name+" "+bi.Version))
	}
	pages := map[string]string{}
	var seeAlso []string
	var main roff
	header(&main, app.Name)
	main.section("NAME")
	main.text(app.Name + " - " + app.Usage)
	main.section("SYNOPSIS")
	main.synopsis(app.Name, "[global options] command [command options] [arguments]")
	main.section("COMMANDS")
	for _, cmd := range app.VisibleCommands() {
		page := app.Name + "-" + cmd.Name
		seeAlso = append(seeAlso, page)
		main.macro("TP")
		main.macro("BR", page, "(1)")
		main.text(cmd.Usage)

		var w roff
		header(&w, page)
		w.section("NAME")
		w.text(page + " - " + cmd.Usage)
		w.section("SYNOPSIS")
		w.command(app.Name, cmd)
		w.describe(app.Name, cmd)
		w.section("SEE ALSO")
		w.macro("BR", app.Name, "(1)")
		pages[page+".1"] = w.String()
	}
	main.section("GLOBAL OPTIONS")
	main.flags(app.Flags)
	main.examples("")
	main.section("SEE ALSO")
	for i, page := range seeAlso {
		sep := ","
		if i == len(seeAlso)-1 {
			sep = ""
		}
		main.macro("BR", page, "(1)"+sep)
	}
	pages[app.Name+".1"] = main.String()
	return pages
}

// roff writes man(7) source.
type roff struct{ strings.Builder }

// escape makes s text that roff prints as it is: backslashes escaped,
// dashes kept minus signs so that flags copied from the page work.
func escape(s string) string {
	return strings.NewReplacer(`\`, `\e`, "-", `\-`).Replace(s)
}

// macro writes a request line with its arguments quoted.
func (w *roff) macro(name string, args ...string) {
	w.WriteString("." + name)
	for _, a := range args {
		w.WriteString(` "` + strings.ReplaceAll(escape(a), `"`, `\(dq`) + `"`)
	}
	w.WriteString("\n")
}

// text writes s as filled text, a blank line starting a paragraph.
func (w *roff) text(s string) {
	for _, line := range strings.Split(strings.TrimSpace(s), "\n") {
		line = strings.TrimSpace(line)
		switch {
		case line == "":
			w.macro("PP")
			continue
		case strings.HasPrefix(line, ".") || strings.HasPrefix(line, "'"):
			line = `\&` + line // not a request
		}
		w.WriteString(escape(line) + "\n")
	}
}

func (w *roff) section(name string) { w.macro("SH", name) }

// synopsis writes a command line: the command in bold, the rest as it is.
func (w *roff) synopsis(command, rest string) {
	w.WriteString(`\fB` + escape(command) + `\fR ` + escape(rest) + "\n")
}

// command writes the synopsis of cmd, a command of path.
func (w *roff) command(path string, cmd *cli.Command) {
	rest := "[options]"
	if len(cmd.Subcommands) > 0 {
		rest = "command [options]"
	}
	if cmd.ArgsUsage != "" {
		rest += " " + cmd.ArgsUsage
	}
	w.synopsis(path+" "+cmd.Name, rest)
}

// describe writes the description, options and examples of cmd, a
// command of path, then those of its subcommands.
func (w *roff) describe(path string, cmd *cli.Command) {
	path += " " + cmd.Name
	w.section("DESCRIPTION")
	w.text(cmp.Or(cmd.Description, cmd.Usage+"."))
	if len(cmd.VisibleFlags()) > 0 {
		w.section("OPTIONS")
		w.flags(cmd.VisibleFlags())
	}
	if subs := cmd.VisibleCommands(); len(subs) > 0 {
		w.section("COMMANDS")
		for _, sub := range subs {
			w.macro("SS", path+" "+sub.Name)
			w.command(path, sub)
			w.macro("PP")
			w.text(sub.Usage + ".")
			if sub.Description != "" {
				w.macro("PP")
				w.text(sub.Description)
			}
			w.flags(sub.VisibleFlags())
			w.exampleList(strings.TrimPrefix(path+" "+sub.Name, "xdpstack "), false)
		}
	}
	w.examples(strings.TrimPrefix(path, "xdpstack "))
}

// flags writes a tagged paragraph per flag: its names, its value's
// placeholder, what it does, its default and environment variables.
func (w *roff) flags(flags []cli.Flag) {
	for _, f := range flags {
		d, ok := f.(cli.DocGenerationFlag)
		if !ok {
			continue
		}
		usage := d.GetUsage()
		placeholder := "value"
		if _, quoted, ok := strings.Cut(usage, "`"); ok {
			placeholder, _, _ = strings.Cut(quoted, "`")
		}
		var names []string
		for _, n := range f.Names() {
			name := `\fB` + escape(dashed(n)) + `\fR`
			if d.TakesValue() {
				name += ` \fI` + escape(placeholder) + `\fR`
			}
			names = append(names, name)
		}
		w.macro("TP")
		w.WriteString(strings.Join(names, ", ") + "\n")
		usage = strings.ReplaceAll(usage, "`", "")
		if def := d.GetDefaultText(); d.TakesValue() && def != "" && def != `""` {
			usage += " (default: " + def + ")"
		}
		if env := d.GetEnvVars(); len(env) > 0 {
			usage += " [$" + strings.Join(env, ", $") + "]"
		}
		w.text(usage)
	}
}

// examples writes an EXAMPLES section with those of the command at path.
func (w *roff) examples(path string) {
	if len(examples[path]) > 0 {
		w.section("EXAMPLES")
		w.exampleList(path, true)
	}
}

// exampleList writes the examples of the command at path: what each
// does, then its command line as a display; the first in the paragraph
// a heading started.
func (w *roff) exampleList(path string, afterHeading bool) {
	for i, ex := range examples[path] {
		if i > 0 || !afterHeading {
			w.macro("PP")
		}
		w.text(strings.ToUpper(ex.say[:1]) + ex.say[1:] + ":")
		w.macro("RS", "4")
		w.macro("EX")
		w.WriteString(escape(ex.run) + "\n")
		w.macro("EE")
		w.macro("RE")
	}
}
