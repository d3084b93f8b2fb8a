package daemon

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/xdpstack/xdpstack/internal/testing/testutil"
	"github.com/xdpstack/xdpstack/loader"
	"github.com/xdpstack/xdpstack/maps"
	"github.com/xdpstack/xdpstack/userstack/afxdp"
	"github.com/xdpstack/xdpstack/userstack/appns"
	"github.com/xdpstack/xdpstack/userstack/apps"
)

// start runs a daemon on a's interface, inside a's namespace, with the
// given apps and /metrics on a free port.
func start(t *testing.T, a *testutil.Host, specs ...string) *Daemon {
	t.Helper()
	cfg := Config{Iface: a.Iface, Attach: loader.Options{PinRoot: testutil.PinRoot(t)}, MetricsAddr: "127.0.0.1:0"}
	for _, s := range specs {
		spec, err := apps.ParseSpec(s)
		if err != nil {
			t.Fatal(err)
		}
		cfg.Apps = append(cfg.Apps, spec)
	}
	var d *Daemon
	a.Do(t, func() (err error) {
		d, err = Start(cfg)
		return err
	})
	return d
}

// TestScrapeDuringClose scrapes /metrics without pause while the daemon
// closes: under the race detector, nothing Close takes down may be read
// by a scrape (the AF_XDP sockets' descriptors were), and every scrape
// either succeeds whole or cannot connect.
func TestScrapeDuringClose(t *testing.T) {
	a, _ := testutil.HostPair(t, 2)
	d := start(t, a, "echo=tcp://:7")
	client := &http.Client{Transport: &http.Transport{DialContext: a.DialContext}, Timeout: 5 * time.Second}
	url := "http://" + d.MetricsAddr.String() + "/metrics"
	ctx, cancel := context.WithCancel(context.Background())
	scraped := make(chan int)
	go func() {
		n := 0
		defer func() { scraped <- n }()
		for ctx.Err() == nil {
			resp, err := client.Get(url)
			if err != nil {
				continue
			}
			body, err := io.ReadAll(resp.Body)
			resp.Body.Close()
			if err != nil || resp.StatusCode != 200 {
				t.Errorf("scrape during Close: %v, %d\n%s", err, resp.StatusCode, body)
			}
			n++
		}
	}()
	time.Sleep(200 * time.Millisecond)
	if err := d.Close(); err != nil {
		t.Errorf("Close: %v", err)
	}
	cancel()
	if n := <-scraped; n == 0 {
		t.Error("no scrape succeeded before Close")
	}
}

// TestStatus reads the typed status of a daemon with apps, and checks
// that the status pages render it.
func TestStatus(t *testing.T) {
	a, b := testutil.HostPair(t, 2)
	d := start(t, a, "echo=tcp://:7", "proxy=tcp://:8000,backend=tcp://127.0.0.1:8080", "http=tcp://:80")
	t.Cleanup(func() { d.Close() })
	b.Exec(t, "ping", "-q", "-c", "2", "-i", "0.01", a.Addr.String()) // some verdicts
	st, err := d.Status()
	if err != nil {
		t.Fatal(err)
	}
	if st.Iface != a.Iface || st.XDP.ProgramID == 0 || st.XDP.Mode == "" || len(st.Verdicts) == 0 {
		t.Errorf("Status(): %+v", st)
	}
	if len(st.Queues) != 2 || st.Queues[1].Queue != 1 || st.Queues[0].Frames.Free == 0 || len(st.Queues[0].KernelDrops) == 0 || len(st.Queues[0].TxFailures) != int(afxdp.NumTxFailures) {
		t.Errorf("Status().Queues: %+v", st.Queues)
	}
	if len(st.Netstack) == 0 || len(st.Listeners) != 3 {
		t.Errorf("Status(): netstack %v, listeners %v; want counters and 3 listeners", st.Netstack, st.Listeners)
	}
	if len(st.Apps) != 3 || st.Apps[1].Backend != "tcp://127.0.0.1:8080" || len(st.Apps[1].Counters) == 0 || st.Apps[0].Counters != nil {
		t.Errorf("Status().Apps: %+v", st.Apps)
	}

	srv := httptest.NewServer(d.StatusHandler())
	defer srv.Close()
	resp, err := srv.Client().Get(srv.URL + "/status.json")
	if err != nil {
		t.Fatal(err)
	}
	var got Status
	err = json.NewDecoder(resp.Body).Decode(&got)
	resp.Body.Close()
	if err != nil || got.Iface != a.Iface || len(got.Queues) != 2 || len(got.Apps) != 3 {
		t.Errorf("GET /status.json: %v, %+v", err, got)
	}
	resp, err = srv.Client().Get(srv.URL + "/status")
	if err != nil {
		t.Fatal(err)
	}
	page, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	for _, want := range []string{"XDP verdicts", "<td class=\"l\">no_match</td>", "AF_XDP queues", "Netstack", "Listeners", "tcp://127.0.0.1:8080", "bytes_out 0"} {
		if !strings.Contains(string(page), want) {
			t.Errorf("GET /status: no %q in\n%s", want, page)
		}
	}
}

