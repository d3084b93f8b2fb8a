package preload

import (
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"golang.org/x/sys/unix"
)

// A program that closes a stream socket it shut down already leaves no
// trace on the daemon's end of the pair: EOF came with the shutdown,
// and only a write would fail, which a silent peer never makes happen.
// liveness asks the kernel (sock_diag) every aliveEvery whether the
// program's ends of such sessions still exist, by inode and cookie, and
// closes the sessions of those that do not.

// aliveEvery is how often liveness looks.
var aliveEvery = time.Second

// socketID names a socket for sock_diag: its inode, and its cookie so
// that a reused inode is not taken for it.
type socketID struct {
	ino    uint32
	cookie uint64
}

func identify(fd int) (socketID, error) {
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		return socketID{}, fmt.Errorf("stat the socket: %w", err)
	}
	cookie, err := unix.GetsockoptUint64(fd, unix.SOL_SOCKET, unix.SO_COOKIE)
	if err != nil {
		return socketID{}, fmt.Errorf("read the socket's cookie: %w", err)
	}
	return socketID{ino: uint32(st.Ino), cookie: cookie}, nil
}

type liveness struct {
	log  *slog.Logger
	mu   sync.Mutex
	gone map[socketID]func()
	// started is whether run runs: only once something is watched.
	started bool
	done    chan struct{}
	wg      sync.WaitGroup
}

func newLiveness(log *slog.Logger) *liveness {
	return &liveness{log: log, gone: map[socketID]func(){}, done: make(chan struct{})}
}

// watch calls closed once the socket id is gone; unwatch stops that.
func (l *liveness) watch(id socketID, closed func()) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.gone[id] = closed
	if !l.started {
		l.started = true
		l.wg.Add(1)
		go l.run()
	}
}

func (l *liveness) unwatch(id socketID) {
	l.mu.Lock()
	delete(l.gone, id)
	l.mu.Unlock()
}

func (l *liveness) close() {
	close(l.done)
	l.wg.Wait()
}

func (l *liveness) run() {
	defer l.wg.Done()
	t := time.NewTicker(aliveEvery)
	defer t.Stop()
	fd, err := unix.Socket(unix.AF_NETLINK, unix.SOCK_RAW|unix.SOCK_CLOEXEC, unix.NETLINK_SOCK_DIAG)
	if err != nil {
		l.log.Warn("cannot watch for programs closing half-closed connections; they stay until their peers close them", "err", err)
		return
	}
	defer unix.Close(fd)
	if err := checkDiag(fd); err != nil {
		l.log.Warn("cannot watch for programs closing half-closed connections; they stay until their peers close them", "err", err)
		return
	}
	warned := false
	for {
		select {
		case <-l.done:
			return
		case <-t.C:
		}
		l.mu.Lock()
		ids := make([]socketID, 0, len(l.gone))
		for id := range l.gone {
			ids = append(ids, id)
		}
		l.mu.Unlock()
		for _, id := range ids {
			exists, err := socketExists(fd, id)
			if err != nil {
				if !warned {
					l.log.Warn("cannot ask the kernel whether a program's socket is open", "err", err)
					warned = true
				}
				continue
			}
			if exists {
				continue
			}
			l.mu.Lock()
			closed := l.gone[id]
			delete(l.gone, id)
			l.mu.Unlock()
			if closed != nil {
				closed()
			}
		}
	}
}

// checkDiag asks sock_diag for a socket that exists: a kernel without
// unix_diag would call every socket gone.
func checkDiag(fd int) error {
	pair, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return err
	}
	defer unix.Close(pair[0])
	defer unix.Close(pair[1])
	id, err := identify(pair[0])
	if err != nil {
		return err
	}
	exists, err := socketExists(fd, id)
	if err == nil && !exists {
		err = errors.New("sock_diag does not find the Unix sockets that exist (is unix_diag missing?)")
	}
	return err
}

// socketExists asks sock_diag for the Unix socket id (unix_diag_req
// with its inode and cookie: an exact lookup, no dump).
func socketExists(fd int, id socketID) (bool, error) {
	const reqLen = unix.NLMSG_HDRLEN + 24
	req := make([]byte, reqLen)
	ne := binary.NativeEndian
	ne.PutUint32(req[0:], reqLen)
	ne.PutUint16(req[4:], unix.SOCK_DIAG_BY_FAMILY)
	ne.PutUint16(req[6:], unix.NLM_F_REQUEST)
	b := req[unix.NLMSG_HDRLEN:]
	b[0] = unix.AF_UNIX
	ne.PutUint32(b[4:], ^uint32(0)) // every state
	ne.PutUint32(b[8:], id.ino)
	ne.PutUint32(b[16:], uint32(id.cookie))
	ne.PutUint32(b[20:], uint32(id.cookie>>32))
	if err := unix.Sendto(fd, req, 0, &unix.SockaddrNetlink{Family: unix.AF_NETLINK}); err != nil {
		return false, fmt.Errorf("sock_diag: %w", err)
	}
	resp := make([]byte, 4096)
	n, _, err := unix.Recvfrom(fd, resp, 0)
	if err != nil {
		return false, fmt.Errorf("sock_diag: %w", err)
	}
	// One message: the socket's (found) or an error (nlmsgerr, its
	// errno first).
	if n < unix.NLMSG_HDRLEN {
		return false, fmt.Errorf("sock_diag: a reply of %d bytes", n)
	}
	if ne.Uint16(resp[4:]) != unix.NLMSG_ERROR {
		return true, nil
	}
	if n < unix.NLMSG_HDRLEN+4 {
		return false, errors.New("sock_diag: a short error")
	}
	switch errno := unix.Errno(-int32(ne.Uint32(resp[unix.NLMSG_HDRLEN:]))); errno {
	case 0:
		return true, nil
	case unix.ENOENT, unix.ESTALE:
		return false, nil
	default:
		return false, fmt.Errorf("sock_diag: %w", errno)
	}
}
