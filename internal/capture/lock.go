package capture

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/xdpstack/xdpstack/maps"
)

// LockXDP makes sure that one capture at a time reads an interface's
// samples: the program has one perf buffer per CPU, and a second
// reader's would take the first one's place unsaid. The lock is a file
// in runDir (IFACE.capture) held with flock, so it goes with the
// process, kill -9 included; it names the holder's pid.
func LockXDP(runDir, iface string) (unlock func(), err error) {
	if err := maps.CheckIfaceName(iface); err != nil {
		return nil, err
	}
	if err := os.MkdirAll(runDir, 0o755); err != nil {
		return nil, fmt.Errorf("capture lock: %w", err)
	}
	path := filepath.Join(runDir, iface+".capture")
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE|unix.O_NOFOLLOW, 0o600)
	if err != nil {
		return nil, fmt.Errorf("capture lock: %w", err)
	}
	if err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
		defer f.Close()
		if errors.Is(err, unix.EWOULDBLOCK) {
			b, _ := os.ReadFile(path)
			return nil, fmt.Errorf("another capture reads %s's samples (pid %s); one at a time (stop it first)", iface, strings.TrimSpace(string(b)))
		}
		return nil, fmt.Errorf("capture lock %s: %w", path, err)
	}
	f.Truncate(0)
	f.WriteAt([]byte(strconv.Itoa(os.Getpid())+"\n"), 0)
	// The file stays: removing it would let a capture that opened it
	// meanwhile lock a file no other sees.
	return func() { f.Close() }, nil
}
