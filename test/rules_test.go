package test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/xdpstack/xdpstack/internal/testing/testutil"
	"github.com/xdpstack/xdpstack/maps"
)

// ncConnects tells whether a kernel client of host b (netcat) connects
// to addr:port within a second.
func ncConnects(t *testing.T, b *testutil.Host, addr string, port int) bool {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	return b.Command(ctx, "nc", "-z", "-w", "1", addr, fmt.Sprint(port)).Run() == nil
}

type listedRule struct {
	ID      uint32 `json:"id"`
	Tag     string `json:"tag"`
	Action  string `json:"action"`
	Local   string `json:"local"`
	Remote  string `json:"remote"`
	Packets uint64 `json:"packets"`
	Bytes   uint64 `json:"bytes"`
}

func listRules(t *testing.T, root, iface string) []listedRule {
	t.Helper()
	var rules []listedRule
	out := mustXdpstack(t, root, "rules", "list", iface, "--json")
	if err := json.Unmarshal([]byte(out), &rules); err != nil {
		t.Fatalf("rules list --json: %v\n%s", err, out)
	}
	return rules
}

// scrapeMetrics reads the daemon's /metrics at addr, dialled from h.
func scrapeMetrics(t *testing.T, h *testutil.Host, addr string) map[string]*dto.MetricFamily {
	t.Helper()
	client := &http.Client{Transport: &http.Transport{DialContext: h.DialContext}, Timeout: 5 * time.Second}
	resp, err := client.Get("http://" + addr + "/metrics")
	if err != nil {
		t.Fatalf("scrape: %v", err)
	}
	defer resp.Body.Close()
	parser := expfmt.NewTextParser(model.UTF8Validation)
	families, err := parser.TextToMetricFamilies(resp.Body)
	if err != nil {
		t.Fatalf("parse /metrics: %v", err)
	}
	return families
}

// scrapeRuleHits reads xdpstack_rule_hits_packets_total from the
// daemon's /metrics, by label set.
func scrapeRuleHits(t *testing.T, h *testutil.Host, addr string) map[string]uint64 {
	t.Helper()
	hits := map[string]uint64{}
	if fam := scrapeMetrics(t, h, addr)["xdpstack_rule_hits_packets_total"]; fam != nil {
		for _, m := range fam.Metric {
			var labels []string
			for _, l := range m.Label {
				labels = append(labels, fmt.Sprintf("%s=%q", l.GetName(), l.GetValue()))
			}
			hits["{"+strings.Join(labels, ",")+"}"] = uint64(m.GetCounter().GetValue())
		}
	}
	return hits
}

