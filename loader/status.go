package loader

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"
	"github.com/vishvananda/netlink"

	"github.com/xdpstack/xdpstack/internal/reservedports"
	"github.com/xdpstack/xdpstack/maps"
)

// Status is what xdpstack has attached to one interface, read from its
// pins, so it works whether or not the attaching process still runs.
type Status struct {
	Iface       string
	PinDir      string
	ProgramID   ebpf.ProgramID // 0 when the program is no longer attached
	ProgramName string
	Mode        Mode
	AttachedAt  time.Time
	PID         int
	// Running tells whether the process that attached is still alive.
	Running bool
	// Pins are the names of xdpstack's pins in PinDir.
	Pins []string
	// XSKs are the AF_XDP sockets the process serves the interface
	// with, by queue, as it recorded them.
	XSKs []XSK
	// Sampling is what the program samples; nil where a build older
	// than sampling pinned no sampling maps.
	Sampling *maps.SampleSettings
}

// XSK is an AF_XDP socket on one queue.
type XSK struct {
	Queue    int
	ZeroCopy bool
}

// xsksOf lists the sockets an AttachInfo records.
func xsksOf(info maps.AttachInfo) []XSK {
	var xsks []XSK
	for _, q := range info.XSKQueues.Queues() {
		xsks = append(xsks, XSK{Queue: q, ZeroCopy: info.XSKZeroCopy.Has(q)})
	}
	return xsks
}

// ReadStatus reads the status of every interface with pins under root.
// Folders there that are not xdpstack's pins are passed over: the BPF
// filesystem is shared.
func ReadStatus(root string) ([]Status, error) {
	root = pinRoot(root)
	entries, err := os.ReadDir(root)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read pin root: %w", err)
	}
	var all []Status
	for _, e := range entries {
		if !e.IsDir() || maps.CheckIfaceName(e.Name()) != nil {
			continue
		}
		dir := filepath.Join(root, e.Name())
		if f, err := readPinFolder(dir); err != nil || !f.ours(dir) {
			continue
		}
		s, err := ReadInterfaceStatus(root, e.Name())
		if err != nil {
			return nil, err
		}
		all = append(all, s)
	}
	return all, nil
}

// ReadInterfaceStatus reads the status of one interface's pins.
func ReadInterfaceStatus(root, ifname string) (Status, error) {
	dir, err := maps.PinDir(pinRoot(root), ifname)
	if err != nil {
		return Status{}, err
	}
	f, err := readPinFolder(dir)
	if errors.Is(err, os.ErrNotExist) {
		if l, err := netlink.LinkByName(ifname); err == nil {
			if progID, _ := xdpProgramOf(l); progID != 0 {
				return Status{}, unpinnedError(ifname, progID, dir)
			}
		}
		return Status{}, fmt.Errorf("xdpstack is not attached to %s (no pins in %s)", ifname, dir)
	}
	if err != nil {
		return Status{}, fmt.Errorf("read pins of %s: %w", ifname, err)
	}
	if !f.ours(dir) {
		return Status{}, fmt.Errorf("xdpstack is not attached to %s (%s holds pins that are not xdpstack's)", ifname, dir)
	}
	s := Status{Iface: ifname, PinDir: dir, Pins: f.pins, Sampling: samplingOf(dir)}
	if rec, ok := attachRecord(dir); ok {
		s.AttachedAt, s.PID = rec.Time, rec.PID
		s.Running = attacherAlive(rec)
		if s.Running {
			s.XSKs = xsksOf(rec)
		}
	}
	l, err := link.LoadPinnedLink(filepath.Join(dir, linkPinName), nil)
	if err != nil {
		return s, nil
	}
	defer l.Close()
	info, err := l.Info()
	if err != nil || info.XDP() == nil || info.XDP().Ifindex == 0 {
		return s, nil
	}
	s.ProgramID = info.Program
	s.ProgramName = programName(info.Program)
	// The link's ifindex means something only in the interface's own
	// network namespace: trust it when it leads to the same program.
	s.Mode = ModeUnknown
	if id, mode, err := xdpProgramOn(int(info.XDP().Ifindex)); err == nil && id == uint32(info.Program) {
		s.Mode = mode
	}
	return s, nil
}

