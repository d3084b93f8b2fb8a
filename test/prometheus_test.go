package test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/netip"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/xdpstack/xdpstack/internal/testing/testutil"
	"github.com/xdpstack/xdpstack/userstack/psp"
)

// The alerting rules and the dashboard that deploy/ ships.
var (
	alertRules      = filepath.Join("..", "deploy", "prometheus", "xdpstack.rules.yml")
	alertRulesTests = filepath.Join("..", "deploy", "prometheus", "xdpstack.rules.test.yml")
	dashboard       = filepath.Join("..", "deploy", "grafana", "xdpstack.json")
)

// TestPrometheusRules checks the alerting rules with promtool and runs
// their unit tests: every alert fires on a series that should fire it
// and not on one that should not.
func TestPrometheusRules(t *testing.T) {
	needTools(t, "promtool")
	for _, args := range [][]string{{"check", "rules", alertRules}, {"test", "rules", alertRulesTests}} {
		if out, err := exec.Command("promtool", args...).CombinedOutput(); err != nil {
			t.Errorf("promtool %s: %v\n%s", strings.Join(args, " "), err, out)
		}
	}
}

// TestPrometheusScrape runs Debian's Prometheus server next to a daemon
// in a namespace, scraping it every second with the alerting rules
// loaded, and asks the server's HTTP API for the xdpstack series, the
// rules' health and every query of the Grafana dashboard.
func TestPrometheusScrape(t *testing.T) {
	needTools(t, "prometheus", "nc")
	a, b := testutil.HostPair(t, 2)
	root := testutil.PinRoot(t)
	d := startDaemon(t, a, root, "--metrics-addr", "127.0.0.1:0", "--app", "echo=tcp://:7")
	mustXdpstack(t, root, "rules", "add", a.Iface, "--proto", "tcp", "--local", ":22", "--action", "deny", "--tag", "no-ssh")
	for range 3 {
		b.EchoFrom(t, a.Addr.String()+":7", 64<<10)
	}
	if ncConnects(t, b, a.Addr.String(), 22) {
		t.Fatal("nc to port 22 under a deny rule: connected")
	}

	p := startPrometheus(t, a, d.ready.MetricsAddr)
	p.waitScrapes(t, 5)
	sel := fmt.Sprintf(`iface=%q`, a.Iface)

	t.Run("series", func(t *testing.T) {
		p.expect(t, []expectation{
			{`up{job="xdpstack"}`, eq(1), "1"},
			{`xdpstack_xdp_packets_total{` + sel + `,action="redirect",reason="steered"}`, gt(0), "steered packets"},
			{`xdpstack_xdp_packets_total{` + sel + `,action="drop",reason="rule_deny"}`, gt(0), "packets dropped by the deny rule"},
			{`xdpstack_xdp_bytes_total{` + sel + `,action="redirect",reason="steered"}`, gt(64 << 10), "the echoed bytes"},
			{`count(xdpstack_afxdp_socket_info{` + sel + `})`, eq(2), "a socket per queue"},
			{`sum(xdpstack_afxdp_packets_total{` + sel + `,direction="rx"})`, gt(0), "frames received"},
			{`sum(xdpstack_afxdp_frames{` + sel + `,state=~"free|kernel"})`, eq(2 * 4096), "every frame free or in the kernel"},
			{`sum(xdpstack_afxdp_kernel_drops_total{` + sel + `})`, eq(0), "no kernel drops"},
			{`xdpstack_userstack_tcp_connections_total{` + sel + `,side="passive"}`, ge(3), "the 3 echo connections"},
			{`xdpstack_userstack_tcp_segments_total{` + sel + `,direction="tx"}`, gt(0), "segments sent"},
			{`xdpstack_userstack_sessions{` + sel + `,transport="T",state="listening"}`, eq(1), "the echo listener"},
			{`xdpstack_rule_hits_packets_total{` + sel + `,tag="no-ssh",action="deny"}`, gt(0), "hits of the deny rule"},
			{`xdpstack_rule_table_rules{` + sel + `}`, eq(1), "one rule"},
			{`xdpstack_rule_table_shapes{` + sel + `}`, eq(1), "the one rule's shape"},
			{`xdpstack_rule_table_shapes_limit{` + sel + `}`, eq(32), "32"},
		})
	})
	// The PSP queries have data in TestPrometheusScrapePSP.
	t.Run("alerting rules", func(t *testing.T) { p.checkRules(t, func(expr string) bool { return !isPSP(expr) }) })
	t.Run("dashboard", func(t *testing.T) {
		p.checkDashboard(t, d.ready.MetricsAddr, a.Iface, func(expr string) bool { return !isPSP(expr) })
	})
}

