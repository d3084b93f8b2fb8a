package userstack

import (
	"fmt"
	"strconv"

	"github.com/prometheus/client_golang/prometheus"
	"gvisor.dev/gvisor/pkg/tcpip"

	"github.com/xdpstack/xdpstack/userstack/synproxy"
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
	afxdpTxFailures = prometheus.NewDesc("xdpstack_afxdp_tx_failures_total",
		"Transmit failures of a queue's socket, by kind: kick (the kernel refused a kick of the TX ring), stuck (kicks took no frame for 20 ms), full (no TX frame or ring room for 20 ms: packets given up), too_long (a packet longer than a frame on a socket without multi-buffer: dropped).",
		[]string{"iface", "queue", "reason"}, nil)
	afxdpTxDropped = prometheus.NewDesc("xdpstack_afxdp_tx_dropped_total",
		"Packets a queue's socket gave up on: its TX ring or frames full for 20 ms (the netstack sees a failed send; TCP sends them again), or longer than a frame without multi-buffer.",
		[]string{"iface", "queue"}, nil)
	gsoSegments = prometheus.NewDesc("xdpstack_userstack_gso_segments_total",
		"TCP segments larger than the MTU sent whole for the kernel or the NIC to cut (AF_PACKET with GSO), instead of as AF_XDP frames.",
		[]string{"iface"}, nil)
	gsoBytes = prometheus.NewDesc("xdpstack_userstack_gso_bytes_total",
		"Bytes of the segments counted by xdpstack_userstack_gso_segments_total.",
		[]string{"iface"}, nil)
	endpoints = prometheus.NewDesc("xdpstack_userstack_endpoints",
		"Transport endpoints of the netstack: listeners, connections and those in TIME-WAIT.",
		[]string{"iface"}, nil)
	sessions = prometheus.NewDesc("xdpstack_userstack_sessions",
		"Listeners and connections of the netstack, as `xdpstack sessions` lists them, by transport (T, U, TLS, Q) and state (VPP's session state names).",
		[]string{"iface", "transport", "state"}, nil)
	synFlood = prometheus.NewDesc("xdpstack_userstack_syn_flood",
		"1 while a SYN flood lasts and the SYN proxy answers every SYN for a listener with a cookie, else 0.",
		[]string{"iface"}, nil)
	synProxyConnections = prometheus.NewDesc("xdpstack_userstack_synproxy_connections_total",
		"TCP connections the SYN proxy opened: a valid cookie came back and the netstack took the handshake.",
		[]string{"iface"}, nil)
	synProxyFlows = prometheus.NewDesc("xdpstack_userstack_synproxy_flows",
		"TCP connections opened by the SYN proxy whose sequence numbers it translates now, or that it is opening.",
		[]string{"iface"}, nil)
	synProxyDrops = prometheus.NewDesc("xdpstack_userstack_synproxy_drops_total",
		"Segments the SYN proxy dropped, by why: table_full (a valid cookie while too many connections are being opened or translated; the client sends it again), hold_full (a segment that came while its connection was being opened, beyond what is held), handshake_timeout (a connection the netstack never took, its accept queue full).",
		[]string{"iface", "reason"}, nil)
)

// netstackMetric is a family of the netstack's own counters, the ones an
// operator of a host stack looks at first (what gazelle's lstack
// statistics show): a counter with the label iface and, when label is
// set, that label too, one series per value.
type netstackMetric struct {
	name, help, label string
	series            []netstackSeries
	desc              *prometheus.Desc
}

type netstackSeries struct {
	value   string
	counter func(*tcpip.Stats) *tcpip.StatCounter
}

