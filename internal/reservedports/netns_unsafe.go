package reservedports

import (
	"fmt"
	"unsafe"

	"golang.org/x/sys/unix"
)

// netnsCookie is the calling thread's network namespace's cookie, which,
// unlike its inode number, no later namespace gets again.
func netnsCookie() (uint64, error) {
	fd, err := unix.Socket(unix.AF_UNIX, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return 0, fmt.Errorf("read network namespace cookie: %w", err)
	}
	defer unix.Close(fd)
	var cookie uint64
	size := uint32(unsafe.Sizeof(cookie))
	if _, _, errno := unix.Syscall6(unix.SYS_GETSOCKOPT, uintptr(fd), unix.SOL_SOCKET, unix.SO_NETNS_COOKIE,
		uintptr(unsafe.Pointer(&cookie)), uintptr(unsafe.Pointer(&size)), 0); errno != 0 {
		return 0, fmt.Errorf("read network namespace cookie: %w", errno)
	}
	return cookie, nil
}
