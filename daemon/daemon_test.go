package daemon

import (
	"context"
	"io"
	"net/http"
	"testing"
	"time"

	"github.com/xdpstack/xdpstack/internal/testing/testutil"
	"github.com/xdpstack/xdpstack/loader"
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
