package afxdp

import (
	"cmp"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"math/bits"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/xdpstack/xdpstack/internal/stagetime"
)

// Mode is how the kernel moves frames between the driver and the UMEM.
type Mode int

const (
	// ModeCopy: the kernel copies each frame (any driver, generic XDP).
	ModeCopy Mode = iota
	// ModeZeroCopy: the driver DMAs straight into the UMEM.
	ModeZeroCopy
)

func (m Mode) String() string {
	if m == ModeZeroCopy {
		return "zero-copy"
	}
	return "copy"
}

// Options size a socket.
type Options struct {
	// Frames is the number of UMEM frames, a power of two; half receive,
	// half transmit, and each ring holds that half. 4096 when 0.
	Frames uint32
	// FrameSize is 2048 or 4096 (the default); one frame holds one
	// packet with its Ethernet header, unless MultiBuffer.
	FrameSize uint32
	// MultiBuffer requires that a packet may span several frames
	// (XDP_USE_SG), for an MTU larger than a frame: Open fails where the
	// kernel cannot. Without it, Open asks for multi-buffer all the same,
	// so that the MTU may grow later, and does without where the kernel
	// (before Linux 6.6) or a zero-copy driver cannot.
	MultiBuffer bool
	// Log is where transmit failures are logged, rate-limited;
	// slog.Default() when nil.
	Log *slog.Logger
}

// framesFor is how many frames of room bytes each a packet of size takes.
func framesFor(size, room uint32) uint32 { return (size + room - 1) / room }

// txMetadataLen is the size of struct xsk_tx_metadata, which the
// kernel reads just before a transmitted packet.
const txMetadataLen = 24

// txmdFlagsChecksum is XDP_TXMD_FLAGS_CHECKSUM.
const txmdFlagsChecksum = 1 << 1

// txStallLimit is how long Transmit waits for TX frames or ring space
// before it gives up on the rest of a batch.
const txStallLimit = 20 * time.Millisecond

// maxPacket bounds a packet Transmit may be asked to send: an IP packet
// with its Ethernet header.
const maxPacket = 65535 + ethernetHeaderLen

// defaultFrameSize is FrameSize when 0.
const defaultFrameSize = 4096

// xdpPacketHeadroom is XDP_PACKET_HEADROOM: in copy mode a received
// packet starts this far into its frame.
const xdpPacketHeadroom = 256

// maxMTU is the largest MTU whose packets fit one frame of frameSize
// bytes, with their Ethernet header.
func maxMTU(frameSize uint32) int { return int(frameSize) - xdpPacketHeadroom - ethernetHeaderLen }

const ethernetHeaderLen = 14

// FitMTU requires MultiBuffer when a packet of mtu bytes does not fit
// one frame.
func (o *Options) FitMTU(mtu int) {
	if mtu > maxMTU(cmp.Or(o.FrameSize, defaultFrameSize)) {
		o.MultiBuffer = true
	}
}

func (o *Options) setDefaults() error {
	if o.Frames == 0 {
		o.Frames = 4096
	}
	if o.FrameSize == 0 {
		o.FrameSize = defaultFrameSize
	}
	if o.Frames < 64 || bits.OnesCount32(o.Frames) != 1 {
		return fmt.Errorf("afxdp frames %d: want a power of two, at least 64", o.Frames)
	}
	if o.FrameSize != 2048 && o.FrameSize != 4096 {
		return fmt.Errorf("afxdp frame size %d: want 2048 or 4096", o.FrameSize)
	}
	if need := framesFor(maxPacket, o.FrameSize-txMetadataLen); o.MultiBuffer && o.Frames/2 < need {
		return fmt.Errorf("afxdp frames %d: too few for multi-buffer, whose largest packet takes %d transmit frames", o.Frames, need)
	}
	return nil
}

