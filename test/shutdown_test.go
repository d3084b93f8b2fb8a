package test

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/xdpstack/xdpstack/internal/testing/testutil"
)

// TestSIGTERMStopsEveryApp runs each app on each of its transports,
// with a client connected that has sent nothing (to the app where it
// runs over TCP, and to /metrics), and checks that SIGTERM makes attach
// detach, say so, print no error and exit 0, quickly.
func TestSIGTERMStopsEveryApp(t *testing.T) {
	a, b := testutil.HostPair(t, 0)
	root := testutil.PinRoot(t)
	a.KernelEcho(t, "127.0.0.1:8080")
	for _, app := range []string{
		"echo=tcp://:7", "echo=udp://:7", "echo=tls://:7", "echo=quic://:7",
		"http=tcp://:80", "http=tls://:443", "http=quic://:443",
		"proxy=tcp://:8000", "proxy=tls://:8443", "proxy=quic://:8443",
	} {
		t.Run(app, func(t *testing.T) {
			spec := app
			if strings.Contains(app, "tls:") || strings.Contains(app, "quic:") {
				spec += ",test-cert=" + testHost
			}
			if strings.HasPrefix(app, "proxy") {
				spec += ",backend=tcp://127.0.0.1:8080"
			}
			d := startDaemon(t, a, root, "--metrics-addr", "127.0.0.1:0", "--app", spec)
			a.Do(t, func() error {
				c, err := net.Dial("tcp", d.ready.MetricsAddr)
				if err == nil {
					t.Cleanup(func() { c.Close() })
				}
				return err
			})
			if !strings.Contains(app, "udp:") && !strings.Contains(app, "quic:") {
				port := app[strings.LastIndex(app, ":")+1:]
				c, err := b.Dial(context.Background(), "tcp", net.JoinHostPort(a.Addr.String(), port))
				if err != nil {
					t.Fatal(err)
				}
				t.Cleanup(func() { c.Close() })
			}
			time.Sleep(50 * time.Millisecond) // the connections are accepted
			start := time.Now()
			err := d.signal(t, syscall.SIGTERM)
			took := time.Since(start)
			t.Logf("exit %v after %v", err, took.Round(time.Millisecond))
			out := d.output.String()
			if err != nil || !strings.Contains(out, "detached from "+a.Iface) {
				t.Errorf("SIGTERM: exit %v, want 0 and \"detached from %s\"\n%s", err, a.Iface, out)
			}
			if bad := regexp.MustCompile(`(?m)^xdpstack: .*|level=(WARN|ERROR).*`).FindString(out); bad != "" {
				t.Errorf("SIGTERM: output has %q, want no error", bad)
			}
			if took > 2*time.Second {
				t.Errorf("SIGTERM: exit took %v, want under 2s", took)
			}
			if _, err := os.Stat(d.readyFile); !os.IsNotExist(err) {
				t.Errorf("ready file after exit: %v, want it gone", err)
			}
			checkClean(t, a, root)
		})
	}
}

// waitExit waits for the daemon to exit on its own.
func (d *daemon) waitExit(t *testing.T, within time.Duration) error {
	t.Helper()
	select {
	case err := <-d.exited:
		d.exited <- err
		return err
	case <-time.After(within):
		t.Fatalf("xdpstack attach still runs %v later:\n%s", within, d.output)
		return nil
	}
}

// TestDetachedFromOutside takes the program away from a running attach
// process, with `xdpstack detach --force` and by deleting the interface,
// and checks that the process says so in one line, cleans up and exits:
// 0 for the operator's detach (so that systemd's Restart=on-failure
// does not undo it), 1 for the interface gone.
func TestDetachedFromOutside(t *testing.T) {
	for _, tc := range []struct {
		name, want string
		code       int
	}{
		{"detach --force", "level=WARN msg=\"the program was detached from outside (xdpstack detach --force); stopping\"", 0},
		{"interface deleted", "xdpstack: stop serving %s: the interface was deleted", 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			a, b := testutil.HostPair(t, 0)
			root := testutil.PinRoot(t)
			d := startDaemon(t, a, root, "--metrics-addr", "", "--app", "echo=tcp://:7")
			if tc.code == 0 {
				if out, err := xdpstack(t, root, "detach", "--force", a.Iface); err != nil {
					t.Fatalf("detach --force: %v\n%s", err, out)
				}
			} else {
				a.Exec(t, "ip", "link", "del", a.Iface)
			}
			err := d.waitExit(t, 5*time.Second)
			code := 0
			if exit, ok := err.(*exec.ExitError); ok {
				code = exit.ExitCode()
			}
			out := d.output.String()
			want := tc.want
			if strings.Contains(want, "%s") {
				want = fmt.Sprintf(want, a.Iface)
			}
			if code != tc.code || !strings.Contains(out, want) {
				t.Errorf("exit %v, want %d and %q:\n%s", err, tc.code, want, out)
			}
			if _, err := os.Stat(d.readyFile); !os.IsNotExist(err) {
				t.Errorf("ready file after exit: %v, want it gone", err)
			}
			if _, err := os.Stat(filepath.Join(root, a.Iface)); !os.IsNotExist(err) {
				t.Errorf("pins after exit: %v, want them gone", err)
			}
			if tc.code == 0 {
				checkClean(t, a, root)
				b.Exec(t, "ping", "-q", "-c", "2", "-i", "0.01", a.Addr.String())
			}
		})
	}
}
