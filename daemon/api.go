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

	NamespacesEndpoint   = control.Endpoint[control.None, Namespaces]{Method: http.MethodGet, Name: "namespaces"}
	NamespaceAddEndpoint = control.Endpoint[NamespaceAdd, Namespace]{Method: http.MethodPost, Name: "namespaces/add"}
	NamespaceDelEndpoint = control.Endpoint[NamespaceDel, control.None]{Method: http.MethodPost, Name: "namespaces/del"}
	// LocalRulesEndpoint is a POST because its query is a JSON body.
	LocalRulesEndpoint    = control.Endpoint[LocalRulesQuery, LocalRules]{Method: http.MethodPost, Name: "local-rules"}
	LocalRuleAddEndpoint  = control.Endpoint[LocalRuleAdd, LocalRules]{Method: http.MethodPost, Name: "local-rules/add"}
	LocalRulesDelEndpoint = control.Endpoint[LocalRuleDel, LocalRules]{Method: http.MethodPost, Name: "local-rules/del"}
	SamplingEndpoint      = control.Endpoint[SamplingRequest, SamplingReply]{Method: http.MethodPost, Name: "sampling"}
	// CaptureEndpoint streams the userstack's frames (capture.Tap) or
	// the PSP gateway's inner packets (capture.PSPTap).
	CaptureEndpoint = control.StreamEndpoint[CaptureRequest]{Name: "capture"}

	PSPTunnelsEndpoint = control.Endpoint[control.None, PSPTunnels]{Method: http.MethodGet, Name: "psp/tunnels"}
	PSPPeersEndpoint   = control.Endpoint[control.None, PSPPeers]{Method: http.MethodGet, Name: "psp/peers"}
	PSPRotateEndpoint  = control.Endpoint[control.None, PSPRotated]{Method: http.MethodPost, Name: "psp/rotate"}
	PSPKeysEndpoint    = control.Endpoint[control.None, PSPKeys]{Method: http.MethodGet, Name: "psp/keys"}
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
		return badRequest(d.Sessions(q))
	})
	control.Register(d.control, NamespacesEndpoint, func(context.Context, control.None) (Namespaces, error) {
		return d.ListNamespaces(), nil
	})
	control.Register(d.control, NamespaceAddEndpoint, func(_ context.Context, req NamespaceAdd) (Namespace, error) {
		return badRequest(d.AddNamespace(req))
	})
	control.Register(d.control, NamespaceDelEndpoint, func(_ context.Context, req NamespaceDel) (control.None, error) {
		return badRequest(control.None{}, d.DeleteNamespace(req.Name))
	})
	control.Register(d.control, LocalRulesEndpoint, func(_ context.Context, q LocalRulesQuery) (LocalRules, error) {
		return badRequest(d.LocalRules(q))
	})
	control.Register(d.control, LocalRuleAddEndpoint, func(_ context.Context, req LocalRuleAdd) (LocalRules, error) {
		return badRequest(d.AddLocalRule(req))
	})
	control.Register(d.control, LocalRulesDelEndpoint, func(_ context.Context, req LocalRuleDel) (LocalRules, error) {
		return badRequest(d.DeleteLocalRules(req))
	})
	control.Register(d.control, SamplingEndpoint, func(_ context.Context, req SamplingRequest) (SamplingReply, error) {
		return d.Sampling(req)
	})
	control.RegisterStream(d.control, CaptureEndpoint, func(_ context.Context, req CaptureRequest) (control.Streamer, error) {
		return d.captureStream(req)
	})
	control.Register(d.control, PSPTunnelsEndpoint, func(context.Context, control.None) (PSPTunnels, error) {
		return conflict(d.PSPTunnels())
	})
	control.Register(d.control, PSPPeersEndpoint, func(context.Context, control.None) (PSPPeers, error) {
		return conflict(d.PSPPeers())
	})
	control.Register(d.control, PSPRotateEndpoint, func(ctx context.Context, _ control.None) (PSPRotated, error) {
		return conflict(d.RotatePSP(ctx))
	})
	control.Register(d.control, PSPKeysEndpoint, func(context.Context, control.None) (PSPKeys, error) {
		return conflict(d.PSPKeys())
	})
	d.control.Serve()
}

// conflict makes an error of an endpoint's function a 409: what was
// asked for does not fit how the daemon runs (no PSP gateway, keys kept
// secret, a rotation that failed).
func conflict[Resp any](resp Resp, err error) (Resp, error) {
	if err != nil {
		return resp, control.Refuse(http.StatusConflict, err)
	}
	return resp, nil
}

// badRequest makes an error of an endpoint's function the request's: a
// bad query, an unknown name, a rule that clashes with another. It is a
// 400, and it changed nothing.
func badRequest[Resp any](resp Resp, err error) (Resp, error) {
	if err != nil {
		return resp, control.Refuse(http.StatusBadRequest, err)
	}
	return resp, nil
}

func closeControl(s *control.Server) error {
	if s == nil {
		return nil
	}
	return s.Close()
}