// Socket is an AF_XDP socket bound to one RX queue of an interface. One
// goroutine calls Receive and Wait; any number call Transmit and Flush,
// whose frames a goroutine of the socket's own sends (kicker).
type Socket struct {
	Queue int
	// Mode is what the kernel reports for the bound socket.
	Mode Mode
	// ZeroCopyErr says why zero-copy was refused, when Mode is ModeCopy.
	ZeroCopyErr error
	// NeedWakeup is true when the kernel only processes the rings when
	// told to (XDP_USE_NEED_WAKEUP), which lets it sleep at idle.
	NeedWakeup bool

	// fdMu guards fd and txFD against Stats, which a metrics scrape
	// may call while Close closes them.
	fdMu sync.Mutex
	fd   int
	// file hands the descriptor to Go's network poller, so that Wait
	// parks the goroutine instead of a thread, and Stop can end it.
	file *os.File
	conn syscall.RawConn
	// txFD owns the TX ring and takes the kicks: a second socket on the
	// same queue and UMEM (XDP_SHARED_UMEM). In copy mode the kernel
	// transmits from every poll of a socket with a TX ring, so when fd
	// had one, the poller's epoll_wait spun on the socket's mutex against
	// our own sendto (11% of the CPU of a TCP echo). fd itself where the
	// kernel refuses the split.
	txFD int

	sg        bool
	umem      []byte
	frameSize uint32
	frames    uint32
	mmaps     [][]byte
	// txHeadroom is where a transmit frame's packet starts, after the
	// TX metadata; 0 where the kernel has no TX metadata.
	txHeadroom uint32
	// checksumOffload: see OffloadsChecksum.
	checksumOffload bool

	fill addrRing
	// fillDepth is how many frames refill keeps in the fill ring,
	// fillDeepened when it last grew (adaptFill), and fillLeft how many
	// the last refill left there.
	fillDepth, fillLeft uint32
	fillDeepened        time.Time
	rx                  descRing
	// rxFree are receive frames that are in neither the fill nor the RX
	// ring; between two Receive calls it is empty.
	rxFree []uint64
	// rxJoin gathers a multi-buffer packet's frames.
	rxJoin []byte

	// kicks wakes the kicker goroutine; nil when none runs.
	kicks      chan struct{}
	kickerDone chan struct{}
	// kickMu is held by whoever kicks the TX ring, so that kicks never
	// contend for the socket's mutex in the kernel; lastInline is when
	// the last inline kick ended (stagetime.Now), and inlineGap is
	// inlineKickGap (tests that must not see it pass make it long).
	kickMu     sync.Mutex
	lastInline atomic.Int64
	inlineGap  time.Duration

	txMu sync.Mutex
	// closed is set by Close, under txMu.
	closed bool
	tx     descRing
	comp   addrRing
	txFree []uint64
	// txJoin is where a multi-buffer packet is written before it is cut
	// into frames.
	txJoin []byte

	// Frames the kernel holds (fill, RX, TX and completion rings and in
	// between), counted on both paths so that Frames can be read from
	// any goroutine.
	rxInKernel, txInKernel atomic.Int64
	rxFreeN, txFreeN       atomic.Int64
	// lost counts frames the kernel still held at Close.
	lost atomic.Int64
	// closedKernel is the kernel's counters read at Close, which Stats
	// reports from then on.
	closedKernel unix.XDPStatistics

	rxPackets, rxBytes, txPackets, txBytes atomic.Uint64
	// txDropped counts the packets Transmit gave up on.
	txDropped atomic.Uint64
	txLog     txLog
	logger    *slog.Logger
}

// Open creates a socket on queue of the interface with index ifindex,
// asking for zero-copy first and falling back to copy mode.
func Open(ifindex, queue int, opts Options) (*Socket, error) {
	if err := opts.setDefaults(); err != nil {
		return nil, err
	}
	umem, err := unix.Mmap(-1, 0, int(opts.Frames*opts.FrameSize), unix.PROT_READ|unix.PROT_WRITE, unix.MAP_PRIVATE|unix.MAP_ANONYMOUS|unix.MAP_POPULATE)
	if err != nil {
		return nil, fmt.Errorf("allocate umem: %w", err)
	}
	s := &Socket{Queue: queue, umem: umem, frameSize: opts.FrameSize, frames: opts.Frames, fd: -1, txFD: -1, txHeadroom: txMetadataLen, logger: opts.Log, inlineGap: inlineKickGap}
	// Zero-copy first, then multi-buffer: many drivers do zero-copy
	// only in single frames, and copy mode costs more than a ceiling on
	// the MTU. Kernels before 5.4 know no XDP_USE_NEED_WAKEUP.
	const sg, zc, cp, wakeup = unix.XDP_USE_SG, unix.XDP_ZEROCOPY, unix.XDP_COPY, unix.XDP_USE_NEED_WAKEUP
	tries := []uint16{zc | sg | wakeup, zc | wakeup, cp | sg | wakeup, cp | wakeup, cp}
	if opts.MultiBuffer {
		tries = []uint16{zc | sg | wakeup, cp | sg | wakeup}
	}
	// A queue whose previous socket just closed stays busy until the
	// kernel's deferred release of that socket's pool has run.
	var flags uint16
	for deadline := time.Now().Add(2 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		for _, flags = range tries {
			if err = s.bind(ifindex, queue, flags); err == nil {
				break
			}
			if flags&zc != 0 {
				s.ZeroCopyErr = err
			}
		}
		if !errors.Is(err, unix.EBUSY) || time.Now().After(deadline) {
			break
		}
	}
	if err != nil {
		s.closeSocket()
		unix.Munmap(umem)
		if opts.MultiBuffer {
			return nil, fmt.Errorf("open af_xdp socket on queue %d with multi-buffer (XDP_USE_SG, Linux 6.6 or later): %w (lower the mtu to %d)", queue, err, maxMTU(s.frameSize))
		}
		return nil, fmt.Errorf("open af_xdp socket on queue %d: %w (zero-copy: %v)", queue, err, s.ZeroCopyErr)
	}
	if s.Mode == ModeZeroCopy {
		s.ZeroCopyErr = nil
	}
	if s.sg = flags&sg != 0; s.sg {
		s.txJoin = make([]byte, maxPacket)
	}
	if err := unix.SetNonblock(s.fd, true); err != nil {
		s.Close()
		return nil, fmt.Errorf("make af_xdp socket non-blocking: %w", err)
	}
	s.file = os.NewFile(uintptr(s.fd), fmt.Sprintf("xsk-queue-%d", queue))
	if s.conn, err = s.file.SyscallConn(); err != nil {
		s.Close()
		return nil, fmt.Errorf("register af_xdp socket with the poller: %w", err)
	}
	s.shareFrames()
	s.kicks, s.kickerDone = make(chan struct{}, 1), make(chan struct{})
	go s.kicker()
	return s, nil
}

