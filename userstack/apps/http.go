package apps

import (
	"cmp"
	"context"
	"errors"
	"net"
	"time"

	"github.com/xdpstack/xdpstack/userstack/apps/httpapp"
)

// httpApp is the HTTP app: status page, JSON and static files.
type httpApp struct {
	h   *httpapp.Handler
	srv *httpapp.Server
}

func startHTTP(env Env, spec Spec) (App, error) {
	h, err := httpapp.New(httpapp.Options{Status: env.Status, Access: spec.Access, Local: env.Local, Root: cmp.Or(spec.Opts["root"], env.Root)})
	if err != nil {
		return nil, err
	}
	srv, err := httpapp.Listen(env.Network, spec.URI, spec.TLS, h)
	if err != nil {
		return nil, errors.Join(err, h.Close())
	}
	return httpApp{h, srv}, nil
}

func (a httpApp) Addr() net.Addr { return a.srv.Addr() }

func (a httpApp) Counters() map[string]uint64 { return nil }

func (a httpApp) Close() error {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	return errors.Join(a.srv.Close(ctx), a.h.Close())
}