var netstackMetrics = describe([]netstackMetric{
	{name: "xdpstack_userstack_tcp_segments_total", help: "TCP segments the netstack received (valid ones) and sent.", label: "direction", series: []netstackSeries{
		{"rx", func(s *tcpip.Stats) *tcpip.StatCounter { return s.TCP.ValidSegmentsReceived }},
		{"tx", func(s *tcpip.Stats) *tcpip.StatCounter { return s.TCP.SegmentsSent }},
	}},
	{name: "xdpstack_userstack_tcp_connections_total", help: "TCP connections opened: dialed (active) and accepted (passive).", label: "side", series: []netstackSeries{
		{"active", func(s *tcpip.Stats) *tcpip.StatCounter { return s.TCP.ActiveConnectionOpenings }},
		{"passive", func(s *tcpip.Stats) *tcpip.StatCounter { return s.TCP.PassiveConnectionOpenings }},
	}},
	{name: "xdpstack_userstack_tcp_failed_connections_total", help: "TCP connections dialed that failed to open.", series: []netstackSeries{
		{"", func(s *tcpip.Stats) *tcpip.StatCounter { return s.TCP.FailedConnectionAttempts }},
	}},
	{name: "xdpstack_userstack_tcp_retransmits_total", help: "TCP segments sent again.", series: []netstackSeries{
		{"", func(s *tcpip.Stats) *tcpip.StatCounter { return s.TCP.Retransmits }},
	}},
	{name: "xdpstack_userstack_tcp_resets_total", help: "TCP resets received and sent.", label: "direction", series: []netstackSeries{
		{"rx", func(s *tcpip.Stats) *tcpip.StatCounter { return s.TCP.ResetsReceived }},
		{"tx", func(s *tcpip.Stats) *tcpip.StatCounter { return s.TCP.ResetsSent }},
	}},
	{name: "xdpstack_userstack_tcp_listen_drops_total", help: "Connection attempts a TCP listener dropped, by why: SYN queue full, accept queue full, or an ACK that matched no connection and no SYN cookie.", label: "reason", series: []netstackSeries{
		{"syn_queue_full", func(s *tcpip.Stats) *tcpip.StatCounter { return s.TCP.ListenOverflowSynDrop }},
		{"accept_queue_full", func(s *tcpip.Stats) *tcpip.StatCounter { return s.TCP.ListenOverflowAckDrop }},
		{"bad_syn_cookie", func(s *tcpip.Stats) *tcpip.StatCounter { return s.TCP.ListenOverflowInvalidSynCookieRcvd }},
	}},
	{name: "xdpstack_userstack_tcp_syn_cookies_total", help: "SYN cookies sent in SYN-ACKs (by the SYN proxy during a SYN flood, or by a listener with a full SYN queue), and valid ones received back, each of which opened a connection.", label: "direction", series: []netstackSeries{
		{"tx", func(s *tcpip.Stats) *tcpip.StatCounter { return s.TCP.ListenOverflowSynCookieSent }},
		{"rx", func(s *tcpip.Stats) *tcpip.StatCounter { return s.TCP.ListenOverflowSynCookieRcvd }},
	}},
	{name: "xdpstack_userstack_tcp_receive_errors_total", help: "TCP segments received and dropped, by why.", label: "reason", series: []netstackSeries{
		{"checksum", func(s *tcpip.Stats) *tcpip.StatCounter { return s.TCP.ChecksumErrors }},
		{"invalid", func(s *tcpip.Stats) *tcpip.StatCounter { return s.TCP.InvalidSegmentsReceived }},
	}},
	{name: "xdpstack_userstack_udp_datagrams_total", help: "UDP datagrams the netstack received and sent.", label: "direction", series: []netstackSeries{
		{"rx", func(s *tcpip.Stats) *tcpip.StatCounter { return s.UDP.PacketsReceived }},
		{"tx", func(s *tcpip.Stats) *tcpip.StatCounter { return s.UDP.PacketsSent }},
	}},
	{name: "xdpstack_userstack_udp_drops_total", help: "UDP datagrams dropped, by why: no socket on the port, the socket's receive buffer full, malformed, bad checksum, or a send that failed.", label: "reason", series: []netstackSeries{
		{"no_port", func(s *tcpip.Stats) *tcpip.StatCounter { return s.UDP.UnknownPortErrors }},
		{"receive_buffer", func(s *tcpip.Stats) *tcpip.StatCounter { return s.UDP.ReceiveBufferErrors }},
		{"malformed", func(s *tcpip.Stats) *tcpip.StatCounter { return s.UDP.MalformedPacketsReceived }},
		{"checksum", func(s *tcpip.Stats) *tcpip.StatCounter { return s.UDP.ChecksumErrors }},
		{"send_error", func(s *tcpip.Stats) *tcpip.StatCounter { return s.UDP.PacketSendErrors }},
	}},
})