// shareFrames gives the first half of the UMEM's frames to receiving,
// the rest to transmitting, and fills the fill ring.
func (s *Socket) shareFrames() {
	half := s.frames / 2
	for i := range half {
		s.rxFree = append(s.rxFree, uint64(i)*uint64(s.frameSize))
		s.txFree = append(s.txFree, uint64(half+i)*uint64(s.frameSize))
	}
	s.rxFreeN.Store(int64(half))
	s.txFreeN.Store(int64(half))
	s.fillDepth = min(fillFloor, half)
	s.refill()
}

// errSplit marks a failure to open the TX socket apart.
var errSplit = errors.New("open af_xdp tx socket on the shared umem")

// bind sets up fresh sockets with the UMEM and binds them with flags:
// one for receiving and one for sending if the kernel allows, else one.
func (s *Socket) bind(ifindex, queue int, flags uint16) error {
	err := s.bindRings(ifindex, queue, flags, true)
	if errors.Is(err, errSplit) {
		err = s.bindRings(ifindex, queue, flags, false)
	}
	return err
}

// bindRings sets up a fresh socket with the UMEM and binds it with
// flags; with split its TX ring is on a second socket. A failed bind
// leaves the socket's rings handed to a destroyed pool, so every attempt
// starts from a new socket.
func (s *Socket) bindRings(ifindex, queue int, flags uint16, split bool) error {
	s.closeSocket()
	fd, err := unix.Socket(unix.AF_XDP, unix.SOCK_RAW|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("create af_xdp socket: %w", err)
	}
	s.fd = fd
	err = registerUMEM(fd, s.umem, s.frameSize, s.txHeadroom)
	if errors.Is(err, unix.EINVAL) && s.txHeadroom != 0 {
		// Kernels before 6.11 know no XDP_UMEM_TX_METADATA_LEN.
		s.txHeadroom = 0
		err = registerUMEM(fd, s.umem, s.frameSize, 0)
	}
	if err != nil {
		return err
	}
	n := s.frames / 2
	for _, opt := range []int{unix.XDP_UMEM_FILL_RING, unix.XDP_UMEM_COMPLETION_RING, unix.XDP_RX_RING} {
		if err := unix.SetsockoptInt(fd, unix.SOL_XDP, opt, int(n)); err != nil {
			return fmt.Errorf("size ring %d: %w", opt, err)
		}
	}
	off, err := mmapOffsets(fd)
	if err != nil {
		return err
	}
	for _, m := range []func() ([]byte, error){
		func() ([]byte, error) { return mapAddrRing(fd, unix.XDP_UMEM_PGOFF_FILL_RING, off.Fr, n, &s.fill) },
		func() ([]byte, error) {
			return mapAddrRing(fd, unix.XDP_UMEM_PGOFF_COMPLETION_RING, off.Cr, n, &s.comp)
		},
		func() ([]byte, error) { return mapDescRing(fd, unix.XDP_PGOFF_RX_RING, off.Rx, n, &s.rx) },
	} {
		mem, err := m()
		if err != nil {
			return err
		}
		s.mmaps = append(s.mmaps, mem)
	}
	if !split {
		if err := s.addTXRing(fd); err != nil {
			return err
		}
	}
	if err := unix.Bind(fd, &unix.SockaddrXDP{Flags: flags, Ifindex: uint32(ifindex), QueueID: uint32(queue)}); err != nil {
		return fmt.Errorf("bind to queue %d: %w", queue, err)
	}
	opts, err := unix.GetsockoptInt(fd, unix.SOL_XDP, unix.XDP_OPTIONS)
	if err != nil {
		return fmt.Errorf("read af_xdp options: %w", err)
	}
	if opts&unix.XDP_OPTIONS_ZEROCOPY != 0 {
		s.Mode = ModeZeroCopy
	} else {
		s.Mode = ModeCopy
	}
	s.NeedWakeup = flags&unix.XDP_USE_NEED_WAKEUP != 0
	s.checksumOffload = s.txHeadroom != 0 && s.Mode == ModeCopy
	s.txFD = fd
	if split {
		if err := s.openTX(ifindex, queue); err != nil {
			return fmt.Errorf("%w: %w", errSplit, err)
		}
	}
	return nil
}

// openTX opens the socket that sends for s, sharing its UMEM and queue.
func (s *Socket) openTX(ifindex, queue int) error {
	fd, err := unix.Socket(unix.AF_XDP, unix.SOCK_RAW|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return err
	}
	s.txFD = fd
	if err := s.addTXRing(fd); err != nil {
		return err
	}
	return unix.Bind(fd, &unix.SockaddrXDP{Flags: unix.XDP_SHARED_UMEM, Ifindex: uint32(ifindex), QueueID: uint32(queue), SharedUmemFD: uint32(s.fd)})
}

