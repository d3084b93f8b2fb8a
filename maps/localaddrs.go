package maps

import (
	"errors"
	"fmt"
	"net/netip"
	"strings"

	"github.com/cilium/ebpf"

	"github.com/xdpstack/xdpstack/bpf"
)

// AddrKind says what an address of the interface is to the program; an
// address may be of several kinds.
type AddrKind uint32

const (
	// AddrOwn is one of the interface's addresses: no packet from the
	// wire may come from it.
	AddrOwn = AddrKind(bpf.XdpLocalAddrFlagsLOCAL_ADDR_OWN)
	// AddrServed is an address the userstack serves: a wildcard listener
	// or the userstack's port range steers only packets to these.
	AddrServed = AddrKind(bpf.XdpLocalAddrFlagsLOCAL_ADDR_SERVED)
	// AddrBroadcast is the broadcast address of one of the interface's
	// IPv4 subnets: no packet may come from it either.
	AddrBroadcast = AddrKind(bpf.XdpLocalAddrFlagsLOCAL_ADDR_BROADCAST)
)

func (k AddrKind) String() string {
	var names []string
	for _, n := range []struct {
		kind AddrKind
		name string
	}{{AddrOwn, "own"}, {AddrServed, "served"}, {AddrBroadcast, "broadcast"}} {
		if k&n.kind != 0 {
			names = append(names, n.name)
			k &^= n.kind
		}
	}
	if k != 0 || len(names) == 0 {
		names = append(names, fmt.Sprintf("0x%x", uint32(k)))
	}
	return strings.Join(names, "|")
}

// LocalAddrs is the table of the interface's addresses that the program
// checks packets against before it steers them. One process changes it
// at a time.
type LocalAddrs struct{ m *ebpf.Map }

func addrKey(a netip.Addr) (bpf.XdpLocalAddrKey, error) {
	if !a.IsValid() {
		return bpf.XdpLocalAddrKey{}, errors.New("no address")
	}
	// IPv4 as IPv4-mapped, as the program builds its keys.
	return bpf.XdpLocalAddrKey{Addr: a.Unmap().As16()}, nil
}

// Put adds an address of the given kind, or changes the kind of one
// already there.
func (t LocalAddrs) Put(a netip.Addr, kind AddrKind) error {
	k, err := addrKey(a)
	if err != nil {
		return fmt.Errorf("add local address: %w", err)
	}
	if err := t.m.Put(k, bpf.XdpLocalAddrValue{Flags: uint32(kind)}); err != nil {
		return fmt.Errorf("add local address %s: %w", a, err)
	}
	return nil
}

// Delete removes an address; ErrNotFound when it is not there.
func (t LocalAddrs) Delete(a netip.Addr) error {
	k, err := addrKey(a)
	if err != nil {
		return fmt.Errorf("delete local address: %w", err)
	}
	if err := t.m.Delete(k); err != nil {
		return fmt.Errorf("delete local address %s: %w", a, notFound(err))
	}
	return nil
}

// All returns every address with its kind.
func (t LocalAddrs) All() (map[netip.Addr]AddrKind, error) {
	all := make(map[netip.Addr]AddrKind)
	var (
		k bpf.XdpLocalAddrKey
		v bpf.XdpLocalAddrValue
	)
	entries := t.m.Iterate()
	for entries.Next(&k, &v) {
		all[netip.AddrFrom16(k.Addr).Unmap()] = AddrKind(v.Flags)
	}
	if err := entries.Err(); err != nil {
		return nil, fmt.Errorf("read %s map: %w", LocalAddrsName, err)
	}
	return all, nil
}

// Sync makes the table hold exactly want: what is missing or of another
// kind is put first, then what is no longer wanted goes, so that an
// address kept throughout is never missing.
func (t LocalAddrs) Sync(want map[netip.Addr]AddrKind) error {
	have, err := t.All()
	if err != nil {
		return err
	}
	unmapped := make(map[netip.Addr]AddrKind, len(want))
	for a, kind := range want {
		unmapped[a.Unmap()] = kind
	}
	want = unmapped
	for a, kind := range want {
		if have[a] != kind {
			if err := t.Put(a, kind); err != nil {
				return err
			}
		}
	}
	for a := range have {
		if _, ok := want[a]; !ok {
			if err := t.Delete(a); err != nil && !errors.Is(err, ErrNotFound) {
				return err
			}
		}
	}
	return nil
}
