package control

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
)

// StreamEndpoint is a call whose answer is a stream of bytes, for as
// long as the client reads it (a capture), instead of one JSON body. Its
// request is a JSON body, decoded as an Endpoint's; it is always a POST.
type StreamEndpoint[Req any] struct {
	// Name is the path under the version prefix, as an Endpoint's.
	Name string
}

// Path is where the endpoint is served.
func (e StreamEndpoint[Req]) Path() string { return fmt.Sprintf("/v%d/%s", Version, e.Name) }

// Streamer writes a stream to w, calling flush after each burst, until
// ctx ends (the client went away, or the server is closing) or a write
// fails.
type Streamer func(ctx context.Context, w io.Writer, flush func()) error

// RegisterStream serves e on s: f checks the request and refuses it
// (Refuse) or returns the Streamer that answers it.
func RegisterStream[Req any](s *Server, e StreamEndpoint[Req], f func(context.Context, Req) (Streamer, error)) {
	s.handle(http.MethodPost, e.Path(), func(w http.ResponseWriter, r *http.Request) {
		var req Req
		if err := decodeRequest(r, &req); err != nil {
			writeError(w, http.StatusBadRequest, fmt.Errorf("%s %s: %w", r.Method, r.URL.Path, err))
			return
		}
		stream, err := f(r.Context(), req)
		if err != nil {
			writeFailure(w, err)
			return
		}
		ctx, stop := context.WithCancel(r.Context())
		defer stop()
		defer context.AfterFunc(s.closing, stop)()
		w.Header().Set("Content-Type", "application/octet-stream")
		w.WriteHeader(http.StatusOK)
		flusher := http.NewResponseController(w)
		flush := func() { flusher.Flush() }
		flush()
		stream(ctx, w, flush) // its end is the client's or the server's
	})
}

// Open calls e with req and returns the stream; closing it ends the
// call. A refusal is a RefusedError.
func (e StreamEndpoint[Req]) Open(ctx context.Context, c *Client, req Req) (io.ReadCloser, error) {
	b, err := json.Marshal(req)
	if err != nil {
		return nil, err
	}
	r, err := c.send(ctx, http.MethodPost, e.Path(), bytes.NewReader(b))
	if err != nil {
		return nil, err
	}
	return r.Body, nil
}
