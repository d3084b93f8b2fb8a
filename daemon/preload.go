package daemon

import (
	"errors"
	"fmt"
	"runtime"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/vishvananda/netns"

	"github.com/xdpstack/xdpstack/userstack"
	"github.com/xdpstack/xdpstack/userstack/preload"
)

// The preload server runs beside the control socket, so that programs
// under `xdpstack run` reach the daemon of their interface. Their first
// hello starts the userstack if no app did at attach: a plain attach
// keeps the kernel's path untouched until a program wants the
// userstack (an AF_XDP socket in zero-copy mode on a queue would cost
// the kernel's own packets a copy).

// startPreload listens on the preload socket.
func (d *Daemon) startPreload(dir string) error {
	ns, err := netns.Get()
	if err != nil {
		return fmt.Errorf("preload: read the network namespace: %w", err)
	}
	d.startNetns = ns
	opts := d.cfg.Userstack // a reload changes none of it
	backend := &preload.StackBackend{Iface: d.Iface.Name, Stack: func() (*userstack.Stack, error) { return d.startUserstack(opts) }}
	if d.preload, err = preload.Listen(preload.SocketPath(dir, d.Iface.Name), backend); err != nil {
		return err
	}
	return nil
}

var errStopping = errors.New("the daemon is stopping")

// startUserstack is the userstack, started now if it is not running.
func (d *Daemon) startUserstack(opts userstack.Options) (*userstack.Stack, error) {
	d.stackMu.Lock()
	defer d.stackMu.Unlock()
	switch {
	case d.Stack != nil:
		return d.Stack, nil
	case d.stopping:
		return nil, errStopping
	}
	var err error
	d.inStartNetns(func() {
		d.Stack, err = userstack.Start(d.Iface, d.Maps, opts)
	})
	if err != nil {
		d.Stack = nil
		return nil, err
	}
	return d.Stack, nil
}

// inStartNetns runs f on a thread in the network namespace Start ran
// in, where the interface is: the userstack opens its netlink handles
// and AF_XDP sockets on the calling thread. The thread stays locked, so
// the runtime throws it away after.
func (d *Daemon) inStartNetns(f func()) {
	done := make(chan struct{})
	go func() {
		defer close(done)
		runtime.LockOSThread()
		if err := netns.Set(d.startNetns); err != nil {
			panic(fmt.Sprintf("enter the daemon's network namespace: %v", err))
		}
		f()
	}()
	<-done
}

// stack is the userstack, nil while none runs.
func (d *Daemon) stack() *userstack.Stack {
	d.stackMu.Lock()
	defer d.stackMu.Unlock()
	return d.Stack
}

var (
	preloadPrograms = prometheus.NewDesc("xdpstack_preload_programs",
		"Processes attached through the LD_PRELOAD library (xdpstack run).",
		[]string{"iface"}, nil)
	preloadSessions = prometheus.NewDesc("xdpstack_preload_sessions_total",
		"Sockets handed over to preloaded programs, by protocol (tcp: listeners and connections).",
		[]string{"iface", "proto"}, nil)
)

// preloadCollector reads the preload server's counters at each scrape,
// and the userstack's once a program has started it.
type preloadCollector struct{ d *Daemon }

// Describe describes nothing: the userstack's series come and go with
// it, which an unchecked collector may do.
func (preloadCollector) Describe(chan<- *prometheus.Desc) {}

func (c preloadCollector) Collect(ch chan<- prometheus.Metric) {
	iface := c.d.Iface.Name
	counts := c.d.preload.Counters()
	ch <- prometheus.MustNewConstMetric(preloadPrograms, prometheus.GaugeValue, float64(counts.Programs), iface)
	for proto, n := range counts.Sessions {
		ch <- prometheus.MustNewConstMetric(preloadSessions, prometheus.CounterValue, float64(n), iface, proto.String())
	}
	if !c.d.stackAtAttach {
		if s := c.d.stack(); s != nil {
			s.Collector().Collect(ch)
		}
	}
}
