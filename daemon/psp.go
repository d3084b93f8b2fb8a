package daemon

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"slices"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/xdpstack/xdpstack/loader"
	"github.com/xdpstack/xdpstack/maps"
	"github.com/xdpstack/xdpstack/userstack"
	"github.com/xdpstack/xdpstack/userstack/psp"
	"github.com/xdpstack/xdpstack/userstack/psp/gateway"
	"github.com/xdpstack/xdpstack/userstack/psp/keyx"
	"github.com/xdpstack/xdpstack/userstack/psp/pspconfig"
	"github.com/xdpstack/xdpstack/userstack/psp/tunnel"
)

// PSPConfig runs the PSP gateway: its peers and sessions (DOCA's JSON
// file or the psp: section) and the options of attach's PSP flags.
type PSPConfig struct {
	Config  *pspconfig.Config
	Options pspconfig.Options
	// TLS is the key exchange's identity; nil loads it from the
	// Options' files at start (none with Options.Plaintext).
	TLS *keyx.TLS
}

// xdpCheck is the XDP program's part: drop before any decryption what
// the ACL refuses. Every version is taken there, as a peer may ask for
// any; each SPI's own is checked against its grant.
func (c *PSPConfig) xdpCheck() maps.PSPSettings {
	return maps.PSPSettings{Enabled: true, Versions: []psp.Version{psp.V0, psp.V1, psp.V2, psp.V3}, ACLDisabled: c.Options.DisableIngressACL}
}

// pspFrames are the UMEM frames of each queue when the PSP gateway runs
// (64 MiB): with the default 4096, the receiver's fill ring ran dry
// under a TCP transfer through the tunnel whenever the loaded machine
// kept the receive loop waiting, and the packets it dropped cost TCP
// more than the memory.
const pspFrames = 16384

// tune gives the userstack the frames the gateway needs, unless o
// sets them.
func (c *PSPConfig) tune(o *userstack.Options) {
	o.AFXDP.Frames = cmp.Or(o.AFXDP.Frames, pspFrames)
}

// pspGateway is a running PSP gateway: the device that holds the master
// keys, the tunnels and grants its parts share, the key exchange and the
// data path.
type pspGateway struct {
	iface     string
	options   pspconfig.Options
	device    *psp.Device
	tunnels   *tunnel.Table
	acl       *tunnel.ACL
	keyx      *keyx.Gateway
	data      *gateway.Gateway
	grpc      net.Listener
	served    chan struct{} // closed when the gRPC server stops
	exchanges prometheus.Histogram
}

