package daemon

import (
	"context"
	"errors"
	"net/http"

	"github.com/xdpstack/xdpstack/daemon/control"
)

// The daemon's control endpoints (see package control for how to add
// one).
var (
	StatusEndpoint = control.Endpoint[control.None, Status]{Method: http.MethodGet, Name: "status"}
	ReloadEndpoint = control.Endpoint[control.None, Reloaded]{Method: http.MethodPost, Name: "reload"}
	// SessionsEndpoint is a POST because its query is a JSON body.
	SessionsEndpoint = control.Endpoint[SessionsQuery, SessionsReply]{Method: http.MethodPost, Name: "sessions"}
	SamplingEndpoint = control.Endpoint[SamplingRequest, SamplingReply]{Method: http.MethodPost, Name: "sampling"}
	// CaptureEndpoint streams the userstack's frames (capture.Tap).
	CaptureEndpoint = control.StreamEndpoint[CaptureRequest]{Name: "capture"}
)

// Reloaded says what a reload applied.
type Reloaded struct {
	// Applied are the configuration keys that changed and were applied;
	// none when the configuration is as it was.
	Applied []string `json:"applied"`
}

// serveControl registers the endpoints and starts answering.
func (d *Daemon) serveControl() {
	control.Register(d.control, StatusEndpoint, func(context.Context, control.None) (Status, error) {
		return d.Status()
	})
	control.Register(d.control, ReloadEndpoint, func(context.Context, control.None) (Reloaded, error) {
		applied, err := d.Reread()
		if err != nil {
			code := http.StatusConflict
			if errors.Is(err, errBadConfig) {
				code = http.StatusUnprocessableEntity
			}
			return Reloaded{}, control.Refuse(code, err)
		}
		return Reloaded{Applied: applied}, nil
	})
	control.Register(d.control, SessionsEndpoint, func(_ context.Context, q SessionsQuery) (SessionsReply, error) {
		reply, err := d.Sessions(q)
		if err != nil {
			return reply, control.Refuse(http.StatusBadRequest, err)
		}
		return reply, nil
	})
	control.Register(d.control, SamplingEndpoint, func(_ context.Context, req SamplingRequest) (SamplingReply, error) {
		return d.Sampling(req)
	})
	control.RegisterStream(d.control, CaptureEndpoint, func(_ context.Context, req CaptureRequest) (control.Streamer, error) {
		return d.captureStream(req)
	})
	d.control.Serve()
}

func closeControl(s *control.Server) error {
	if s == nil {
		return nil
	}
	return s.Close()
}
