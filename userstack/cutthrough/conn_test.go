package cutthrough

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"net/netip"
	"os"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/net/nettest"
)

var (
	srvAddr = netip.MustParseAddrPort("10.0.0.1:80")
	cliAddr = netip.MustParseAddrPort("10.0.0.1:40000")
)

// join dials a listener on srvAddr in namespace default and returns
// both ends; t.Cleanup closes what the test left open.
func join(t *testing.T, lo ListenOptions, do DialOptions) (tab *Table, client, server *Conn) {
	t.Helper()
	tab = NewTable()
	l, err := tab.Listen("default", srvAddr, lo)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	client, err = tab.Dial(context.Background(), "default", cliAddr, srvAddr, do)
	if err != nil {
		t.Fatal(err)
	}
	c, err := l.Accept()
	if err != nil {
		t.Fatal(err)
	}
	server = c.(*Conn)
	t.Cleanup(func() { client.Close(); server.Close() })
	return tab, client, server
}

// TestNetConn runs the net.Conn conformance tests (golang.org/x/net/nettest):
// data, ping-pong, racing reads and writes, deadlines, close.
func TestNetConn(t *testing.T) {
	nettest.TestConn(t, func() (c1, c2 net.Conn, stop func(), err error) {
		tab := NewTable()
		l, err := tab.Listen("default", srvAddr, ListenOptions{})
		if err != nil {
			return nil, nil, nil, err
		}
		client, err := tab.Dial(context.Background(), "default", cliAddr, srvAddr, DialOptions{})
		if err != nil {
			return nil, nil, nil, err
		}
		server, err := l.Accept()
		if err != nil {
			return nil, nil, nil, err
		}
		return client, server, func() { client.Close(); server.Close(); l.Close() }, nil
	})
}

func TestAddrs(t *testing.T) {
	_, client, server := join(t, ListenOptions{}, DialOptions{})
	for _, tc := range []struct {
		name string
		got  net.Addr
		want netip.AddrPort
	}{
		{"client local", client.LocalAddr(), cliAddr},
		{"client remote", client.RemoteAddr(), srvAddr},
		{"server local", server.LocalAddr(), srvAddr},
		{"server remote", server.RemoteAddr(), cliAddr},
	} {
		a, ok := tc.got.(*net.TCPAddr)
		if !ok || a.AddrPort() != tc.want || a.Network() != "tcp" {
			t.Errorf("%s: got %#v, want *net.TCPAddr %s", tc.name, tc.got, tc.want)
		}
	}
}

// readAll reads c to its end and returns what came and the error that
// ended it (nil for io.EOF).
func readAll(c net.Conn) ([]byte, error) {
	return io.ReadAll(c)
}

func TestHalfClose(t *testing.T) {
	for _, first := range []string{"client", "server"} {
		t.Run(first+" first", func(t *testing.T) {
			_, client, server := join(t, ListenOptions{}, DialOptions{})
			a, b := client, server
			if first == "server" {
				a, b = server, client
			}
			if _, err := a.Write([]byte("question")); err != nil {
				t.Fatal(err)
			}
			if err := a.CloseWrite(); err != nil {
				t.Fatal(err)
			}
			if _, err := a.Write([]byte("x")); !errors.Is(err, syscall.EPIPE) {
				t.Errorf("Write after CloseWrite: got %v, want EPIPE", err)
			}
			got, err := readAll(b)
			if err != nil || string(got) != "question" {
				t.Fatalf("peer read %q, %v; want question, EOF", got, err)
			}
			// The peer can still answer, and close its side in turn.
			if _, err := b.Write([]byte("answer")); err != nil {
				t.Fatalf("peer Write after the FIN: %v", err)
			}
			b.CloseWrite()
			got, err = readAll(a)
			if err != nil || string(got) != "answer" {
				t.Fatalf("read %q, %v; want answer, EOF", got, err)
			}
		})
	}
}

func TestCloseDeliversPendingData(t *testing.T) {
	_, client, server := join(t, ListenOptions{}, DialOptions{})
	want := bytes.Repeat([]byte("0123456789"), 100_000)
	if _, err := client.Write(want); err != nil {
		t.Fatal(err)
	}
	if err := client.Close(); err != nil {
		t.Fatal(err)
	}
	got, err := readAll(server)
	if err != nil || !bytes.Equal(got, want) {
		t.Fatalf("read %d bytes, %v; want %d, EOF", len(got), err, len(want))
	}
	// The client is gone: writes to it are a broken pipe.
	if _, err := server.Write([]byte("x")); !errors.Is(err, syscall.EPIPE) {
		t.Errorf("Write to a closed peer: got %v, want EPIPE", err)
	}
}

