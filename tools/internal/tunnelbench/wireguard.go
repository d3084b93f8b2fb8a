package tunnelbench

import (
	"bytes"
	"context"
	"crypto/rand"
	"debug/buildinfo"
	"encoding/hex"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/xdpstack/xdpstack/internal/testing/hosts"
)

// WireGuardModule is wireguard-go's module, a main package at its
// root; go.mod names it as a tool, which pins its version.
const WireGuardModule = "golang.zx2c4.com/wireguard"

// BuildWireGuardGo builds wireguard-go at the version go.mod pins into
// dir and returns the executable's path. It runs `go build` in the
// working directory, which must be inside this module (it is under go
// run and go test).
func BuildWireGuardGo(ctx context.Context, dir string) (string, error) {
	path := filepath.Join(dir, "wireguard-go")
	if out, err := exec.CommandContext(ctx, "go", "build", "-o", path, WireGuardModule).CombinedOutput(); err != nil {
		return "", fmt.Errorf("build wireguard-go: %w: %s", err, bytes.TrimSpace(out))
	}
	return path, nil
}

// WireGuardGoVersion is the module version binary was built from.
func WireGuardGoVersion(binary string) (string, error) {
	info, err := buildinfo.ReadFile(binary)
	if err != nil {
		return "", err
	}
	return info.Main.Version, nil
}

// WireGuardGo is wireguard-go on each host, in the foreground, with the
// TUN offloads it turns on by itself (virtio-net header, TSO, and USO
// where the kernel has it; batched reads and writes; UDP GSO/GRO on the
// veth), configured with wg and ip as an operator would.
type WireGuardGo struct {
	// Binary is the wireguard-go executable (BuildWireGuardGo). Required.
	Binary string
	// TempDir is where each Up keeps its keys (until configured) and the
	// processes' logs (until down); the system's when empty.
	TempDir string
}

// Name is wireguard-go's column.
func (WireGuardGo) Name() string { return "wireguard-go" }

const (
	wgPort = 51820
	// wgSocketDir is where wireguard-go puts its control socket, one per
	// interface name whatever the network namespace: names are unique
	// per Up for that reason.
	wgSocketDir = "/var/run/wireguard"
	// wgStartWithin bounds the wait for the control socket.
	wgStartWithin = 10 * time.Second
	// wgStopWithin bounds the wait after SIGTERM, before SIGKILL.
	wgStopWithin = 5 * time.Second
)

// wgEnd is one host's side of the tunnel.
type wgEnd struct {
	host  *hosts.Host
	iface string
	addr  netip.Addr // inside the tunnel
	key   string     // the private key's file
	pub   string
	cmd   *exec.Cmd
	done  chan struct{} // closed when cmd has been waited for
	err   error         // cmd's exit, once done
	log   string
}

// Up starts wireguard-go on both hosts, gives each a private key, the
// other as its peer at its veth address, and an address in
// 10.214.N.0/24 (N: the third byte of the pair's subnet).
func (w WireGuardGo) Up(ctx context.Context, a, b *hosts.Host) (addrA, addrB netip.Addr, down func() error, err error) {
	if w.Binary == "" {
		return addrA, addrB, nil, errors.New("wireguard-go up: no binary (WireGuardGo.Binary; BuildWireGuardGo makes one)")
	}
	if !a.Addr.Is4() {
		return addrA, addrB, nil, fmt.Errorf("wireguard-go up: host address %v (want IPv4, as hosts.NewPair gives)", a.Addr)
	}
	dir, err := os.MkdirTemp(w.TempDir, "tunnelbench-wg-")
	if err != nil {
		return addrA, addrB, nil, err
	}
	id := make([]byte, 4)
	rand.Read(id)
	net3 := a.Addr.As4()[2]
	ends := []*wgEnd{
		{host: a, iface: "wg" + hex.EncodeToString(id) + "a", addr: netip.AddrFrom4([4]byte{10, 214, net3, 1})},
		{host: b, iface: "wg" + hex.EncodeToString(id) + "b", addr: netip.AddrFrom4([4]byte{10, 214, net3, 2})},
	}
	down = func() error {
		var errs []error
		for _, e := range ends {
			errs = append(errs, e.stop())
		}
		errs = append(errs, os.RemoveAll(dir))
		return errors.Join(errs...)
	}
	if err := w.up(ctx, dir, ends); err != nil {
		down()
		return addrA, addrB, nil, fmt.Errorf("wireguard-go up: %w", err)
	}
	return ends[0].addr, ends[1].addr, down, nil
}

