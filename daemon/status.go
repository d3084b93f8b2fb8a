package daemon

import (
	"cmp"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/xdpstack/xdpstack/maps"
	"github.com/xdpstack/xdpstack/userstack"
)

// Status is what a running daemon says of itself: the HTTP app's status
// page and its JSON render it, attach prints from it, and a control
// socket can answer with it.
type Status struct {
	Time  time.Time `json:"time"`
	Iface string    `json:"iface"`
	XDP   XDP       `json:"xdp"`
	// Verdicts are the program's counters by action and reason, with
	// rates since the last sample at least minSampleGap older.
	Verdicts []Verdict `json:"verdicts"`
	// The userstack's queues, netstack counters, steered listeners and
	// apps; empty without a userstack.
	Queues    []Queue             `json:"queues,omitempty"`
	Netstack  []userstack.Counter `json:"netstack,omitempty"`
	Listeners []Listener          `json:"listeners,omitempty"`
	Apps      []App               `json:"apps,omitempty"`
}

// XDP is the attached program.
type XDP struct {
	Mode      string `json:"mode"`
	ProgramID uint32 `json:"program_id"`
	PinDir    string `json:"pin_dir"`
}

// Verdict is the counter of one action and reason.
type Verdict struct {
	Action           string  `json:"action"`
	Reason           string  `json:"reason"`
	Packets          uint64  `json:"packets"`
	Bytes            uint64  `json:"bytes"`
	PacketsPerSecond float64 `json:"packets_per_second"`
	BitsPerSecond    float64 `json:"bits_per_second"`
}

// Queue is one RX queue's AF_XDP socket.
type Queue struct {
	Queue     int    `json:"queue"`
	AFXDPMode string `json:"af_xdp_mode"`
	RxPackets uint64 `json:"rx_packets"`
	RxBytes   uint64 `json:"rx_bytes"`
	TxPackets uint64 `json:"tx_packets"`
	TxBytes   uint64 `json:"tx_bytes"`
	// KernelDrops are the kernel's drop counters by reason, and
	// TxFailures the transmit failures by kind, as /metrics names them;
	// TxDropped, the packets given up on.
	KernelDrops map[string]uint64 `json:"kernel_drops"`
	TxFailures  map[string]uint64 `json:"tx_failures"`
	TxDropped   uint64            `json:"tx_dropped"`
	Frames      Frames            `json:"frames"`
}

// Frames says where a queue's UMEM frames are.
type Frames struct {
	Free     int64 `json:"free"`
	InKernel int64 `json:"in_kernel"`
	Lost     int64 `json:"lost"`
}

// Listener is a steering entry of the session layer.
type Listener struct {
	ID       uint32 `json:"id"`
	Listener string `json:"listener"`
}

// App is a running app.
type App struct {
	Spec string `json:"spec"`
	Addr string `json:"addr"`
	// Backend is where a proxy forwards to.
	Backend string `json:"backend,omitempty"`
	// Counters are the app's own, by name; none for some apps.
	Counters map[string]uint64 `json:"counters,omitempty"`
}

// minSampleGap keeps rates meaningful when requests come faster than
// counters move.
const minSampleGap = time.Second

// rates keeps the sample that rates are computed from.
type rates struct {
	mu       sync.Mutex
	prev     map[maps.Verdict]maps.Counter
	prevTime time.Time
}

// since returns the rates from the kept sample to cur, and keeps cur
// when the kept one is minSampleGap old.
func (r *rates) since(cur map[maps.Verdict]maps.Counter, now time.Time) map[maps.Verdict]maps.Rate {
	r.mu.Lock()
	defer r.mu.Unlock()
	var rs map[maps.Verdict]maps.Rate
	if r.prev != nil {
		rs = maps.Rates(r.prev, cur, now.Sub(r.prevTime).Seconds())
	}
	if r.prev == nil || now.Sub(r.prevTime) >= minSampleGap {
		r.prev, r.prevTime = cur, now
	}
	return rs
}

// Status reads the daemon's status now.
func (d *Daemon) Status() (Status, error) {
	counters, err := d.Maps.Stats.Sum()
	if err != nil {
		return Status{}, err
	}
	now := time.Now()
	st := Status{
		Time:  now.UTC(),
		Iface: d.Iface.Name,
		XDP:   XDP{Mode: d.Mode.String(), ProgramID: uint32(d.ProgramID), PinDir: d.PinDir},
	}
	rs := d.rates.since(counters, now)
	for v, c := range counters {
		st.Verdicts = append(st.Verdicts, Verdict{v.Action.String(), v.Reason.String(), c.Packets, c.Bytes,
			rs[v].PacketsPerSecond, rs[v].BitsPerSecond})
	}
	slices.SortFunc(st.Verdicts, func(a, b Verdict) int {
		return cmp.Or(cmp.Compare(a.Action, b.Action), cmp.Compare(a.Reason, b.Reason))
	})
	stack := d.stack()
	if stack == nil {
		return st, nil
	}
	for _, s := range stack.Sockets() {
		ss, err := s.Stats()
		if err != nil {
			return Status{}, err
		}
		f := s.Frames()
		st.Queues = append(st.Queues, Queue{
			Queue: s.Queue, AFXDPMode: s.Mode.String(),
			RxPackets: ss.RxPackets, RxBytes: ss.RxBytes, TxPackets: ss.TxPackets, TxBytes: ss.TxBytes,
			KernelDrops: ss.KernelDrops(), TxFailures: ss.TxFailuresByKind(), TxDropped: ss.TxDropped,
			Frames: Frames{Free: f.Free, InKernel: f.InKernel, Lost: f.Lost},
		})
	}
	st.Netstack = stack.NetstackCounters()
	for l, id := range stack.Sessions().Listeners() {
		st.Listeners = append(st.Listeners, Listener{ID: id, Listener: l.String()})
	}
	slices.SortFunc(st.Listeners, func(a, b Listener) int { return cmp.Compare(a.ID, b.ID) })
	for i, app := range d.Apps {
		row := App{Spec: d.specs[i].String(), Addr: app.Addr().String(), Counters: app.Counters()}
		if d.specs[i].Name == "proxy" {
			row.Backend = d.specs[i].Backend.String()
		}
		st.Apps = append(st.Apps, row)
	}
	return st, nil
}

// Serving says in one line what the daemon serves: systemd's status
// line for the service.
func (d *Daemon) Serving() string {
	line := fmt.Sprintf("serving %s: %s mode, program %d", d.Iface.Name, d.Mode, d.ProgramID)
	if len(d.specs) > 0 {
		var specs []string
		for _, s := range d.specs {
			specs = append(specs, s.String())
		}
		line += ", apps " + strings.Join(specs, " ")
	}
	return line
}
