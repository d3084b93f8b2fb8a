package control

import (
	"bufio"
	"context"
	"errors"
	"io"
	"net/http"
	"path/filepath"
	"testing"
	"time"
)

var tickEndpoint = StreamEndpoint[echoRequest]{Name: "ticks"}

// serveTicks registers a stream that writes the request's text every
// 10 ms, refuses an empty text, and says on ended when a stream ends.
func serveTicks(t *testing.T) (*Server, chan error) {
	t.Helper()
	s, err := Listen("xs0", Options{Dir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	ended := make(chan error, 4)
	RegisterStream(s, tickEndpoint, func(_ context.Context, r echoRequest) (Streamer, error) {
		if r.Text == "" {
			return nil, Refuse(http.StatusConflict, errors.New("nothing to say"))
		}
		return func(ctx context.Context, w io.Writer, flush func()) error {
			tick := time.NewTicker(10 * time.Millisecond)
			defer tick.Stop()
			for {
				select {
				case <-ctx.Done():
					ended <- ctx.Err()
					return nil
				case <-tick.C:
				}
				if _, err := io.WriteString(w, r.Text+"\n"); err != nil {
					ended <- err
					return err
				}
				flush()
			}
		}, nil
	})
	s.Serve()
	t.Cleanup(func() { s.Close() })
	return s, ended
}

func waitEnded(t *testing.T, ended chan error, why string) {
	t.Helper()
	select {
	case <-ended:
	case <-time.After(2 * time.Second):
		t.Fatalf("the stream did not end within 2s of %s", why)
	}
}

// TestStream reads a stream, ends it from the client's side and from
// the server's, and has a request refused before any streaming.
func TestStream(t *testing.T) {
	s, ended := serveTicks(t)
	c := NewClient(filepath.Dir(s.Path), "xs0")
	ctx := context.Background()

	body, err := tickEndpoint.Open(ctx, c, echoRequest{"tick"})
	if err != nil {
		t.Fatal(err)
	}
	r := bufio.NewReader(body)
	for range 3 {
		if line, err := r.ReadString('\n'); err != nil || line != "tick\n" {
			t.Fatalf("stream: got %q, %v", line, err)
		}
	}
	body.Close()
	waitEnded(t, ended, "the client closing")

	if _, err := tickEndpoint.Open(ctx, c, echoRequest{}); err == nil || err.Error() != "nothing to say" {
		t.Errorf("Open of a refused request: got %v", err)
	}

	body, err = tickEndpoint.Open(ctx, c, echoRequest{"tock"})
	if err != nil {
		t.Fatal(err)
	}
	defer body.Close()
	if line, err := bufio.NewReader(body).ReadString('\n'); err != nil || line != "tock\n" {
		t.Fatalf("stream: got %q, %v", line, err)
	}
	start := time.Now()
	if err := s.Close(); err != nil {
		t.Errorf("Close with a stream open: %v", err)
	}
	waitEnded(t, ended, "the server closing")
	if elapsed := time.Since(start); elapsed > time.Second {
		t.Errorf("Close took %v with a stream open", elapsed)
	}
}
