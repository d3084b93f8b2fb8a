// Package session is the userstack's session layer: it keeps the table
// of what the userstack's applications listen on and keeps the XDP
// listener table, which steers their packets, in step with it.
package session

import (
	"errors"
	"fmt"
	"sync"

	"github.com/xdpstack/xdpstack/maps"
)

// Steering is the XDP listener table (maps.Listeners).
type Steering interface {
	Put(l maps.Listener, id uint32) error
	Delete(l maps.Listener) error
	All() (map[maps.Listener]uint32, error)
}

// Table is the set of listeners, each with the id it has in the XDP
// table.
type Table struct {
	steer Steering

	mu     sync.Mutex
	nextID uint32
	byKey  map[maps.Listener]*entry
}

// entry is a listener's id, and how many listeners share it (AddShared).
type entry struct {
	id     uint32
	shares int
}

func NewTable(steer Steering) *Table {
	return &Table{steer: steer, byKey: make(map[maps.Listener]*entry)}
}

// TakeOver removes from the XDP table every listener that is not the
// table's own, and returns them: at start, those a daemon left when it
// died (one userstack serves an interface at a time), which would steer
// their packets to a userstack that does not listen on them.
func (t *Table) TakeOver() ([]maps.Listener, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	all, err := t.steer.All()
	if err != nil {
		return nil, err
	}
	var stale []maps.Listener
	for l := range all {
		if _, ours := t.byKey[l]; ours {
			continue
		}
		if err := t.steer.Delete(l); err != nil && !errors.Is(err, maps.ErrNotFound) {
			return stale, err
		}
		stale = append(stale, l)
	}
	return stale, nil
}

// Add steers l to the userstack and returns its id. One listener per
// address: a second Add of the same one fails.
func (t *Table) Add(l maps.Listener) (uint32, error) {
	return t.add(l, false)
}

// AddShared steers l as Add does, or takes a share of its entry when
// another listener steers it already: a wildcard entry stands for both
// families, and an IPv4 wildcard listener and an IPv6-only one may
// share a port (as nginx's "listen 80" and "listen [::]:80" do). Each
// share is removed on its own.
func (t *Table) AddShared(l maps.Listener) (uint32, error) {
	return t.add(l, true)
}

func (t *Table) add(l maps.Listener, shared bool) (uint32, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if e, ok := t.byKey[l]; ok {
		if !shared || e.shares == 0 {
			return 0, fmt.Errorf("listen on %s: already listening", l)
		}
		e.shares++
		return e.id, nil
	}
	t.nextID++
	if err := t.steer.Put(l, t.nextID); err != nil {
		return 0, err
	}
	e := &entry{id: t.nextID}
	if shared {
		e.shares = 1
	}
	t.byKey[l] = e
	return t.nextID, nil
}

// Remove stops steering l, or gives up one share of it.
func (t *Table) Remove(l maps.Listener) error {
	t.mu.Lock()
	defer t.mu.Unlock()
	e, ok := t.byKey[l]
	if !ok {
		return nil
	}
	if e.shares > 1 {
		e.shares--
		return nil
	}
	delete(t.byKey, l)
	return t.steer.Delete(l)
}

// Listeners returns a copy of the table.
func (t *Table) Listeners() map[maps.Listener]uint32 {
	t.mu.Lock()
	defer t.mu.Unlock()
	all := make(map[maps.Listener]uint32, len(t.byKey))
	for l, e := range t.byKey {
		all[l] = e.id
	}
	return all
}