// TestRates checks that rates come from the last sample at least
// minSampleGap old.
func TestRates(t *testing.T) {
	v := maps.Verdict{Action: maps.ActionPass, Reason: maps.ReasonNoMatch}
	sample := func(n uint64) map[maps.Verdict]maps.Counter {
		return map[maps.Verdict]maps.Counter{v: {Packets: n, Bytes: n * 100}}
	}
	var r rates
	t0 := time.Now()
	if rs := r.since(sample(100), t0); rs != nil {
		t.Errorf("first sample: rates %v, want none", rs)
	}
	// Too soon to replace the first sample: rates still run from it.
	if rs := r.since(sample(150), t0.Add(minSampleGap/2)); rs[v].PacketsPerSecond != 100 {
		t.Errorf("half a gap later: %v packets/s, want 100", rs[v].PacketsPerSecond)
	}
	if rs := r.since(sample(300), t0.Add(2*minSampleGap)); rs[v].PacketsPerSecond != 100 || rs[v].BitsPerSecond != 80000 {
		t.Errorf("two gaps later: %+v, want 100 packets/s, 80000 bits/s", rs[v])
	}
}

// TestAppInUserstackPorts: an app may not serve a port the userstack
// dials from; Start refuses it before it looks at the interface.
func TestAppInUserstackPorts(t *testing.T) {
	for _, tc := range []struct {
		name  string
		app   string
		ports maps.PortRange
		want  string
	}{
		{"default range", "echo=tcp://:61500", maps.PortRange{}, "app echo=tcp://:61500: port 61500 is in the userstack's own port range 61000-62999"},
		{"lowest port", "echo=udp://:61000", maps.PortRange{}, "port 61000 is in"},
		{"highest port", "echo=tcp://:62999", maps.PortRange{}, "port 62999 is in"},
		{"range of the attachment", "http=tcp://10.0.0.1:5000", maps.PortRange{Min: 4000, Max: 5000}, "port 5000 is in the userstack's own port range 4000-5000"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			spec, err := apps.ParseSpec(tc.app)
			if err != nil {
				t.Fatal(err)
			}
			d, err := Start(Config{Iface: "xs-nosuch0", Attach: loader.Options{UserPorts: tc.ports}, Apps: []apps.Spec{spec}})
			if err == nil {
				d.Close()
			}
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("Start with --app %s: got %v, want an error containing %q", tc.app, err, tc.want)
			}
		})
	}
}

// TestAppsAttachToNamespaces: each app attaches with its namespace and
// secret; a wrong secret stops Start with one line, and the sessions
// view names each app's namespace.
func TestAppsAttachToNamespaces(t *testing.T) {
	a, _ := testutil.HostPair(t, 0)
	run := func(specs ...string) (*Daemon, error) {
		cfg := Config{Iface: a.Iface, Attach: loader.Options{PinRoot: testutil.PinRoot(t)}, Namespaces: []appns.Config{{Name: "blue", Secret: "b"}}}
		for _, s := range specs {
			spec, err := apps.ParseSpec(s)
			if err != nil {
				t.Fatal(err)
			}
			cfg.Apps = append(cfg.Apps, spec)
		}
		var d *Daemon
		var err error
		a.Do(t, func() error {
			d, err = Start(cfg)
			return nil
		})
		return d, err
	}

	_, err := run("echo=tcp://:7,ns=blue,secret=b", "echo=tcp://:8,ns=blue,secret=nope-x")
	want := "start app echo=tcp://:8,ns=blue: attach to namespace blue: wrong secret"
	if err == nil || err.Error() != want {
		t.Fatalf("Start with a wrong secret: %v, want %q", err, want)
	}

	d, err := run("echo=tcp://:7,ns=blue,secret=b", "echo=tcp://:8")
	if err != nil {
		t.Fatal(err)
	}
	closed := false
	t.Cleanup(func() {
		if !closed {
			d.Close()
		}
	})
	attached := func() int {
		n := 0
		for _, ns := range d.Namespaces.List() {
			n += ns.Apps
		}
		return n
	}
	if n := attached(); n != 2 {
		t.Errorf("%d apps attached, want 2", n)
	}
	got, err := d.Sessions(SessionsQuery{Namespace: "blue"})
	if err != nil {
		t.Fatal(err)
	}
	if len(got.Sessions) != 1 || got.Sessions[0].Local.Port() != 7 || got.Sessions[0].App != "echo" {
		t.Errorf("blue's sessions: %+v, want the echo app's listener on port 7", got.Sessions)
	}
	st, err := d.Status()
	if err != nil {
		t.Fatal(err)
	}
	if st.Apps[0].Spec != "echo=tcp://:7,ns=blue" {
		t.Errorf("status names the first app %q", st.Apps[0].Spec)
	}
	closed = true
	if err := d.Close(); err != nil {
		t.Fatal(err)
	}
	if n := attached(); n != 0 {
		t.Errorf("%d apps attached after Close, want none", n)
	}
}

// TestCloseKeepsOthersDescriptors: a daemon without a control socket
// (so without the preload server's namespace handle) closes only what
// it opened. Its zero namespace handle was descriptor 0, which Close
// closed: whatever the process opened next there (a reservation's
// sysctl file) was closed under its owner.
func TestCloseKeepsOthersDescriptors(t *testing.T) {
	a, _ := testutil.HostPair(t, 0)
	var before unix.Stat_t
	if err := unix.Fstat(0, &before); err != nil {
		t.Skipf("descriptor 0 is not open in this test process: %v", err)
	}
	var d *Daemon
	var err error
	a.Do(t, func() error {
		d, err = Start(Config{Iface: a.Iface, Attach: loader.Options{PinRoot: testutil.PinRoot(t)}})
		return err
	})
	if err := d.Close(); err != nil {
		t.Fatal(err)
	}
	var after unix.Stat_t
	if err := unix.Fstat(0, &after); err != nil || after.Ino != before.Ino || after.Dev != before.Dev {
		t.Errorf("descriptor 0 after Close: %+v (%v), want the file it was before", after, err)
	}
}