// addTXRing gives fd, not bound yet, the TX ring and maps it.
func (s *Socket) addTXRing(fd int) error {
	n := s.frames / 2
	if err := unix.SetsockoptInt(fd, unix.SOL_XDP, unix.XDP_TX_RING, int(n)); err != nil {
		return fmt.Errorf("size tx ring: %w", err)
	}
	off, err := mmapOffsets(fd)
	if err != nil {
		return err
	}
	mem, err := mapDescRing(fd, unix.XDP_PGOFF_TX_RING, off.Tx, n, &s.tx)
	if err != nil {
		return err
	}
	s.mmaps = append(s.mmaps, mem)
	return nil
}

// closeSocket closes the sockets and unmaps their rings.
func (s *Socket) closeSocket() {
	s.closeFDs()
	s.unmapRings()
}

// unmapRings unmaps the rings of closed sockets.
func (s *Socket) unmapRings() {
	for _, m := range s.mmaps {
		unix.Munmap(m)
	}
	s.mmaps = nil
}

// closeFDs closes the receiving socket and, when apart, the TX socket,
// keeping their last counters for Stats.
func (s *Socket) closeFDs() error {
	s.fdMu.Lock()
	defer s.fdMu.Unlock()
	if s.fd >= 0 {
		s.closedKernel, _ = s.kernelStats()
	}
	if s.txFD >= 0 && s.txFD != s.fd {
		unix.Close(s.txFD)
	}
	s.txFD = -1
	var err error
	if s.file != nil {
		err = s.file.Close()
		s.file = nil
	} else if s.fd >= 0 {
		err = unix.Close(s.fd)
	}
	s.fd = -1
	return err
}

// MaxMTU is the largest MTU whose packets the socket carries, with
// their Ethernet header.
func (s *Socket) MaxMTU() int {
	if s.sg {
		return maxPacket - ethernetHeaderLen
	}
	return maxMTU(s.frameSize)
}

// FD is the socket's descriptor, for the xsks map.
func (s *Socket) FD() int { return s.fd }

// Receive hands up to about max received packets to deliver, one at a
// time, and gives their frames back to the fill ring. deliver must copy
// what it keeps: the frame is reused as soon as it returns. It returns
// how many frames it took.
func (s *Socket) Receive(max int, deliver func(frame []byte)) int {
	avail := s.rx.available()
	n := min(avail, uint32(max))
	// Never stop inside a packet; the kernel publishes all its frames at
	// once, so they are there.
	for n > 0 && n < avail && s.rx.at(s.rx.cachedCons+n-1).Options&unix.XDP_PKT_CONTD != 0 {
		n++
	}
	if n == 0 {
		return 0
	}
	var bytes, packets uint64
	for i := range n {
		d := s.rx.at(s.rx.cachedCons + i)
		data := s.umem[d.Addr : d.Addr+uint64(d.Len)]
		bytes += uint64(d.Len)
		// The frame goes back to the fill ring only after the loop.
		s.rxFree = append(s.rxFree, d.Addr&^uint64(s.frameSize-1))
		more := d.Options&unix.XDP_PKT_CONTD != 0
		if !more && len(s.rxJoin) == 0 {
			deliver(data)
			packets++
			continue
		}
		s.rxJoin = append(s.rxJoin, data...)
		if !more {
			deliver(s.rxJoin)
			s.rxJoin = s.rxJoin[:0]
			packets++
		}
	}
	s.rx.release(n)
	s.rxInKernel.Add(-int64(n))
	s.rxFreeN.Add(int64(n))
	s.rxPackets.Add(packets)
	s.rxBytes.Add(bytes)
	s.refill()
	return int(n)
}

// refill gives free receive frames back to the fill ring, up to its
// depth (adaptFill). The most recently freed go first.
func (s *Socket) refill() {
	inRing := s.fill.pending()
	s.adaptFill(s.fillLeft - min(inRing, s.fillLeft))
	k := min(s.fill.free(), uint32(len(s.rxFree)), s.fillDepth-min(inRing, s.fillDepth))
	s.fillLeft = inRing + k
	if k == 0 {
		return
	}
	for i := range k {
		*s.fill.at(s.fill.cachedProd + i) = s.rxFree[len(s.rxFree)-1-int(i)]
	}
	s.rxFree = s.rxFree[:len(s.rxFree)-int(k)]
	s.fill.submit(k)
	s.rxFreeN.Add(-int64(k))
	s.rxInKernel.Add(int64(k))
	if s.NeedWakeup && s.fill.needWakeup() {
		unix.Recvfrom(s.fd, nil, unix.MSG_DONTWAIT)
	}
}

// The kernel fills the frames of the fill ring in the order they were
// put there, so with every receive frame in it each one came back only
// after all the others: 2048 pages in turn, none of them still in the
// TLB. Reading a received packet's first byte then took 4 us (in a
// virtual machine, where a TLB miss walks two page tables), a tenth of
// a 1-byte ping-pong. So the fill ring holds fillFloor frames while
// traffic is light, which stay in the TLB (the first byte then took 0.3
// us; with 512 frames in turn 0.4 us but 6 us at p90), and deepens
// while the kernel takes frames faster: all RX losses seen on veth were
// the fill ring running dry.
const (
	fillFloor = 256
	// fillDecay is how long a deeper fill ring stays so after it last
	// had to deepen.
	fillDecay = time.Second
)