// TestPrometheusScrapePSP runs two PSP gateways, makes a tunnel between
// them with a ping and a TCP transfer, and sends PSP under an SPI never
// issued; Debian's Prometheus scrapes one of them with the alerting
// rules loaded. The PSP series have the values the traffic gave them,
// every rule is healthy and quiet, and every PSP query of the
// dashboard returns series with the labels it groups by and names.
func TestPrometheusScrapePSP(t *testing.T) {
	needTools(t, "prometheus")
	h := newPSPHosts(t, 2, "ipv4", "ipv4")
	d := h.start(t, 0, "--metrics-addr", "127.0.0.1:0")
	h.start(t, 1)
	h.ping(t, 0, 1)
	h.transferTCP(t, 0, 1, 1<<20)
	const forged = 10
	gw, peer := h.lan.Hosts[0], h.lan.Hosts[1]
	sendPSP(t, peer, netip.AddrPortFrom(gw.Addr, psp.UDPPort), pspDatagram(t, h.vips[1], 0x7eadbeef), forged)

	p := startPrometheus(t, gw, d.ready.MetricsAddr)
	p.waitScrapes(t, 5)
	sel := fmt.Sprintf(`iface=%q`, gw.Iface)
	t.Run("series", func(t *testing.T) {
		p.expect(t, []expectation{
			{`xdpstack_psp_tunnels{` + sel + `}`, eq(1), "the tunnel to the peer"},
			{`xdpstack_psp_packets_total{` + sel + `,direction="tx"}`, gt(0), "packets sealed"},
			{`xdpstack_psp_packets_total{` + sel + `,direction="rx"}`, gt(0), "packets opened"},
			{`xdpstack_psp_bytes_total{` + sel + `,direction="rx"}`, ge(1 << 20), "the echoed MiB"},
			{`xdpstack_psp_tunnel_requests_total{` + sel + `}`, eq(1), "the one tunnel asked for"},
			{`xdpstack_psp_held_packets_total{` + sel + `}`, ge(1), "the first ping held"},
			{fmt.Sprintf(`xdpstack_psp_key_exchanges_total{%s,peer="%s:3000",result="ok"}`, sel, peer.Addr), eq(1), "one exchange"},
			{`xdpstack_psp_key_exchanges_total{` + sel + `,result="failed"}`, eq(0), "no failure"},
			{`xdpstack_psp_key_exchange_seconds_count{` + sel + `}`, eq(1), "the exchange timed"},
			{`xdpstack_psp_errors_total{` + sel + `,kind="rx-auth-fail"}`, eq(0), "no authentication failure"},
			{`xdpstack_psp_key_rotations_total{` + sel + `}`, eq(0), "no rotation"},
			{`xdpstack_xdp_packets_total{` + sel + `,action="drop",reason="psp_spi"}`, eq(forged), "the datagrams under an SPI never issued"},
		})
	})
	t.Run("alerting rules", func(t *testing.T) { p.checkRules(t, isPSP) })
	t.Run("dashboard", func(t *testing.T) { p.checkDashboard(t, d.ready.MetricsAddr, gw.Iface, isPSP) })
}

// isPSP tells the PSP gateway's queries: its metrics and its reasons.
func isPSP(expr string) bool { return strings.Contains(expr, "psp_") }

// expectation is the value an instant query must return one series of.
type expectation struct {
	query string
	want  func(float64) bool
	what  string
}

func (p *prometheus) expect(t *testing.T, list []expectation) {
	t.Helper()
	for _, e := range list {
		res := p.query(t, e.query)
		if len(res) != 1 || !e.want(res[0].value) {
			t.Errorf("%s: got %v, want %s", e.query, res, e.what)
		}
	}
}

