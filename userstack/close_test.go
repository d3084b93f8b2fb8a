package userstack

import (
	"errors"
	"net"
	"testing"
	"time"

	"github.com/xdpstack/xdpstack/internal/testing/testutil"
)

// TestClosedEndsWithErrClosed checks that a closed listener's Accept and
// a closed packet conn's ReadFrom say net.ErrClosed, as the net package's
// do: servers take that error as the end of serving, and anything else
// as a failure (the proxy app made attach exit 1 on SIGTERM).
func TestClosedEndsWithErrClosed(t *testing.T) {
	a, _ := testutil.HostPair(t, 0)
	s, _ := startOn(t, a, Options{})
	ln, err := s.Listen("tcp", ":7")
	if err != nil {
		t.Fatal(err)
	}
	pc, err := s.ListenPacket("udp", ":7")
	if err != nil {
		t.Fatal(err)
	}
	accepted, read := make(chan error, 1), make(chan error, 1)
	go func() {
		_, err := ln.Accept()
		accepted <- err
	}()
	go func() {
		_, _, err := pc.ReadFrom(make([]byte, 100))
		read <- err
	}()
	time.Sleep(50 * time.Millisecond) // both wait
	ln.Close()
	pc.Close()
	for what, ch := range map[string]chan error{"Accept": accepted, "ReadFrom": read} {
		select {
		case err := <-ch:
			if !errors.Is(err, net.ErrClosed) {
				t.Errorf("%s after Close: got %v, want net.ErrClosed", what, err)
			}
		case <-time.After(5 * time.Second):
			t.Errorf("%s still waits 5s after Close", what)
		}
	}
	if _, err := ln.Accept(); !errors.Is(err, net.ErrClosed) {
		t.Errorf("Accept on a closed listener: got %v, want net.ErrClosed", err)
	}
}
