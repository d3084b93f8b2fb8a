package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// words is what completions lists for line, the last word the one
// being typed, without the usages.
func words(line string) []string {
	args := strings.Split(line, " ")
	var out []string
	for _, c := range completions(newApp(), args) {
		word, _, _ := strings.Cut(c, "\t")
		out = append(out, word)
	}
	return out
}

func TestCompletions(t *testing.T) {
	for _, tc := range []struct {
		line string
		want []string // exactly these; nil for nothing, where the shell completes file names
	}{
		{"at", []string{"attach"}},
		{"st", []string{"status", "stats"}},
		{"rules ", []string{"add", "del", "list"}},
		{"ns l", []string{"list"}},
		{"completion ", []string{"bash", "zsh", "fish"}},
		{"attach --sa", []string{"--sample-rate"}},
		{"attach lo --sa", []string{"--sample-rate"}}, // flags follow IFACE
		{"attach lo --mode native --me", []string{"--metrics-addr"}},
		{"attach lo --log-l", []string{"--log-level"}},            // global flags follow the command
		{"--log-level debug --log", []string{"--log-format"}},     // given once
		{"--pin-root /p st", []string{"status", "stats"}},         // a global flag's value is no command
		{"attach --mode ", nil},                                   // a flag's value
		{"attach lo --config ", nil},                              // a file
		{"attach lo --app echo=tcp://:7 --app ", nil},             // a slice flag's value
		{"attach lo --app echo=tcp://:7 --ap", []string{"--app"}}, // slice flags are given again
		{"attach lo ", nil},                                       // one IFACE only
		{"capture -w", []string{"-w"}},
		{"--v", []string{"--version"}},
		{"attach -- --m", nil},
		{"man", nil}, // hidden
		{"attach lo", []string{"lo"}},
		{"config check ", nil}, // FILE
		{"run --de", []string{"--debug"}},
		{"run nginx --de", nil}, // the program's flags
		{"run --iface lo curl -", nil},
	} {
		if got := words(tc.line); !slices.Equal(got, tc.want) {
			t.Errorf("complete %q: got %q, want %q", tc.line, got, tc.want)
		}
	}
	// What a flag does goes with it, for zsh and fish to show.
	if got := completions(newApp(), []string{"attach", "--mo"}); !slices.Equal(got, []string{"--mode\t" + flagUsage(lookupFlag(attachCommand().Flags, "--mode"))}) {
		t.Errorf("complete attach --mo: got %q", got)
	}
}

// TestCompletionScripts: each shell's script is valid, and completes
// through the real binary what that shell's user types.
func TestCompletionScripts(t *testing.T) {
	dir := t.TempDir()
	// fish completes the command xdpstack, found in PATH.
	env := []string{"PATH=" + filepath.Dir(xdpstack) + ":" + os.Getenv("PATH")}
	cases := []struct{ line, want string }{
		{"xdpstack at", "attach"},
		{"xdpstack attach --sa", "--sample-rate"},
		{"xdpstack attach lo --sa", "--sample-rate"},
		{"xdpstack rules ad", "add"},
	}
	for _, tc := range []struct {
		shell, script string
		check         []string // the syntax check
		// complete prints what the shell completes for line, one word a line.
		complete func(line string) string
	}{
		{"bash", "xdpstack.bash", []string{"bash", "-n"}, func(line string) string {
			return bashComplete("", line)
		}},
		{"bash", "xdpstack.bash", []string{"bash", "-n"}, func(line string) string {
			// With the bash-completion package, as most hosts have it.
			return bashComplete("/usr/share/bash-completion/bash_completion", line)
		}},
		{"zsh", "_xdpstack", []string{"zsh", "-n"}, func(line string) string {
			// compsys is interactive: stand-ins print what _describe would offer.
			return `compdef() {}; _describe() { print -rl -- "${(@P)${@[-1]}%%:*}" }; _files() { print FILES }; source "$SCRIPT"; words=(` + line + `); CURRENT=${#words}; _xdpstack`
		}},
		{"fish", "xdpstack.fish", []string{"fish", "-n"}, func(line string) string {
			return `source "$SCRIPT"; complete -C '` + line + `' | string replace -r '\t.*' ''`
		}},
	} {
		name := tc.shell
		if strings.Contains(tc.complete(""), "bash_completion") {
			name += " with bash-completion"
		}
		t.Run(name, func(t *testing.T) {
			if _, err := exec.LookPath(tc.shell); err != nil {
				t.Skipf("%s is not installed (make deps installs it)", tc.shell)
			}
			if lib := "/usr/share/bash-completion/bash_completion"; strings.Contains(tc.complete(""), lib) {
				if _, err := os.Stat(lib); err != nil {
					t.Skipf("bash-completion is not installed (make deps installs it): %v", err)
				}
			}
			code, script, stderr := run(t, "completion", tc.shell)
			if code != 0 || stderr != "" {
				t.Fatalf("completion %s: exit %d, %q", tc.shell, code, stderr)
			}
			path := filepath.Join(dir, tc.script)
			if err := os.WriteFile(path, []byte(script), 0o644); err != nil {
				t.Fatal(err)
			}
			if out, err := exec.Command(tc.check[0], append(tc.check[1:], path)...).CombinedOutput(); err != nil {
				t.Fatalf("%s %s: %v\n%s", strings.Join(tc.check, " "), path, err, out)
			}
			for _, c := range cases {
				cmd := exec.Command(tc.shell, "-c", tc.complete(c.line))
				cmd.Env = append(os.Environ(), append(env, "SCRIPT="+path)...)
				out, err := cmd.CombinedOutput()
				if got := strings.Fields(string(out)); err != nil || !slices.Equal(got, []string{c.want}) {
					t.Errorf("%s completes %q: got %q, %v; want %q", tc.shell, c.line, out, err, c.want)
				}
			}
		})
	}
}

// bashComplete is a bash script that completes line as bash does when
// tab is pressed at its end: it sets COMP_WORDS, COMP_CWORD, COMP_LINE
// and COMP_POINT, calls the function, and prints COMPREPLY. lib, when
// not empty, is sourced first.
func bashComplete(lib, line string) string {
	script := `COMP_LINE='` + line + `'; COMP_POINT=${#COMP_LINE}; COMP_WORDS=(` + line + `); COMP_CWORD=$((${#COMP_WORDS[@]}-1)); `
	if lib != "" {
		script = `source ` + lib + `; ` + script
	}
	return script + `source "$SCRIPT"; _xdpstack; printf '%s\n' "${COMPREPLY[@]}"`
}
