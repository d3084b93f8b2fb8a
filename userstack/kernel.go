package userstack

import (
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/xdpstack/xdpstack/maps"
)

const reservedPortsFile = "/proc/sys/net/ipv4/ip_local_reserved_ports"

// reservePorts adds ports to the kernel's reserved ports, so that its
// own outgoing connections never pick one the XDP program steers to
// the userstack. It returns a function that puts back the old value.
// The file stays open for that: a sysctl belongs to the network
// namespace of the thread that opened it, whichever thread restores.
func reservePorts(ports maps.PortRange) (func() error, error) {
	f, err := os.OpenFile(reservedPortsFile, os.O_RDWR, 0)
	if err != nil {
		return nil, fmt.Errorf("open reserved ports: %w", err)
	}
	old, err := io.ReadAll(f)
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("read reserved ports: %w", err)
	}
	ours := fmt.Sprintf("%d-%d", ports.Min, ports.Max)
	// A daemon killed before it could restore the value left its range
	// behind; keep it once, and leave it out of what is restored.
	var kept []string
	for _, r := range strings.Split(strings.TrimSpace(string(old)), ",") {
		if r != "" && r != ours {
			kept = append(kept, r)
		}
	}
	prev := strings.Join(kept, ",")
	next := strings.Join(append(kept, ours), ",")
	if _, err := f.WriteAt([]byte(next), 0); err != nil {
		f.Close()
		return nil, fmt.Errorf("reserve ports %s in the kernel: %w", next, err)
	}
	return func() error {
		defer f.Close()
		// An empty write would leave the value as it is; "\n" clears it.
		if _, err := f.WriteAt([]byte(prev+"\n"), 0); err != nil {
			return fmt.Errorf("restore reserved ports %q: %w", prev, err)
		}
		return nil
	}, nil
}
