package preload

import (
	"fmt"
	"io"
	"net"
	"os"

	"golang.org/x/sys/unix"
)

// progEnd is the program's end of a socket pair, until it is sent, and
// what identifies it after (see liveness).
type progEnd struct {
	fd int
	id socketID
}

// pair makes a socket pair of typ, binds the program's end to name
// and returns it, with the daemon's end as a net.UnixConn.
func (s *Server) pair(typ int, name Name) (progEnd, *net.UnixConn, error) {
	fds, err := unix.Socketpair(unix.AF_UNIX, typ|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return progEnd{}, nil, fmt.Errorf("socketpair: %w", err)
	}
	fail := func(err error) (progEnd, *net.UnixConn, error) {
		unix.Close(fds[0])
		unix.Close(fds[1])
		return progEnd{}, nil, err
	}
	if err := unix.Bind(fds[0], &unix.SockaddrUnix{Name: string(name.Marshal())}); err != nil {
		return fail(fmt.Errorf("bind the socket's name: %w", err))
	}
	id, err := identify(fds[0])
	if err != nil {
		return fail(err)
	}
	f := os.NewFile(uintptr(fds[1]), "preload")
	c, err := net.FileConn(f) // a copy of the descriptor
	f.Close()
	if err != nil {
		unix.Close(fds[0])
		return progEnd{}, nil, fmt.Errorf("socketpair: %w", err)
	}
	return progEnd{fd: fds[0], id: id}, c.(*net.UnixConn), nil
}

// fill makes the program's end of a stream pair unwritable, as a
// connecting socket is: it writes into it until its send buffer is
// full, and says how much, for discard to take out again.
func fill(fd int) (int64, error) {
	chunk := make([]byte, 64<<10)
	var n int64
	for {
		w, err := unix.SendmsgN(fd, chunk, nil, nil, unix.MSG_DONTWAIT|unix.MSG_NOSIGNAL)
		n += int64(w)
		switch err {
		case nil:
		case unix.EAGAIN:
			return n, nil
		default:
			return n, fmt.Errorf("fill the connecting socket: %w", err)
		}
	}
}

// discard reads the filler out of the daemon's end: the program's end
// turns writable, which is how the program learns it is connected.
func discard(c *net.UnixConn, filler int64) error {
	if _, err := io.CopyN(io.Discard, c, filler); err != nil {
		return fmt.Errorf("read the filler back: %w", err)
	}
	return nil
}
