package echobench

import (
	"os"
	"time"

	"github.com/xdpstack/xdpstack/loader"
	"github.com/xdpstack/xdpstack/maps"
	"github.com/xdpstack/xdpstack/tools/internal/attachproc"
	"github.com/xdpstack/xdpstack/tools/internal/pktgen"
	"github.com/xdpstack/xdpstack/userstack/afxdp"
)

// rxPort is where the generator's UDP frames go; steered by a listener.
const rxPort = 9

// rxRate sends 64-byte UDP frames from host B with the generator and
// counts how many per second host A's AF_XDP sockets hand to a consumer
// that only releases them. It attaches in-process, with no userstack.
func (b *bench) rxRate() (Row, error) {
	a, p := b.pair.A, b.pair.B
	root := attachproc.NewPinRoot("echobench")
	defer os.RemoveAll(root)
	var att *loader.Attachment
	if err := a.Run(func() (err error) {
		att, err = loader.Attach(a.Iface, loader.Options{PinRoot: root})
		return err
	}); err != nil {
		return Row{}, err
	}
	defer att.Close()
	gen, err := pktgen.New(p, a, rxPort)
	if err != nil {
		return Row{}, err
	}
	defer gen.Close()

	steer := maps.Listener{Protocol: maps.UDP, Port: rxPort}
	if err := att.Maps.Listeners.Put(steer, 0); err != nil {
		return Row{}, err
	}
	defer att.Maps.Listeners.Delete(steer)
	// No userstack runs to fill in the interface's address.
	if err := att.Maps.LocalAddrs.Put(a.Addr, maps.AddrOwn|maps.AddrServed); err != nil {
		return Row{}, err
	}
	defer att.Maps.LocalAddrs.Delete(a.Addr)
	var socks []*afxdp.Socket
	done := make(chan struct{})
	for q := range att.Iface.RxQueues {
		// The ifindex means something only inside A's namespace.
		var s *afxdp.Socket
		err := a.Run(func() (err error) {
			s, err = afxdp.Open(att.Iface.Index, q, afxdp.Options{})
			return err
		})
		if err != nil {
			return Row{}, err
		}
		socks = append(socks, s)
		b.mode = s.Mode.String()
		if err := att.Maps.XSKs.Register(q, s.FD()); err != nil {
			return Row{}, err
		}
		go func() {
			defer func() { done <- struct{}{} }()
			for {
				for s.Receive(64, func([]byte) {}) > 0 {
				}
				if !s.Wait() {
					return
				}
			}
		}()
	}
	defer func() {
		for q, s := range socks {
			att.Maps.XSKs.Unregister(q)
			s.Stop()
			<-done
			s.Close()
		}
	}()
	received := func() (n uint64) {
		for _, s := range socks {
			st, _ := s.Stats()
			n += st.RxPackets
		}
		return n
	}
	var rates []float64
	for range b.cfg.Rounds {
		before := received()
		elapsed, err := gen.Send(b.cfg.Frames)
		if err != nil {
			return Row{}, err
		}
		time.Sleep(50 * time.Millisecond) // the last batch
		n := received() - before
		rates = append(rates, float64(n)/elapsed.Seconds())
		b.logf("AF_XDP receive: %d of %d frames in %v", n, b.cfg.Frames, elapsed)
	}
	return Row{Name: "AF_XDP receive, no-op consumer", Unit: "Mpps", Userstack: Median(rates) / 1e6}, nil
}