// checkRules checks that the server loaded every alerting rule of
// alertRules, each healthy, and none firing or pending: the daemon is
// healthy. The xdpstack metrics that the rules needData picks watch
// must be in the scrape with the labels they match on (any value: a
// counter of a verdict that never happened is not exported; promtool's
// tests check the values), so that a rule cannot watch a name or a
// label the daemon does not export.
func (p *prometheus) checkRules(t *testing.T, needData func(expr string) bool) {
	file, err := os.ReadFile(alertRules)
	if err != nil {
		t.Fatal(err)
	}
	want := strings.Count(string(file), "- alert: ")
	var rules struct {
		Groups []struct {
			Name  string `json:"name"`
			Rules []struct {
				Name      string `json:"name"`
				Query     string `json:"query"`
				Health    string `json:"health"`
				LastError string `json:"lastError"`
				State     string `json:"state"`
			} `json:"rules"`
		} `json:"groups"`
	}
	// A rule has health "unknown" until its group's first evaluation.
	deadline := time.Now().Add(10 * time.Second)
	for n := 0; ; {
		p.get(t, "/api/v1/rules", &rules)
		n = 0
		for _, g := range rules.Groups {
			for _, r := range g.Rules {
				if r.Health == "ok" {
					n++
				}
			}
		}
		if n == want || time.Now().After(deadline) {
			break
		}
		time.Sleep(200 * time.Millisecond)
	}
	n := 0
	for _, g := range rules.Groups {
		for _, r := range g.Rules {
			n++
			if r.Health != "ok" {
				t.Errorf("rule %s of %s: health %s (%s)", r.Name, g.Name, r.Health, r.LastError)
			}
			if r.State != "inactive" {
				t.Errorf("rule %s of %s: %s on a healthy daemon", r.Name, g.Name, r.State)
			}
			if !needData(r.Query) {
				continue
			}
			for _, series := range seriesSelector.FindAllString(r.Query, -1) {
				series = labelMatcher.ReplaceAllString(series, `$1!=""`)
				if res, err := p.tryQuery(series); err != nil || len(res) == 0 {
					t.Errorf("rule %s of %s: %s: no series in the scrape (%v)", r.Name, g.Name, series, err)
				}
			}
		}
	}
	if n != want {
		t.Errorf("the server loaded %d alerting rules, want the %d of %s", n, want, alertRules)
	}
}

// checkDashboard evaluates every query of the dashboard with its
// variables set to the daemon at instance and iface: each must parse,
// and those needData picks must return series, each with the labels
// the query groups by and its legend names.
func (p *prometheus) checkDashboard(t *testing.T, instance, iface string, needData func(expr string) bool) {
	queries := dashboardQueries(t)
	// Grafana puts a variable's value into a regex matcher quoted,
	// its backslashes escaped for the PromQL string.
	regexValue := func(s string) string { return strings.ReplaceAll(regexp.QuoteMeta(s), `\`, `\\`) }
	vars := strings.NewReplacer("$__rate_interval", "1m", "$instance", regexValue(instance), "$iface", regexValue(iface))
	checked := 0
	for _, q := range queries {
		expr := vars.Replace(q.expr)
		res, err := p.tryQuery(expr)
		switch {
		case err != nil:
			t.Errorf("%s: %s: %v", q.where, expr, err)
		case !needData(q.expr):
		case len(res) == 0:
			t.Errorf("%s: %s: no data", q.where, expr)
		default:
			checked++
			for _, s := range res {
				for _, label := range q.labels() {
					if s.labels[label] == "" {
						t.Errorf("%s: %s: %v has no label %s", q.where, expr, s, label)
					}
				}
			}
		}
	}
	t.Logf("%d queries of the dashboard evaluated, %d of them with data checked", len(queries), checked)
}

func eq(want float64) func(float64) bool { return func(v float64) bool { return v == want } }
func gt(min float64) func(float64) bool  { return func(v float64) bool { return v > min } }
func ge(min float64) func(float64) bool  { return func(v float64) bool { return v >= min } }

// dashboardQuery is a PromQL expression of the Grafana dashboard, where
// it is, and the legend of its series.
type dashboardQuery struct{ where, expr, legend string }

var (
	// seriesSelector finds xdpstack's series in an expression, with
	// their label matchers.
	seriesSelector = regexp.MustCompile(`\bxdpstack_\w+(\{[^}]*\})?`)
	labelMatcher   = regexp.MustCompile(`(\w+) *(=~|!~|!=|=) *"(?:[^"\\]|\\.)*"`)
	groupingLabels = regexp.MustCompile(`\bby \(([^)]*)\)`)
	legendLabels   = regexp.MustCompile(`\{\{ *(\w+) *\}\}`)
)

