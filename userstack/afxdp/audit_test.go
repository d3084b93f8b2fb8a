package afxdp

import "fmt"

// audit checks, on an idle socket, that every UMEM frame is in exactly
// one place: a free list or one of the four rings.
func (s *Socket) audit() error {
	seen := make(map[uint64]string, s.frames)
	add := func(where string, addr uint64) error {
		addr &^= uint64(s.frameSize - 1)
		if prev, ok := seen[addr]; ok {
			return fmt.Errorf("frame %#x is both in %s and in %s", addr, prev, where)
		}
		seen[addr] = where
		return nil
	}
	var err error
	for _, a := range s.rxFree {
		err = firstErr(err, add("rx free list", a))
	}
	for _, a := range s.txFree {
		err = firstErr(err, add("tx free list", a))
	}
	for i := s.fill.consumer.Load(); i != s.fill.producer.Load(); i++ {
		err = firstErr(err, add("fill ring", *s.fill.at(i)))
	}
	for i := s.comp.consumer.Load(); i != s.comp.producer.Load(); i++ {
		err = firstErr(err, add("completion ring", *s.comp.at(i)))
	}
	for i := s.rx.consumer.Load(); i != s.rx.producer.Load(); i++ {
		err = firstErr(err, add("rx ring", s.rx.at(i).Addr))
	}
	for i := s.tx.consumer.Load(); i != s.tx.producer.Load(); i++ {
		err = firstErr(err, add("tx ring", s.tx.at(i).Addr))
	}
	if err == nil && len(seen) != int(s.frames) {
		err = fmt.Errorf("found %d frames, want %d", len(seen), s.frames)
	}
	return err
}

func firstErr(err, next error) error {
	if err != nil {
		return err
	}
	return next
}