func describe(metrics []netstackMetric) []netstackMetric {
	for i := range metrics {
		m := &metrics[i]
		labels := []string{"iface"}
		if m.label != "" {
			labels = append(labels, m.label)
		}
		m.desc = prometheus.NewDesc(m.name, m.help, labels, nil)
	}
	return metrics
}

// Counter is one of the netstack's counters, named as in /metrics.
type Counter struct {
	Name  string `json:"name"`
	Value uint64 `json:"value"`
}

// NetstackCounters are the netstack's counters as /metrics shows them,
// for the status pages: one per series, named as in /metrics without
// the iface label.
func (s *Stack) NetstackCounters() []Counter {
	st := s.stack.Stats()
	var counters []Counter
	for _, m := range netstackMetrics {
		for _, series := range m.series {
			name := m.name
			if m.label != "" {
				name = fmt.Sprintf("%s{%s=%q}", m.name, m.label, series.value)
			}
			counters = append(counters, Counter{Name: name, Value: series.counter(&st).Value()})
		}
	}
	return counters
}

// Collector reads the userstack's counters at scrape time.
func (s *Stack) Collector() prometheus.Collector { return collector{s} }

type collector struct{ s *Stack }

func (c collector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{afxdpInfo, afxdpFrames, afxdpPackets, afxdpDrops, afxdpTxFailures, afxdpTxDropped, gsoSegments, gsoBytes, endpoints, sessions, synFlood, synProxyConnections, synProxyFlows, synProxyDrops} {
		ch <- d
	}
	for _, m := range netstackMetrics {
		ch <- m.desc
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
		for reason, n := range st.KernelDrops() {
			counter(afxdpDrops, n, iface, q, reason)
		}
		for kind, n := range st.TxFailuresByKind() {
			counter(afxdpTxFailures, n, iface, q, kind)
		}
		counter(afxdpTxDropped, st.TxDropped, iface, q)
	}
	if c.s.gso != nil {
		counter(gsoSegments, c.s.gso.Segments.Load(), iface)
		counter(gsoBytes, c.s.gso.Bytes.Load(), iface)
	}
	gauge(endpoints, float64(c.s.Endpoints()), iface)
	type kind struct {
		transport string
		state     SessionState
	}
	counts := map[kind]int{}
	for _, sess := range c.s.ListSessions(SessionFilter{}) {
		counts[kind{sess.Transport, sess.State}]++
	}
	for k, n := range counts {
		gauge(sessions, float64(n), iface, k.transport, string(k.state))
	}
	proxy := c.s.proxy.Counters()
	flood := 0.0
	if proxy.Flood {
		flood = 1
	}
	gauge(synFlood, flood, iface)
	counter(synProxyConnections, proxy.Opened, iface)
	gauge(synProxyFlows, float64(proxy.Flows), iface)
	for reason, n := range proxy.Drops {
		counter(synProxyDrops, n, iface, synproxy.DropReasons[reason])
	}
	st := c.s.stack.Stats()
	for _, m := range netstackMetrics {
		for _, series := range m.series {
			labels := []string{iface}
			if m.label != "" {
				labels = append(labels, series.value)
			}
			counter(m.desc, series.counter(&st).Value(), labels...)
		}
	}
}
