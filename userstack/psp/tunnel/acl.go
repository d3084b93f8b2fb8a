package tunnel

import (
	"errors"
	"fmt"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/xdpstack/xdpstack/userstack/psp"
)

// Grant is one SPI this host issued to a peer: packets under it must be
// of Version and come from the inner source address Src.
type Grant struct {
	SPI     uint32
	Version psp.Version
	Src     netip.Addr
	// Peer is the gRPC address or certificate name it was issued to.
	Peer   string
	Issued time.Time
}

// Mirror is a copy of the ACL kept elsewhere: the XDP program's SPI map,
// which drops what the ACL would refuse before any decryption.
type Mirror interface {
	Put(Grant) error
	Delete(spi uint32) error
}

// ACL holds the grants by SPI. The data path checks every decrypted
// packet against it; the key exchange allows and revokes.
type ACL struct {
	mu     sync.Mutex // serialises writers
	grants atomic.Pointer[map[uint32]Grant]
	mirror Mirror
}

// NewACL returns an empty ACL that keeps mirror (nil for none) in step.
func NewACL(mirror Mirror) *ACL { return &ACL{mirror: mirror} }

// Allow adds or replaces g, in the mirror first: a grant the mirror
// refused (its map full, say) is not in the ACL either.
func (a *ACL) Allow(g Grant) error {
	if !g.Version.Valid() || !g.Src.IsValid() {
		return errors.New("allow spi: no valid version or source address")
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.mirror != nil {
		if err := a.mirror.Put(g); err != nil {
			return fmt.Errorf("allow spi %#x: %w", g.SPI, err)
		}
	}
	next := a.copyLocked()
	next[g.SPI] = g
	a.grants.Store(&next)
	return nil
}

// Revoke removes the grant of spi, if there is one.
func (a *ACL) Revoke(spi uint32) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.mirror != nil {
		if err := a.mirror.Delete(spi); err != nil {
			return fmt.Errorf("revoke spi %#x: %w", spi, err)
		}
	}
	next := a.copyLocked()
	delete(next, spi)
	a.grants.Store(&next)
	return nil
}

// Lookup returns the grant of spi.
func (a *ACL) Lookup(spi uint32) (Grant, bool) {
	if m := a.grants.Load(); m != nil {
		g, ok := (*m)[spi]
		return g, ok
	}
	return Grant{}, false
}

// Check tells whether a packet under spi and version v from the inner
// source src is allowed.
func (a *ACL) Check(spi uint32, v psp.Version, src netip.Addr) bool {
	g, ok := a.Lookup(spi)
	return ok && g.Version == v && g.Src == src
}

// Each calls fn for every grant, in no order.
func (a *ACL) Each(fn func(Grant)) {
	if m := a.grants.Load(); m != nil {
		for _, g := range *m {
			fn(g)
		}
	}
}

func (a *ACL) copyLocked() map[uint32]Grant {
	next := make(map[uint32]Grant)
	if m := a.grants.Load(); m != nil {
		for k, v := range *m {
			next[k] = v
		}
	}
	return next
}
