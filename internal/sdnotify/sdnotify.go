// Package sdnotify tells systemd how a Type=notify service is doing
// (sd_notify(3)): ready, reloading, stopping, a status line, alive for
// the watchdog. Without $NOTIFY_SOCKET, as outside systemd, every call
// does nothing.
//
// The protocol is go-systemd's: a datagram to the socket systemd names,
// abstract or not. Its daemon package is small, has no dependencies and
// is what etcd and containerd use, so we add only what it
// lacks: the MONOTONIC_USEC that a reload's RELOADING=1 should carry,
// status lines kept to one line, and one logged line when systemd
// cannot be told.
package sdnotify

import (
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"

	"github.com/coreos/go-systemd/v22/daemon"
	"golang.org/x/sys/unix"
)

// Ready says that the service serves, at start or after a reload,
// with a status line for `systemctl status`.
func Ready(status string) { send(daemon.SdNotifyReady, "STATUS="+status) }

// Reloading says that a reload has begun; Ready ends it.
func Reloading(status string) {
	var now unix.Timespec
	unix.ClockGettime(unix.CLOCK_MONOTONIC, &now)
	send(daemon.SdNotifyReloading, fmt.Sprintf("MONOTONIC_USEC=%d", now.Nano()/1000), "STATUS="+status)
}

// Stopping says that the service is shutting down.
func Stopping(status string) { send(daemon.SdNotifyStopping, "STATUS="+status) }

// Alive feeds the watchdog.
func Alive() { send(daemon.SdNotifyWatchdog) }

// WatchdogInterval is how often to call Alive: half of systemd's
// WatchdogSec= (WATCHDOG_USEC, for this process), as sd_watchdog_enabled(3)
// advises; 0 when there is no watchdog.
func WatchdogInterval() time.Duration {
	d, err := daemon.SdWatchdogEnabled(false)
	if err != nil {
		slog.Warn("systemd watchdog not fed", "err", err)
		return 0
	}
	return d / 2
}

// failed keeps a broken notify socket to one logged line.
var failed sync.Once

func send(states ...string) {
	// A status is one line: systemd reads the datagram as NAME=VALUE lines.
	for i, s := range states {
		states[i] = strings.ReplaceAll(s, "\n", " ")
	}
	if _, err := daemon.SdNotify(false, strings.Join(states, "\n")); err != nil {
		failed.Do(func() { slog.Warn("cannot tell systemd (NOTIFY_SOCKET)", "err", err) })
	}
}