// startPSP starts the gateway on the running userstack: the shared
// tables, the key exchange, the data path with its TUN device, and the
// gRPC listener; then the static tunnels and the key rotation.
func (d *Daemon) startPSP(c *PSPConfig) (err error) {
	o := c.Options
	secure, err := secureAddr(d.Iface, o.Outer)
	if err != nil {
		return err
	}
	id := c.TLS
	if !o.Plaintext {
		if id == nil {
			if id, err = keyx.LoadTLS(o.Cert, o.Key, o.CA); err != nil {
				return err
			}
		}
	} else {
		slog.Warn("psp key exchange in plaintext: anyone on the path sees the tunnels' keys", "iface", d.Iface.Name)
	}
	device, err := psp.NewDeviceRandom()
	if err != nil {
		return err
	}
	p := &pspGateway{
		iface: d.Iface.Name, options: o, device: device, tunnels: &tunnel.Table{}, served: make(chan struct{}),
		exchanges: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:        "xdpstack_psp_key_exchange_seconds",
			Help:        "Time the key exchanges this host started took, failed ones included.",
			ConstLabels: prometheus.Labels{"iface": d.Iface.Name},
			Buckets:     prometheus.ExponentialBuckets(0.0005, 2, 14),
		}),
	}
	p.acl = tunnel.NewACL(d.Maps.PSP.SPIs)
	defer func() {
		if err != nil {
			err = errors.Join(err, p.close())
		}
	}()
	if p.keyx, err = keyx.New(keyx.Settings{
		Config: c.Config, Options: o, MAC: d.Iface.MAC, Addr: secure, TLS: id,
		Device: device, Table: p.tunnels, ACL: p.acl,
		ObserveExchange: func(_ string, took time.Duration, _ error) { p.exchanges.Observe(took.Seconds()) },
	}); err != nil {
		return err
	}
	var local, remote []netip.Prefix
	for _, a := range c.Config.LocalVIPs() {
		local = append(local, netip.PrefixFrom(a, a.BitLen()))
	}
	for _, peer := range c.Config.Peers {
		for _, s := range peer.Sessions {
			for _, r := range s.RemoteVIPs {
				if !slices.Contains(remote, r) {
					remote = append(remote, r)
				}
			}
		}
	}
	if p.data, err = gateway.New(d.Stack, gateway.Options{
		TUN: o.TUN, Local: local, Remote: remote,
		Device: device, Tunnels: p.tunnels, ACL: p.acl, Requester: p.keyx,
		Secure: secure, Cookie: o.Cookie, DisableIngressACL: o.DisableIngressACL, SampleRate: o.SampleRate,
	}); err != nil {
		return err
	}
	if p.grpc, err = net.Listen("tcp", c.Config.LocalGRPC); err != nil {
		return fmt.Errorf("psp key exchange: listen on %s: %w (local-grpc-address)", c.Config.LocalGRPC, err)
	}
	go func() {
		defer close(p.served)
		if err := p.keyx.Serve(p.grpc); err != nil {
			slog.Warn("psp key exchange stopped serving", "iface", p.iface, "err", err)
		}
	}()
	if o.StaticTunnels {
		p.keyx.StartStatic()
	}
	p.keyx.StartRotation()
	p.keyx.WatchStale(p.unopened(d.Maps.Stats), staleCheck)
	d.psp = p
	slog.Info("psp gateway serving", "iface", p.iface, "grpc", p.grpc.Addr(), "tun", o.TUN, "secure", secure,
		"inner", o.Inner, "outer", o.Outer, "version", o.Version, "tls", !o.Plaintext)
	return nil
}

// staleCheck is how often the gateway looks for packets it could not
// open: a peer's tunnel from before a restart comes back within it and
// an exchange.
const staleCheck = 250 * time.Millisecond

// unopened counts the packets this host could not open: under an SPI
// the XDP program does not know, or refused by the device (no key, or
// failing authentication, as when the ACL is off).
func (p *pspGateway) unopened(stats maps.Stats) func() uint64 {
	unknown := maps.Verdict{Action: maps.ActionDrop, Reason: maps.ReasonPSPSPI}
	return func() uint64 {
		c, err := stats.Lookup(unknown)
		if err != nil {
			slog.Debug("psp: read the unknown spi drops", "iface", p.iface, "err", err)
		}
		s := p.device.Stats()
		return c.Packets + s.RxAuthFail + s.RxBad
	}
}

// secureAddr is the interface's address that peers send sealed frames
// to: its first global unicast one of the outer IP type.
func secureAddr(iface loader.Interface, outer pspconfig.IPType) (netip.Addr, error) {
	for _, p := range iface.Addrs {
		if a := p.Addr(); a.IsGlobalUnicast() && a.Is4() == (outer == pspconfig.IPv4) {
			return a, nil
		}
	}
	return netip.Addr{}, fmt.Errorf("psp gateway: %s has no %s address for the outer header (see --%s, ip address show %s)",
		iface.Name, outer, pspconfig.FlagOuter, iface.Name)
}

// close stops the key exchange first (no new tunnel while the rest
// goes), then the data path, which deletes the TUN device with its
// addresses and routes.
func (p *pspGateway) close() error {
	var errs []error
	if p.keyx != nil {
		errs = append(errs, p.keyx.Close())
	}
	if p.grpc != nil {
		<-p.served
	}
	if p.data != nil {
		errs = append(errs, p.data.Close())
	}
	return errors.Join(errs...)
}

// PSPTunnel is one tunnel as `xdpstack psp tunnels` shows it: this
// host's way to a remote virtual address and, by the SPIs granted for
// it, the way back.
type PSPTunnel struct {
	Peer    string    `json:"peer"`
	Local   string    `json:"local"`
	Remote  string    `json:"remote"`
	Version int       `json:"version"`
	TxSPI   uint32    `json:"tx_spi"`
	RxSPIs  []uint32  `json:"rx_spis"`
	Created time.Time `json:"created"`
	// Packets and bytes sent under TxSPI and received under RxSPIs.
	TxPackets uint64 `json:"tx_packets"`
	TxBytes   uint64 `json:"tx_bytes"`
	RxPackets uint64 `json:"rx_packets"`
	RxBytes   uint64 `json:"rx_bytes"`
}

