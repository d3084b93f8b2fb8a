package programs

import (
	"strings"
	"testing"
)

func TestParseWrk(t *testing.T) {
	const report = `Running 1s test @ http://10.213.250.2/small
  1 threads and 2 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency    70.68us   86.23us   2.75ms   98.11%
    Req/Sec    27.97k     4.40k   36.26k    63.64%
  30461 requests in 1.10s, 6.91MB read
Requests/sec:  27700.76
Transfer/sec:      6.29MB
`
	w, err := parseWrk(report)
	if err != nil || w.Requests != 30461 || w.PerSecond != 27700.76 {
		t.Errorf("parseWrk: got %+v, %v; want 30461 requests at 27700.76/s", w, err)
	}
	for name, bad := range map[string]string{
		"non-2xx":       strings.Replace(report, "Requests/sec", "  Non-2xx or 3xx responses: 46886\nRequests/sec", 1),
		"socket errors": strings.Replace(report, "Requests/sec", "  Socket errors: connect 0, read 3, write 0, timeout 0\nRequests/sec", 1),
		"no rate":       strings.Replace(report, "Requests/sec", "Requests:", 1),
	} {
		if w, err := parseWrk(bad); err == nil {
			t.Errorf("parseWrk with %s: got %+v, want an error", name, w)
		}
	}
}

func TestParseRedisCSV(t *testing.T) {
	const report = `"test","rps","avg_latency_ms","min_latency_ms","p50_latency_ms","p95_latency_ms","p99_latency_ms","max_latency_ms"
"SET","33333.34","0.924","0.208","0.783","1.223","6.247","6.615"
"GET","37735.85","0.788","0.048","0.775","1.207","1.335","1.927"
`
	rps, err := parseRedisCSV(report)
	if err != nil || len(rps) != 2 || rps["SET"] != 33333.34 || rps["GET"] != 37735.85 {
		t.Errorf("parseRedisCSV: got %v, %v", rps, err)
	}
	if rps, err := parseRedisCSV(`"GET","fast"` + "\n"); err == nil {
		t.Errorf("parseRedisCSV of a rate that is no number: got %v, want an error", rps)
	}
}

func TestParseIperf3(t *testing.T) {
	r, err := ParseIperf3([]byte(`{"end": {"sum_received": {"bytes": 1249624, "bits_per_second": 9994073.7, "packets": 863, "lost_packets": 2, "lost_percent": 0.23}}}`))
	if got := r.End.SumReceived; err != nil || got.Bytes != 1249624 || got.Packets != 863 || got.LostPackets != 2 {
		t.Errorf("ParseIperf3: got %+v, %v", got, err)
	}
	if _, err := ParseIperf3([]byte(`{"end": {}, "error": "unable to connect to server: Connection refused"}`)); err == nil || !strings.Contains(err.Error(), "Connection refused") {
		t.Errorf("ParseIperf3 of a failed run: got %v, want its error", err)
	}
	if _, err := ParseIperf3([]byte("iperf3: error")); err == nil {
		t.Error("ParseIperf3 of no JSON: want an error")
	}
}
