package pingpong

import (
	"slices"
	"testing"

	"github.com/xdpstack/xdpstack/internal/stagetime"
)

func TestPlace(t *testing.T) {
	trips := []Trip{{Write: 100, Read: 200}, {Write: 300, Read: 400}, {Write: 500, Read: 600}}
	path := []stagetime.Stage{stagetime.RxWake, stagetime.AppRead, stagetime.TxWrite}
	var marks stagetime.Marks
	// 50: before every trip; 250: between trips; 350 and 360: the
	// first one counts; nothing for the third trip.
	marks.Times[stagetime.RxWake] = []int64{50, 110, 250, 310, 320}
	// The second trip's AppRead is missing; its TxWrite follows RxWake.
	marks.Times[stagetime.AppRead] = []int64{120, 700}
	// 105 precedes the trip's AppRead (a pure ACK, say): skipped for 130.
	marks.Times[stagetime.TxWrite] = []int64{105, 130, 315, 330}
	got := place(trips, &marks, path)
	want := [][]int64{
		{100, 110, 120, 130, 200},
		{300, 310, missing, 315, 400},
		{500, missing, missing, missing, 600},
	}
	for i := range want {
		if !slices.Equal(got[i], want[i]) {
			t.Errorf("place: trip %d: got %v, want %v", i, got[i], want[i])
		}
	}
}

func TestPlaceIgnoresOtherStages(t *testing.T) {
	var marks stagetime.Marks
	marks.Times[stagetime.KickStart] = []int64{150}
	got := place([]Trip{{Write: 100, Read: 200}}, &marks, []stagetime.Stage{stagetime.AppRead})
	if want := []int64{100, missing, 200}; !slices.Equal(got[0], want) {
		t.Errorf("place: got %v, want %v", got[0], want)
	}
}

func TestSegments(t *testing.T) {
	points := [][]int64{
		{1000, 2000, 5000},
		{1000, missing, 4000},
		{1000, 4000, 7000},
	}
	median, found := segments(points)
	// Segment 0 over trips 0 and 2: 1 and 3 µs; the upper median is 3.
	if want := []float64{3, 3}; !slices.Equal(median, want) {
		t.Errorf("segments: medians %v, want %v", median, want)
	}
	if want := []int{2, 2}; !slices.Equal(found, want) {
		t.Errorf("segments: found %v, want %v", found, want)
	}
	if m, f := segments(nil); m != nil || f != nil {
		t.Errorf("segments(nil) = %v, %v; want nothing", m, f)
	}
}
