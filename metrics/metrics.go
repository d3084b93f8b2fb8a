// Package metrics serves xdpstack's Prometheus metrics from a private
// registry. Counters are read from the BPF maps at scrape time, so they
// are exactly what bpftool and `xdpstack stats` show.
package metrics

import (
	"fmt"
	"net"
	"net/http"
	"strconv"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/xdpstack/xdpstack/internal/buildinfo"
	"github.com/xdpstack/xdpstack/internal/httpserver"
	"github.com/xdpstack/xdpstack/maps"
)

var (
	xdpPackets = prometheus.NewDesc("xdpstack_xdp_packets_total",
		"Packets seen by the XDP program, by verdict and the reason for it.",
		[]string{"iface", "action", "reason"}, nil)
	xdpBytes = prometheus.NewDesc("xdpstack_xdp_bytes_total",
		"Bytes of the packets seen by the XDP program, by verdict and the reason for it.",
		[]string{"iface", "action", "reason"}, nil)
)

var (
	ruleHitPackets = prometheus.NewDesc("xdpstack_rule_hits_packets_total",
		"Packets a global session rule decided, by rule id, tag and action.",
		[]string{"iface", "rule", "tag", "action"}, nil)
	ruleHitBytes = prometheus.NewDesc("xdpstack_rule_hits_bytes_total",
		"Bytes of the packets a global session rule decided, by rule id, tag and action.",
		[]string{"iface", "rule", "tag", "action"}, nil)
)

// The rule table's fill, so that an alert can warn before `rules add`
// is refused: it takes at most maps.MaxRules rules in maps.MaxRuleShapes
// shapes.
var (
	ruleTableRules = prometheus.NewDesc("xdpstack_rule_table_rules",
		"Global session rules in the table.",
		[]string{"iface"}, nil)
	ruleTableRulesLimit = prometheus.NewDesc("xdpstack_rule_table_rules_limit",
		"Global session rules the table takes at most.",
		[]string{"iface"}, nil)
	ruleTableShapes = prometheus.NewDesc("xdpstack_rule_table_shapes",
		"Distinct shapes (protocol, prefix lengths, port wildcards) of the global session rules; the program looks a packet up once per shape.",
		[]string{"iface"}, nil)
	ruleTableShapesLimit = prometheus.NewDesc("xdpstack_rule_table_shapes_limit",
		"Distinct rule shapes the program takes at most.",
		[]string{"iface"}, nil)
)

var xdpSamples = prometheus.NewDesc("xdpstack_xdp_samples_total",
	"Packets the XDP program sampled, by verdict and reason, and what became of each: taken (written to a capture's buffer), lost (the buffer was full), unread (no capture was reading).",
	[]string{"iface", "action", "reason", "result"}, nil)

// sampleCollector reads one interface's per-CPU sample counters at each
// scrape.
type sampleCollector struct {
	iface    string
	sampling maps.Sampling
}

func (c sampleCollector) Describe(ch chan<- *prometheus.Desc) { ch <- xdpSamples }

func (c sampleCollector) Collect(ch chan<- prometheus.Metric) {
	counts, err := c.sampling.Counts()
	if err != nil {
		ch <- prometheus.NewInvalidMetric(xdpSamples, fmt.Errorf("%s: %w", c.iface, err))
		return
	}
	for v, n := range counts {
		for _, r := range []struct {
			result string
			n      uint64
		}{{"taken", n.Taken}, {"lost", n.Lost}, {"unread", n.Unread}} {
			ch <- prometheus.MustNewConstMetric(xdpSamples, prometheus.CounterValue, float64(r.n), c.iface, v.Action.String(), v.Reason.String(), r.result)
		}
	}
}

// ruleCollector reads one interface's rule table, its fill and its
// per-CPU hit counters at each scrape.
type ruleCollector struct {
	iface string
	rules maps.Rules
}

func (c ruleCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- ruleHitPackets
	ch <- ruleHitBytes
	ch <- ruleTableRules
	ch <- ruleTableRulesLimit
	ch <- ruleTableShapes
	ch <- ruleTableShapesLimit
}

func (c ruleCollector) Collect(ch chan<- prometheus.Metric) {
	rules, err := c.rules.All()
	var hits map[uint32]maps.Counter
	if err == nil {
		hits, err = c.rules.Hits(rules)
	}
	if err != nil {
		ch <- prometheus.NewInvalidMetric(ruleHitPackets, fmt.Errorf("%s: %w", c.iface, err))
		return
	}
	for _, r := range rules {
		labels := []string{c.iface, strconv.FormatUint(uint64(r.ID), 10), r.Tag, r.Action.String()}
		ch <- prometheus.MustNewConstMetric(ruleHitPackets, prometheus.CounterValue, float64(hits[r.ID].Packets), labels...)
		ch <- prometheus.MustNewConstMetric(ruleHitBytes, prometheus.CounterValue, float64(hits[r.ID].Bytes), labels...)
	}
	gauge := func(d *prometheus.Desc, v int) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, float64(v), c.iface)
	}
	gauge(ruleTableRules, len(rules))
	gauge(ruleTableRulesLimit, maps.MaxRules)
	gauge(ruleTableShapes, maps.RuleShapes(rules))
	gauge(ruleTableShapesLimit, maps.MaxRuleShapes)
}

// xdpCollector reads one interface's stats map at each scrape.
type xdpCollector struct {
	iface string
	stats maps.Stats
}

func (c xdpCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- xdpPackets
	ch <- xdpBytes
}

func (c xdpCollector) Collect(ch chan<- prometheus.Metric) {
	sums, err := c.stats.Sum()
	if err != nil {
		ch <- prometheus.NewInvalidMetric(xdpPackets, fmt.Errorf("%s: %w", c.iface, err))
		return
	}
	for v, sum := range sums {
		labels := []string{c.iface, v.Action.String(), v.Reason.String()}
		ch <- prometheus.MustNewConstMetric(xdpPackets, prometheus.CounterValue, float64(sum.Packets), labels...)
		ch <- prometheus.MustNewConstMetric(xdpBytes, prometheus.CounterValue, float64(sum.Bytes), labels...)
	}
}

// NewRegistry returns a registry with the XDP counters, sample counters
// and rule hits of iface, build info, the Go runtime's and process's own metrics, and
// extra ones (the userstack's).
func NewRegistry(iface string, m *maps.Set, extra ...prometheus.Collector) *prometheus.Registry {
	reg := prometheus.NewRegistry()
	bi := buildinfo.Read()
	build := prometheus.NewGauge(prometheus.GaugeOpts{
		Name:        "xdpstack_build_info",
		Help:        "Which build of xdpstack is running; always 1.",
		ConstLabels: prometheus.Labels{"version": bi.Version, "revision": bi.Revision, "goversion": bi.GoVersion},
	})
	build.Set(1)
	reg.MustRegister(
		xdpCollector{iface, m.Stats},
		sampleCollector{iface, m.Sampling},
		ruleCollector{iface, m.Rules},
		build,
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
	)
	reg.MustRegister(extra...)
	return reg
}

// Serve starts serving reg's /metrics on ln, a listener bound before,
// so that a caller can report the address as ready.
func Serve(ln net.Listener, reg *prometheus.Registry) *httpserver.Server {
	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{ErrorHandling: promhttp.ContinueOnError}))
	return httpserver.Serve(ln, mux)
}