// labels returns the labels every series of the answer must have: those
// it is grouped by and those its legend names, but le, which
// histogram_quantile takes away.
func (q dashboardQuery) labels() []string {
	var labels []string
	for _, m := range groupingLabels.FindAllStringSubmatch(q.expr, -1) {
		for _, l := range strings.Split(m[1], ",") {
			if l = strings.TrimSpace(l); l != "le" || !strings.Contains(q.expr, "histogram_quantile(") {
				labels = append(labels, l)
			}
		}
	}
	for _, m := range legendLabels.FindAllStringSubmatch(q.legend, -1) {
		labels = append(labels, m[1])
	}
	return labels
}

// labelValues reads Grafana's label_values(SERIES, LABEL), which is not
// PromQL, as the series it reads.
var labelValues = regexp.MustCompile(`^label_values\((.*), *\w+\)$`)

// dashboardQueries returns every expression of the dashboard: each
// panel's targets and each query variable's series.
func dashboardQueries(t *testing.T) []dashboardQuery {
	t.Helper()
	raw, err := os.ReadFile(dashboard)
	if err != nil {
		t.Fatal(err)
	}
	type panel struct {
		Title   string `json:"title"`
		Targets []struct {
			Expr         string `json:"expr"`
			LegendFormat string `json:"legendFormat"`
		} `json:"targets"`
	}
	var dash struct {
		Panels     []panel `json:"panels"`
		Templating struct {
			List []struct {
				Name string `json:"name"`
				Type string `json:"type"`
				// A string for a data source variable.
				Query json.RawMessage `json:"query"`
			} `json:"list"`
		} `json:"templating"`
	}
	if err := json.Unmarshal(raw, &dash); err != nil {
		t.Fatalf("%s: %v", dashboard, err)
	}
	var queries []dashboardQuery
	for _, p := range dash.Panels {
		for i, target := range p.Targets {
			if target.Expr == "" {
				t.Errorf("panel %q: target %d has no expression", p.Title, i)
			}
			queries = append(queries, dashboardQuery{fmt.Sprintf("panel %q", p.Title), target.Expr, target.LegendFormat})
		}
	}
	for _, v := range dash.Templating.List {
		if v.Type != "query" {
			continue
		}
		var q struct{ Query string }
		if err := json.Unmarshal(v.Query, &q); err != nil {
			t.Fatalf("variable %s: %v", v.Name, err)
		}
		m := labelValues.FindStringSubmatch(q.Query)
		if m == nil {
			t.Errorf("variable %s: %q is not label_values(SERIES, LABEL)", v.Name, q.Query)
			continue
		}
		queries = append(queries, dashboardQuery{"variable " + v.Name, m[1], ""})
	}
	if len(queries) == 0 {
		t.Fatalf("%s: no queries", dashboard)
	}
	return queries
}

// prometheus is a Prometheus server running inside a host.
type prometheus struct {
	client *http.Client
	output *testutil.SyncBuffer
}

// promAddr is where the server listens inside the host's namespace,
// which the test made and which nothing else uses.
const promAddr = "127.0.0.1:9090"