// TestRulesWithKernelPeers puts global rules on a host whose userstack
// serves echo on port 7 and whose kernel listens on port 8000, and
// connects to both with netcat and curl from the peer host.
func TestRulesWithKernelPeers(t *testing.T) {
	needTools(t, "nc", "curl", "python3")
	a, b := testutil.HostPair(t, 0)
	root := testutil.PinRoot(t)
	d := startDaemon(t, a, root, "--metrics-addr", "127.0.0.1:0", "--app", "echo=tcp://:7")
	kernelPort := 8000
	a.KernelEcho(t, fmt.Sprintf("%s:%d", a.Addr, kernelPort))
	addr := a.Addr.String()
	for _, port := range []int{7, kernelPort} {
		if !ncConnects(t, b, addr, port) {
			t.Fatalf("nc to %s:%d before any rule: no connection", addr, port)
		}
	}

	// A deny rule stops the peer's connections to both.
	out := mustXdpstack(t, root, "rules", "add", a.Iface, "--proto", "tcp", "--remote", b.Addr.String(), "--action", "deny", "--tag", "block-b")
	if !strings.Contains(out, "rule 1: --proto tcp --local 0.0.0.0/0 --remote "+b.Addr.String()+"/32 --action deny --tag block-b") {
		t.Errorf("rules add: got %q", out)
	}
	before := readStats(t, root, a.Iface)[maps.Verdict{Action: maps.ActionDrop, Reason: maps.ReasonRuleDeny}]
	for _, port := range []int{7, kernelPort} {
		if ncConnects(t, b, addr, port) {
			t.Errorf("nc to %s:%d under a deny rule: connected", addr, port)
		}
	}
	rules := listRules(t, root, a.Iface)
	if len(rules) != 1 || rules[0].Tag != "block-b" || rules[0].Packets < 2 || rules[0].Bytes < 2*54 {
		t.Errorf("rules list after denied connects: got %+v, want block-b with at least 2 hits", rules)
	}
	if after := readStats(t, root, a.Iface)[maps.Verdict{Action: maps.ActionDrop, Reason: maps.ReasonRuleDeny}]; after.Packets < before.Packets+2 {
		t.Errorf("drop/rule_deny: got %d packets, want at least %d", after.Packets, before.Packets+2)
	}
	if out := mustXdpstack(t, root, "stats", a.Iface); !strings.Contains(out, "rule_deny") {
		t.Errorf("stats: no rule_deny row in %q", out)
	}
	hits := scrapeRuleHits(t, a, d.ready.MetricsAddr)
	if got, want := hits[`{action="deny",iface="`+a.Iface+`",rule="1",tag="block-b"}`], rules[0].Packets; got != want {
		t.Errorf("xdpstack_rule_hits_packets_total of rule 1: got %d, rules list says %d (all: %v)", got, want, hits)
	}

	// Deleting it restores both.
	if out := mustXdpstack(t, root, "rules", "del", a.Iface, "--tag", "block-b"); !strings.Contains(out, "deleted rule 1") {
		t.Errorf("rules del: got %q", out)
	}
	for _, port := range []int{7, kernelPort} {
		if !ncConnects(t, b, addr, port) {
			t.Errorf("nc to %s:%d after the deny rule went: no connection", addr, port)
		}
	}

	// A pass rule hands the userstack's port 7 to a kernel web server.
	server := a.Command(context.Background(), "python3", "-m", "http.server", "7", "--bind", addr)
	if err := server.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { server.Process.Kill(); server.Wait() })
	curl := func() string {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		out, _ := b.Command(ctx, "curl", "-s", "-o", "/dev/null", "-w", "%{http_code}", "--max-time", "2", "http://"+addr+":7/").Output()
		return string(out)
	}
	mustXdpstack(t, root, "rules", "add", a.Iface, "--proto", "tcp", "--local", ":7", "--action", "pass", "--tag", "web-to-kernel")
	var code string
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
		if code = curl(); code == "200" {
			break
		}
	}
	if code != "200" {
		t.Errorf("curl to port 7 under a pass rule: got status %q, want the kernel's web server's 200", code)
	}
	if after := readStats(t, root, a.Iface)[maps.Verdict{Action: maps.ActionPass, Reason: maps.ReasonRulePass}]; after.Packets == 0 {
		t.Error("pass/rule_pass did not move")
	}
	// Without it, port 7 is the userstack's echo again, which no web
	// server answers from.
	mustXdpstack(t, root, "rules", "del", a.Iface, "--proto", "tcp", "--local", ":7")
	if code := curl(); code == "200" {
		t.Errorf("curl to port 7 after the pass rule went: got %q, want the userstack's echo, not the web server", code)
	}

	// Rules work through the pins with no daemon running, too.
	d.signal(t, syscall.SIGKILL)
	mustXdpstack(t, root, "rules", "add", a.Iface, "--local", fmt.Sprintf(":%d", kernelPort), "--action", "deny")
	if ncConnects(t, b, addr, kernelPort) {
		t.Errorf("nc to %s:%d under a deny rule put in with no daemon: connected", addr, kernelPort)
	}
	mustXdpstack(t, root, "detach", a.Iface)
	checkClean(t, a, root)
}

