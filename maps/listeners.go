package maps

import (
	"errors"
	"fmt"
	"net/netip"
	"unsafe"

	"github.com/cilium/ebpf"

	"github.com/xdpstack/xdpstack/bpf"
)

// Protocol is a transport protocol the program can steer.
type Protocol uint8

const (
	TCP Protocol = 6
	UDP Protocol = 17
)

func (p Protocol) String() string {
	switch p {
	case TCP:
		return "tcp"
	case UDP:
		return "udp"
	}
	return fmt.Sprintf("protocol(%d)", uint8(p))
}

// Listener is an address the userstack serves. An unspecified (zero or
// ::) Addr matches every destination address.
type Listener struct {
	Protocol Protocol
	Addr     netip.Addr
	Port     uint16
}

func (l Listener) String() string {
	addr := l.Addr
	if !addr.IsValid() {
		addr = netip.IPv6Unspecified()
	}
	return fmt.Sprintf("%s://%s", l.Protocol, netip.AddrPortFrom(addr, l.Port))
}

func (l Listener) key() (bpf.XdpListenerKey, error) {
	if l.Protocol != TCP && l.Protocol != UDP {
		return bpf.XdpListenerKey{}, fmt.Errorf("listener %s: only tcp and udp can be steered", l)
	}
	k := bpf.XdpListenerKey{Protocol: uint8(l.Protocol), Port: htons(l.Port)}
	if l.Addr.IsValid() && !l.Addr.IsUnspecified() {
		k.Addr = l.Addr.As16()
	}
	return k, nil
}

func listenerFromKey(k bpf.XdpListenerKey) Listener {
	addr := netip.AddrFrom16(k.Addr).Unmap()
	if addr.IsUnspecified() {
		addr = netip.Addr{}
	}
	return Listener{Protocol: Protocol(k.Protocol), Addr: addr, Port: ntohs(k.Port)}
}

// Listeners is the table of what the program steers to the userstack,
// with the count of listeners per port that lets the program skip the
// table for ports nobody listens on, and the count of them all, in the
// sampling map's value, that lets it skip both while there are none.
// One process changes them at a time.
type Listeners struct {
	m     *ebpf.Map
	ports *ebpf.Map
	// count is the sampling map (see listenersWord); nil in a table
	// opened for reading (OpenPinned).
	count *ebpf.Map
}

// listenersWord is the word of the sampling map's value that counts the
// listeners (see shared_unsafe.go).
var listenersWord = wordOf(unsafe.Offsetof(bpf.XdpSampleState{}.Listeners))

// Put adds or replaces a listener, owned by the session layer's id.
func (t Listeners) Put(l Listener, id uint32) error {
	k, err := l.key()
	if err != nil {
		return err
	}
	var old bpf.XdpListenerValue
	isNew := errors.Is(t.m.Lookup(k, &old), ebpf.ErrKeyNotExist)
	// Count it first: a listener the program cannot see yet is
	// harmless, a listed one it skips is not.
	if isNew {
		if err := t.addToCount(1); err != nil {
			return err
		}
		if err := t.addToPort(l, 1); err != nil {
			t.addToCount(-1)
			return err
		}
	}
	if err := t.m.Put(k, bpf.XdpListenerValue{ListenerId: id}); err != nil {
		if isNew {
			t.addToPort(l, -1)
			t.addToCount(-1)
		}
		return fmt.Errorf("add listener %s: %w", l, err)
	}
	return nil
}

// Delete removes a listener; ErrNotFound when it is not there.
func (t Listeners) Delete(l Listener) error {
	k, err := l.key()
	if err != nil {
		return err
	}
	if t.count == nil {
		return errReadOnly
	}
	if err := t.m.Delete(k); err != nil {
		return fmt.Errorf("delete listener %s: %w", l, notFound(err))
	}
	return errors.Join(t.addToPort(l, -1), t.addToCount(-1))
}

var errReadOnly = errors.New("change listeners: the table was opened for reading (use the attachment's)")

// addToCount adds delta to the count of all listeners, never below 0.
func (t Listeners) addToCount(delta int64) error {
	if t.count == nil {
		return errReadOnly
	}
	if err := addToWord(t.count, listenersWord, delta); err != nil {
		return fmt.Errorf("count listeners in the %s map: %w", SamplingName, err)
	}
	return nil
}

// Recount sets the count of all listeners to the entries of the table:
// an attach's, whose sampling map may be new, before its program runs.
func (t Listeners) Recount() error {
	all, err := t.All()
	if err != nil {
		return err
	}
	if t.count == nil {
		return errReadOnly
	}
	if err := storeWords(t.count, wordStore{listenersWord, uint64(len(all))}); err != nil {
		return fmt.Errorf("count listeners in the %s map: %w", SamplingName, err)
	}
	return nil
}

// Count reads the count of all listeners, as the program reads it.
func (t Listeners) Count() (uint64, error) {
	if t.count == nil {
		return 0, errReadOnly
	}
	w, err := loadWords(t.count, listenersWord)
	if err != nil {
		return 0, fmt.Errorf("read the listener count in the %s map: %w", SamplingName, err)
	}
	return w[0], nil
}

func (t Listeners) addToPort(l Listener, delta int) error {
	port := uint32(l.Port)
	var n uint32
	if err := t.ports.Lookup(port, &n); err != nil {
		return fmt.Errorf("read %s map: %w", ListenPortsName, err)
	}
	if err := t.ports.Put(port, uint32(int(n)+delta)); err != nil {
		return fmt.Errorf("write %s map: %w", ListenPortsName, err)
	}
	return nil
}

// All returns every listener with its owner's id.
func (t Listeners) All() (map[Listener]uint32, error) {
	all := make(map[Listener]uint32)
	var (
		k bpf.XdpListenerKey
		v bpf.XdpListenerValue
	)
	entries := t.m.Iterate()
	for entries.Next(&k, &v) {
		all[listenerFromKey(k)] = v.ListenerId
	}
	if err := entries.Err(); err != nil {
		return nil, fmt.Errorf("read %s map: %w", ListenersName, err)
	}
	return all, nil
}

// The key keeps the port in network order, as the packet has it.
func htons(v uint16) uint16 { return v<<8 | v>>8 }
func ntohs(v uint16) uint16 { return htons(v) }
