package apps

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	quicgo "github.com/quic-go/quic-go"

	"github.com/xdpstack/xdpstack/userstack/transport"
)

// ClientConfig is one run of the echo client.
type ClientConfig struct {
	URI transport.URI
	// TLS is the client's configuration for tls:// and quic://; its
	// NextProtos default to the echo app's.
	TLS *tls.Config
	// Streams is how many streams each QUIC connection carries at once,
	// each sending Bytes (0 counts as 1).
	Streams int
	// Uni sends on unidirectional QUIC streams, and the echo comes back
	// on unidirectional streams that the server opens.
	Uni bool
	// Bytes each connection sends.
	Bytes int64
	// Clients is how many connections run at once, one each.
	Clients int
	// Reflect reads the echo back and counts it; without it the client
	// drains the echo unread, so that timing still covers the round trip.
	Reflect bool
	// Verify checks every echoed byte (needs Reflect).
	Verify bool
	// Progress gets a line every StatsEvery while the run lasts; nil
	// prints none.
	Progress   io.Writer
	StatsEvery time.Duration
}

// Result is what a run measured; the JSON names are the echo tester's
// interface.
type Result struct {
	BytesSent            int64   `json:"bytes_sent"`
	BytesReceived        int64   `json:"bytes_received"`
	Seconds              float64 `json:"seconds"`
	ThroughputGbps       float64 `json:"throughput_gbps"`
	Connections          int     `json:"connections"`
	ConnectionsPerSecond float64 `json:"connections_per_second"`
	ConnectP50us         float64 `json:"connect_p50_us"`
	ConnectP99us         float64 `json:"connect_p99_us"`
	VerifyErrors         int64   `json:"verify_errors"`
	Errors               int     `json:"errors"`
}

// pattern is what clients send: stream offset i carries pattern[i%len].
// Its length is prime so that it never lines up with a buffer size.
var pattern = func() []byte {
	b := make([]byte, 65521)
	for i := range b {
		b[i] = byte(i*131 + i>>8)
	}
	return b
}()

// udpPayload is the size of each UDP datagram.
const udpPayload = 1200

