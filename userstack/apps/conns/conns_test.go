package conns

import "testing"

type closer struct{ closed int }

func (c *closer) Close() error { c.closed++; return nil }

func TestSet(t *testing.T) {
	var s Set
	a, b, late := &closer{}, &closer{}, &closer{}
	if !s.Add(a) || !s.Add(b) {
		t.Fatal("Add before Close: got false")
	}
	s.Remove(a)
	if a.closed != 1 {
		t.Errorf("Remove: closed %d times, want 1", a.closed)
	}
	s.Close()
	if a.closed != 1 || b.closed != 1 {
		t.Errorf("Close: closed removed %d, open %d times; want 1 and 1", a.closed, b.closed)
	}
	if s.Add(late) || late.closed != 1 {
		t.Errorf("Add after Close: want false and the connection closed, got closed %d times", late.closed)
	}
}