// adaptFill sets the fill ring's depth from how many of its frames the
// kernel took since the last refill: a quarter or more doubles it, and
// fillDecay without that halves it, down to fillFloor.
func (s *Socket) adaptFill(taken uint32) {
	most := s.frames / 2
	switch {
	case taken >= s.fillDepth/4 && s.fillDepth < most:
		s.fillDepth = min(2*s.fillDepth, most)
		s.fillDeepened = time.Now()
	case s.fillDepth > fillFloor && time.Since(s.fillDeepened) > fillDecay:
		s.fillDepth = max(s.fillDepth/2, fillFloor)
		s.fillDeepened = time.Now()
	}
}

// Wait parks the calling goroutine in Go's network poller until frames
// arrive or Stop is called, so an idle socket costs no CPU. Parking
// there, rather than in a blocking poll(), frees the thread's P at once
// for the goroutines the last batch woke (the netstack's TCP processor):
// a thread blocked in poll() keeps its P until the runtime's monitor
// takes it back, which held those goroutines up by tens of
// microseconds. It returns false once stopped.
func (s *Socket) Wait() bool {
	err := s.conn.Read(func(uintptr) bool { return s.rx.available() > 0 })
	return err == nil
}

// Stop makes Wait return false, now and from then on.
func (s *Socket) Stop() {
	s.file.SetReadDeadline(time.Unix(1, 0))
}

// Checksum asks the kernel to finish a packet's partial checksum: to sum
// the bytes from Start to the end and store the result at Start+Offset,
// where the packet holds the sum of the pseudo-header (Linux's
// CHECKSUM_PARTIAL). The zero value asks nothing. Only for a socket that
// OffloadsChecksum.
type Checksum struct{ Start, Offset uint16 }

// Transmit sends up to n packets: write fills packet i into buf and
// returns its length and the checksum it leaves to the kernel. buf is a
// UMEM frame; a packet longer than buf is not written, and write
// returns its length: with multi-buffer Transmit then calls write again
// with a buffer that size and cuts it into frames, else it drops the
// packet (counted as TxTooLong). It returns how many it took; fewer than
// n when the TX ring and frames stay full (counted as TxFull), with the
// kernel's error if it refuses to send. They leave right after, in
// order: a few on an idle ring from the caller (kickInline), more from
// the kicker goroutine.
func (s *Socket) Transmit(n int, write func(i int, buf []byte) (int, Checksum)) (int, error) {
	sent, inline, err := s.queue(n, write)
	stagetime.Mark(stagetime.TxQueued)
	if inline {
		s.kickInline()
	}
	return sent, err
}

// inlineKickFrames is the most frames a Transmit sends itself, when the
// ring was idle: a request's answer or an ACK. Waking the kicker for
// them was one more hand-off between goroutines per message, and with
// an idle P each hand-off woke a thread (a futex wake, and a spinning
// thread taking the CPU the peer needed): 1-byte ping-pong from a
// separate process spent more time there than in the netstack.
const inlineKickFrames = 4

// inlineKickGap is how long after an inline kick ends the next small
// transmit still goes to the kicker: a burst of small packets (QUIC's,
// one frame each, some 25 us apart at its rate here) then shares kicks,
// where each one kicking for itself cost QUIC echo a fifth of its
// throughput; a reply to a request comes a round trip later. With one
// P (AutoProcs on two CPUs) the kicker is only a goroutine switch away
// and inline kicks gained nothing measurable in ping-pong; with more,
// handing to the kicker woke a thread each time.
const inlineKickGap = 30 * time.Microsecond

// kickInline kicks the TX ring from the calling goroutine, once, unless
// a kick is under way (which then sends these frames too) or one was
// just made inline; the kicker takes what one kick leaves.
func (s *Socket) kickInline() {
	if stagetime.Now()-s.lastInline.Load() < int64(s.inlineGap) || !s.kickMu.TryLock() {
		s.handToKicker()
		return
	}
	if s.txFD < 0 { // closed meanwhile
		s.kickMu.Unlock()
		return
	}
	var err error
	if s.needsKick() {
		err = s.kickOnce()
	}
	left := s.tx.pending()
	s.lastInline.Store(stagetime.Now())
	s.kickMu.Unlock()
	if err != nil {
		s.txFailed(TxKick, err)
	}
	if left != 0 {
		s.handToKicker()
	}
}

// handToKicker wakes the kicker from outside Transmit's lock, which
// keeps the wake from racing with Close closing the kicker's channel.
func (s *Socket) handToKicker() {
	s.txMu.Lock()
	s.wakeKicker()
	s.txMu.Unlock()
}

