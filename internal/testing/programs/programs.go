// Package programs runs the real servers and clients that the LD_PRELOAD
// tests and the bench put on the userstack (issue 23): each one either on
// kernel sockets or under `xdpstack run`, in a host's network namespace,
// its configuration in a folder of its own, its output parsed. It returns
// errors rather than failing a test, so that tools/bench uses it too.
package programs

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/xdpstack/xdpstack/internal/testing/hosts"
	"github.com/xdpstack/xdpstack/internal/testing/testutil"
)

// Launcher makes the commands that run programs on a host, on kernel
// sockets or under `xdpstack run`.
type Launcher struct {
	Host *hosts.Host
	// Binary is the xdpstack binary whose `run` preloads the programs;
	// empty: they run on kernel sockets.
	Binary string
	// Global are xdpstack's global flags (--pin-root), before `run`.
	Global []string
	// Run are run's flags (--namespace, --secret, --scope), after
	// `run --iface IFACE`.
	Run []string
}

// Kernel runs programs on h's kernel sockets.
func Kernel(h *hosts.Host) *Launcher { return &Launcher{Host: h} }

// Preloaded runs programs on h under `binary global... run --iface
// h.Iface --`, on the userstack of the daemon attached to h's interface.
func Preloaded(h *hosts.Host, binary string, global ...string) *Launcher {
	return &Launcher{Host: h, Binary: binary, Global: global}
}

// Mode is "userstack" for a preloading launcher, else "kernel".
func (l *Launcher) Mode() string {
	if l.Binary != "" {
		return "userstack"
	}
	return "kernel"
}

// Command returns the command that runs name with args on the host.
func (l *Launcher) Command(ctx context.Context, name string, args ...string) *exec.Cmd {
	if l.Binary == "" {
		return l.Host.Command(ctx, name, args...)
	}
	run := slices.Concat(l.Global, []string{"run", "--iface", l.Host.Iface}, l.Run, []string{"--", name}, args)
	return l.Host.Command(ctx, l.Binary, run...)
}

// LibraryName is the preload library's file, which `make build` puts
// beside the binary.
const LibraryName = "libxdpstack.so"

// PreloadBuilt says why binary cannot run programs on the userstack yet:
// it has no `run` command, or no library beside it; nil when it can.
func PreloadBuilt(binary string) error {
	if out, err := exec.Command(binary, "run", "--help").CombinedOutput(); err != nil {
		return fmt.Errorf("xdpstack run not built yet (%s run --help: %v: %s)", binary, err, firstLine(out))
	}
	lib := filepath.Join(filepath.Dir(binary), LibraryName)
	if _, err := os.Stat(lib); err != nil {
		return fmt.Errorf("xdpstack run not built yet (no %s: make build)", lib)
	}
	return nil
}

func firstLine(b []byte) string {
	line, _, _ := strings.Cut(strings.TrimSpace(string(b)), "\n")
	return line
}

// Proc is a program running in the background in a process group of its
// own, its output kept.
type Proc struct {
	cmd  *exec.Cmd
	out  testutil.SyncBuffer
	done chan struct{}
	err  error
}

// Start starts cmd in a process group of its own, so that Stop also
// ends what it forked (sshd's sessions, `xdpstack run`'s program).
func Start(cmd *exec.Cmd) (*Proc, error) {
	p := &Proc{cmd: cmd, done: make(chan struct{})}
	cmd.Stdout, cmd.Stderr = &p.out, &p.out
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", cmd.Path, err)
	}
	go func() {
		p.err = cmd.Wait()
		close(p.done)
	}()
	return p, nil
}

// Pid is the process's id, also its group's.
func (p *Proc) Pid() int { return p.cmd.Process.Pid }

// Output is what the program printed so far, stdout and stderr.
func (p *Proc) Output() string { return p.out.String() }

// Done is closed when the process exited; Err then says how.
func (p *Proc) Done() <-chan struct{} { return p.done }

// Err is the process's exit error, once Done is closed.
func (p *Proc) Err() error { return p.err }

// WaitOutput waits up to d for want in the output, failing early if the
// process exits.
func (p *Proc) WaitOutput(want string, d time.Duration) error {
	for deadline := time.Now().Add(d); ; time.Sleep(20 * time.Millisecond) {
		if strings.Contains(p.Output(), want) {
			return nil
		}
		select {
		case <-p.done:
			return fmt.Errorf("%s exited (%v) before printing %q:\n%s", p.cmd.Path, p.err, want, p.Output())
		default:
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s printed no %q in %v:\n%s", p.cmd.Path, want, d, p.Output())
		}
	}
}

// stopWithin is how long a program gets to exit after SIGTERM.
const stopWithin = 5 * time.Second

// Stop ends the process group: SIGTERM, SIGKILL after stopWithin. It
// returns nil if the process exited by the signal or on its own.
func (p *Proc) Stop() error {
	pgid := p.Pid()
	syscall.Kill(-pgid, syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(stopWithin):
		syscall.Kill(-pgid, syscall.SIGKILL)
		<-p.done
		return fmt.Errorf("%s still running %v after SIGTERM:\n%s", p.cmd.Path, stopWithin, p.Output())
	}
	// What the leader forked may outlive it.
	syscall.Kill(-pgid, syscall.SIGKILL)
	return nil
}