// PSPTunnels is the reply of the psp/tunnels endpoint.
type PSPTunnels struct {
	Tunnels []PSPTunnel `json:"tunnels"`
}

// PSPPeer is a peer gateway as `xdpstack psp peers` shows it.
type PSPPeer struct {
	GRPC string `json:"grpc"`
	// Subject is its certificate's, from the last exchange either way.
	Subject      string    `json:"subject,omitempty"`
	LastExchange time.Time `json:"last_exchange"`
	// Successes and Failures count the exchanges this host started.
	Successes uint64 `json:"successes"`
	Failures  uint64 `json:"failures"`
	LastError string `json:"last_error,omitempty"`
}

// PSPPeers is the reply of the psp/peers endpoint.
type PSPPeers struct {
	Peers []PSPPeer `json:"peers"`
}

// PSPRotated is the reply of the psp/rotate endpoint.
type PSPRotated struct {
	// Rotations counts the master key rotations since the start.
	Rotations uint64 `json:"rotations"`
}

// PSPKeys is the reply of the psp/keys endpoint.
type PSPKeys struct {
	// MasterKeys are "HEX0,HEX1", as `psp decrypt --master-keys` takes.
	MasterKeys string `json:"master_keys"`
}

// errNoPSP refuses the psp endpoints of a daemon without the gateway.
var errNoPSP = errors.New("no psp gateway runs on this interface (attach with --psp-config)")

// PSPTunnels lists the tunnels, oldest first.
func (d *Daemon) PSPTunnels() (PSPTunnels, error) {
	p := d.psp
	if p == nil {
		return PSPTunnels{}, errNoPSP
	}
	rx := map[uint32]psp.Stats{}
	p.device.EachRxSA(func(sa *psp.SA) { rx[sa.SPI()] = sa.Stats() })
	var out PSPTunnels
	p.tunnels.Each(func(t *tunnel.Tunnel) {
		tx := t.SA.Stats()
		row := PSPTunnel{
			Peer: t.Peer, Local: t.Local.String(), Remote: t.Remote.String(), Version: int(t.SA.Version()),
			TxSPI: t.SA.SPI(), Created: t.Created, TxPackets: tx.TxPackets, TxBytes: tx.TxBytes,
		}
		p.acl.Each(func(g tunnel.Grant) {
			if g.Src == t.Remote {
				row.RxSPIs = append(row.RxSPIs, g.SPI)
				row.RxPackets += rx[g.SPI].RxPackets
				row.RxBytes += rx[g.SPI].RxBytes
			}
		})
		slices.Sort(row.RxSPIs)
		out.Tunnels = append(out.Tunnels, row)
	})
	slices.SortFunc(out.Tunnels, func(a, b PSPTunnel) int { return a.Created.Compare(b.Created) })
	return out, nil
}

// PSPPeers lists the peers as configured, with their exchanges.
func (d *Daemon) PSPPeers() (PSPPeers, error) {
	if d.psp == nil {
		return PSPPeers{}, errNoPSP
	}
	var out PSPPeers
	for _, p := range d.psp.keyx.Peers() {
		out.Peers = append(out.Peers, PSPPeer{GRPC: p.GRPC, Subject: p.Subject, LastExchange: p.LastExchange,
			Successes: p.Successes, Failures: p.Failures, LastError: p.LastError})
	}
	return out, nil
}

// RotatePSP rotates the master keys and re-keys the tunnels now.
func (d *Daemon) RotatePSP(ctx context.Context) (PSPRotated, error) {
	if d.psp == nil {
		return PSPRotated{}, errNoPSP
	}
	err := d.psp.keyx.Rotate(ctx)
	return PSPRotated{Rotations: d.psp.device.Rotations()}, err
}

