// Package reservedports shares the kernel's reserved local ports
// (net.ipv4.ip_local_reserved_ports, one value per network namespace)
// between the xdpstack processes of a namespace, each of which keeps the
// kernel's own connections off the ports its XDP program steers to the
// userstack.
//
// A state file per namespace under /run/xdpstack names every holder (PID
// and start time) with its range, and what the operator has reserved.
// Every change writes the kernel's value anew as the operator's ports
// and the live holders' ranges together: a holder that leaves takes
// away only what no other holds, the last one leaves the operator's
// value, and a holder killed before it could leave is dropped by the
// next change, or by ReleaseDead. What the operator changes meanwhile
// outside the holders' ranges is kept.
package reservedports

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/xdpstack/xdpstack/internal/procstat"
	"github.com/xdpstack/xdpstack/maps"
)

// registry is where the kernel's value and the state files are.
type registry struct{ sysctl, dir string }

var kernel = registry{sysctl: "/proc/sys/net/ipv4/ip_local_reserved_ports", dir: "/run/xdpstack/reserved-ports"}

// Reservation is one process's hold on a range of ports in the network
// namespace it was made in.
type Reservation struct {
	reg registry
	ns  netns
	// sysctl stays open: the file belongs to the namespace of the
	// thread that opened it, whichever thread releases.
	sysctl *os.File
	self   holder
}

// holder is a process with the range it holds.
type holder struct {
	PID       int    `json:"pid"`
	StartTime uint64 `json:"start_time"`
	Min       uint16 `json:"min"`
	Max       uint16 `json:"max"`
}

func (h holder) ports() portSet { return rangeSet(maps.PortRange{Min: h.Min, Max: h.Max}) }

func (h holder) alive() bool {
	return procstat.Process{PID: h.PID, StartTime: h.StartTime}.Alive()
}

// state is a namespace's state file.
type state struct {
	// NetnsCookie tells the namespace apart from a later one that got
	// its inode number again.
	NetnsCookie uint64 `json:"netns_cookie"`
	// Operator is what the reserved ports would be without xdpstack.
	Operator string   `json:"operator"`
	Holders  []holder `json:"holders"`
}

func held(hs []holder) portSet {
	var s portSet
	for _, h := range hs {
		s = s.union(h.ports())
	}
	return s
}

// netns names a network namespace.
type netns struct{ inode, cookie uint64 }

// threadNetns is the calling thread's network namespace.
func threadNetns() (netns, error) {
	var st unix.Stat_t
	if err := unix.Stat("/proc/thread-self/ns/net", &st); err != nil {
		return netns{}, fmt.Errorf("read network namespace: %w", err)
	}
	cookie, err := netnsCookie()
	return netns{inode: st.Ino, cookie: cookie}, err
}

// Reserve adds ports to the reserved ports of the calling thread's
// network namespace, held by this process until Release.
func Reserve(ports maps.PortRange) (*Reservation, error) {
	self, err := procstat.Self()
	if err != nil {
		return nil, fmt.Errorf("reserve ports %s: %w", ports, err)
	}
	return kernel.reserve(self, ports)
}

func (g registry) reserve(p procstat.Process, ports maps.PortRange) (*Reservation, error) {
	if ports.Min == 0 || ports.Min > ports.Max {
		return nil, fmt.Errorf("reserve ports %s: want MIN-MAX with 0 < MIN <= MAX", ports)
	}
	ns, err := threadNetns()
	if err != nil {
		return nil, fmt.Errorf("reserve ports %s: %w", ports, err)
	}
	f, err := os.OpenFile(g.sysctl, os.O_RDWR, 0)
	if err != nil {
		return nil, fmt.Errorf("reserve ports %s: %w", ports, err)
	}
	r := &Reservation{reg: g, ns: ns, sysctl: f, self: holder{PID: p.PID, StartTime: p.StartTime, Min: ports.Min, Max: ports.Max}}
	if err := g.update(f, ns, func(hs []holder) []holder { return append(hs, r.self) }); err != nil {
		f.Close()
		return nil, fmt.Errorf("reserve ports %s: %w", ports, err)
	}
	return r, nil
}

// Release gives the range back: the kernel may use what no other
// holder holds and the operator did not reserve.
func (r *Reservation) Release() error {
	defer r.sysctl.Close()
	err := r.reg.update(r.sysctl, r.ns, func(hs []holder) []holder {
		// One process may hold a range twice (two attachments).
		if i := slices.Index(hs, r.self); i >= 0 {
			return slices.Delete(hs, i, i+1)
		}
		return hs
	})
	if err != nil {
		return fmt.Errorf("release reserved ports %d-%d: %w", r.self.Min, r.self.Max, err)
	}
	return nil
}

// ReleaseDead gives back the ranges of the holders in the calling
// thread's network namespace that died without releasing them.
func ReleaseDead() error { return kernel.releaseDead() }

