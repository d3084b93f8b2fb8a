package session

import (
	"errors"
	stdmaps "maps"
	"net/netip"
	"testing"

	"github.com/xdpstack/xdpstack/maps"
)

type fakeSteering map[maps.Listener]uint32

func (f fakeSteering) Put(l maps.Listener, id uint32) error {
	if l.Port == 666 {
		return errors.New("map full")
	}
	f[l] = id
	return nil
}

func (f fakeSteering) Delete(l maps.Listener) error {
	delete(f, l)
	return nil
}

func (f fakeSteering) All() (map[maps.Listener]uint32, error) { return stdmaps.Clone(f), nil }

// TestTakeOver: the listeners a dead daemon left go, the table's own stay.
func TestTakeOver(t *testing.T) {
	stale := maps.Listener{Protocol: maps.TCP, Port: 80}
	steer := fakeSteering{stale: 3}
	tab := NewTable(steer)
	own := maps.Listener{Protocol: maps.UDP, Port: 53}
	if _, err := tab.Add(own); err != nil {
		t.Fatal(err)
	}
	removed, err := tab.TakeOver()
	if err != nil || len(removed) != 1 || removed[0] != stale {
		t.Fatalf("TakeOver(): %v, %v; want [%v]", removed, err, stale)
	}
	if _, ok := steer[stale]; ok || len(steer) != 1 || steer[own] == 0 {
		t.Errorf("steering after TakeOver: %v, want only %v", steer, own)
	}
}

func TestTable(t *testing.T) {
	steer := fakeSteering{}
	tab := NewTable(steer)
	tcp7 := maps.Listener{Protocol: maps.TCP, Port: 7}
	udp7 := maps.Listener{Protocol: maps.UDP, Addr: netip.MustParseAddr("10.0.0.1"), Port: 7}
	for _, l := range []maps.Listener{tcp7, udp7} {
		if _, err := tab.Add(l); err != nil {
			t.Fatalf("Add(%v): %v", l, err)
		}
	}
	if _, err := tab.Add(tcp7); err == nil {
		t.Errorf("Add(%v) twice: got no error", tcp7)
	}
	if _, err := tab.Add(maps.Listener{Protocol: maps.TCP, Port: 666}); err == nil {
		t.Error("Add with a failing map: got no error")
	}
	if len(steer) != 2 || len(tab.Listeners()) != 2 {
		t.Fatalf("after two Adds: steering %v, table %v", steer, tab.Listeners())
	}
	if err := tab.Remove(tcp7); err != nil {
		t.Fatal(err)
	}
	if _, ok := steer[tcp7]; ok {
		t.Errorf("Remove(%v) left its steering entry", tcp7)
	}
	if steer[udp7] != tab.Listeners()[udp7] {
		t.Errorf("ids differ: steering %d, table %d", steer[udp7], tab.Listeners()[udp7])
	}
}

// TestTableShared: the IPv4 and the IPv6 wildcard listener of a port
// share its entry, which stays until both are removed; an entry added
// alone is not shared.
func TestTableShared(t *testing.T) {
	steer := fakeSteering{}
	tab := NewTable(steer)
	any80 := maps.Listener{Protocol: maps.TCP, Port: 80}
	first, err := tab.AddShared(any80)
	if err != nil {
		t.Fatal(err)
	}
	if second, err := tab.AddShared(any80); err != nil || second != first {
		t.Fatalf("AddShared(%v) again: %d, %v; want %d", any80, second, err, first)
	}
	if err := tab.Remove(any80); err != nil {
		t.Fatal(err)
	}
	if steer[any80] != first {
		t.Fatalf("after one Remove of two shares: steering %v", steer)
	}
	if err := tab.Remove(any80); err != nil {
		t.Fatal(err)
	}
	if _, ok := steer[any80]; ok {
		t.Errorf("after both Removes: steering %v", steer)
	}
	alone := maps.Listener{Protocol: maps.TCP, Port: 81}
	if _, err := tab.Add(alone); err != nil {
		t.Fatal(err)
	}
	if _, err := tab.AddShared(alone); err == nil {
		t.Errorf("AddShared(%v) of an entry added alone: got no error", alone)
	}
}
