package apps

import (
	"cmp"
	"context"
	"net"
	"time"

	"github.com/xdpstack/xdpstack/userstack/apps/httpapp"
)

// httpApp is the HTTP app: status page, JSON and static files.
type httpApp struct{ srv *httpapp.Server }

func startHTTP(env Env, spec Spec) (App, error) {
	h, err := httpapp.New(env.Status, cmp.Or(spec.Opts["root"], env.Root))
	if err != nil {
		return nil, err
	}
	srv, err := httpapp.Listen(env.Network, spec.URI, spec.TLS, h)
	if err != nil {
		return nil, err
	}
	return httpApp{srv}, nil
}

func (a httpApp) Addr() net.Addr { return a.srv.Addr() }

func (a httpApp) Close() error {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	return a.srv.Close(ctx)
}
