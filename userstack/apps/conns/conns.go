// Package conns keeps an app's open connections, so that closing the app
// ends them instead of waiting for peers that may never hang up.
package conns

import (
	"io"
	"sync"
)

// Set is the open connections of one app; its zero value is ready.
type Set struct {
	mu     sync.Mutex
	open   map[io.Closer]struct{}
	closed bool
}

// Add records c. Once the set is closed it closes c and returns false.
func (s *Set) Add(c io.Closer) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		c.Close()
		return false
	}
	if s.open == nil {
		s.open = map[io.Closer]struct{}{}
	}
	s.open[c] = struct{}{}
	return true
}

// Remove forgets c and closes it.
func (s *Set) Remove(c io.Closer) {
	s.mu.Lock()
	delete(s.open, c)
	s.mu.Unlock()
	c.Close()
}

// Close closes every connection and refuses new ones.
func (s *Set) Close() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.closed = true
	for c := range s.open {
		c.Close()
	}
	s.open = nil
}