func TestCloseWithUnreadDataResets(t *testing.T) {
	_, client, server := join(t, ListenOptions{}, DialOptions{})
	client.Write([]byte("last words"))
	server.Write([]byte("never read"))
	// Wait until the server's bytes are queued at the client: they are,
	// Write returned.
	if err := client.Close(); err != nil {
		t.Fatal(err)
	}
	got, err := io.ReadAll(server)
	if string(got) != "last words" || !errors.Is(err, syscall.ECONNRESET) {
		t.Errorf("read %q, %v; want last words, ECONNRESET", got, err)
	}
	if _, err := server.Write([]byte("x")); !errors.Is(err, syscall.ECONNRESET) {
		t.Errorf("Write to a reset peer: got %v, want ECONNRESET", err)
	}
}

func TestCloseRead(t *testing.T) {
	_, client, server := join(t, ListenOptions{ReceiveBuffer: 10}, DialOptions{})
	client.Write([]byte("dropped"))
	if err := server.CloseRead(); err != nil {
		t.Fatal(err)
	}
	if n, err := server.Read(make([]byte, 10)); n != 0 || err != io.EOF {
		t.Errorf("Read after CloseRead: %d, %v; want 0, EOF", n, err)
	}
	// More than the buffer holds goes through, dropped: the writer does
	// not stall.
	if n, err := client.Write(make([]byte, 1000)); n != 1000 || err != nil {
		t.Errorf("Write to a peer that shut down reading: %d, %v; want 1000, nil", n, err)
	}
	// The other direction still works.
	server.Write([]byte("still here"))
	server.CloseWrite()
	if got, err := readAll(client); string(got) != "still here" || err != nil {
		t.Errorf("read %q, %v; want still here, EOF", got, err)
	}
	// Nothing unread: the close is clean.
	server.Close()
	if _, err := client.Write([]byte("x")); !errors.Is(err, syscall.EPIPE) {
		t.Errorf("Write after the peer's close: got %v, want EPIPE", err)
	}
}

func TestOpsAfterClose(t *testing.T) {
	_, client, _ := join(t, ListenOptions{}, DialOptions{})
	client.Close()
	for name, op := range map[string]func() error{
		"Read":             func() error { _, err := client.Read(make([]byte, 1)); return err },
		"Write":            func() error { _, err := client.Write([]byte("x")); return err },
		"Close":            client.Close,
		"CloseWrite":       client.CloseWrite,
		"CloseRead":        client.CloseRead,
		"SetDeadline":      func() error { return client.SetDeadline(time.Now()) },
		"SetReadDeadline":  func() error { return client.SetReadDeadline(time.Now()) },
		"SetWriteDeadline": func() error { return client.SetWriteDeadline(time.Now()) },
	} {
		var opErr *net.OpError
		if err := op(); !errors.Is(err, net.ErrClosed) || !errors.As(err, &opErr) {
			t.Errorf("%s after Close: got %v, want a *net.OpError with net.ErrClosed", name, err)
		}
	}
}

func TestCloseWakesBlockedCalls(t *testing.T) {
	_, client, _ := join(t, ListenOptions{ReceiveBuffer: 1}, DialOptions{})
	errs := make(chan error, 2)
	go func() { _, err := client.Read(make([]byte, 1)); errs <- err }()
	go func() { _, err := client.Write(make([]byte, 100)); errs <- err }()
	time.Sleep(20 * time.Millisecond)
	client.Close()
	for range 2 {
		if err := <-errs; !errors.Is(err, net.ErrClosed) {
			t.Errorf("blocked call when closed: got %v, want net.ErrClosed", err)
		}
	}
}

