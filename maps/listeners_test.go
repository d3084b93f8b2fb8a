package maps

import (
	"errors"
	"sync"
	"testing"
)

// TestListenerCount checks the count of all listeners that the program
// reads before it looks any up: each new listener counts once, a
// replace or a failed delete changes nothing, writers at once lose no
// change, and a recount follows the table.
func TestListenerCount(t *testing.T) {
	m := newMaps(t, ListenersName, ListenPortsName, SamplingName)
	table := Listeners{m: m[0], ports: m[1], count: m[2]}
	wantCount := func(want uint64) {
		t.Helper()
		if n, err := table.Count(); err != nil || n != want {
			t.Fatalf("Count: %d, %v; want %d", n, err, want)
		}
	}
	udp53 := Listener{Protocol: UDP, Port: 53}
	if err := table.Put(udp53, 1); err != nil {
		t.Fatal(err)
	}
	if err := table.Put(udp53, 2); err != nil {
		t.Fatal(err)
	}
	wantCount(1)
	if err := table.Put(Listener{Protocol: 1, Port: 53}, 3); err == nil {
		t.Fatal("Put of an icmp listener: no error")
	}
	wantCount(1)

	// Several writers at once, beside the sampling settings' writer of
	// another word of the same value.
	var writers sync.WaitGroup
	for w := range 4 {
		writers.Go(func() {
			for p := range 100 {
				l := Listener{Protocol: TCP, Port: uint16(1000*(w+1) + p)}
				if err := table.Put(l, 1); err != nil {
					t.Error(err)
					return
				}
				if p%2 == 0 {
					if err := table.Delete(l); err != nil {
						t.Error(err)
						return
					}
				}
			}
		})
	}
	writers.Go(func() {
		for i := range 400 {
			if err := (Sampling{state: m[2]}).SetSettings(SampleSettings{Rate: uint32(i) % MaxSampleRate, Snaplen: 64}); err != nil {
				t.Error(err)
				return
			}
		}
	})
	writers.Wait()
	wantCount(1 + 4*50)

	if err := table.Delete(Listener{Protocol: TCP, Port: 1}); !errors.Is(err, ErrNotFound) {
		t.Fatalf("Delete of a missing listener: %v, want ErrNotFound", err)
	}
	wantCount(1 + 4*50)

	// What an attach does over a table a dead daemon left, whose count
	// its new sampling map does not hold.
	if err := storeWords(m[2], wordStore{listenersWord, 0}); err != nil {
		t.Fatal(err)
	}
	if err := table.Recount(); err != nil {
		t.Fatal(err)
	}
	wantCount(1 + 4*50)
	all, err := table.All()
	if err != nil {
		t.Fatal(err)
	}
	for l := range all {
		if err := table.Delete(l); err != nil {
			t.Fatal(err)
		}
	}
	wantCount(0)
	if err := table.Delete(udp53); !errors.Is(err, ErrNotFound) {
		t.Fatalf("Delete of a deleted listener: %v, want ErrNotFound", err)
	}
	wantCount(0)

	readOnly := Listeners{m: m[0], ports: m[1]}
	if err := readOnly.Put(udp53, 1); !errors.Is(err, errReadOnly) {
		t.Errorf("Put into a table opened for reading: %v, want %v", err, errReadOnly)
	}
}
