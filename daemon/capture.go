package daemon

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	gomaps "maps"
	"net/http"
	"strconv"

	"github.com/xdpstack/xdpstack/daemon/control"
	"github.com/xdpstack/xdpstack/internal/capture"
	"github.com/xdpstack/xdpstack/maps"
)

// SamplingRequest changes how the XDP program samples while it runs.
type SamplingRequest struct {
	// Rate, when given, samples 1 packet in 2^Rate of every verdict from
	// now on; 0 stops. Left out, nothing changes.
	Rate *int `json:"rate,omitempty"`
}

// SamplingReply is the sampling in force.
type SamplingReply struct {
	Rate    uint32 `json:"rate"`
	Snaplen uint32 `json:"snaplen"`
}

// Sampling changes the sample rate as req asks and says what is in
// force. The new rate becomes the running configuration's, which a
// reload then compares its file with.
func (d *Daemon) Sampling(req SamplingRequest) (SamplingReply, error) {
	d.changing.Lock()
	defer d.changing.Unlock()
	if req.Rate != nil {
		rate := *req.Rate
		if err := maps.CheckSampleRate(rate); err != nil {
			return SamplingReply{}, control.Refuse(http.StatusBadRequest, fmt.Errorf("sample rate %d: %w", rate, err))
		}
		if err := d.setSampleRate(uint32(rate)); err != nil {
			return SamplingReply{}, err
		}
		settings := gomaps.Clone(d.cfg.Settings)
		if settings == nil {
			settings = map[string]string{}
		}
		settings["sample-rate"] = strconv.Itoa(rate)
		d.cfg.Settings = settings
		d.cfg.Attach.Sampling.Rate = uint32(rate)
		slog.Info("sample rate changed", "iface", d.Iface.Name, "rate", rate)
	}
	set, err := d.Maps.Sampling.Settings()
	return SamplingReply{Rate: set.Rate, Snaplen: set.Snaplen}, err
}

// setSampleRate writes a new rate, keeping the snap length.
func (d *Daemon) setSampleRate(rate uint32) error {
	set, err := d.Maps.Sampling.Settings()
	if err != nil {
		return err
	}
	set.Rate = rate
	return d.Maps.Sampling.SetSettings(set)
}

// CaptureRequest asks for the frames the userstack receives and sends,
// or the PSP gateway's inner packets, as a stream (capture.ReadStream
// reads it).
type CaptureRequest struct {
	// Point is "userstack" or "psp": the XDP hook is captured through
	// the pins.
	Point string `json:"point"`
	// Snaplen is how many bytes of each frame to send.
	Snaplen int `json:"snaplen"`
	// Filter picks the frames (capture.ParseFilter).
	Filter string `json:"filter,omitempty"`
}

// errNoUserstack refuses a capture of the userstack where none runs.
var errNoUserstack = errors.New("no userstack runs here (attach with --app, or run a program with xdpstack run)")

// captureStream checks a capture request and taps the userstack or the
// PSP gateway for it: one capture of each at a time. The tap comes off
// when the stream ends.
func (d *Daemon) captureStream(req CaptureRequest) (control.Streamer, error) {
	bad := func(err error) error { return control.Refuse(http.StatusBadRequest, err) }
	point, err := capture.ParsePoint(req.Point)
	if err != nil {
		return nil, bad(err)
	} else if point == capture.PointXDP {
		return nil, bad(errors.New("the xdp point is captured through the pins, not the daemon"))
	}
	if err := maps.CheckSnaplen(req.Snaplen); err != nil {
		return nil, bad(fmt.Errorf("snaplen %d: %w", req.Snaplen, err))
	}
	filter, err := capture.ParseFilter(req.Filter)
	if err == nil {
		err = filter.CheckPoint(point)
	}
	if err != nil {
		return nil, bad(err)
	}
	var tap *capture.Tap
	var stop func()
	what := "the userstack"
	if point == capture.PointPSP {
		if d.psp == nil {
			return nil, control.Refuse(http.StatusConflict, errNoPSP)
		}
		what = "the psp gateway"
		t := capture.NewPSPTap(req.Snaplen, filter)
		if !d.psp.data.StartTap(t) {
			return nil, control.Refuse(http.StatusConflict, fmt.Errorf("another capture of the psp gateway on %s runs (one at a time)", d.Iface.Name))
		}
		tap, stop = t.Tap, func() { d.psp.data.StopTap(t) }
	} else {
		stack := d.stack()
		if stack == nil {
			return nil, control.Refuse(http.StatusConflict, errNoUserstack)
		}
		tap = capture.NewTap(req.Snaplen, filter)
		if !stack.StartTap(tap) {
			return nil, control.Refuse(http.StatusConflict, fmt.Errorf("another capture of the userstack on %s runs (one at a time)", d.Iface.Name))
		}
		stop = func() { stack.StopTap(tap) }
	}
	slog.Info("capture of "+what+" started", "iface", d.Iface.Name, "filter", filter.String())
	return func(ctx context.Context, w io.Writer, flush func()) error {
		defer slog.Info("capture of "+what+" ended", "iface", d.Iface.Name)
		defer stop()
		return tap.Stream(ctx, w, flush)
	}, nil
}
