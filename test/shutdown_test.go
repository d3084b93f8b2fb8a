package test

import (
	"context"
	"net"
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
			checkClean(t, a, root)
		})
	}
}