// queue is Transmit's work on the TX ring. inline tells whether the
// frames it queued are few enough, on a ring that was idle, for the
// caller to send; else it has woken the kicker for them.
func (s *Socket) queue(n int, write func(i int, buf []byte) (int, Checksum)) (sent int, inline bool, err error) {
	s.txMu.Lock()
	defer s.txMu.Unlock()
	if s.closed {
		return 0, false, net.ErrClosed // its rings are unmapped
	}
	idle := s.tx.pending() == 0
	queued := uint32(0)
	defer func() { // before the unlock
		inline = s.kicks != nil && idle && queued > 0 && queued <= inlineKickFrames
		if !inline && queued > 0 {
			s.wakeKicker()
		}
	}()
	frameRoom := s.frameSize - s.txHeadroom
	var stalled time.Time
	for sent < n {
		s.reap()
		room := min(uint32(len(s.txFree)), s.tx.free())
		var frames uint32
		var bytes uint64
		first, dropped := sent, 0
	batch:
		for ; sent < n && frames < room; sent++ {
			addr := s.txFree[len(s.txFree)-1-int(frames)] + uint64(s.txHeadroom)
			buf := s.umem[addr : addr+uint64(frameRoom)]
			l, csum := write(sent, buf)
			switch {
			case l <= len(buf):
				d := s.tx.at(s.tx.cachedProd + frames)
				*d = unix.XDPDesc{Addr: addr, Len: uint32(l)}
				s.requestChecksum(d, csum)
				frames++
			case !s.sg || l > len(s.txJoin):
				s.txDropped.Add(1)
				s.txFailed(TxTooLong, fmt.Errorf("transmit on queue %d: a %d-byte packet does not fit a %d-byte frame, and the socket has no multi-buffer", s.Queue, l, len(buf)))
				dropped++
				continue
			case framesFor(uint32(l), frameRoom) > room-frames:
				break batch // wait for room
			default:
				l, csum = write(sent, s.txJoin[:l])
				at := s.tx.cachedProd + frames
				frames += s.cut(s.txJoin[:l], frames)
				s.requestChecksum(s.tx.at(at), csum)
			}
			bytes += uint64(l)
		}
		if sent == first {
			// A frame comes back only when the kernel frees the skb it
			// was copied into, which on a veth can wait for the peer's
			// application to read it. Dropping here would lose ACKs and
			// window updates and leave TCP to its backed-off timers, so
			// wait a little: backpressure on the sender instead. The
			// kicker sends meanwhile; a kick from here too would only
			// spin on the socket's mutex against it (a packet generator
			// spent a quarter of its CPU there, at a third of the rate).
			if stalled.IsZero() {
				stalled = time.Now()
			} else if time.Since(stalled) > txStallLimit {
				s.txDropped.Add(uint64(n - sent))
				s.txFailed(TxFull, fmt.Errorf("transmit on queue %d: no tx frame or ring room for %v; gave up on %d packets", s.Queue, txStallLimit, n-sent))
				// Say why the frames do not leave, where the kernel knows.
				if s.needsKick() {
					if err := s.kickOnce(); err != nil {
						return sent, false, s.txFailed(TxKick, err)
					}
				}
				return sent, false, nil
			}
			s.wakeKicker()
			time.Sleep(50 * time.Microsecond)
			continue
		}
		stalled = time.Time{}
		s.txFree = s.txFree[:len(s.txFree)-int(frames)]
		s.tx.submit(frames)
		s.txFreeN.Add(-int64(frames))
		s.txInKernel.Add(int64(frames))
		s.txPackets.Add(uint64(sent - first - dropped))
		s.txBytes.Add(bytes)
		queued += frames
		if sent < n {
			// More to come than fits: let the kicker start on these.
			s.wakeKicker()
		}
	}
	return sent, false, nil
}

// wakeKicker has the kicker send what the TX ring holds.
func (s *Socket) wakeKicker() {
	select {
	case s.kicks <- struct{}{}:
	default: // a kick is due already and takes these too
	}
}

// kicker sends what Transmit queues. In copy mode the sendto that kicks
// the TX ring does the sending itself, frame by frame: the copy into an
// skb, the driver's transmit and, on a veth, often the peer's receive.
// Done by the goroutine that queued, that work sat in its way (quic-go's
// one sending goroutine spent half its time in it); here it overlaps
// with the making of the next packets, and one kick takes every frame
// queued meanwhile.
// Its failures are counted and logged (txFailed).
func (s *Socket) kicker() {
	defer close(s.kickerDone)
	for range s.kicks {
		s.kickMu.Lock()
		s.kick()
		s.kickMu.Unlock()
	}
}

// Flush returns once the kernel has taken every frame Transmit queued
// before the call: for a caller whose next packet leaves another way
// (gsotx) and must not overtake them. Transmit itself only queues. It
// returns an error, counted, when the kernel refuses a kick or takes
// none of the frames for txStallLimit.
func (s *Socket) Flush() error {
	target := s.tx.producer.Load()
	taken := func() bool { return int32(s.tx.consumer.Load()-target) >= 0 }
	start := time.Now()
	for {
		s.kickMu.Lock()
		err := s.kick()
		s.kickMu.Unlock()
		if taken() {
			return nil
		}
		if err != nil {
			return err
		}
		// The kernel needs no kick (zero-copy: the driver sends on its
		// own time) yet holds the frames.
		if time.Since(start) > txStallLimit {
			return s.txFailed(TxStuck, fmt.Errorf("flush af_xdp tx on queue %d: %d frames still in the ring after %v", s.Queue, target-s.tx.consumer.Load(), txStallLimit))
		}
		time.Sleep(50 * time.Microsecond)
	}
}

