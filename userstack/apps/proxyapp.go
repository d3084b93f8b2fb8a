package apps

import (
	"net"

	"github.com/xdpstack/xdpstack/userstack/apps/proxy"
	"github.com/xdpstack/xdpstack/userstack/transport"
)

// proxyApp is the proxy app.
type proxyApp struct {
	*proxy.Proxy
	addr net.Addr
	done chan error
}

func startProxy(n transport.Network, spec Spec) (App, error) {
	ln, err := transport.Listen(n, spec.URI, spec.TLS)
	if err != nil {
		return nil, err
	}
	a := &proxyApp{Proxy: proxy.New(spec.Backend), addr: ln.Addr(), done: make(chan error, 1)}
	go func() { a.done <- a.Serve(ln) }()
	return a, nil
}

func (a *proxyApp) Addr() net.Addr { return a.addr }

func (a *proxyApp) Counters() map[string]uint64 {
	st := a.Stats()
	return map[string]uint64{
		"accepted": st.Accepted, "active": uint64(st.Active), "backend_errors": st.BackendErrors,
		"bytes_in": st.BytesIn, "bytes_out": st.BytesOut,
	}
}

func (a *proxyApp) Close() error {
	err := a.Proxy.Close()
	if serveErr := <-a.done; serveErr != nil {
		return serveErr
	}
	return err
}
