package userstack

import (
	"fmt"

	"github.com/xdpstack/xdpstack/userstack/afxdp"
	"github.com/xdpstack/xdpstack/userstack/appns"
)

// Options tune the engine. The zero value is a good start.
type Options struct {
	// AFXDP sizes each queue's socket.
	AFXDP afxdp.Options
	// NoGRO turns off coalescing of received TCP segments.
	NoGRO bool
	// CheckChecksums checks received checksums on a veth too, where they
	// are otherwise trusted; the peer must then send whole checksums
	// (its tx checksumming off). Every other interface is checked: this
	// runs that path on a veth, for tests and benchmarks.
	CheckChecksums bool
	// NoKernelGSO sends TCP segments larger than the MTU as AF_XDP
	// frames, cut by the userstack, instead of whole through the
	// kernel's segmentation offload (gsotx).
	NoKernelGSO bool
	// Procs sets the process's GOMAXPROCS when the stack starts: a
	// number, or ProcsAuto for AutoProcs. 0 leaves it alone, for a
	// process that runs more than the userstack (tests, benchmarks).
	Procs int
	TCP   TCPOptions
	// Namespaces are the interface's application namespaces, which the
	// daemon keeps (the control socket and the config file change
	// them); nil gives the stack a registry of its own with only the
	// default namespace.
	Namespaces *appns.Registry
}

// TCPOptions are the netstack's TCP settings.
type TCPOptions struct {
	// NoSACK turns off selective acknowledgements (on by default, as in
	// Linux).
	NoSACK bool
	// CongestionControl is "reno" (the default) or "cubic". Linux
	// defaults to cubic, but gVisor's cubic can shut a connection's
	// congestion window for good: when HyStart ends slow start (on a
	// rise in RTT, as a busy CPU makes), the next ACK reaches cubic's
	// window formula before congestion avoidance has set its reference
	// window, which is still 0, and every packet it acknowledges takes
	// one off cwnd. At cwnd 0 with nothing in flight no timer runs, so
	// the connection never sends again (seen as a 16 MiB echo stalled
	// for good, about 1 run in 20 to 50 with both cores busy: cwnd 0,
	// nothing outstanding, the peer's window open, the send buffer full).
	CongestionControl string
	// SendBuffer and ReceiveBuffer are the largest buffers, in bytes, that
	// auto-tuning may grow a connection's to; 4 MiB and 6 MiB (Linux's
	// tcp_wmem and tcp_rmem maxima) when 0.
	SendBuffer, ReceiveBuffer int
	// Backlog is the accept queue of each listener; 4096 when 0.
	Backlog int
}

func (o *Options) setDefaults() error {
	if o.Procs < ProcsAuto {
		return fmt.Errorf("procs %d: want a positive number, or auto", o.Procs)
	}
	t := &o.TCP
	switch t.CongestionControl {
	case "":
		t.CongestionControl = "reno"
	case "cubic", "reno":
	default:
		return fmt.Errorf("tcp congestion control %q: want cubic or reno", t.CongestionControl)
	}
	if t.SendBuffer == 0 {
		t.SendBuffer = 4 << 20
	}
	if t.ReceiveBuffer == 0 {
		t.ReceiveBuffer = 6 << 20
	}
	if t.Backlog == 0 {
		t.Backlog = 4096
	}
	for _, b := range []struct {
		name string
		size int
	}{{"send", t.SendBuffer}, {"receive", t.ReceiveBuffer}} {
		if b.size < minTCPBuffer || b.size > maxTCPBuffer {
			return fmt.Errorf("tcp %s buffer %d: want %d to %d bytes (4K to 1G)", b.name, b.size, minTCPBuffer, maxTCPBuffer)
		}
	}
	if t.Backlog < 0 || t.Backlog > MaxBacklog {
		return fmt.Errorf("tcp backlog %d: want 1 to %d", t.Backlog, MaxBacklog)
	}
	return nil
}

// Validate tells whether Start would accept the options.
func (o Options) Validate() error { return o.setDefaults() }

// minTCPBuffer is the smallest TCP buffer, and the size every
// connection's buffers start from.
const minTCPBuffer = 4096

// maxTCPBuffer bounds the TCP buffers: 1 GiB, far above Linux's
// defaults, and well inside TCP's scaled 32-bit windows.
const maxTCPBuffer = 1 << 30

// MaxBacklog bounds a listener's accept queue, as Linux's somaxconn was
// bounded before 5.4: a longer queue only holds more of a flood.
const MaxBacklog = 65535

// defaultTCPBuffer is the size a connection's buffers start at, unless
// the largest allowed is smaller; auto-tuning grows them from there.
const defaultTCPBuffer = 1 << 20
