package pingpong

import (
	"slices"
	"sort"

	"github.com/xdpstack/xdpstack/internal/stagetime"
)

// Trip is one round trip as the client saw it: CLOCK_MONOTONIC before
// its write and after its read returned.
type Trip struct{ Write, Read int64 }

// userPath is the order a request and its answer pass the userstack's
// stages; kernelPath the one stage the kernel echo marks itself.
var (
	userPath = []stagetime.Stage{stagetime.RxWake, stagetime.RxDelivered, stagetime.AppRead, stagetime.TxWrite, stagetime.TxQueued, stagetime.KickStart, stagetime.KickDone}
	// what says where the time before each stage of userPath goes, and
	// (the last) after it.
	userWhat = []string{
		"veth, XDP, AF_XDP ring, wake of the receive loop",
		"copy out of the UMEM, parse, GRO, netstack dispatch",
		"hand-off to the TCP processor, wake of the application",
		"the application's write through the netstack's TCP",
		"link endpoint, TX ring",
		"hand-off to the kick (none when inline)",
		"the sendto (on a veth it runs the peer's receive too)",
		"wake of the client",
	}
	kernelPath = []stagetime.Stage{stagetime.AppRead}
)

// missing marks a point of a round trip no mark was found for; a
// monotonic clock reads 0 only at boot.
const missing = 0

// place finds, for each trip, when it passed each stage of path: the
// first mark of the stage inside the trip and not before the stage
// placed before it, so that a mark of other traffic (a pure ACK written
// before the answer) is not taken for the message's. A trip's points are
// its write, the stages of path, and its read; missing where no mark
// fits.
func place(trips []Trip, marks *stagetime.Marks, path []stagetime.Stage) [][]int64 {
	points := make([][]int64, len(trips))
	for i, trip := range trips {
		p := make([]int64, len(path)+2)
		p[0], p[len(p)-1] = trip.Write, trip.Read
		after := trip.Write
		for k, stage := range path {
			times := marks.Times[stage]
			j := sort.Search(len(times), func(j int) bool { return times[j] >= after })
			if j < len(times) && times[j] <= trip.Read {
				p[k+1], after = times[j], times[j]
			}
		}
		points[i] = p
	}
	return points
}

// segments are, for each pair of consecutive points of trips placed
// with place, the median time between them in µs over the trips where
// both were found, and in how many trips that was.
func segments(points [][]int64) (median []float64, found []int) {
	if len(points) == 0 {
		return nil, nil
	}
	n := len(points[0]) - 1
	median, found = make([]float64, n), make([]int, n)
	durations := make([]float64, 0, len(points))
	for k := range n {
		durations = durations[:0]
		for _, p := range points {
			if p[k] != missing && p[k+1] != missing {
				durations = append(durations, float64(p[k+1]-p[k])/1e3)
			}
		}
		found[k] = len(durations)
		if len(durations) > 0 {
			median[k] = quantile(durations, 0.5)
		}
	}
	return median, found
}

// quantile is the q-quantile of v, which it sorts.
func quantile(v []float64, q float64) float64 {
	slices.Sort(v)
	return v[int(float64(len(v))*q)]
}