// PSPKeys tells the master keys, if the daemon was started with
// --debug-keys.
func (d *Daemon) PSPKeys() (PSPKeys, error) {
	switch {
	case d.psp == nil:
		return PSPKeys{}, errNoPSP
	case !d.psp.options.DebugKeys:
		return PSPKeys{}, fmt.Errorf("psp keys: the daemon keeps its keys to itself (attach with --%s to see them)", pspconfig.FlagDebugKeys)
	}
	return PSPKeys{MasterKeys: d.psp.device.MasterKeys()}, nil
}

// pspCollector exports the gateway's counters.
type pspCollector struct{ p *pspGateway }

var (
	pspTunnelsDesc   = prometheus.NewDesc("xdpstack_psp_tunnels", "Tunnels this host sends through.", []string{"iface"}, nil)
	pspPacketsDesc   = prometheus.NewDesc("xdpstack_psp_packets_total", "PSP packets sealed (tx) and opened (rx: authenticated, whether the ACL then lets them in or not).", []string{"iface", "direction"}, nil)
	pspBytesDesc     = prometheus.NewDesc("xdpstack_psp_bytes_total", "PSP payload bytes sealed (tx) and opened (rx: authenticated, whether the ACL then lets them in or not).", []string{"iface", "direction"}, nil)
	pspErrorsDesc    = prometheus.NewDesc("xdpstack_psp_errors_total", "PSP packets refused or dropped, by kind (Linux's PSP statistics names where they exist).", []string{"iface", "kind"}, nil)
	pspHeldDesc      = prometheus.NewDesc("xdpstack_psp_held_packets_total", "Packets held while their tunnel was made.", []string{"iface"}, nil)
	pspSampledDesc   = prometheus.NewDesc("xdpstack_psp_sampled_packets_total", "Packets sent with the S bit (--psp-sample-rate).", []string{"iface"}, nil)
	pspRequestsDesc  = prometheus.NewDesc("xdpstack_psp_tunnel_requests_total", "Tunnels the data path asked the key exchange for.", []string{"iface"}, nil)
	pspRotationsDesc = prometheus.NewDesc("xdpstack_psp_key_rotations_total", "Master key rotations.", []string{"iface"}, nil)
	pspStaleDesc     = prometheus.NewDesc("xdpstack_psp_stale_events_total", "Times packets under SPIs this host could no longer open (a restart's) made it ask its peers for tunnels again.", []string{"iface"}, nil)
	pspExchangesDesc = prometheus.NewDesc("xdpstack_psp_key_exchanges_total", "Key exchanges this host started, by peer and result.", []string{"iface", "peer", "result"}, nil)
)

func (c pspCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{pspTunnelsDesc, pspPacketsDesc, pspBytesDesc, pspErrorsDesc, pspHeldDesc, pspSampledDesc, pspRequestsDesc, pspRotationsDesc, pspStaleDesc, pspExchangesDesc} {
		ch <- d
	}
	c.p.exchanges.Describe(ch)
}

func (c pspCollector) Collect(ch chan<- prometheus.Metric) {
	p := c.p
	counter := func(d *prometheus.Desc, v uint64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, float64(v), append([]string{p.iface}, labels...)...)
	}
	ch <- prometheus.MustNewConstMetric(pspTunnelsDesc, prometheus.GaugeValue, float64(p.tunnels.Len()), p.iface)
	s := p.data.Stats()
	counter(pspPacketsDesc, s.PSP.TxPackets, "tx")
	counter(pspPacketsDesc, s.PSP.RxPackets, "rx")
	counter(pspBytesDesc, s.PSP.TxBytes, "tx")
	counter(pspBytesDesc, s.PSP.RxBytes, "rx")
	counter(pspHeldDesc, s.Held)
	counter(pspSampledDesc, s.Sampled)
	counter(pspRequestsDesc, s.Requests)
	s.Each(func(name string, v uint64) {
		switch name {
		case "rx-packets", "rx-bytes", "tx-packets", "tx-bytes", "tx-held", "tx-sampled", "tx-requests":
		default:
			counter(pspErrorsDesc, v, name)
		}
	})
	counter(pspRotationsDesc, p.device.Rotations())
	counter(pspStaleDesc, p.keyx.StaleEvents())
	for _, peer := range p.keyx.Peers() {
		counter(pspExchangesDesc, peer.Successes, peer.GRPC, "ok")
		counter(pspExchangesDesc, peer.Failures, peer.GRPC, "failed")
	}
	p.exchanges.Collect(ch)
}