func (w WireGuardGo) up(ctx context.Context, dir string, ends []*wgEnd) error {
	for _, e := range ends {
		e.key = filepath.Join(dir, e.iface+".key")
		e.log = filepath.Join(dir, e.iface+".log")
		if err := genKey(ctx, e); err != nil {
			return err
		}
		if err := e.start(w.Binary); err != nil {
			return err
		}
	}
	for _, e := range ends {
		if err := e.waitSocket(); err != nil {
			return err
		}
	}
	for i, e := range ends {
		peer := ends[1-i]
		for _, args := range [][]string{
			{"wg", "set", e.iface, "private-key", e.key, "listen-port", fmt.Sprint(wgPort),
				"peer", peer.pub, "allowed-ips", peer.addr.String() + "/32", "endpoint", fmt.Sprintf("%s:%d", peer.host.Addr, wgPort)},
			{"ip", "addr", "add", e.addr.String() + "/24", "dev", e.iface},
			{"ip", "link", "set", e.iface, "up"},
		} {
			if out, err := e.host.Command(ctx, args[0], args[1:]...).CombinedOutput(); err != nil {
				return fmt.Errorf("%s in %s: %w: %s", strings.Join(args, " "), e.host.Netns, err, bytes.TrimSpace(out))
			}
		}
	}
	// The keys are in the processes now; they need not stay on disk.
	for _, e := range ends {
		if err := os.Remove(e.key); err != nil {
			return err
		}
	}
	return nil
}

// genKey writes a fresh private key to e.key, readable by root alone,
// and learns its public key.
func genKey(ctx context.Context, e *wgEnd) error {
	key, err := exec.CommandContext(ctx, "wg", "genkey").Output()
	if err != nil {
		return fmt.Errorf("wg genkey: %w (wireguard-tools installed? make deps)", err)
	}
	if err := os.WriteFile(e.key, key, 0o600); err != nil {
		return err
	}
	cmd := exec.CommandContext(ctx, "wg", "pubkey")
	cmd.Stdin = bytes.NewReader(key)
	pub, err := cmd.Output()
	if err != nil {
		return fmt.Errorf("wg pubkey: %w", err)
	}
	e.pub = strings.TrimSpace(string(pub))
	return nil
}

// start runs wireguard-go in the foreground in the end's host.
func (e *wgEnd) start(binary string) error {
	log, err := os.Create(e.log)
	if err != nil {
		return err
	}
	defer log.Close()
	e.cmd = e.host.Command(context.Background(), binary, "-f", e.iface)
	// WG_PROCESS_FOREGROUND silences the banner that recommends the
	// kernel module, which this kernel does not have.
	e.cmd.Env = append(os.Environ(), "LOG_LEVEL=error", "WG_PROCESS_FOREGROUND=1")
	e.cmd.Stdout, e.cmd.Stderr = log, log
	if err := e.cmd.Start(); err != nil {
		e.cmd = nil
		return fmt.Errorf("start wireguard-go in %s: %w", e.host.Netns, err)
	}
	e.done = make(chan struct{})
	go func() {
		e.err = e.cmd.Wait()
		close(e.done)
	}()
	return nil
}

func (e *wgEnd) socket() string { return filepath.Join(wgSocketDir, e.iface+".sock") }

// waitSocket waits for the control socket, which wireguard-go opens
// once its TUN device exists.
func (e *wgEnd) waitSocket() error {
	for deadline := time.Now().Add(wgStartWithin); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		select {
		case <-e.done:
			return fmt.Errorf("wireguard-go %s exited: %v: %s", e.iface, e.err, e.readLog())
		default:
		}
		if _, err := os.Stat(e.socket()); err == nil {
			return nil
		}
	}
	return fmt.Errorf("wireguard-go %s: no control socket after %v: %s", e.iface, wgStartWithin, e.readLog())
}

func (e *wgEnd) readLog() string {
	b, _ := os.ReadFile(e.log)
	return string(bytes.TrimSpace(b))
}

// stop ends wireguard-go by its PID (SIGTERM, then SIGKILL), which
// deletes its TUN device, and removes the control socket if it was left.
func (e *wgEnd) stop() error {
	if e.cmd == nil {
		return nil
	}
	e.cmd.Process.Signal(syscall.SIGTERM)
	var err error
	select {
	case <-e.done:
		if e.err != nil {
			err = fmt.Errorf("wireguard-go %s: %w: %s", e.iface, e.err, e.readLog())
		}
	case <-time.After(wgStopWithin):
		e.cmd.Process.Kill()
		<-e.done
		err = fmt.Errorf("wireguard-go %s: still running %v after SIGTERM, killed", e.iface, wgStopWithin)
	}
	e.cmd = nil
	if rmErr := os.Remove(e.socket()); rmErr != nil && !errors.Is(rmErr, os.ErrNotExist) {
		err = errors.Join(err, rmErr)
	}
	return err
}
