package preload

import (
	"testing"
	"unsafe"

	"golang.org/x/sys/unix"
)

// nameOf reads the name of a socket the server handed over, as the
// library does: x/sys's Getsockname stops an abstract name at its
// first NUL, and ours hold many.
func nameOf(t *testing.T, fd int) Name {
	t.Helper()
	var sa unix.RawSockaddrUnix
	size := uint32(unsafe.Sizeof(sa))
	if _, _, errno := unix.Syscall(unix.SYS_GETSOCKNAME, uintptr(fd), uintptr(unsafe.Pointer(&sa)), uintptr(unsafe.Pointer(&size))); errno != 0 {
		t.Fatalf("getsockname: %v", errno)
	}
	path := unsafe.Slice((*byte)(unsafe.Pointer(&sa.Path[0])), int(size)-int(unsafe.Sizeof(sa.Family)))
	n, err := ParseName(path)
	if err != nil {
		t.Fatal(err)
	}
	return n
}
