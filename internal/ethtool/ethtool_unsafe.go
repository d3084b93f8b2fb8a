// Package ethtool makes the few SIOCETHTOOL requests xdpstack needs, on
// a socket of the caller's: the request goes to the interface of that
// name in the socket's network namespace.
package ethtool

import (
	"unsafe"

	"golang.org/x/sys/unix"
)

// ifreqData is struct ifreq with its union used as ifr_data.
type ifreqData struct {
	Name [unix.IFNAMSIZ]byte
	Data unsafe.Pointer
	_    [16]byte
}

func request(fd int, name string, data unsafe.Pointer) error {
	req := ifreqData{Data: data}
	copy(req.Name[:], name)
	if _, _, errno := unix.Syscall(unix.SYS_IOCTL, uintptr(fd), unix.SIOCETHTOOL, uintptr(unsafe.Pointer(&req))); errno != 0 {
		return errno
	}
	return nil
}

// Channels is struct ethtool_channels.
type Channels struct {
	Cmd                                         uint32
	MaxRx, MaxTx, MaxOther, MaxCombined         uint32
	RxCount, TxCount, OtherCount, CombinedCount uint32
}

// GetChannels reads the interface's queue counts (ethtool -l).
func GetChannels(fd int, name string) (Channels, error) {
	ch := Channels{Cmd: unix.ETHTOOL_GCHANNELS}
	err := request(fd, name, unsafe.Pointer(&ch))
	return ch, err
}

// TSO tells whether the interface segments TCP itself (ethtool -k:
// tcp-segmentation-offload).
func TSO(fd int, name string) (bool, error) {
	v := struct{ Cmd, Data uint32 }{Cmd: unix.ETHTOOL_GTSO}
	err := request(fd, name, unsafe.Pointer(&v))
	return v.Data != 0, err
}