func TestDeadlines(t *testing.T) {
	_, client, server := join(t, ListenOptions{ReceiveBuffer: 100}, DialOptions{})
	isTimeout := func(err error) bool {
		var ne net.Error
		return errors.Is(err, os.ErrDeadlineExceeded) && errors.As(err, &ne) && ne.Timeout()
	}

	client.SetReadDeadline(time.Now().Add(20 * time.Millisecond))
	start := time.Now()
	if _, err := client.Read(make([]byte, 1)); !isTimeout(err) {
		t.Errorf("Read past the deadline: got %v, want a timeout", err)
	}
	if waited := time.Since(start); waited < 15*time.Millisecond {
		t.Errorf("Read timed out after %v, before its deadline", waited)
	}
	// Clearing the deadline lets reads through again.
	client.SetReadDeadline(time.Time{})
	server.Write([]byte("x"))
	if n, err := client.Read(make([]byte, 1)); n != 1 || err != nil {
		t.Errorf("Read after clearing the deadline: %d, %v", n, err)
	}

	// A full buffer: the writer waits, then times out, having queued
	// what fitted.
	client.SetWriteDeadline(time.Now().Add(20 * time.Millisecond))
	if n, err := client.Write(make([]byte, 150)); n != 100 || !isTimeout(err) {
		t.Errorf("Write past the deadline: %d, %v; want 100, a timeout", n, err)
	}
	// A deadline in the past fails at once, even with data to read.
	server.SetReadDeadline(time.Now().Add(-time.Second))
	if _, err := server.Read(make([]byte, 1)); !isTimeout(err) {
		t.Errorf("Read with a past deadline: got %v, want a timeout", err)
	}
	// A deadline moved out while a read waits holds it longer.
	client.SetReadDeadline(time.Now().Add(10 * time.Millisecond))
	go func() {
		time.Sleep(2 * time.Millisecond)
		client.SetReadDeadline(time.Now().Add(time.Hour))
		time.Sleep(30 * time.Millisecond)
		server.Write([]byte("y"))
	}()
	if n, err := client.Read(make([]byte, 1)); n != 1 || err != nil {
		t.Errorf("Read with its deadline moved out: %d, %v; want 1, nil", n, err)
	}
}

func TestFlowControl(t *testing.T) {
	const buf = 1000
	tab, client, server := join(t, ListenOptions{ReceiveBuffer: buf}, DialOptions{})
	done := make(chan error, 1)
	go func() { _, err := client.Write(make([]byte, 5*buf)); done <- err }()
	time.Sleep(20 * time.Millisecond)
	select {
	case err := <-done:
		t.Fatalf("Write of 5× the peer's buffer returned (%v) before the peer read", err)
	default:
	}
	for _, s := range tab.Sessions() {
		if s.State != StateListening && s.Local == srvAddr && s.RxFifo != buf {
			t.Errorf("server end's RxFifo with the writer blocked: %d, want %d", s.RxFifo, buf)
		}
	}
	got, err := io.ReadFull(server, make([]byte, 5*buf))
	if err != nil || got != 5*buf {
		t.Fatalf("ReadFull: %d, %v", got, err)
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}

func TestZeroLength(t *testing.T) {
	_, client, server := join(t, ListenOptions{}, DialOptions{})
	if n, err := client.Write(nil); n != 0 || err != nil {
		t.Errorf("Write(nil): %d, %v", n, err)
	}
	if n, err := server.Read(nil); n != 0 || err != nil {
		t.Errorf("Read(nil): %d, %v", n, err)
	}
}

// TestConcurrentWritesStayWhole checks that each Write is one piece of
// the stream, as on a socket, also when they wait for room.
func TestConcurrentWritesStayWhole(t *testing.T) {
	_, client, server := join(t, ListenOptions{ReceiveBuffer: 4096}, DialOptions{})
	const writers, size = 8, 100_000
	var wg sync.WaitGroup
	for i := range writers {
		wg.Go(func() {
			if _, err := client.Write(bytes.Repeat([]byte{byte('a' + i)}, size)); err != nil {
				t.Error(err)
			}
		})
	}
	go func() { wg.Wait(); client.CloseWrite() }()
	got, err := readAll(server)
	if err != nil || len(got) != writers*size {
		t.Fatalf("read %d bytes, %v; want %d", len(got), err, writers*size)
	}
	for off := 0; off < len(got); off += size {
		if bytes.Count(got[off:off+size], got[off:off+1]) != size {
			t.Fatalf("bytes %d..%d mix two writes", off, off+size)
		}
	}
}
