package main

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"

	"github.com/urfave/cli/v2"

	"github.com/xdpstack/xdpstack/daemon"
	"github.com/xdpstack/xdpstack/daemon/control"
	"github.com/xdpstack/xdpstack/maps"
	"github.com/xdpstack/xdpstack/userstack/appns"
	"github.com/xdpstack/xdpstack/userstack/preload"
)

// libName is the LD_PRELOAD library that `make build` puts beside the
// binary.
const libName = "libxdpstack.so"

func runCommand() *cli.Command {
	return &cli.Command{
		Name:      "run",
		Usage:     "run an unmodified program with its TCP and UDP sockets on an attached interface's userstack",
		ArgsUsage: "[--] PROGRAM [ARGS...]",
		Description: "Runs PROGRAM (found in PATH) in place of this command, with libxdpstack.so preloaded\n" +
			"(LD_PRELOAD) and its settings in XDPSTACK_* variables, so that the program's sockets that\n" +
			"bind to, listen on or connect to addresses the userstack of IFACE serves become\n" +
			"sessions of it: in the program's namespace, under its rules, listed by\n" +
			"`xdpstack sessions IFACE` as comm[pid]. Every other socket stays the kernel's. A running\n" +
			"`xdpstack attach IFACE` is all it needs. The library is found beside this binary, then\n" +
			"in ../lib/xdpstack/, or at --lib.",
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "iface", Usage: "the attached interface (default: the only one with a daemon in the run dir)"},
			&cli.StringFlag{Name: "namespace", Usage: "attach the program to application namespace `NS` (default: the default one)"},
			&cli.StringFlag{Name: "secret", EnvVars: []string{"XDPSTACK_SECRET"}, Usage: "the namespace's secret (or in $XDPSTACK_SECRET, kept off the command line)"},
			&cli.StringFlag{Name: "scope", Value: "global", Usage: "global, local (only the namespace's other applications, joined in memory) or both"},
			&cli.StringFlag{Name: "procname", Usage: "only the processes of these `NAMES` (comma-separated, as in /proc/PID/comm) use the userstack; their children of other names stay the kernel's"},
			&cli.BoolFlag{Name: "debug", Usage: "the library says on stderr which side took each socket, and why"},
			&cli.StringFlag{Name: "wildcard", Value: "userstack", Usage: "who takes binds to 0.0.0.0 and ::: userstack or kernel"},
			&cli.StringFlag{Name: "lib", Usage: "the LD_PRELOAD library's `PATH`"},
		},
		Action: runRun,
	}
}

// runSettings are what `xdpstack run` hands the library.
type runSettings struct {
	lib, socket, iface string
	namespace, secret  string
	scope, wildcard    string
	procNames          []string
	debug              bool
}

// readRunSettings checks the flags, before anything else is read.
func readRunSettings(c *cli.Context) (runSettings, error) {
	s := runSettings{
		iface: c.String("iface"), namespace: c.String("namespace"), secret: c.String("secret"),
		scope: c.String("scope"), wildcard: c.String("wildcard"), debug: c.Bool("debug"),
	}
	if c.NArg() == 0 {
		return s, errors.New("run: missing PROGRAM (see: xdpstack run --help)")
	}
	if s.iface != "" {
		if err := maps.CheckIfaceName(s.iface); err != nil {
			return s, fmt.Errorf("run: --iface: %w", err)
		}
	}
	if s.namespace != "" {
		if err := appns.CheckName(s.namespace); err != nil {
			return s, fmt.Errorf("run: --%w", err)
		}
	} else if s.secret != "" {
		return s, errors.New("run: --secret without --namespace (the default namespace has no secret)")
	}
	if _, err := appns.ParseScope(s.scope); err != nil {
		return s, fmt.Errorf("run: --%w", err)
	}
	if s.wildcard != "userstack" && s.wildcard != "kernel" {
		return s, fmt.Errorf("run: --wildcard %q: want userstack or kernel", s.wildcard)
	}
	if names := c.String("procname"); names != "" {
		for _, n := range strings.Split(names, ",") {
			// comm is at most 15 bytes; a longer name never matches.
			if n == "" || len(n) > 15 || strings.ContainsAny(n, "/\x00") {
				return s, fmt.Errorf("run: --procname %q: want comma-separated process names of 1 to 15 bytes, as in /proc/PID/comm", names)
			}
			s.procNames = append(s.procNames, n)
		}
	}
	return s, nil
}