// RunClient runs cfg against an echo server over n.
func RunClient(ctx context.Context, n transport.Network, cfg ClientConfig) (Result, error) {
	if cfg.Clients < 1 || cfg.Bytes < 0 {
		return Result{}, fmt.Errorf("echo client: want at least one client and bytes >= 0")
	}
	if cfg.Verify && !cfg.Reflect {
		return Result{}, errors.New("echo client: verify needs reflect")
	}
	if (cfg.Streams > 1 || cfg.Uni) && cfg.URI.Scheme != transport.QUIC {
		return Result{}, errors.New("echo client: streams and uni go with quic://")
	}
	if cfg.URI.Secure() {
		if cfg.TLS == nil {
			return Result{}, errors.New("echo client: tls and quic need a TLS configuration")
		}
		cfg.TLS = cfg.TLS.Clone()
		if len(cfg.TLS.NextProtos) == 0 {
			cfg.TLS.NextProtos = []string{EchoALPN}
		}
	}
	cfg.Streams = max(cfg.Streams, 1)
	var (
		sent, received, badBytes atomic.Int64
		mu                       sync.Mutex
		connects                 []time.Duration
		errs                     []error
		wg                       sync.WaitGroup
	)
	start := time.Now()
	stop := make(chan struct{})
	if cfg.Progress != nil && cfg.StatsEvery > 0 {
		go progress(cfg, start, &sent, &received, stop)
	}
	for id := range cfg.Clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			t0 := time.Now()
			s, err := dial(ctx, n, cfg)
			if err == nil {
				mu.Lock()
				connects = append(connects, time.Since(t0))
				mu.Unlock()
				err = s.run(ctx, cfg, &sent, &received, &badBytes)
				s.Close()
			}
			if err != nil {
				mu.Lock()
				errs = append(errs, fmt.Errorf("client %d: %w", id, err))
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	close(stop)
	secs := time.Since(start).Seconds()
	r := Result{
		BytesSent:            sent.Load(),
		BytesReceived:        received.Load(),
		Seconds:              secs,
		Connections:          len(connects),
		ConnectionsPerSecond: float64(len(connects)) / secs,
		VerifyErrors:         badBytes.Load(),
		Errors:               len(errs),
	}
	r.ThroughputGbps = float64(r.BytesSent) * 8 / secs / 1e9
	slices.Sort(connects)
	if len(connects) > 0 {
		r.ConnectP50us = float64(connects[len(connects)/2].Microseconds())
		r.ConnectP99us = float64(connects[(len(connects)*99)/100].Microseconds())
	}
	if len(errs) > 0 {
		return r, fmt.Errorf("%d of %d connections failed; first: %w", len(errs), cfg.Clients, errs[0])
	}
	return r, nil
}

func progress(cfg ClientConfig, start time.Time, sent, received *atomic.Int64, stop chan struct{}) {
	t := time.NewTicker(cfg.StatsEvery)
	defer t.Stop()
	var last int64
	for {
		select {
		case <-stop:
			return
		case <-t.C:
			s := sent.Load()
			fmt.Fprintf(cfg.Progress, "%6.1fs  sent %d  received %d  %.2f Gbit/s\n",
				time.Since(start).Seconds(), s, received.Load(), float64(s-last)*8/cfg.StatsEvery.Seconds()/1e9)
			last = s
		}
	}
}

// session is one client's connection.
type session interface {
	run(ctx context.Context, cfg ClientConfig, sent, received, bad *atomic.Int64) error
	Close() error
}

// dial connects the way the URI's transport does; for TLS and QUIC the
// handshake is part of the connect time.
func dial(ctx context.Context, n transport.Network, cfg ClientConfig) (session, error) {
	switch cfg.URI.Scheme {
	case transport.UDP:
		c, err := n.Dial(ctx, "udp", cfg.URI.HostPort())
		return datagramSession{c}, err
	case transport.QUIC:
		c, err := transport.DialQUIC(ctx, n, cfg.URI, cfg.TLS)
		return quicSession{c}, err
	}
	c, err := transport.Dial(ctx, n, cfg.URI, cfg.TLS)
	return streamSession{c}, err
}

type streamSession struct{ net.Conn }

func (s streamSession) run(ctx context.Context, cfg ClientConfig, sent, received, bad *atomic.Int64) error {
	return streamEcho(ctx, s.Conn, s.Conn, cfg, sent, received, bad)
}

type datagramSession struct{ net.Conn }

func (s datagramSession) run(ctx context.Context, cfg ClientConfig, sent, received, bad *atomic.Int64) error {
	return udpSession(ctx, s.Conn, cfg, sent, received, bad)
}

// quicSession runs cfg.Streams streams at once on one QUIC connection.
type quicSession struct{ *transport.QUICConn }

func (s quicSession) run(ctx context.Context, cfg ClientConfig, sent, received, bad *atomic.Int64) error {
	errs := make(chan error, cfg.Streams)
	for range cfg.Streams {
		go func() { errs <- s.stream(ctx, cfg, sent, received, bad) }()
	}
	var err error
	for range cfg.Streams {
		err = errors.Join(err, <-errs)
	}
	return err
}

func (s quicSession) stream(ctx context.Context, cfg ClientConfig, sent, received, bad *atomic.Int64) error {
	if !cfg.Uni {
		st, err := s.OpenStream(ctx)
		if err != nil {
			return err
		}
		defer st.Close()
		return streamEcho(ctx, st, st, cfg, sent, received, bad)
	}
	out, err := s.OpenUniStreamSync(ctx)
	if err != nil {
		return err
	}
	pair := &uniPair{ctx: ctx, conn: s.QUICConn, out: out}
	return streamEcho(ctx, pair, pair, cfg, sent, received, bad)
}

// uniPair writes to a unidirectional stream of its own and reads the
// echo from one the server opens. The server opens it only once data
// arrives, so it is accepted on the first read, after sending began.
// Every reply carries the same bytes, so any stream the server opens
// answers any stream the client sent.
type uniPair struct {
	ctx  context.Context
	conn *transport.QUICConn
	out  *quicgo.SendStream
	in   *quicgo.ReceiveStream
}

func (p *uniPair) Read(b []byte) (int, error) {
	if p.in == nil {
		in, err := p.conn.AcceptUniStream(p.ctx)
		if err != nil {
			return 0, err
		}
		p.in = in
	}
	return p.in.Read(b)
}

func (p *uniPair) Write(b []byte) (int, error) { return p.out.Write(b) }
func (p *uniPair) CloseWrite() error           { return p.out.Close() }

// SetDeadline bounds the sending side; ctx bounds the accept, and the
// receiving side once it is there.
func (p *uniPair) SetDeadline(t time.Time) error {
	if p.in != nil {
		p.in.SetReadDeadline(t)
	}
	return p.out.SetWriteDeadline(t)
}

// deadliner is what streamEcho uses to stop a session when ctx ends.
type deadliner interface{ SetDeadline(time.Time) error }

// streamEcho sends the pattern, half-closes and reads the echo to EOF.
func streamEcho(ctx context.Context, c io.ReadWriter, d deadliner, cfg ClientConfig, sent, received, bad *atomic.Int64) error {
	stop := context.AfterFunc(ctx, func() { d.SetDeadline(time.Now()) })
	defer stop()
	werr := make(chan error, 1)
	go func() {
		var off int64
		for off < cfg.Bytes {
			p := pattern[off%int64(len(pattern)):]
			p = p[:min(int64(len(p)), cfg.Bytes-off)]
			n, err := c.Write(p)
			off += int64(n)
			sent.Add(int64(n))
			if err != nil {
				werr <- err
				return
			}
		}
		if cw, ok := c.(interface{ CloseWrite() error }); ok {
			werr <- cw.CloseWrite()
			return
		}
		werr <- nil
	}()
	buf := make([]byte, 64<<10)
	var off int64
	var rerr error
	for {
		n, err := c.Read(buf)
		if n > 0 {
			if cfg.Verify {
				bad.Add(mismatches(buf[:n], off))
			}
			off += int64(n)
			if cfg.Reflect {
				received.Add(int64(n))
			}
		}
		if err == io.EOF {
			break
		}
		if err != nil {
			rerr = err
			break
		}
	}
	if err := <-werr; err != nil {
		return fmt.Errorf("send: %w", err)
	}
	if rerr != nil {
		return fmt.Errorf("receive: %w", rerr)
	}
	if cfg.Reflect && off != cfg.Bytes {
		return fmt.Errorf("echo ended after %d of %d bytes", off, cfg.Bytes)
	}
	return nil
}

// mismatches counts the bytes of b, at stream offset off, that differ
// from the pattern.
func mismatches(b []byte, off int64) int64 {
	var bad int64
	for len(b) > 0 {
		p := pattern[off%int64(len(pattern)):]
		p = p[:min(len(p), len(b))]
		if !bytes.Equal(b[:len(p)], p) {
			for i := range p {
				if b[i] != p[i] {
					bad++
				}
			}
		}
		b, off = b[len(p):], off+int64(len(p))
	}
	return bad
}

// udpSession sends datagrams one at a time and, with Reflect, waits for
// each echo: a lost datagram counts its bytes as verify errors.
func udpSession(ctx context.Context, c net.Conn, cfg ClientConfig, sent, received, bad *atomic.Int64) error {
	buf := make([]byte, 64<<10)
	for off := int64(0); off < cfg.Bytes; {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		n := min(int64(udpPayload), cfg.Bytes-off)
		d := make([]byte, n)
		for i := range d {
			d[i] = pattern[(off+int64(i))%int64(len(pattern))]
		}
		if _, err := c.Write(d); err != nil {
			return fmt.Errorf("send: %w", err)
		}
		sent.Add(n)
		if cfg.Reflect {
			c.SetReadDeadline(time.Now().Add(time.Second))
			got, err := c.Read(buf)
			switch {
			case err != nil:
				bad.Add(n)
			case cfg.Verify && !bytes.Equal(buf[:got], d):
				bad.Add(max(n, int64(got)))
				received.Add(int64(got))
			default:
				received.Add(int64(got))
			}
		}
		off += n
	}
	return nil
}
