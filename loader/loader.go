// Package loader owns xdpstack's XDP program on an interface: it loads
// the collection, pins the maps and the bpf_link under
// /sys/fs/bpf/xdpstack/<ifname>/, attaches, replaces and detaches.
package loader

import (
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"

	"github.com/xdpstack/xdpstack/bpf"
	"github.com/xdpstack/xdpstack/internal/procstat"
	"github.com/xdpstack/xdpstack/internal/reservedports"
	"github.com/xdpstack/xdpstack/maps"
)

// linkPinName is the pinned bpf_link: it keeps the program attached
// after the process that attached it is gone, and lets a later process
// replace the program atomically or detach it.
const linkPinName = "link"

// Options say how to attach.
type Options struct {
	// Mode is the XDP mode to ask for.
	Mode Mode
	// PinRoot is the folder holding one folder of pins per interface;
	// maps.DefaultPinRoot when empty.
	PinRoot string
	// UserPorts is the inclusive range of local ports the userstack
	// dials from, steered to it whatever the listeners and reserved in
	// the kernel (net.ipv4.ip_local_reserved_ports) while attached; zero
	// steers and reserves none. The userstack reads it from the attach
	// record. DefaultUserPorts is the usual choice.
	UserPorts maps.PortRange
	// Sampling is how the program samples packets for captures; a zero
	// Snaplen is maps.DefaultSnaplen.
	Sampling maps.SampleSettings
	// PSP is the PSP receive check; the zero value leaves it off. The
	// SPIs it lets through are the ACL's that a.Maps.PSP.SPIs mirrors
	// (tunnel.NewACL(a.Maps.PSP.SPIs)), empty at every attach.
	PSP maps.PSPSettings
}

// DefaultUserPorts is the userstack's range unless told otherwise: above
// Linux's default ephemeral range (32768-60999), so the kernel's own
// connections rarely want these ports anyway.
var DefaultUserPorts = maps.PortRange{Min: 61000, Max: 62999}

// Attachment is xdpstack's program loaded, pinned and attached to one
// interface. Close detaches it and removes its pins.
type Attachment struct {
	Iface Interface
	// Mode is the mode in use, never ModeAuto.
	Mode Mode
	// NativeErr says why native mode failed when ModeAuto fell back to
	// generic; nil otherwise.
	NativeErr error
	// Replaced is true when an earlier xdpstack program was swapped out.
	Replaced  bool
	ProgramID ebpf.ProgramID
	Maps      *maps.Set
	PinDir    string

	objs      bpf.XdpObjects
	link      link.Link
	userPorts maps.PortRange
	// detachedOutside: see Check.
	detachedOutside atomic.Bool
	// reserved holds userPorts in the kernel's reserved ports; nil
	// without a range.
	reserved *reservedports.Reservation
}

func pinRoot(root string) string {
	if root == "" {
		return maps.DefaultPinRoot
	}
	return root
}

