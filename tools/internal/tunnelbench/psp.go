package tunnelbench

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"

	"github.com/xdpstack/xdpstack/internal/testing/hosts"
	"github.com/xdpstack/xdpstack/tools/internal/attachproc"
)

// PSP is xdpstack's PSP gateway on each host: `xdpstack attach` on the
// veth end with a DOCA JSON config that names the other host as its
// peer, certificates from `xdpstack psp certs`, IPv4 inside and out
// (the pair has IPv6 off), tunnels made on demand by the first packet.
type PSP struct {
	// Binary is the xdpstack executable. Required.
	Binary string
	// TempDir is where each Up keeps the certificates and configs
	// (the keys until both daemons run); the system's when empty.
	TempDir string
	// Extra are more attach flags for both daemons.
	Extra []string
}

// Name is the PSP gateway's column, the one tools/bench's ratios name.
func (PSP) Name() string { return "PSP" }

// pspGRPCPort is where each gateway serves the key exchange.
const pspGRPCPort = 3000

// pspEnd is one host's gateway: its virtual addresses, and the network
// the other's config lists them as (remote-vips).
type pspEnd struct {
	name string
	host *hosts.Host
	vips []netip.Addr
	net  netip.Prefix
}

// Up starts a gateway on each host, A with 10.215.N.1 and B with
// 10.215.N.2 (N: the third byte of the pair's subnet).
func (p PSP) Up(ctx context.Context, a, b *hosts.Host) (addrA, addrB netip.Addr, down func() error, err error) {
	if !a.Addr.Is4() {
		return addrA, addrB, nil, fmt.Errorf("psp up: host address %v (want IPv4, as hosts.NewPair gives)", a.Addr)
	}
	net3 := a.Addr.As4()[2]
	va, vb := netip.AddrFrom4([4]byte{10, 215, net3, 1}), netip.AddrFrom4([4]byte{10, 215, net3, 2})
	down, err = p.up(ctx,
		&pspEnd{name: "a", host: a, vips: []netip.Addr{va}, net: netip.PrefixFrom(va, 32)},
		&pspEnd{name: "b", host: b, vips: []netip.Addr{vb}, net: netip.PrefixFrom(vb, 32)})
	return va, vb, down, err
}

// up writes the certificates and configs of ends a and b into a
// folder of its own, starts both daemons, and removes the keys, which
// the daemons have read. down stops the daemons (which deletes psp0 and
// detaches XDP) and removes the pins and the folder.
func (p PSP) up(ctx context.Context, ends ...*pspEnd) (down func() error, err error) {
	if p.Binary == "" {
		return nil, errors.New("psp up: no binary (PSP.Binary; make build makes bin/xdpstack)")
	}
	dir, err := os.MkdirTemp(p.TempDir, "tunnelbench-psp-")
	if err != nil {
		return nil, err
	}
	var stops []func() error
	down = func() error {
		var errs []error
		for _, stop := range stops {
			errs = append(errs, stop())
		}
		errs = append(errs, os.RemoveAll(dir))
		return errors.Join(errs...)
	}
	defer func() {
		if err != nil {
			err = errors.Join(fmt.Errorf("psp up: %w", err), down())
			down = nil
		}
	}()
	certs := filepath.Join(dir, "certs")
	args := []string{"psp", "certs", "--dir", certs}
	for _, e := range ends {
		arg := e.name + "=" + e.host.Addr.String()
		for _, v := range e.vips {
			arg += "," + v.String()
		}
		args = append(args, arg)
	}
	if out, err := exec.CommandContext(ctx, p.Binary, args...).CombinedOutput(); err != nil {
		return down, fmt.Errorf("xdpstack psp certs: %w: %s", err, bytes.TrimSpace(out))
	}
	for i, e := range ends {
		config := filepath.Join(dir, e.name+".json")
		if err := writePSPConfig(config, e, ends[1-i]); err != nil {
			return down, err
		}
		stop, err := attachproc.Start(e.host, p.Binary, append([]string{
			"--psp-config", config,
			"--psp-cert", filepath.Join(certs, e.name+".pem"), "--psp-key", filepath.Join(certs, e.name+".key"), "--psp-ca", filepath.Join(certs, "ca.pem"),
			"--inner-ip-type", "ipv4", "--outer-ip-type", "ipv4",
		}, p.Extra...)...)
		if err != nil {
			return down, fmt.Errorf("host %s: %w", e.name, err)
		}
		stops = append(stops, stop)
	}
	for _, name := range []string{"ca.key", ends[0].name + ".key", ends[1].name + ".key"} {
		if err := os.Remove(filepath.Join(certs, name)); err != nil {
			return down, err
		}
	}
	return down, nil
}

// writePSPConfig writes e's DOCA JSON config: its gRPC address, and
// peer as its one peer, with a session from each of e's virtual
// addresses to peer's network.
func writePSPConfig(path string, e, peer *pspEnd) error {
	type session struct {
		LocalVIP   string   `json:"local-vip"`
		RemoteVIPs []string `json:"remote-vips"`
	}
	var sessions []session
	for _, v := range e.vips {
		sessions = append(sessions, session{v.String(), []string{peer.net.String()}})
	}
	b, err := json.MarshalIndent(map[string]any{
		"config": map[string]string{"local-grpc-address": netip.AddrPortFrom(e.host.Addr, pspGRPCPort).String()},
		"peers": []any{map[string]any{
			"remote-grpc-address": netip.AddrPortFrom(peer.host.Addr, pspGRPCPort).String(),
			"sessions":            sessions,
		}},
	}, "", "  ")
	if err != nil {
		return err
	}
	return os.WriteFile(path, b, 0o644)
}
