// Package control is the daemon's control API: HTTP/1.1 with JSON bodies
// over a Unix socket, one per interface (SocketPath), under a version
// prefix (/v1/...), so that
//
//	curl --unix-socket /run/xdpstack/eth0.sock http://x/v1/status
//
// works beside the CLI. Every response carries the API version in the
// Xdpstack-Api header, and the client refuses a daemon that speaks
// another one.
//
// An endpoint is declared once, as an Endpoint value naming its method,
// its path under the version prefix and, as type parameters, its request
// and response bodies. The daemon registers a function for it with
// Register; the CLI calls it with Endpoint.Call. To add one:
//
//	var SessionsEndpoint = control.Endpoint[SessionsRequest, Sessions]{Method: "GET", Name: "sessions"}
//
//	control.Register(srv, SessionsEndpoint, d.sessions) // in the daemon
//	list, err := SessionsEndpoint.Call(ctx, client, req) // in the CLI
//
// GET endpoints take no body: use None as their request. Request bodies
// are decoded strictly (unknown fields, trailing data and wrong types are
// 400s), so a bad request never reaches the function. A function refuses
// a request it cannot carry out with Refuse and a status code; any other
// error is a 500. Errors travel as {"error": "one line"}.
//
// Changing the meaning of an endpoint, or removing one, needs a new
// Version; adding an endpoint or an optional field does not.
package control

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
)

// Version is the API version this build speaks; its paths are under
// /v<Version>/.
const Version = 1

// VersionHeader carries the API version on every response.
const VersionHeader = "Xdpstack-Api"

// maxBody bounds a request body.
const maxBody = 1 << 20

// None is the body of a request that has none.
type None struct{}

// Endpoint is one call of the API: Req is its request body, Resp its
// response body.
type Endpoint[Req, Resp any] struct {
	// Method is http.MethodGet or http.MethodPost.
	Method string
	// Name is the path under the version prefix: "status" is served at
	// /v1/status.
	Name string
}

// Path is where the endpoint is served.
func (e Endpoint[Req, Resp]) Path() string { return fmt.Sprintf("/v%d/%s", Version, e.Name) }

// VersionInfo says which API and which build a daemon runs.
type VersionInfo struct {
	API   int    `json:"api"`
	Build string `json:"build"`
	PID   int    `json:"pid"`
}

// VersionEndpoint is served by every Server.
var VersionEndpoint = Endpoint[None, VersionInfo]{Method: http.MethodGet, Name: "version"}

// errorBody is every error's body.
type errorBody struct {
	Error string `json:"error"`
}

// RefusedError is a request that the daemon understood and would not
// carry out: a bad configuration, a change that needs a restart.
type RefusedError struct {
	Code int
	Err  error
}

func (e *RefusedError) Error() string { return e.Err.Error() }
func (e *RefusedError) Unwrap() error { return e.Err }

// Refuse makes err the answer to a request, with status code (4xx).
func Refuse(code int, err error) error { return &RefusedError{Code: code, Err: err} }

// writeFailure answers an endpoint's error: with its code when it is a
// refusal, else 500.
func writeFailure(w http.ResponseWriter, err error) {
	code := http.StatusInternalServerError
	if refused, ok := errors.AsType[*RefusedError](err); ok {
		code = refused.Code
	}
	writeError(w, code, err)
}

// Register serves e with f on s. Register panics when e is registered
// twice, as http.ServeMux does.
func Register[Req, Resp any](s *Server, e Endpoint[Req, Resp], f func(context.Context, Req) (Resp, error)) {
	s.handle(e.Method, e.Path(), func(w http.ResponseWriter, r *http.Request) {
		var req Req
		if err := decodeRequest(r, &req); err != nil {
			writeError(w, http.StatusBadRequest, fmt.Errorf("%s %s: %w", r.Method, r.URL.Path, err))
			return
		}
		resp, err := f(r.Context(), req)
		if err != nil {
			writeFailure(w, err)
			return
		}
		writeJSON(w, http.StatusOK, resp)
	})
}

// decodeRequest reads the one JSON value of r's body into req. An
// empty body is the zero request; a GET takes none.
func decodeRequest(r *http.Request, req any) error {
	body, err := io.ReadAll(http.MaxBytesReader(nil, r.Body, maxBody))
	if err != nil {
		return fmt.Errorf("read body: %w", err)
	}
	if len(bytes.TrimSpace(body)) == 0 {
		return nil
	}
	if _, none := req.(*None); none {
		return errors.New("takes no body")
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(req); err != nil {
		return fmt.Errorf("bad JSON body: %w", err)
	}
	if dec.More() {
		return errors.New("bad JSON body: more than one value")
	}
	return nil
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		code, b = http.StatusInternalServerError, mustMarshal(errorBody{"encode response: " + err.Error()})
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Content-Length", strconv.Itoa(len(b)+1))
	w.WriteHeader(code)
	w.Write(append(b, '\n'))
}

func writeError(w http.ResponseWriter, code int, err error) {
	writeJSON(w, code, errorBody{err.Error()})
}

func mustMarshal(v any) []byte {
	b, err := json.Marshal(v)
	if err != nil {
		panic(err)
	}
	return b
}

// Call sends req to the daemon c talks to and returns its answer.
func (e Endpoint[Req, Resp]) Call(ctx context.Context, c *Client, req Req) (Resp, error) {
	var resp Resp
	var body io.Reader
	if _, none := any(req).(None); !none {
		b, err := json.Marshal(req)
		if err != nil {
			return resp, err
		}
		body = bytes.NewReader(b)
	}
	return resp, c.do(ctx, e.Method, e.Path(), body, &resp)
}