// samplingOf reads the sample settings pinned in dir, if any.
func samplingOf(dir string) *maps.SampleSettings {
	sm, err := maps.OpenPinnedSampling(dir)
	if err != nil {
		return nil
	}
	defer sm.Close()
	set, err := sm.Settings()
	if err != nil {
		return nil
	}
	return &set
}

// programName is the name of the program with the given id, or "" when
// it cannot be read.
func programName(id ebpf.ProgramID) string {
	prog, err := ebpf.NewProgramFromID(id)
	if err != nil {
		return ""
	}
	defer prog.Close()
	info, err := prog.Info()
	if err != nil {
		return ""
	}
	return info.Name
}

// privateBPFFSHint says how to share pins across `ip netns exec`.
const privateBPFFSHint = "ip netns exec gives each command its own /sys, and with it its own BPF filesystem on /sys/fs/bpf; " +
	"give every xdpstack command the same pin root on one mounted elsewhere: " +
	"mkdir -p /run/xdpstack && mount -t bpf bpf /run/xdpstack, then XDPSTACK_PIN_ROOT=/run/xdpstack"

// unpinnedError explains XDP program progID on ifname, which has no pins
// in dir: xdpstack's own (its programs' names start with "xdpstack"),
// pinned elsewhere, or anyone else's.
func unpinnedError(ifname string, progID uint32, dir string) error {
	if strings.HasPrefix(programName(ebpf.ProgramID(progID)), "xdpstack") {
		return fmt.Errorf("%s has xdpstack's XDP program %d, but its pins are not in %s: they are under another --pin-root, or on a BPF filesystem this command does not see (%s)", ifname, progID, dir, privateBPFFSHint)
	}
	return fmt.Errorf("%s already has XDP program %d that xdpstack did not attach (remove it: ip link set dev %s xdp off)", ifname, progID, ifname)
}

// DetachOptions say what Detach may do.
type DetachOptions struct {
	PinRoot string
	// Force detaches even while the process that attached still runs.
	Force bool
}

// Detach removes the program and the pins that xdpstack left on an
// interface, typically after the attaching process died, and gives back
// the ports reserved by the dead processes of the calling thread's
// network namespace.
func Detach(ifname string, opts DetachOptions) error {
	s, err := ReadInterfaceStatus(opts.PinRoot, ifname)
	if err != nil {
		return err
	}
	if s.Running && s.PID != os.Getpid() && !opts.Force {
		return fmt.Errorf("xdpstack (pid %d) is still attached to %s (stop it: kill -TERM %d, or detach anyway with --force)", s.PID, ifname, s.PID)
	}
	var errs []error
	linkPin := filepath.Join(s.PinDir, linkPinName)
	if l, err := link.LoadPinnedLink(linkPin, nil); err == nil {
		// BPF_LINK_DETACH takes the program off even while a running
		// process still holds the link open.
		if err := l.Detach(); err != nil && !errors.Is(err, os.ErrNotExist) {
			errs = append(errs, fmt.Errorf("detach link: %w", err))
		}
		errs = append(errs, l.Close())
	} else if !errors.Is(err, os.ErrNotExist) {
		errs = append(errs, fmt.Errorf("open pinned link: %w", err))
	}
	// By name: only what xdpstack pinned, never whatever the folder holds.
	for _, name := range s.Pins {
		if err := os.Remove(filepath.Join(s.PinDir, name)); err != nil && !errors.Is(err, os.ErrNotExist) {
			errs = append(errs, fmt.Errorf("remove pin: %w", err))
		}
	}
	errs = append(errs, removePinDir(s.PinDir), reservedports.ReleaseDead())
	return errors.Join(errs...)
}