// startPrometheus runs Prometheus inside h, its storage in a temporary
// folder, scraping target every second as job xdpstack with the
// alerting rules loaded. It is killed when the test ends, or after 5
// minutes.
func startPrometheus(t *testing.T, h *testutil.Host, target string) *prometheus {
	t.Helper()
	rules, err := filepath.Abs(alertRules)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	config := fmt.Sprintf(`global: {scrape_interval: 1s, evaluation_interval: 1s}
rule_files: [%q]
scrape_configs:
  - job_name: xdpstack
    static_configs: [{targets: [%q]}]
`, rules, target)
	configFile := filepath.Join(dir, "prometheus.yml")
	if err := os.WriteFile(configFile, []byte(config), 0o644); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	cmd := h.Command(ctx, "prometheus", "--config.file="+configFile, "--storage.tsdb.path="+filepath.Join(dir, "data"),
		"--web.listen-address="+promAddr, "--log.level=warn")
	p := &prometheus{output: &testutil.SyncBuffer{}}
	cmd.Stdout, cmd.Stderr = p.output, p.output
	if err := cmd.Start(); err != nil {
		cancel()
		t.Fatal(err)
	}
	exited := make(chan struct{})
	go func() { cmd.Wait(); close(exited) }()
	t.Cleanup(func() {
		cmd.Process.Kill()
		<-exited
		cancel()
	})
	p.client = &http.Client{Transport: &http.Transport{DialContext: h.DialContext}, Timeout: 10 * time.Second}

	deadline := time.Now().Add(30 * time.Second)
	for {
		resp, err := p.client.Get("http://" + promAddr + "/-/ready")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return p
			}
		}
		select {
		case <-exited:
			t.Fatalf("prometheus exited before ready:\n%s", p.output)
		case <-time.After(100 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatalf("prometheus not ready after 30s:\n%s", p.output)
		}
	}
}

// waitScrapes waits up to 30s for n successful scrapes of the daemon, so
// that rates over a minute have points to work on.
func (p *prometheus) waitScrapes(t *testing.T, n int) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		res, err := p.tryQuery(`sum_over_time(up{job="xdpstack"}[1m])`)
		if err == nil && len(res) == 1 && res[0].value >= float64(n) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("prometheus did not scrape the daemon %d times in 30s (%v %v):\n%s", n, res, err, p.output)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// sample is one series of an instant query's answer.
type sample struct {
	labels map[string]string
	value  float64
}

func (s sample) String() string { return fmt.Sprintf("%v %v", s.labels, s.value) }

// get asks the server's HTTP API for path and decodes the answer's data
// into v.
func (p *prometheus) get(t *testing.T, path string, v any) {
	t.Helper()
	if err := p.api(path, v); err != nil {
		t.Fatal(err)
	}
}

func (p *prometheus) api(path string, v any) error {
	resp, err := p.client.Get("http://" + promAddr + path)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return err
	}
	var answer struct {
		Status    string          `json:"status"`
		ErrorType string          `json:"errorType"`
		Error     string          `json:"error"`
		Data      json.RawMessage `json:"data"`
	}
	if err := json.Unmarshal(body, &answer); err != nil {
		return fmt.Errorf("GET %s: %s: %v", path, resp.Status, err)
	}
	if answer.Status != "success" {
		return fmt.Errorf("%s: %s", answer.ErrorType, answer.Error)
	}
	return json.Unmarshal(answer.Data, v)
}

// query runs an instant query, failing the test on a refused one.
func (p *prometheus) query(t *testing.T, expr string) []sample {
	t.Helper()
	res, err := p.tryQuery(expr)
	if err != nil {
		t.Fatalf("query %s: %v", expr, err)
	}
	return res
}

// tryQuery runs an instant query whose answer is a vector or a scalar.
func (p *prometheus) tryQuery(expr string) ([]sample, error) {
	var data struct {
		ResultType string          `json:"resultType"`
		Result     json.RawMessage `json:"result"`
	}
	if err := p.api("/api/v1/query?query="+url.QueryEscape(expr), &data); err != nil {
		return nil, err
	}
	value := func(pair [2]any) (float64, error) {
		s, _ := pair[1].(string)
		return strconv.ParseFloat(s, 64)
	}
	switch data.ResultType {
	case "scalar":
		var pair [2]any
		if err := json.Unmarshal(data.Result, &pair); err != nil {
			return nil, err
		}
		v, err := value(pair)
		return []sample{{value: v}}, err
	case "vector":
		var vector []struct {
			Metric map[string]string `json:"metric"`
			Value  [2]any            `json:"value"`
		}
		if err := json.Unmarshal(data.Result, &vector); err != nil {
			return nil, err
		}
		res := make([]sample, len(vector))
		for i, s := range vector {
			v, err := value(s.Value)
			if err != nil {
				return nil, err
			}
			res[i] = sample{s.Metric, v}
		}
		return res, nil
	}
	return nil, fmt.Errorf("answer of type %s, want a vector", data.ResultType)
}
