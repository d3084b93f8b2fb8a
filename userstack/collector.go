package userstack

import (
	"strconv"

	"github.com/prometheus/client_golang/prometheus"
)

var (
	afxdpInfo = prometheus.NewDesc("xdpstack_afxdp_socket_info",
		"AF_XDP socket of a queue, with the mode the kernel reports for it; always 1.",
		[]string{"iface", "queue", "mode"}, nil)
	afxdpFrames = prometheus.NewDesc("xdpstack_afxdp_frames",
		"UMEM frames of a queue's socket by where they are: free (ours), kernel (in a ring), lost (held by the kernel at close).",
		[]string{"iface", "queue", "state"}, nil)
	afxdpPackets = prometheus.NewDesc("xdpstack_afxdp_packets_total",
		"Frames received and sent through a queue's socket.",
		[]string{"iface", "queue", "direction"}, nil)
	afxdpDrops = prometheus.NewDesc("xdpstack_afxdp_kernel_drops_total",
		"Frames the kernel could not hand to a queue's socket, by why (XDP_STATISTICS).",
		[]string{"iface", "queue", "reason"}, nil)
	gsoSegments = prometheus.NewDesc("xdpstack_userstack_gso_segments_total",
		"TCP segments larger than the MTU sent whole for the kernel or the NIC to cut (AF_PACKET with GSO), instead of as AF_XDP frames.",
		[]string{"iface"}, nil)
	gsoBytes = prometheus.NewDesc("xdpstack_userstack_gso_bytes_total",
		"Bytes of the segments counted by xdpstack_userstack_gso_segments_total.",
		[]string{"iface"}, nil)
	endpoints = prometheus.NewDesc("xdpstack_userstack_endpoints",
		"Transport endpoints of the netstack: listeners, connections and those in TIME-WAIT.",
		[]string{"iface"}, nil)
)

// Collector reads the userstack's counters at scrape time.
func (s *Stack) Collector() prometheus.Collector { return collector{s} }

type collector struct{ s *Stack }

func (c collector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{afxdpInfo, afxdpFrames, afxdpPackets, afxdpDrops, gsoSegments, gsoBytes, endpoints} {
		ch <- d
	}
}

func (c collector) Collect(ch chan<- prometheus.Metric) {
	iface := c.s.iface.Name
	gauge := func(d *prometheus.Desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, labels...)
	}
	counter := func(d *prometheus.Desc, v uint64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, float64(v), labels...)
	}
	for _, sock := range c.s.sockets {
		q := strconv.Itoa(sock.Queue)
		gauge(afxdpInfo, 1, iface, q, sock.Mode.String())
		f := sock.Frames()
		gauge(afxdpFrames, float64(f.Free), iface, q, "free")
		gauge(afxdpFrames, float64(f.InKernel), iface, q, "kernel")
		gauge(afxdpFrames, float64(f.Lost), iface, q, "lost")
		st, err := sock.Stats()
		if err != nil {
			ch <- prometheus.NewInvalidMetric(afxdpDrops, err)
			continue
		}
		counter(afxdpPackets, st.RxPackets, iface, q, "rx")
		counter(afxdpPackets, st.TxPackets, iface, q, "tx")
		counter(afxdpDrops, st.Kernel.Rx_dropped, iface, q, "rx_dropped")
		counter(afxdpDrops, st.Kernel.Rx_ring_full, iface, q, "rx_ring_full")
		counter(afxdpDrops, st.Kernel.Rx_fill_ring_empty_descs, iface, q, "fill_ring_empty")
		counter(afxdpDrops, st.Kernel.Rx_invalid_descs, iface, q, "rx_invalid")
		counter(afxdpDrops, st.Kernel.Tx_invalid_descs, iface, q, "tx_invalid")
	}
	if c.s.gso != nil {
		counter(gsoSegments, c.s.gso.Segments.Load(), iface)
		counter(gsoBytes, c.s.gso.Bytes.Load(), iface)
	}
	gauge(endpoints, float64(c.s.Endpoints()), iface)
}
