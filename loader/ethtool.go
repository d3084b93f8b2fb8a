package loader

import (
	"golang.org/x/sys/unix"

	"github.com/xdpstack/xdpstack/internal/ethtool"
)

// activeRxQueues asks the driver how many RX queues it uses (ethtool
// ETHTOOL_GCHANNELS): queues that carry packets, not those allocated.
func activeRxQueues(name string) (int, error) {
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return 0, err
	}
	defer unix.Close(fd)
	ch, err := ethtool.GetChannels(fd, name)
	if err != nil {
		return 0, err
	}
	return max(int(ch.RxCount+ch.CombinedCount), 1), nil
}

// driverName asks ethtool for the interface's driver; "" if it cannot
// tell.
func driverName(name string) string {
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return ""
	}
	defer unix.Close(fd)
	info, err := unix.IoctlGetEthtoolDrvinfo(fd, name)
	if err != nil {
		return ""
	}
	return unix.ByteSliceToString(info.Driver[:])
}
