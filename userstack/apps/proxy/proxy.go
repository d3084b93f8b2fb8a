// Package proxy is the built-in proxy application: it terminates
// connections that a listener accepts (TCP, TLS or QUIC streams on the
// userstack) and forwards their bytes to a backend on the kernel side,
// both ways, with half-close carried across. This is how an unmodified
// server gets the fast path.
package proxy

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/url"
	"sync"
	"sync/atomic"
	"time"

	"github.com/xdpstack/xdpstack/internal/hostport"
	"github.com/xdpstack/xdpstack/userstack/apps/conns"
)

// Backend is where the proxy forwards to.
type Backend struct {
	Network string // "tcp" or "unix"
	Address string
}

// ParseBackend reads tcp://HOST:PORT or unix:///PATH.
func ParseBackend(s string) (Backend, error) {
	u, err := url.Parse(s)
	var urlErr *url.Error
	if errors.As(err, &urlErr) {
		err = urlErr.Err // without the URL, which the message names
	}
	if err != nil {
		return Backend{}, fmt.Errorf("backend %q: %w", s, err)
	}
	switch u.Scheme {
	case "tcp":
		host, port, err := hostport.Split(u.Host)
		switch {
		case err != nil:
		case host == "" || u.Path != "" || u.RawQuery != "" || u.Fragment != "" || u.User != nil:
			err = errors.New("no host, or more than HOST:PORT")
		case port == 0:
			err = errors.New("port 0 is no port to dial")
		}
		if err != nil {
			return Backend{}, fmt.Errorf("backend %q: %w (want tcp://HOST:PORT)", s, err)
		}
		return Backend{"tcp", u.Host}, nil
	case "unix":
		if u.Host != "" || u.Path == "" {
			return Backend{}, fmt.Errorf("backend %q: want unix:///PATH", s)
		}
		return Backend{"unix", u.Path}, nil
	}
	return Backend{}, fmt.Errorf("backend %q: want tcp://HOST:PORT or unix:///PATH", s)
}

func (b Backend) String() string {
	if b.Network == "unix" {
		return "unix://" + b.Address
	}
	return "tcp://" + b.Address
}

// Stats are a proxy's counters.
type Stats struct {
	Accepted      uint64
	Active        int64
	BackendErrors uint64
	// BytesIn went from clients to the backend, BytesOut back.
	BytesIn  uint64
	BytesOut uint64
}

// Proxy forwards every accepted connection to its backend.
type Proxy struct {
	backend Backend
	dialer  net.Dialer

	accepted, backendErrors, bytesIn, bytesOut atomic.Uint64
	active                                     atomic.Int64
	conns                                      sync.WaitGroup

	open conns.Set
	mu   sync.Mutex
	ln   net.Listener
}

// New returns a proxy to backend.
func New(backend Backend) *Proxy {
	return &Proxy{backend: backend, dialer: net.Dialer{Timeout: 10 * time.Second}}
}

// Stats reads the counters.
func (p *Proxy) Stats() Stats {
	return Stats{
		Accepted:      p.accepted.Load(),
		Active:        p.active.Load(),
		BackendErrors: p.backendErrors.Load(),
		BytesIn:       p.bytesIn.Load(),
		BytesOut:      p.bytesOut.Load(),
	}
}

// Serve accepts from ln until it is closed, then waits for the
// connections in flight to end, and returns nil.
func (p *Proxy) Serve(ln net.Listener) error {
	p.mu.Lock()
	p.ln = ln
	p.mu.Unlock()
	defer p.conns.Wait()
	for {
		c, err := ln.Accept()
		if errors.Is(err, net.ErrClosed) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("proxy accept: %w", err)
		}
		p.accepted.Add(1)
		p.conns.Add(1)
		go func() {
			defer p.conns.Done()
			p.forward(c)
		}()
	}
}

// Close stops accepting, closes the connections in flight and waits
// for them.
func (p *Proxy) Close() error {
	var err error
	p.mu.Lock()
	if p.ln != nil {
		err = p.ln.Close()
	}
	p.mu.Unlock()
	p.open.Close()
	p.conns.Wait()
	return err
}

func (p *Proxy) forward(client net.Conn) {
	p.active.Add(1)
	defer p.active.Add(-1)
	if !p.open.Add(client) {
		return
	}
	defer p.open.Remove(client)
	backend, err := p.dialer.DialContext(context.Background(), p.backend.Network, p.backend.Address)
	if err != nil {
		p.backendErrors.Add(1)
		return
	}
	if !p.open.Add(backend) {
		return
	}
	defer p.open.Remove(backend)
	done := make(chan struct{})
	go func() {
		pipe(backend, client, &p.bytesIn)
		close(done)
	}()
	pipe(client, backend, &p.bytesOut)
	<-done
}

// closeWriter is a connection whose sending side closes on its own,
// which TCP, unix, TLS and QUIC stream connections all are.
type closeWriter interface {
	CloseWrite() error
}

// pipe copies src to dst until src ends, then passes the end on: a
// half-closed peer half-closes the other side, and an error closes it.
func pipe(dst, src net.Conn, counter *atomic.Uint64) {
	n, err := io.Copy(dst, src)
	counter.Add(uint64(n))
	if cw, ok := dst.(closeWriter); ok && err == nil {
		cw.CloseWrite()
		return
	}
	dst.Close()
	src.Close()
}
