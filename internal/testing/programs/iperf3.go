package programs

import (
	"encoding/json"
	"fmt"
)

// Iperf3 is what `iperf3 -J` reports, as far as the tests read it.
type Iperf3 struct {
	Error string `json:"error"`
	End   struct {
		// What the receiver got; for UDP, how many datagrams it counted
		// (the highest sequence number seen) and how many of them it
		// never got.
		SumReceived struct {
			Bytes         int64   `json:"bytes"`
			BitsPerSecond float64 `json:"bits_per_second"`
			Packets       int64   `json:"packets"`
			LostPackets   int64   `json:"lost_packets"`
			LostPercent   float64 `json:"lost_percent"`
		} `json:"sum_received"`
	} `json:"end"`
}

// ParseIperf3 reads iperf3's JSON output; a run that reports an error
// is an error.
func ParseIperf3(out []byte) (Iperf3, error) {
	var r Iperf3
	if err := json.Unmarshal(out, &r); err != nil {
		return r, fmt.Errorf("read iperf3 output: %w: %.300s", err, out)
	}
	if r.Error != "" {
		return r, fmt.Errorf("iperf3: %s", r.Error)
	}
	return r, nil
}