// cut copies a packet into as many free frames as it needs, after the
// used frames already taken in this batch, and writes their
// descriptors, every one but the last marked XDP_PKT_CONTD.
func (s *Socket) cut(pkt []byte, used uint32) uint32 {
	var k uint32
	for {
		addr := s.txFree[len(s.txFree)-1-int(used+k)] + uint64(s.txHeadroom)
		c := copy(s.umem[addr:addr+uint64(s.frameSize-s.txHeadroom)], pkt)
		pkt = pkt[c:]
		d := unix.XDPDesc{Addr: addr, Len: uint32(c)}
		if len(pkt) > 0 {
			d.Options = unix.XDP_PKT_CONTD
		}
		*s.tx.at(s.tx.cachedProd + used + k) = d
		k++
		if len(pkt) == 0 {
			return k
		}
	}
}

// requestChecksum writes the TX metadata, just before the packet, that
// asks the kernel to finish the checksum csum describes; d is the
// packet's first descriptor.
func (s *Socket) requestChecksum(d *unix.XDPDesc, csum Checksum) {
	if csum == (Checksum{}) {
		return
	}
	if !s.checksumOffload {
		panic("afxdp: checksum offload requested from a socket without it")
	}
	meta := s.umem[d.Addr-txMetadataLen : d.Addr]
	binary.NativeEndian.PutUint64(meta, txmdFlagsChecksum)
	binary.NativeEndian.PutUint16(meta[8:], csum.Start)
	binary.NativeEndian.PutUint16(meta[10:], csum.Offset)
	d.Options |= unix.XDP_TX_METADATA
}

// kick tells the kernel to send what the TX ring holds, and returns once
// the ring is empty or the kernel needs no more kicks (need_wakeup
// clear). In copy mode a sendto sends at most 32 frames and answers
// EAGAIN while more are left, which means "kick again", not "try
// later". Kicks that take no frame (the driver's queue full) are tried
// again for txStallLimit before it gives up with TxStuck; errors are
// counted.
func (s *Socket) kick() error {
	var still time.Time // since when kicks take no frame
	for {
		if !s.needsKick() {
			return nil
		}
		before := s.tx.consumer.Load()
		if err := s.kickOnce(); err != nil {
			return s.txFailed(TxKick, err)
		}
		// The completion ring has room for every TX frame, so it never
		// needs reaping for the kernel to go on.
		pending := s.tx.pending()
		switch {
		case pending == 0:
			return nil
		case s.tx.consumer.Load() != before:
			still = time.Time{}
		case still.IsZero():
			still = time.Now()
		case time.Since(still) > txStallLimit:
			return s.txFailed(TxStuck, fmt.Errorf("kick af_xdp tx on queue %d: the kernel took none of %d frames in %v", s.Queue, pending, txStallLimit))
		default:
			time.Sleep(50 * time.Microsecond)
		}
	}
}

// needsKick tells whether the kernel sends only when kicked.
func (s *Socket) needsKick() bool { return !s.NeedWakeup || s.tx.needWakeup() }

// kickOnce kicks the TX ring once; nil when the kernel took the kick,
// even if it sent only some frames (EAGAIN: copy mode sends 32 at most;
// EBUSY: the driver dropped one; ENOBUFS: no skb for one).
func (s *Socket) kickOnce() error {
	switch err := kickTX(s.txFD); err {
	case nil, unix.EAGAIN, unix.EBUSY, unix.ENOBUFS:
		return nil
	default:
		return fmt.Errorf("kick af_xdp tx on queue %d: %w", s.Queue, err)
	}
}

// kickTX is sendto(fd, NULL, 0, MSG_DONTWAIT), made as a raw system
// call: one the Go scheduler is not told of, so the thread keeps its P.
// It never blocks, but in copy mode it transmits up to 32 frames and,
// on a veth, runs the peer's receive too. Made the usual way, that was
// long enough for the runtime's monitor to hand the P to another thread
// (waking one) and for the kicker to wait for a P back afterwards: a
// 1 GiB TCP echo made 45% fewer voluntary context switches and took 9%
// less of the daemon's CPU this way.
func kickTX(fd int) error {
	stagetime.Mark(stagetime.KickStart)
	_, _, errno := unix.RawSyscall6(unix.SYS_SENDTO, uintptr(fd), 0, 0, unix.MSG_DONTWAIT, 0, 0)
	stagetime.Mark(stagetime.KickDone)
	if errno != 0 {
		return errno
	}
	return nil
}

// reap takes sent frames back from the completion ring.
func (s *Socket) reap() {
	n := s.comp.available()
	for i := range n {
		s.txFree = append(s.txFree, *s.comp.at(s.comp.cachedCons + i)&^uint64(s.frameSize-1))
	}
	s.comp.release(n)
	s.txInKernel.Add(-int64(n))
	s.txFreeN.Add(int64(n))
}

