package pingpong

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"os"
	"runtime"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/xdpstack/xdpstack/internal/stagetime"
)

// clientEnv, set to "ADDR:PORT N", makes a program that links this
// package the ping-pong client instead: Run starts its own executable
// that way in the client's namespace. An environment variable and an
// init function, not a flag, so that any program calling Run (the tool,
// tools/bench) is its own client without a line of its own for it.
const clientEnv = "XDPSTACK_PINGPONG_CLIENT"

func init() {
	spec, ok := os.LookupEnv(clientEnv)
	if !ok {
		return
	}
	// One thread, as a plain C client has: Run sets GOMAXPROCS=1 too.
	runtime.LockOSThread()
	w := bufio.NewWriter(os.Stdout)
	err := runClient(spec, w)
	if err == nil {
		err = w.Flush()
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "ping-pong client: %v\n", err)
		os.Exit(1)
	}
	os.Exit(0)
}

// runClient connects to the echo spec names, makes its round trips on a
// blocking socket with TCP_NODELAY, 1-byte write then read, and writes
// each trip's stamps to w as two little-endian int64s.
func runClient(spec string, w io.Writer) error {
	addr, n, err := parseClientSpec(spec)
	if err != nil {
		return err
	}
	fd, err := dial(addr)
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	stamps := make([]int64, 0, 2*n)
	one := []byte{1}
	for range n {
		t0 := stagetime.Now()
		if err := transfer(unix.Write, fd, one); err != nil {
			return fmt.Errorf("write: %w", err)
		}
		if err := transfer(unix.Read, fd, one); err != nil {
			return fmt.Errorf("read: %w", err)
		}
		stamps = append(stamps, t0, stagetime.Now())
	}
	return binary.Write(w, binary.LittleEndian, stamps)
}

func parseClientSpec(spec string) (netip.AddrPort, int, error) {
	addr, count, _ := strings.Cut(spec, " ")
	ap, err := netip.ParseAddrPort(addr)
	if err != nil {
		return ap, 0, fmt.Errorf("parse %s %q: %w (want ADDR:PORT N)", clientEnv, spec, err)
	}
	n, err := strconv.Atoi(count)
	if err != nil || n < 1 {
		return ap, 0, fmt.Errorf("parse %s %q: bad round trip count (want ADDR:PORT N, N > 0)", clientEnv, spec)
	}
	return ap, n, nil
}

// dial opens a blocking TCP socket with TCP_NODELAY connected to addr.
func dial(addr netip.AddrPort) (int, error) {
	family, sa := unix.AF_INET6, unix.Sockaddr(&unix.SockaddrInet6{Port: int(addr.Port()), Addr: addr.Addr().As16()})
	if ip := addr.Addr().Unmap(); ip.Is4() {
		family, sa = unix.AF_INET, &unix.SockaddrInet4{Port: int(addr.Port()), Addr: ip.As4()}
	}
	fd, err := unix.Socket(family, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return -1, fmt.Errorf("socket: %w", err)
	}
	if err := unix.SetsockoptInt(fd, unix.IPPROTO_TCP, unix.TCP_NODELAY, 1); err != nil {
		unix.Close(fd)
		return -1, fmt.Errorf("set TCP_NODELAY: %w", err)
	}
	if err := unix.Connect(fd, sa); err != nil {
		unix.Close(fd)
		return -1, fmt.Errorf("connect %s: %w", addr, err)
	}
	return fd, nil
}

// transfer moves the one byte of b with op (unix.Read or unix.Write).
func transfer(op func(int, []byte) (int, error), fd int, b []byte) error {
	for {
		n, err := op(fd, b)
		switch {
		case err == unix.EINTR:
		case err != nil:
			return err
		case n == 0:
			return errors.New("connection closed")
		default:
			return nil
		}
	}
}
