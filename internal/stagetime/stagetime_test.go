package stagetime

import (
	"sync"
	"testing"
)

func TestMarkRecordsInOrder(t *testing.T) {
	Record(4)
	before := Now()
	Mark(TxWrite)
	Mark(TxWrite)
	Mark(KickDone)
	after := Now()
	m := Stop()
	if got := len(m.Times[TxWrite]); got != 2 {
		t.Fatalf("len(Times[TxWrite]) = %d, want 2", got)
	}
	if got := len(m.Times[KickDone]); got != 1 {
		t.Fatalf("len(Times[KickDone]) = %d, want 1", got)
	}
	if got := len(m.Times[RxWake]); got != 0 {
		t.Fatalf("len(Times[RxWake]) = %d, want 0", got)
	}
	tw := m.Times[TxWrite]
	if tw[0] < before || tw[0] > tw[1] || m.Times[KickDone][0] > after {
		t.Errorf("marks %v, %v not in order within [%d, %d]", tw, m.Times[KickDone], before, after)
	}
}

func TestConcurrentMarksBoundedByCapacity(t *testing.T) {
	const capacity, goroutines, each = 100, 8, 50
	Record(capacity)
	var wg sync.WaitGroup
	for range goroutines {
		wg.Go(func() {
			for range each {
				Mark(RxWake)
				Mark(KickStart)
			}
		})
	}
	wg.Wait()
	m := Stop()
	for _, s := range []Stage{RxWake, KickStart} {
		if got := len(m.Times[s]); got != capacity {
			t.Errorf("len(Times[%v]) = %d, want %d", s, got, capacity)
		}
		if got := m.Dropped[s]; got != goroutines*each-capacity {
			t.Errorf("Dropped[%v] = %d, want %d", s, got, goroutines*each-capacity)
		}
		for i := 1; i < len(m.Times[s]); i++ {
			if m.Times[s][i] < m.Times[s][i-1] {
				t.Fatalf("Times[%v] not sorted at %d", s, i)
			}
		}
	}
}

// TestStopWhileMarking stops a recording while goroutines mark, for the
// race detector: no mark may land in the slices Stop returned.
func TestStopWhileMarking(t *testing.T) {
	Record(1 << 16)
	var wg sync.WaitGroup
	stop := make(chan struct{})
	for range 4 {
		wg.Go(func() {
			for {
				select {
				case <-stop:
					return
				default:
					Mark(TxQueued)
				}
			}
		})
	}
	m := Stop()
	n := len(m.Times[TxQueued])
	snapshot := append([]int64(nil), m.Times[TxQueued]...)
	Record(1) // a new recording the markers may write into instead
	close(stop)
	wg.Wait()
	Stop()
	for i := range n {
		if m.Times[TxQueued][i] != snapshot[i] {
			t.Fatalf("Times[TxQueued][%d] changed after Stop", i)
		}
	}
}

func TestStopWithoutRecord(t *testing.T) {
	Mark(RxWake)
	if m := Stop(); m.Times[RxWake] != nil {
		t.Errorf("Stop() without Record: %v, want no marks", m.Times)
	}
}

func TestDisabledMarkAllocatesNothing(t *testing.T) {
	if got := testing.AllocsPerRun(1000, func() { Mark(RxDelivered) }); got != 0 {
		t.Errorf("Mark while not recording: %v allocations, want 0", got)
	}
	Record(10)
	defer Stop()
	if got := testing.AllocsPerRun(100, func() { Mark(RxDelivered) }); got != 0 {
		t.Errorf("Mark while recording: %v allocations, want 0", got)
	}
}

func BenchmarkMarkDisabled(b *testing.B) {
	for b.Loop() {
		Mark(RxWake)
	}
}

// BenchmarkMarkRecording is Mark's cost while recording; past the
// capacity it costs the same but the store.
func BenchmarkMarkRecording(b *testing.B) {
	Record(1 << 20)
	defer Stop()
	for b.Loop() {
		Mark(RxWake)
	}
}
