package control

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"syscall"
	"time"
)

// ErrNotRunning is the error of a call to an interface where no daemon
// answers.
var ErrNotRunning = errors.New("xdpstack is not running")

// Client talks to the daemon on one interface.
type Client struct {
	Iface, Path string
	http        *http.Client
}

// callTimeout bounds a call whose context has no deadline.
const callTimeout = 30 * time.Second

// NewClient is a client of the daemon on iface, whose socket is in dir.
// It connects on each call.
func NewClient(dir, iface string) *Client {
	path := SocketPath(dir, iface)
	return &Client{Iface: iface, Path: path, http: &http.Client{
		Transport: &http.Transport{
			DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
				var d net.Dialer
				return d.DialContext(ctx, "unix", path)
			},
			DisableKeepAlives: true,
		},
	}}
}

func (c *Client) do(ctx context.Context, method, path string, body io.Reader, resp any) error {
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, callTimeout)
		defer cancel()
	}
	r, err := c.send(ctx, method, path, body)
	if err != nil {
		return err
	}
	defer r.Body.Close()
	b, err := io.ReadAll(io.LimitReader(r.Body, 64<<20))
	if err != nil {
		return fmt.Errorf("%s %s: read answer: %w", method, path, err)
	}
	if err := json.Unmarshal(b, resp); err != nil {
		return fmt.Errorf("%s %s: bad answer: %w", method, path, err)
	}
	return nil
}

// send makes a request and returns the daemon's answer once it says
// OK; a refusal becomes a RefusedError with its one line.
func (c *Client) send(ctx context.Context, method, path string, body io.Reader) (*http.Response, error) {
	req, err := http.NewRequestWithContext(ctx, method, "http://xdpstack"+path, body)
	if err != nil {
		return nil, err
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	r, err := c.http.Do(req)
	if err != nil {
		return nil, c.dialError(err)
	}
	switch v := r.Header.Get(VersionHeader); {
	case v == "":
		r.Body.Close()
		return nil, fmt.Errorf("%s %s on %s: not an xdpstack control socket (no %s header)", method, path, c.Path, VersionHeader)
	case v != strconv.Itoa(Version):
		r.Body.Close()
		return nil, fmt.Errorf("the daemon on %s speaks control API v%s, this xdpstack v%d (run the xdpstack that attached it)", c.Iface, v, Version)
	}
	if r.StatusCode != http.StatusOK {
		defer r.Body.Close()
		var e errorBody
		b, _ := io.ReadAll(io.LimitReader(r.Body, maxBody))
		if json.Unmarshal(b, &e) != nil || e.Error == "" {
			e.Error = fmt.Sprintf("%s %s: %s", method, path, r.Status)
		}
		return nil, &RefusedError{Code: r.StatusCode, Err: errors.New(e.Error)}
	}
	return r, nil
}

// dialError names the usual reasons a daemon cannot be reached.
func (c *Client) dialError(err error) error {
	switch {
	case errors.Is(err, syscall.ECONNREFUSED), errors.Is(err, os.ErrNotExist):
		return fmt.Errorf("%w on %s (no daemon answers on %s)", ErrNotRunning, c.Iface, c.Path)
	case errors.Is(err, os.ErrPermission):
		return fmt.Errorf("connect to %s: permission denied (the control socket is root's; run with sudo, or attach with --control-group)", c.Path)
	}
	if ue, ok := errors.AsType[*url.Error](err); ok {
		err = ue.Err // without the made-up URL
	}
	return fmt.Errorf("talk to the daemon on %s over %s: %w", c.Iface, c.Path, err)
}
