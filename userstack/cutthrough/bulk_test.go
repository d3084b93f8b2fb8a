package cutthrough

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"io"
	"testing"
	"time"
)

// counting is a stream whose every 8-byte word, at stream offset off,
// is the little-endian number off/8: a byte lost, doubled or moved
// shows.
func counting(p []byte, off int64) {
	for ; len(p) > 0 && off%8 != 0; off++ {
		p[0] = byte(uint64(off/8) >> (8 * (off % 8)))
		p = p[1:]
	}
	for ; len(p) >= 8; off += 8 {
		binary.LittleEndian.PutUint64(p, uint64(off/8))
		p = p[8:]
	}
	for i := range p {
		p[i] = byte(uint64(off/8) >> (8 * (off % 8)))
		off++
	}
}

// countingReader reads size bytes of the counting stream.
type countingReader struct{ off, size int64 }

func (r *countingReader) Read(p []byte) (int, error) {
	if r.off == r.size {
		return 0, io.EOF
	}
	p = p[:min(int64(len(p)), r.size-r.off)]
	counting(p, r.off)
	r.off += int64(len(p))
	return len(p), nil
}

// countingChecker checks that what it is written is the counting
// stream.
type countingChecker struct {
	off  int64
	want []byte
}

func (c *countingChecker) Write(p []byte) (int, error) {
	if len(c.want) < len(p) {
		c.want = make([]byte, len(p))
	}
	want := c.want[:len(p)]
	counting(want, c.off)
	if bytes.Equal(p, want) {
		c.off += int64(len(p))
		return len(p), nil
	}
	for i := range p {
		if p[i] != want[i] {
			return i, fmt.Errorf("byte %d: got %#x, want %#x", c.off+int64(i), p[i], want[i])
		}
	}
	c.off += int64(len(p))
	return len(p), nil
}

// TestBulk moves 1 GiB (64 MiB under the race detector) through an
// echo and checks every byte and the bytes counted: once through
// io.Copy's direct paths (ReadFrom into the queue, WriteTo out of it),
// once through plain Read and Write.
func TestBulk(t *testing.T) {
	size := int64(1 << 30)
	if raceEnabled {
		size = 64 << 20
	}
	for _, direct := range []bool{true, false} {
		t.Run(map[bool]string{true: "io.Copy direct", false: "Read and Write"}[direct], func(t *testing.T) {
			tab, client, server := join(t, ListenOptions{}, DialOptions{})
			wrap := func(c *Conn) io.ReadWriter {
				if direct {
					return c
				}
				// Hide WriterTo and ReaderFrom.
				return struct {
					io.Reader
					io.Writer
				}{c, c}
			}
			deadline := time.Now().Add(time.Minute)
			client.SetDeadline(deadline)
			server.SetDeadline(deadline)
			errs := make(chan error, 2)
			go func() {
				_, err := io.Copy(wrap(server), wrap(server))
				if err == nil {
					err = server.CloseWrite()
				}
				errs <- err
			}()
			go func() {
				_, err := io.Copy(wrap(client), &countingReader{size: size})
				if err == nil {
					err = client.CloseWrite()
				}
				errs <- err
			}()
			start := time.Now()
			check := &countingChecker{}
			if _, err := io.Copy(check, wrap(client)); err != nil {
				t.Fatal(err)
			}
			elapsed := time.Since(start)
			for range 2 {
				if err := <-errs; err != nil {
					t.Fatal(err)
				}
			}
			if check.off != size {
				t.Fatalf("echo ended after %d of %d bytes", check.off, size)
			}
			if got := tab.Counters().Bytes; got != 2*uint64(size) {
				t.Errorf("Counters().Bytes = %d, want %d (each byte there and back)", got, 2*size)
			}
			t.Logf("%d MiB there and back in %v (%.1f Gbit/s each way)", size>>20, elapsed, float64(size)*8/elapsed.Seconds()/1e9)
		})
	}
}

func TestCountingCheckerCatchesDamage(t *testing.T) {
	p := make([]byte, 100)
	counting(p, 3)
	p[50]++
	_, err := (&countingChecker{off: 3}).Write(p)
	if err == nil || err.Error() != fmt.Sprintf("byte 53: got %#x, want %#x", p[50], p[50]-1) {
		t.Errorf("damaged stream: got %v", err)
	}
}