func (g registry) releaseDead() error {
	ns, err := threadNetns()
	if err != nil {
		return fmt.Errorf("release reserved ports of dead processes: %w", err)
	}
	if _, err := os.Stat(g.path(ns)); errors.Is(err, os.ErrNotExist) {
		return nil // nothing was ever reserved here, or all was given back
	}
	f, err := os.OpenFile(g.sysctl, os.O_RDWR, 0)
	if err != nil {
		return fmt.Errorf("release reserved ports of dead processes: %w", err)
	}
	defer f.Close()
	if err := g.update(f, ns, func(hs []holder) []holder { return hs }); err != nil {
		return fmt.Errorf("release reserved ports of dead processes: %w", err)
	}
	return nil
}

// update lets change edit the live holders of ns, under the registry's
// lock, and writes the kernel's value anew.
func (g registry) update(sysctl *os.File, ns netns, change func([]holder) []holder) error {
	unlock, err := g.lock()
	if err != nil {
		return err
	}
	defer unlock()
	current, err := readSysctl(sysctl)
	if err != nil {
		return err
	}
	st, found, err := g.load(ns)
	if err != nil {
		return err
	}
	wasHeld := held(st.Holders)
	recorded, err := parsePorts(st.Operator)
	if err != nil {
		return fmt.Errorf("state of network namespace %d: %w", ns.inode, err)
	}
	// Outside the holders' ranges, the kernel's value is the operator's;
	// inside, only the operator's record can tell.
	operator := current.minus(wasHeld).union(recorded.intersect(wasHeld))
	var live []holder
	for _, h := range st.Holders {
		if h.alive() {
			live = append(live, h)
		}
	}
	next := change(live)
	if !found && len(next) == 0 {
		return nil
	}
	// The file names every range xdpstack may have put in the kernel's
	// value while it changes, so that a process killed between the two
	// writes leaves no range that would be taken for the operator's.
	was := st.Holders
	both := slices.Clone(was)
	for _, h := range next {
		if !slices.Contains(both, h) {
			both = append(both, h)
		}
	}
	record := func(hs []holder) error {
		return g.record(ns, state{NetnsCookie: ns.cookie, Operator: operator.String(), Holders: hs})
	}
	if err := record(both); err != nil {
		return err
	}
	if want := operator.union(held(next)); want != current {
		if _, err := sysctl.WriteAt([]byte(want.String()+"\n"), 0); err != nil {
			return errors.Join(fmt.Errorf("write %s: %w", want, err), record(was))
		}
	}
	return record(next)
}

// readSysctl reads the kernel's value (a test's stand-in may have more
// after the first line).
func readSysctl(f *os.File) (portSet, error) {
	b, err := io.ReadAll(io.NewSectionReader(f, 0, 1<<20))
	if err != nil {
		return portSet{}, fmt.Errorf("read reserved ports: %w", err)
	}
	line, _, _ := strings.Cut(string(b), "\n")
	return parsePorts(line)
}

// lock takes the registry's lock, one for every namespace: changes are
// rare and quick.
func (g registry) lock() (unlock func(), err error) {
	if err := os.MkdirAll(g.dir, 0o700); err != nil {
		return nil, fmt.Errorf("make state folder: %w", err)
	}
	d, err := os.Open(g.dir)
	if err != nil {
		return nil, fmt.Errorf("lock state folder: %w", err)
	}
	if err := unix.Flock(int(d.Fd()), unix.LOCK_EX); err != nil {
		d.Close()
		return nil, fmt.Errorf("lock state folder %s: %w", g.dir, err)
	}
	return func() { d.Close() }, nil
}

func (g registry) path(ns netns) string {
	return filepath.Join(g.dir, fmt.Sprintf("netns-%d.json", ns.inode))
}

// load reads ns's state; a file left by an earlier namespace with the
// same inode number is not ns's.
func (g registry) load(ns netns) (st state, found bool, err error) {
	b, err := os.ReadFile(g.path(ns))
	if errors.Is(err, os.ErrNotExist) {
		return state{}, false, nil
	}
	if err != nil {
		return state{}, false, fmt.Errorf("read state: %w", err)
	}
	if err := json.Unmarshal(b, &st); err != nil {
		return state{}, false, fmt.Errorf("read state %s: %w (remove it to start afresh)", g.path(ns), err)
	}
	if st.NetnsCookie != ns.cookie {
		return state{}, false, nil
	}
	return st, true, nil
}

// record writes ns's state whole or not at all; with no holders, there
// is none.
func (g registry) record(ns netns, st state) error {
	if len(st.Holders) == 0 {
		if err := os.Remove(g.path(ns)); err != nil && !errors.Is(err, os.ErrNotExist) {
			return fmt.Errorf("remove state: %w", err)
		}
		return nil
	}
	b, err := json.Marshal(st)
	if err != nil {
		return err
	}
	f, err := os.CreateTemp(g.dir, ".netns-*")
	if err != nil {
		return fmt.Errorf("write state: %w", err)
	}
	_, err = f.Write(append(b, '\n'))
	if err = errors.Join(err, f.Close()); err == nil {
		err = os.Rename(f.Name(), g.path(ns))
	}
	if err != nil {
		os.Remove(f.Name())
		return fmt.Errorf("write state: %w", err)
	}
	return nil
}
