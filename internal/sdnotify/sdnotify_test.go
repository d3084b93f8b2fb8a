package sdnotify

import (
	"net"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"testing"
	"time"
)

// listen stands in for systemd: a datagram socket in NOTIFY_SOCKET.
func listen(t *testing.T) *net.UnixConn {
	t.Helper()
	path := filepath.Join(t.TempDir(), "notify")
	c, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: path, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	t.Setenv("NOTIFY_SOCKET", path)
	return c
}

func receive(t *testing.T, c *net.UnixConn) string {
	t.Helper()
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	b := make([]byte, 4096)
	n, err := c.Read(b)
	if err != nil {
		t.Fatalf("read the notify socket: %v", err)
	}
	return string(b[:n])
}

func TestMessages(t *testing.T) {
	c := listen(t)
	for _, tc := range []struct {
		name string
		send func()
		want string
	}{
		{"ready", func() { Ready("serving veth0") }, "^READY=1\nSTATUS=serving veth0$"},
		{"status on one line", func() { Ready("a\nb") }, "^READY=1\nSTATUS=a b$"},
		{"reloading", func() { Reloading("reloading") }, "^RELOADING=1\nMONOTONIC_USEC=[1-9][0-9]*\nSTATUS=reloading$"},
		{"stopping", func() { Stopping("detaching") }, "^STOPPING=1\nSTATUS=detaching$"},
		{"alive", Alive, "^WATCHDOG=1$"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tc.send()
			if got := receive(t, c); !regexp.MustCompile(tc.want).MatchString(got) {
				t.Errorf("got %q, want %q", got, tc.want)
			}
		})
	}
}

func TestWithoutSystemd(t *testing.T) {
	t.Setenv("NOTIFY_SOCKET", "")
	Ready("nobody listens") // does nothing, and does not fail
	if got := WatchdogInterval(); got != 0 {
		t.Errorf("WatchdogInterval() without WATCHDOG_USEC: got %v, want 0", got)
	}
}

func TestWatchdogInterval(t *testing.T) {
	for _, tc := range []struct {
		name, usec, pid string
		want            time.Duration
	}{
		{"half of WatchdogSec", "3000000", strconv.Itoa(os.Getpid()), 1500 * time.Millisecond},
		{"no WATCHDOG_PID", "3000000", "", 1500 * time.Millisecond},
		{"another process's", "3000000", "1", 0},
		{"unset", "", "", 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Setenv("WATCHDOG_USEC", tc.usec)
			t.Setenv("WATCHDOG_PID", tc.pid)
			if got := WatchdogInterval(); got != tc.want {
				t.Errorf("WatchdogInterval() with WATCHDOG_USEC=%q WATCHDOG_PID=%q: got %v, want %v", tc.usec, tc.pid, got, tc.want)
			}
		})
	}
}
