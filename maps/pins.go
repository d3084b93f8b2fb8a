package maps

import (
	"fmt"
	"path/filepath"
	"strings"
	"sync"

	"github.com/cilium/ebpf"

	"github.com/xdpstack/xdpstack/bpf"
)

// ifNameSize is IFNAMSIZ: an interface name and its terminating NUL.
const ifNameSize = 16

// CheckIfaceName says what keeps name from being an interface's, by
// Linux's rules (dev_valid_name): 1 to 15 bytes, not "." or "..", no
// '/', ':' or white space. A name that passes is one folder name, so it
// cannot lead out of the pin root.
func CheckIfaceName(name string) error {
	var why string
	switch {
	case name == "":
		why = "empty"
	case len(name) >= ifNameSize:
		why = fmt.Sprintf("%d bytes, want at most %d", len(name), ifNameSize-1)
	case name == "." || name == "..":
		why = "not a name"
	case strings.ContainsAny(name, "/: \t\n\v\f\r"):
		why = "holds '/', ':' or white space"
	default:
		return nil
	}
	return fmt.Errorf("interface name %q: %s (see: ip link show)", name, why)
}

// PinDir is the folder under root holding the pins of the program
// attached to iface; it fails for a name no interface can have.
func PinDir(root, iface string) (string, error) {
	if err := CheckIfaceName(iface); err != nil {
		return "", err
	}
	return filepath.Join(root, iface), nil
}

// loadSpec reads this build's map specs once, for IsPinDir.
var loadSpec = sync.OnceValues(bpf.LoadXdp)

// IsPinDir tells whether dir holds xdpstack's pins: an attach record and
// counters pinned as maps of the kinds xdpstack makes them. The BPF
// filesystem is shared (iproute2 keeps tc/globals there, for one), and a
// folder of anyone else's pins is not xdpstack's to read or remove.
func IsPinDir(dir string) bool {
	spec, err := loadSpec()
	if err != nil {
		return false
	}
	for _, name := range []string{InfoName, StatsName} {
		ms := spec.Maps[name]
		m, err := ebpf.LoadPinnedMap(filepath.Join(dir, name), &ebpf.LoadPinOptions{ReadOnly: true})
		if err != nil {
			return false
		}
		same := m.Type() == ms.Type && m.KeySize() == ms.KeySize
		switch name {
		case InfoName:
			// Its value grows with new builds; one entry it stays.
			same = same && m.MaxEntries() == ms.MaxEntries
		case StatsName:
			// Its size may grow; its counters stay as they are.
			same = same && m.ValueSize() == ms.ValueSize
		}
		m.Close()
		if !same {
			return false
		}
	}
	return true
}
