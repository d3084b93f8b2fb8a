package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// TestManPages: the hidden man command writes a well-formed page for
// xdpstack and one per command, which between them name every command
// and subcommand and show its examples.
func TestManPages(t *testing.T) {
	if _, err := exec.LookPath("groff"); err != nil {
		t.Skip("groff is not installed (make deps installs groff-base)")
	}
	dir := t.TempDir()
	if code, stdout, stderr := run(t, "man", dir); code != 0 || stdout != "" || stderr != "" {
		t.Fatalf("man %s: exit %d, %q, %q", dir, code, stdout, stderr)
	}
	pages, err := filepath.Glob(filepath.Join(dir, "*.1"))
	if err != nil {
		t.Fatal(err)
	}
	rendered := map[string]string{}
	for _, page := range pages {
		// -ww: every warning; -z: only check.
		if out, err := exec.Command("groff", "-man", "-Tutf8", "-ww", "-z", page).CombinedOutput(); err != nil || len(out) > 0 {
			t.Errorf("groff %s: %v: %s", page, err, out)
		}
		if _, err := exec.LookPath("mandoc"); err == nil {
			if out, err := exec.Command("mandoc", "-T", "lint", "-W", "warning", page).CombinedOutput(); err != nil || len(out) > 0 {
				t.Errorf("mandoc -T lint %s: %v: %s", page, err, out)
			}
		}
		// As man shows it, wide enough that no command line breaks.
		cmd := exec.Command("man", "-l", page)
		cmd.Env = append(os.Environ(), "MANWIDTH=250")
		out, err := cmd.Output()
		if err != nil {
			t.Fatalf("man -l %s: %v", page, err)
		}
		rendered[filepath.Base(page)] = string(out)
	}
	app := newApp()
	for _, cmd := range app.Commands {
		if cmd.Hidden {
			if _, ok := rendered["xdpstack-"+cmd.Name+".1"]; ok {
				t.Errorf("hidden command %s has a page", cmd.Name)
			}
			continue
		}
		page := "xdpstack-" + cmd.Name + ".1"
		if !strings.Contains(rendered["xdpstack.1"], "xdpstack-"+cmd.Name+"(1)") {
			t.Errorf("xdpstack.1 does not name %s", page)
		}
		text, ok := rendered[page]
		if !ok {
			t.Errorf("no page %s", page)
			continue
		}
		for _, path := range commandPaths(cmd.Subcommands, cmd.Name) {
			if !strings.Contains(text, "xdpstack "+path+" ") {
				t.Errorf("%s does not name xdpstack %s", page, path)
			}
		}
		for _, path := range append([]string{cmd.Name}, commandPaths(cmd.Subcommands, cmd.Name)...) {
			for _, ex := range examples[path] {
				if !strings.Contains(text, ex.run+"\n") {
					t.Errorf("%s lacks the example %q", page, ex.run)
				}
			}
		}
		for _, f := range cmd.Flags {
			if !strings.Contains(text, dashed(f.Names()[0])) {
				t.Errorf("%s lacks the flag %s", page, dashed(f.Names()[0]))
			}
		}
	}
	for _, f := range app.Flags {
		if !strings.Contains(rendered["xdpstack.1"], dashed(f.Names()[0])) {
			t.Errorf("xdpstack.1 lacks the global flag %s", dashed(f.Names()[0]))
		}
	}
}
