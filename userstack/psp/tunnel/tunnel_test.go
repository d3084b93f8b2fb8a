package tunnel

import (
	"errors"
	"net/netip"
	"sync"
	"testing"

	"github.com/xdpstack/xdpstack/userstack/psp"
)

func newSA(t *testing.T) *psp.SA {
	t.Helper()
	sa, err := psp.NewSA(0x10, psp.V0, make([]byte, psp.V0.KeyLen()))
	if err != nil {
		t.Fatal(err)
	}
	return sa
}

func TestTableInstallReplacesAndTells(t *testing.T) {
	var tab Table
	remote := netip.MustParseAddr("10.9.0.2")
	var told []*Tunnel
	tab.OnInstall(func(tun *Tunnel) { told = append(told, tun) })
	if tab.Lookup(remote) != nil || tab.Len() != 0 {
		t.Fatal("empty table finds a tunnel")
	}
	first := &Tunnel{Remote: remote, SA: newSA(t)}
	second := &Tunnel{Remote: remote, SA: newSA(t)}
	for _, tun := range []*Tunnel{first, second} {
		if err := tab.Install(tun); err != nil {
			t.Fatal(err)
		}
	}
	if tab.Lookup(remote) != second || tab.Len() != 1 || len(told) != 2 {
		t.Fatalf("after a re-key: lookup %p (want %p), len %d, told %d", tab.Lookup(remote), second, tab.Len(), len(told))
	}
	tab.Remove(remote)
	if tab.Lookup(remote) != nil {
		t.Fatal("removed tunnel still found")
	}
}

func TestTableRefusesIncompleteTunnels(t *testing.T) {
	var tab Table
	bad := []*Tunnel{
		nil,
		{Remote: netip.MustParseAddr("10.9.0.2")},
		{SA: newSA(t)},
		{Remote: netip.MustParseAddr("10.9.0.2"), SA: newSA(t), Encap: psp.Encap{Mode: psp.Tunnel,
			OuterSrc: netip.MustParseAddr("192.0.2.1"), OuterDst: netip.MustParseAddr("2001:db8::1")}},
	}
	for i, tun := range bad {
		if err := tab.Install(tun); err == nil {
			t.Errorf("tunnel %d installed", i)
		}
	}
	if tab.Len() != 0 {
		t.Fatal("a refused tunnel is in the table")
	}
}

func TestTableReadsBesideWrites(t *testing.T) {
	var tab Table
	remote := netip.MustParseAddr("fd00::2")
	sa := newSA(t)
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for i := 0; i < 1000; i++ {
			_ = tab.Install(&Tunnel{Remote: remote, SA: sa})
		}
	}()
	for i := 0; i < 1000; i++ {
		if tun := tab.Lookup(remote); tun != nil && tun.SA != sa {
			t.Fatal("lookup saw a torn tunnel")
		}
	}
	wg.Wait()
}

type fakeMirror struct {
	put  map[uint32]Grant
	fail error
}

func (m *fakeMirror) Put(g Grant) error {
	if m.fail != nil {
		return m.fail
	}
	m.put[g.SPI] = g
	return nil
}

func (m *fakeMirror) Delete(spi uint32) error { delete(m.put, spi); return nil }

func TestACL(t *testing.T) {
	m := &fakeMirror{put: map[uint32]Grant{}}
	acl := NewACL(m)
	src := netip.MustParseAddr("10.9.0.1")
	if err := acl.Allow(Grant{SPI: 7, Version: psp.V1, Src: src}); err != nil {
		t.Fatal(err)
	}
	if !acl.Check(7, psp.V1, src) || len(m.put) != 1 {
		t.Fatal("allowed grant not checked or not mirrored")
	}
	for _, c := range []struct {
		spi uint32
		v   psp.Version
		src string
	}{{8, psp.V1, "10.9.0.1"}, {7, psp.V0, "10.9.0.1"}, {7, psp.V1, "10.9.0.3"}} {
		if acl.Check(c.spi, c.v, netip.MustParseAddr(c.src)) {
			t.Errorf("spi %d version %v from %s allowed", c.spi, c.v, c.src)
		}
	}
	m.fail = errors.New("map full")
	if err := acl.Allow(Grant{SPI: 9, Version: psp.V1, Src: src}); err == nil {
		t.Fatal("a grant the mirror refused was allowed")
	}
	if _, ok := acl.Lookup(9); ok {
		t.Fatal("a grant the mirror refused is in the ACL")
	}
	if err := acl.Allow(Grant{SPI: 10, Version: psp.Version(9), Src: src}); err == nil {
		t.Fatal("a grant of version 9 was allowed")
	}
	if err := acl.Revoke(7); err != nil {
		t.Fatal(err)
	}
	if acl.Check(7, psp.V1, src) || len(m.put) != 0 {
		t.Fatal("revoked grant still allowed or still mirrored")
	}
}