// Attach loads xdpstack's program and attaches it to the named
// interface. When an xdpstack program left by a process that is gone is
// already there, the new one replaces it atomically; a program of
// anyone else's is refused.
// The userstack's ports are reserved in the network namespace of the
// calling thread, which must be the interface's.
func Attach(ifname string, opts Options) (*Attachment, error) {
	iface, err := LookupInterface(ifname)
	if err != nil {
		return nil, err
	}
	dir, err := maps.PinDir(pinRoot(opts.PinRoot), iface.Name)
	if err != nil {
		return nil, err
	}
	if f, err := readPinFolder(dir); err == nil && len(f.foreign) > 0 && !maps.IsPinDir(dir) {
		return nil, fmt.Errorf("pin folder %s holds pins that are not xdpstack's (%s); choose another --pin-root", dir, strings.Join(f.foreign, ", "))
	}
	self, err := procstat.Self()
	if err != nil {
		return nil, fmt.Errorf("read own start time: %w", err)
	}
	old, err := existingLink(iface, dir, opts.Mode)
	if err != nil {
		return nil, err
	}
	if err := ensureBPFFS(dir); err != nil {
		if old != nil {
			old.Close()
		}
		return nil, err
	}

	a := &Attachment{Iface: iface, PinDir: dir}
	if err := a.load(opts.UserPorts); err != nil {
		if old != nil {
			old.Close()
		}
		return nil, err
	}
	if old != nil {
		a.link, a.Replaced = old, true
		if err := old.Update(a.objs.XdpstackIngress); err != nil {
			a.abort()
			return nil, fmt.Errorf("replace xdpstack program on %s: %w", iface.Name, err)
		}
		_, a.Mode, err = xdpProgramOn(iface.Index)
	} else {
		err = a.attach(opts.Mode)
	}
	if err != nil {
		a.abort()
		return nil, err
	}
	info, err := a.objs.XdpstackIngress.Info()
	if err != nil {
		a.abort()
		return nil, fmt.Errorf("read program info: %w", err)
	}
	a.ProgramID, _ = info.ID()
	if err := a.Maps.Info.Put(maps.AttachInfo{Time: time.Now(), PID: os.Getpid(), PIDStartTime: self.StartTime, UserPorts: a.userPorts}); err != nil {
		a.abort()
		return nil, err
	}
	sampling := opts.Sampling
	if sampling.Snaplen == 0 {
		sampling.Snaplen = maps.DefaultSnaplen
	}
	if err := a.Maps.Sampling.SetSettings(sampling); err != nil {
		a.abort()
		return nil, err
	}
	if err := a.Maps.PSP.SetSettings(opts.PSP); err != nil {
		a.abort()
		return nil, err
	}
	// Steered to the userstack, the range must be kept from the kernel's
	// own connections.
	if a.userPorts != (maps.PortRange{}) {
		if a.reserved, err = reservedports.Reserve(a.userPorts); err != nil {
			a.abort()
			return nil, err
		}
	}
	return a, nil
}

// existingLink opens the pinned link of an earlier xdpstack on iface,
// after checking that replacing it is safe; nil when there is none.
func existingLink(iface Interface, dir string, mode Mode) (link.Link, error) {
	progID, inUse, err := xdpProgramOn(iface.Index)
	if err != nil {
		return nil, err
	}
	pinned, err := link.LoadPinnedLink(filepath.Join(dir, linkPinName), nil)
	if errors.Is(err, os.ErrNotExist) {
		if progID != 0 {
			return nil, unpinnedError(iface.Name, progID, dir)
		}
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("open pinned link in %s: %w (clean up: xdpstack detach %s)", dir, err, iface.Name)
	}
	info, err := pinned.Info()
	if err != nil || info.XDP() == nil || int(info.XDP().Ifindex) != iface.Index || uint32(info.Program) != progID {
		pinned.Close()
		return nil, fmt.Errorf("pins in %s do not belong to the program on %s (clean up: xdpstack detach %s)", dir, iface.Name, iface.Name)
	}
	if rec, ok := attachRecord(dir); ok && attacherAlive(rec) {
		pinned.Close()
		return nil, fmt.Errorf("xdpstack (pid %d) is already attached to %s (stop it first: kill -TERM %d)", rec.PID, iface.Name, rec.PID)
	}
	if mode != ModeAuto && mode != inUse {
		pinned.Close()
		return nil, fmt.Errorf("%s has xdpstack attached in %s mode; --mode %s needs a detach first (xdpstack detach %s)", iface.Name, inUse, mode, iface.Name)
	}
	return pinned, nil
}

// loadSpec reads the program to attach; the upgrade test swaps in
// another build.
var loadSpec = bpf.LoadXdp

// rebuiltMaps are filled anew by every attach (the record, the sockets,
// the addresses, the sampling settings, the rule generation in use and
// the count of listeners)
// or by a capture (its lease, its perf buffers), so a pinned one of
// another layout is replaced rather than refused. The others hold what must outlive the process: the
// counters, the steering table with its per-port counts and the rules.
var rebuiltMaps = []string{maps.InfoName, maps.XSKsName, maps.LocalAddrsName, maps.SamplingName, maps.SamplesName}

// compiledRuleMaps are the rule table as the program reads it, which
// maps.Rules compiles from the rules map. Every attach makes them anew
// and compiles the rules into them before its program runs, writing the
// generation in use into the sampling map's value, so that a build that
// lays the table out otherwise takes over the rules, with their ids and
// hit counters, and an attach cut short leaves nothing that the next one
// would trust.
var compiledRuleMaps = []string{maps.RuleSlotsName, maps.RuleMatchName, maps.RuleSetsName}