// TestBadRulesChangeNothing gives the rules command bad input of every
// kind: each is one line naming what was wrong, and the table stays as
// it was.
func TestBadRulesChangeNothing(t *testing.T) {
	a, _ := testutil.HostPair(t, 0)
	root := testutil.PinRoot(t)
	startDaemon(t, a, root, "--metrics-addr", "")
	mustXdpstack(t, root, "rules", "add", a.Iface, "--remote", "10.0.0.0/8", "--action", "deny", "--tag", "ten")
	want := listRules(t, root, a.Iface)
	add := func(args ...string) []string { return append([]string{"rules", "add", a.Iface}, args...) }
	for _, tc := range []struct {
		name string
		args []string
		want string
	}{
		{"no action", add("--local", ":80"), "rules add: --action missing"},
		{"bad action", add("--action", "reject"), `--action: action "reject": want allow, deny or pass`},
		{"bad proto", add("--proto", "icmp", "--action", "deny"), `--proto: protocol "icmp": want tcp, udp or any`},
		{"bad prefix", add("--local", "10.0.0.0/33", "--action", "deny"), `--local: "10.0.0.0/33": not an address or prefix`},
		{"bad port", add("--remote", "10.0.0.1:70000", "--action", "deny"), `--remote: "10.0.0.1:70000": port "70000" is not 0 to 65535`},
		{"v6 without brackets and port", add("--remote", "2001:db8::/32:443", "--action", "deny"), "not an address or prefix (want e.g. 10.0.0.0/8 or [2001:db8::/32])"},
		{"mixed families", add("--local", "10.0.0.1", "--remote", "[2001:db8::1]", "--action", "deny"), "prefixes of different families"},
		{"long tag", add("--action", "deny", "--tag", strings.Repeat("x", 40)), "want at most 31"},
		{"tag with a space", add("--action", "deny", "--tag", "a b"), "want letters, digits and -_.:/ only"},
		{"same match twice", add("--remote", "10.1.2.3/8", "--action", "pass"), "same match as rule --proto any --local 0.0.0.0/0 --remote 10.0.0.0/8 --action deny --tag ten"},
		{"unknown namespace", add("--action", "deny", "--namespace", "web"), "rules add " + a.Iface + ": namespace web: no such namespace"},
		{"del with neither", []string{"rules", "del", a.Iface}, "give either --tag or the rule's match"},
		{"del with both", []string{"rules", "del", a.Iface, "--tag", "ten", "--local", ":80"}, "give either --tag or the rule's match"},
		{"del unknown tag", []string{"rules", "del", a.Iface, "--tag", "nope"}, `no rule on ` + a.Iface + ` has tag "nope"`},
		{"del unknown match", []string{"rules", "del", a.Iface, "--remote", "10.0.0.0/16"}, "no rule on " + a.Iface + " has the match"},
		{"list not attached", []string{"rules", "list", "xs-nosuch0"}, "xdpstack is not attached to xs-nosuch0"},
		{"bad iface", []string{"rules", "list", "../x"}, `interface name "../x"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			out, err := xdpstack(t, root, tc.args...)
			if err == nil || !strings.Contains(out, tc.want) {
				t.Errorf("xdpstack %s: got %v, %q; want an error containing %q", strings.Join(tc.args, " "), err, out, tc.want)
			}
			if n := strings.Count(out, "\n"); n > 0 {
				t.Errorf("error is %d lines, want one: %q", n+1, out)
			}
			if got := listRules(t, root, a.Iface); fmt.Sprint(got) != fmt.Sprint(want) {
				t.Errorf("rules after a refused command: got %+v, want %+v", got, want)
			}
		})
	}
	if _, err := exec.LookPath("bpftool"); err == nil {
		out, err := exec.Command("bpftool", "map", "dump", "pinned", root+"/"+a.Iface+"/"+maps.RulesName).CombinedOutput()
		if err != nil || !strings.Contains(string(out), `"tag": "ten"`) || !strings.Contains(string(out), `"remote_prefix_len": 8`) {
			t.Errorf("bpftool map dump rules: %v, %s; want the named fields of the rule", err, out)
		}
	}
}
