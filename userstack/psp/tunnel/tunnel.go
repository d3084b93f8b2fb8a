// Package tunnel holds what the PSP gateway's parts share: the tunnels
// this host sends through, found by the remote virtual address, and the
// receive ACL, found by SPI. The data path (package gateway) reads both
// on every packet; the key exchange (package keyx) writes them. Reads
// take no lock: each change publishes a new copy of the map.
package tunnel

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/xdpstack/xdpstack/userstack/psp"
)

// Tunnel is how this host sends to one remote virtual address.
type Tunnel struct {
	// Peer is the remote gateway's gRPC address, as configured.
	Peer string
	// Local and Remote are the virtual addresses: the inner source this
	// host sends from and the inner destination.
	Local, Remote netip.Addr
	// SA seals what goes to Remote under the SPI and key the peer issued.
	SA *psp.SA
	// Encap is the outer header: OuterSrc this host's address on the
	// secure side, OuterDst the peer's.
	Encap psp.Encap
	// PeerMAC is the Ethernet address the sealed frames go to.
	PeerMAC net.HardwareAddr
	// Created is when the key exchange made it.
	Created time.Time
}

// Table holds the tunnels by remote virtual address.
type Table struct {
	mu        sync.Mutex // serialises writers
	tunnels   atomic.Pointer[map[netip.Addr]*Tunnel]
	installed []func(*Tunnel)
}

// Lookup returns the tunnel to remote, nil if there is none.
func (t *Table) Lookup(remote netip.Addr) *Tunnel {
	if m := t.tunnels.Load(); m != nil {
		return (*m)[remote]
	}
	return nil
}

// Install adds tun, or replaces the tunnel to the same remote address (a
// re-key), and then tells each OnInstall function.
func (t *Table) Install(tun *Tunnel) error {
	if tun == nil || tun.SA == nil || !tun.Remote.IsValid() {
		return errors.New("install tunnel: no SA or remote address")
	}
	if err := tun.Encap.Validate(); err != nil {
		return fmt.Errorf("install tunnel to %v: %w", tun.Remote, err)
	}
	t.mu.Lock()
	next := t.copyLocked()
	next[tun.Remote] = tun
	t.tunnels.Store(&next)
	fns := t.installed
	t.mu.Unlock()
	for _, fn := range fns {
		fn(tun)
	}
	return nil
}

// Remove drops the tunnel to remote, if there is one.
func (t *Table) Remove(remote netip.Addr) {
	t.mu.Lock()
	defer t.mu.Unlock()
	next := t.copyLocked()
	delete(next, remote)
	t.tunnels.Store(&next)
}

// OnInstall calls fn after every Install, outside the table's lock: the
// data path sends the packets it held for the new tunnel's address.
func (t *Table) OnInstall(fn func(*Tunnel)) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.installed = append(t.installed, fn)
}

// Each calls fn for every tunnel, in no order.
func (t *Table) Each(fn func(*Tunnel)) {
	if m := t.tunnels.Load(); m != nil {
		for _, tun := range *m {
			fn(tun)
		}
	}
}

// Len is how many tunnels there are.
func (t *Table) Len() int {
	if m := t.tunnels.Load(); m != nil {
		return len(*m)
	}
	return 0
}

func (t *Table) copyLocked() map[netip.Addr]*Tunnel {
	next := make(map[netip.Addr]*Tunnel)
	if m := t.tunnels.Load(); m != nil {
		for k, v := range *m {
			next[k] = v
		}
	}
	return next
}

// Requester asks for a tunnel to a remote virtual address that has none:
// the data path calls it when it holds a packet for such an address. It
// must not block; the key exchange installs the tunnel when it has it.
type Requester interface {
	Request(remote netip.Addr)
}