// freshMaps are made anew, empty, by every attach whatever their
// layout: the PSP check's settings and SPIs are the attaching daemon's,
// whose ACL starts empty, and a grant or a setting left by an earlier
// daemon would let through or drop what the new one does not know of.
var freshMaps = slices.Concat(compiledRuleMaps, maps.PSPMapNames)

// load loads the collection, reusing maps already pinned in the pin
// folder so that counters and listeners survive a replace.
func (a *Attachment) load(ports maps.PortRange) error {
	spec, err := loadSpec()
	if err != nil {
		return fmt.Errorf("read embedded BPF objects: %w", err)
	}
	if ports.Min > ports.Max {
		return fmt.Errorf("userstack port range %d-%d is empty", ports.Min, ports.Max)
	}
	for name, v := range map[string]uint16{bpf.XdpVarUserstackPortMin: ports.Min, bpf.XdpVarUserstackPortMax: ports.Max} {
		if err := spec.Variables[name].Set(v); err != nil {
			return fmt.Errorf("set %s: %w", name, err)
		}
	}
	// A rules command waits, so that no change falls between reading the
	// rules and compiling them.
	unlock, err := maps.LockPinDir(a.PinDir)
	if err != nil {
		return err
	}
	defer unlock()
	if err := a.checkPinnedLayouts(spec); err != nil {
		return err
	}
	for _, name := range slices.Concat(freshMaps, maps.RetiredNames) {
		if err := os.Remove(filepath.Join(a.PinDir, name)); err != nil && !errors.Is(err, os.ErrNotExist) {
			return fmt.Errorf("replace the %s map pinned in %s: %w", name, a.PinDir, err)
		}
	}
	err = spec.LoadAndAssign(&a.objs, &ebpf.CollectionOptions{Maps: ebpf.MapOptions{PinPath: a.PinDir}})
	var verr *ebpf.VerifierError
	if errors.As(err, &verr) {
		return fmt.Errorf("kernel verifier rejected the XDP program: %w", verr)
	}
	if err != nil {
		return fmt.Errorf("load XDP program: %w", err)
	}
	a.Maps = maps.FromObjects(&a.objs.XdpMaps)
	a.userPorts = ports
	if err := a.Maps.Rules.Recompile(); err != nil {
		a.objs.Close()
		return err
	}
	// The sampling map may be new; a program that finds no listeners
	// counted there looks none up.
	if err := a.Maps.Listeners.Recount(); err != nil {
		a.objs.Close()
		return err
	}
	return nil
}

// checkPinnedLayouts compares the maps pinned in the pin folder with
// this build's, the fresh maps aside: one of the rebuilt maps
// with another layout is unpinned, for the load to make a new one (a
// program still attached keeps using its own); any other is refused
// with what to do.
func (a *Attachment) checkPinnedLayouts(spec *ebpf.CollectionSpec) error {
	for name, ms := range spec.Maps {
		if ms.Pinning != ebpf.PinByName || slices.Contains(freshMaps, name) {
			continue
		}
		path := filepath.Join(a.PinDir, name)
		m, err := ebpf.LoadPinnedMap(path, nil)
		if errors.Is(err, os.ErrNotExist) {
			continue
		}
		if err != nil {
			return fmt.Errorf("open pinned map %s: %w (clean up: xdpstack detach %s)", path, err, a.Iface.Name)
		}
		err = ms.Compatible(m)
		m.Close()
		if err == nil {
			continue
		}
		if !slices.Contains(rebuiltMaps, name) {
			return fmt.Errorf("the %s map pinned in %s has another layout than this build's (%v): an incompatible xdpstack made it; "+
				"to take over, detach first with xdpstack detach %s, which resets its contents", name, a.PinDir, err, a.Iface.Name)
		}
		if err := os.Remove(path); err != nil {
			return fmt.Errorf("replace the %s map pinned in %s: %w", name, a.PinDir, err)
		}
	}
	return nil
}

func (a *Attachment) attach(mode Mode) error {
	try := func(m Mode) error {
		l, err := link.AttachXDP(link.XDPOptions{
			Program:   a.objs.XdpstackIngress,
			Interface: a.Iface.Index,
			Flags:     m.attachFlags(),
		})
		if err != nil {
			return fmt.Errorf("attach XDP to %s in %s mode: %w", a.Iface.Name, m, err)
		}
		a.link, a.Mode = l, m
		return nil
	}
	var err error
	switch mode {
	case ModeAuto:
		if a.NativeErr = try(ModeNative); a.NativeErr == nil {
			break
		}
		if err = try(ModeGeneric); err != nil {
			return fmt.Errorf("%w; native mode failed too: %w", err, a.NativeErr)
		}
	case ModeNative:
		if err = try(ModeNative); err != nil {
			return fmt.Errorf("%w (try --mode generic)", err)
		}
	default:
		err = try(mode)
	}
	if err != nil {
		return err
	}
	if err := a.link.Pin(filepath.Join(a.PinDir, linkPinName)); err != nil {
		return fmt.Errorf("pin link: %w", err)
	}
	return nil
}

