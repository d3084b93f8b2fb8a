package apps

import (
	"errors"
	"io"
	"net"
	"sync"
)

// EchoServer sends back whatever it receives, over TCP or UDP.
type EchoServer struct {
	ln   net.Listener
	pc   net.PacketConn
	wg   sync.WaitGroup
	mu   sync.Mutex
	open map[net.Conn]struct{}
}

// StartEcho serves echo on uri.
func StartEcho(n Network, uri URI) (*EchoServer, error) {
	s := &EchoServer{open: map[net.Conn]struct{}{}}
	var err error
	if uri.Network == "udp" {
		if s.pc, err = n.ListenPacket("udp", uri.Address); err != nil {
			return nil, err
		}
		s.wg.Add(1)
		go s.serveUDP()
		return s, nil
	}
	if s.ln, err = n.Listen("tcp", uri.Address); err != nil {
		return nil, err
	}
	s.wg.Add(1)
	go s.serveTCP()
	return s, nil
}

func (s *EchoServer) Addr() net.Addr {
	if s.pc != nil {
		return s.pc.LocalAddr()
	}
	return s.ln.Addr()
}

func (s *EchoServer) serveTCP() {
	defer s.wg.Done()
	for {
		c, err := s.ln.Accept()
		if err != nil {
			return
		}
		s.mu.Lock()
		s.open[c] = struct{}{}
		s.mu.Unlock()
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			buf := make([]byte, 64<<10)
			io.CopyBuffer(c, c, buf)
			s.mu.Lock()
			delete(s.open, c)
			s.mu.Unlock()
			c.Close()
		}()
	}
}

func (s *EchoServer) serveUDP() {
	defer s.wg.Done()
	buf := make([]byte, 64<<10)
	for {
		n, from, err := s.pc.ReadFrom(buf)
		if err != nil {
			return
		}
		s.pc.WriteTo(buf[:n], from)
	}
}

// Close stops serving and closes every connection.
func (s *EchoServer) Close() error {
	var err error
	if s.pc != nil {
		err = s.pc.Close()
	} else {
		err = s.ln.Close()
	}
	s.mu.Lock()
	for c := range s.open {
		c.Close()
	}
	s.mu.Unlock()
	s.wg.Wait()
	if errors.Is(err, net.ErrClosed) {
		err = nil
	}
	return err
}