// FrameCount says where a socket's UMEM frames are.
type FrameCount struct {
	Total    int64
	Free     int64 // ours, in no ring
	InKernel int64 // in a ring or held by the kernel
	Lost     int64 // held by the kernel at Close
}

// Frames counts the frames; Free+InKernel+Lost is always Total.
func (s *Socket) Frames() FrameCount {
	return FrameCount{
		Total:    int64(s.frames),
		Free:     s.rxFreeN.Load() + s.txFreeN.Load(),
		InKernel: s.rxInKernel.Load() + s.txInKernel.Load(),
		Lost:     s.lost.Load(),
	}
}

// Stats counts what went through the socket.
type Stats struct {
	RxPackets, RxBytes, TxPackets, TxBytes uint64
	// TxFailures counts the transmit failures by kind; TxDropped, the
	// packets Transmit gave up on.
	TxFailures [NumTxFailures]uint64
	TxDropped  uint64
	// Kernel is the kernel's own drop counters (XDP_STATISTICS).
	Kernel unix.XDPStatistics
}

// KernelDrops are the kernel's drop counters by reason, as /metrics and
// the status pages name them.
func (st Stats) KernelDrops() map[string]uint64 {
	k := st.Kernel
	return map[string]uint64{
		"rx_dropped":      k.Rx_dropped,
		"rx_ring_full":    k.Rx_ring_full,
		"fill_ring_empty": k.Rx_fill_ring_empty_descs,
		"rx_invalid":      k.Rx_invalid_descs,
		"tx_invalid":      k.Tx_invalid_descs,
	}
}

// TxFailuresByKind are TxFailures by the kinds' names.
func (st Stats) TxFailuresByKind() map[string]uint64 {
	m := make(map[string]uint64, NumTxFailures)
	for kind, n := range st.TxFailures {
		m[TxFailure(kind).String()] = n
	}
	return m
}

// Stats reads the counters, from any goroutine; after Close, the last
// ones.
func (s *Socket) Stats() (Stats, error) {
	st := Stats{RxPackets: s.rxPackets.Load(), RxBytes: s.rxBytes.Load(), TxPackets: s.txPackets.Load(), TxBytes: s.txBytes.Load(),
		TxFailures: s.txFailures(), TxDropped: s.txDropped.Load()}
	s.fdMu.Lock()
	defer s.fdMu.Unlock()
	if s.fd < 0 {
		st.Kernel = s.closedKernel
		return st, nil
	}
	var err error
	st.Kernel, err = s.kernelStats()
	return st, err
}

// kernelStats reads XDP_STATISTICS, the TX counters from the TX socket;
// fdMu held.
func (s *Socket) kernelStats() (unix.XDPStatistics, error) {
	st, err := xdpStatistics(s.fd)
	if err != nil || s.txFD == s.fd {
		return st, err
	}
	tx, err := xdpStatistics(s.txFD)
	st.Tx_invalid_descs, st.Tx_ring_empty_descs = tx.Tx_invalid_descs, tx.Tx_ring_empty_descs
	return st, err
}

// Close closes the socket, then takes back every frame left in its
// rings. Receive must no longer run.
func (s *Socket) Close() error {
	s.txMu.Lock()
	defer s.txMu.Unlock()
	if s.fd < 0 {
		return nil
	}
	if s.kicks != nil {
		// Before the descriptors close: a kick on a closed one could
		// reach whatever reuses its number.
		close(s.kicks)
		<-s.kickerDone
		s.kicks = nil
	}
	s.closed = true
	// Closing unbinds the device, so the rings, still mapped, hold still.
	// Not under an inline kick, which reads txFD.
	s.kickMu.Lock()
	err := s.closeFDs()
	s.kickMu.Unlock()
	rx := s.rx.available()
	for i := range rx {
		s.rxFree = append(s.rxFree, s.rx.at(s.rx.cachedCons+i).Addr&^uint64(s.frameSize-1))
	}
	s.rx.release(rx)
	fill := s.fill.pending()
	for i := range fill {
		s.rxFree = append(s.rxFree, *s.fill.at(s.fill.consumer.Load() + i))
	}
	s.reap()
	tx := s.tx.pending()
	for i := range tx {
		s.txFree = append(s.txFree, s.tx.at(s.tx.consumer.Load()+i).Addr&^uint64(s.frameSize-1))
	}
	s.rxInKernel.Add(-int64(rx + fill))
	s.txInKernel.Add(-int64(tx))
	s.rxFreeN.Add(int64(rx + fill))
	s.txFreeN.Add(int64(tx))
	s.lost.Store(s.rxInKernel.Swap(0) + s.txInKernel.Swap(0))
	s.unmapRings() // the descriptors closed above, under kickMu
	unix.Munmap(s.umem)
	return err
}

// OffloadsChecksum tells whether Transmit can leave a partial checksum
// for the kernel to finish (AF_XDP TX metadata, Linux 6.11 or later, in
// copy mode): on a veth the frame then reaches the peer as
// CHECKSUM_PARTIAL and nobody sums its bytes, as between two kernel
// sockets. Zero-copy would need the driver's support, which is not
// asked for.
func (s *Socket) OffloadsChecksum() bool { return s.checksumOffload }