// abort undoes a failed Attach: a link it created goes away, a replaced
// link keeps its old program, and maps go only if nothing else uses them.
func (a *Attachment) abort() {
	if a.link != nil && !a.Replaced {
		a.link.Unpin()
	}
	if a.link != nil {
		a.link.Close()
	}
	if !a.Replaced {
		a.unpinMaps()
	}
	a.objs.Close()
}

// Close gives back the reserved ports, detaches the program and removes
// every pin, in the reverse order of Attach.
func (a *Attachment) Close() error {
	var errs []error
	if a.reserved != nil {
		// Only this process's hold: another daemon's stays.
		errs = append(errs, a.reserved.Release())
	}
	if a.detachedOutside.Load() {
		// The detach removed the pins, and by now another attach may
		// have made its own under the same names.
		return errors.Join(append(errs, a.link.Close(), a.objs.Close())...)
	}
	errs = append(errs, a.link.Unpin(), a.link.Close())
	errs = append(errs, a.unpinMaps(), a.objs.Close())
	return errors.Join(errs...)
}

func (a *Attachment) unpinMaps() error {
	var errs []error
	for _, m := range []*ebpf.Map{a.objs.Stats, a.objs.Listeners, a.objs.ListenPorts, a.objs.LocalAddrs, a.objs.Info, a.objs.Xsks,
		a.objs.RuleMatch, a.objs.RuleSets, a.objs.Rules, a.objs.RuleHits, a.objs.RuleSlots,
		a.objs.Sampling, a.objs.Samples, a.objs.SampleCounts, a.objs.Psp, a.objs.PspSpis} {
		if m != nil {
			errs = append(errs, m.Unpin())
		}
	}
	return errors.Join(append(errs, removePinDir(a.PinDir))...)
}

// removePinDir removes an interface's pin folder and, when it was the
// last one, the pin root. A folder that still holds files xdpstack did
// not pin is left as it is, and said so.
func removePinDir(dir string) error {
	err := os.Remove(dir)
	if errors.Is(err, syscall.ENOTEMPTY) || errors.Is(err, syscall.EEXIST) {
		f, _ := readPinFolder(dir)
		slog.Warn("pin folder left in place: it holds files that xdpstack did not pin", "dir", dir, "files", f.foreign)
		return nil
	}
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("remove pin folder: %w", err)
	}
	os.Remove(filepath.Dir(dir)) // fails, as it should, while other interfaces have pins
	return nil
}

// pinNames are the names of the files xdpstack pins in an interface's
// pin folder: its maps and the link.
var pinNames = slices.Concat([]string{linkPinName}, maps.PinnedNames, maps.RetiredNames)

// pinFolder is what an interface's pin folder holds, by name: xdpstack's
// pins, and anything else.
type pinFolder struct {
	pins, foreign []string
}

func readPinFolder(dir string) (pinFolder, error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return pinFolder{}, err
	}
	var f pinFolder
	for _, e := range entries {
		if slices.Contains(pinNames, e.Name()) {
			f.pins = append(f.pins, e.Name())
		} else {
			f.foreign = append(f.foreign, e.Name())
		}
	}
	return f, nil
}

// ours tells whether the folder dir is xdpstack's: it has xdpstack's
// attach record and counters, or nothing but pins of xdpstack's names
// (left by an attach that was cut short).
func (f pinFolder) ours(dir string) bool {
	return maps.IsPinDir(dir) || len(f.pins) > 0 && len(f.foreign) == 0
}

// attachRecord reads the attach record pinned in dir; false when there
// is none to read.
func attachRecord(dir string) (maps.AttachInfo, bool) {
	set, err := maps.OpenPinned(dir)
	if err != nil {
		return maps.AttachInfo{}, false
	}
	defer set.Close()
	rec, err := set.Info.Get()
	return rec, err == nil
}
