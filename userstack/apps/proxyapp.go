package apps

import (
	"net"

	"github.com/xdpstack/xdpstack/userstack/apps/proxy"
	"github.com/xdpstack/xdpstack/userstack/transport"
)

// ProxyApp is the proxy app; its Stats are the proxy's counters.
type ProxyApp struct {
	*proxy.Proxy
	addr net.Addr
	done chan error
}

func startProxy(n transport.Network, spec Spec) (App, error) {
	ln, err := transport.Listen(n, spec.URI, spec.TLS)
	if err != nil {
		return nil, err
	}
	a := &ProxyApp{Proxy: proxy.New(spec.Backend), addr: ln.Addr(), done: make(chan error, 1)}
	go func() { a.done <- a.Serve(ln) }()
	return a, nil
}

func (a *ProxyApp) Addr() net.Addr { return a.addr }

func (a *ProxyApp) Close() error {
	err := a.Proxy.Close()
	if serveErr := <-a.done; serveErr != nil {
		return serveErr
	}
	return err
}