func runRun(c *cli.Context) error {
	s, err := readRunSettings(c)
	if err != nil {
		return err
	}
	dir := c.String("run-dir")
	if s.iface == "" {
		if s.iface, err = attachedIface(dir); err != nil {
			return err
		}
	}
	if _, err := checkDaemon(c, s.iface); err != nil {
		return fmt.Errorf("run: %w", err)
	}
	s.socket = preload.SocketPath(dir, s.iface)
	if _, err := os.Stat(s.socket); err != nil {
		return fmt.Errorf("run: the daemon on %s serves no preloaded programs (no %s; restart it with this build)", s.iface, s.socket)
	}
	exe, err := os.Executable()
	if err != nil {
		return fmt.Errorf("run: find this binary: %w", err)
	}
	if s.lib, err = findLib(c.String("lib"), exe); err != nil {
		return err
	}
	args := c.Args().Slice()
	path, err := exec.LookPath(args[0])
	if err != nil {
		return fmt.Errorf("run: %s: %w", args[0], errors.Unwrap(err))
	}
	if err := execProgram(path, args, preloadEnv(os.Environ(), s)); err != nil {
		return fmt.Errorf("run: exec %s: %w", path, err)
	}
	return nil
}

// checkDaemon asks the daemon on iface for its status; tests replace
// it.
var checkDaemon = func(c *cli.Context, iface string) (daemon.Status, error) {
	return daemon.StatusEndpoint.Call(c.Context, control.NewClient(c.String("run-dir"), iface), control.None{})
}

// execProgram replaces this process with the program, which keeps its
// pid: the daemon names its app by it. Tests replace it.
var execProgram = syscall.Exec

// attachedIface is the only interface with a control socket in dir.
func attachedIface(dir string) (string, error) {
	paths, err := filepath.Glob(filepath.Join(dir, "*.sock"))
	if err != nil {
		return "", fmt.Errorf("run: %w", err)
	}
	var ifaces []string
	for _, p := range paths {
		ifaces = append(ifaces, strings.TrimSuffix(filepath.Base(p), ".sock"))
	}
	switch len(ifaces) {
	case 0:
		return "", fmt.Errorf("run: no daemon attached (start `xdpstack attach IFACE` first; none has a control socket in %s)", dir)
	case 1:
		return ifaces[0], nil
	}
	return "", fmt.Errorf("run: daemons attached to %s: choose one with --iface", strings.Join(ifaces, ", "))
}

// findLib is the library at lib, else beside the binary exe, else in
// ../lib/xdpstack/ from exe's folder, as `make install` places it.
func findLib(lib, exe string) (string, error) {
	tries := []string{lib}
	if lib == "" {
		if real, err := filepath.EvalSymlinks(exe); err == nil {
			exe = real
		}
		dir := filepath.Dir(exe)
		tries = []string{filepath.Join(dir, libName), filepath.Join(dir, "..", "lib", "xdpstack", libName)}
	}
	for _, p := range tries {
		if fi, err := os.Stat(p); err == nil && fi.Mode().IsRegular() {
			return filepath.Abs(p)
		}
	}
	hint := "build it with make build, or give --lib"
	if lib != "" {
		hint = "check --lib"
	}
	return "", fmt.Errorf("run: %s not found (tried %s; %s)", libName, strings.Join(tries, ", "), hint)
}

// libVars are the library's settings; preloadEnv sets them, or takes
// them out of the environment when unset.
var libVars = []string{
	"XDPSTACK_SOCKET", "XDPSTACK_IFACE", "XDPSTACK_NAMESPACE", "XDPSTACK_SECRET",
	"XDPSTACK_SCOPE", "XDPSTACK_PROCNAMES", "XDPSTACK_DEBUG", "XDPSTACK_WILDCARD",
}

// preloadEnv is env with the library preloaded (ahead of what
// LD_PRELOAD held) and the settings of s.
func preloadEnv(env []string, s runSettings) []string {
	preload := s.lib
	out := make([]string, 0, len(env)+len(libVars)+1)
	for _, kv := range env {
		k, v, _ := strings.Cut(kv, "=")
		switch {
		case k == "LD_PRELOAD":
			others := slices.DeleteFunc(strings.FieldsFunc(v, func(r rune) bool { return r == ':' || r == ' ' }), func(p string) bool { return p == s.lib })
			preload = strings.Join(append([]string{s.lib}, others...), ":")
		case slices.Contains(libVars, k):
		default:
			out = append(out, kv)
		}
	}
	set := func(k, v string) {
		if v != "" {
			out = append(out, k+"="+v)
		}
	}
	out = append(out, "LD_PRELOAD="+preload)
	set("XDPSTACK_SOCKET", s.socket)
	set("XDPSTACK_IFACE", s.iface)
	set("XDPSTACK_NAMESPACE", s.namespace)
	set("XDPSTACK_SECRET", s.secret)
	set("XDPSTACK_SCOPE", s.scope)
	set("XDPSTACK_PROCNAMES", strings.Join(s.procNames, ","))
	if s.debug {
		set("XDPSTACK_DEBUG", "1")
	}
	set("XDPSTACK_WILDCARD", s.wildcard)
	return out
}
