package pspconfig

import (
	"fmt"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/xdpstack/xdpstack/userstack/psp"
)

// IPType is an IP version of the inner or outer header.
type IPType uint8

// The IP types.
const (
	IPv4 IPType = 4
	IPv6 IPType = 6
)

// ParseIPType reads ipv4 or ipv6.
func ParseIPType(s string) (IPType, error) {
	switch s {
	case "ipv4":
		return IPv4, nil
	case "ipv6":
		return IPv6, nil
	}
	return 0, fmt.Errorf("ip type %q: want ipv4 or ipv6", s)
}

func (t IPType) String() string {
	if t == IPv6 {
		return "ipv6"
	}
	return "ipv4"
}

// Options are what DOCA takes as flags, with xdpstack's defaults.
type Options struct {
	// Version is the PSP version this host asks its peers for.
	Version psp.Version
	// CryptOffset is how many 4-byte units after the PSP header stay in
	// the clear (0 to 63): the inner source address the XDP ACL checks
	// needs 4 (IPv4) or 6 (IPv6).
	CryptOffset uint8
	// Cookie adds the virtualization cookie to the PSP header.
	Cookie bool
	// StaticTunnels creates every configured tunnel at start.
	StaticTunnels bool
	// MaxTunnels bounds the tunnels this host sends through.
	MaxTunnels int
	// DisableIngressACL accepts any SPI the master keys derive.
	DisableIngressACL bool
	// SampleRate samples 1 sent packet in 2^N (0 off, up to 16).
	SampleRate int
	// Inner and Outer are the tunnels' IP types.
	Inner, Outer IPType
	// TUN names the clear side's device.
	TUN string
	// Cert, Key and CA are the PEM files of the key exchange's mutual TLS.
	Cert, Key, CA string
	// Plaintext runs the key exchange without TLS, as DOCA does.
	Plaintext bool
	// Rotation rotates the master keys this often (0 never).
	Rotation time.Duration
	// DebugKeys lets `xdpstack psp keys` print the master keys.
	DebugKeys bool
}

// Defaults: DOCA's, but keys rotate daily and every combination of
// inner and outer works.
var Defaults = Options{
	Version:    psp.V1,
	MaxTunnels: 1024,
	Inner:      IPv4,
	Outer:      IPv6,
	TUN:        "psp0",
	Rotation:   24 * time.Hour,
}

// The flags' names.
const (
	FlagConfig        = "psp-config"
	FlagVersion       = "psp-version"
	FlagCryptOffset   = "crypt-offset"
	FlagCookie        = "cookie"
	FlagStaticTunnels = "static-tunnels"
	FlagMaxTunnels    = "max-tunnels"
	FlagNoIngressACL  = "disable-ingress-acl"
	FlagSampleRate    = "psp-sample-rate" // attach has --sample-rate for verdicts
	FlagInner         = "inner-ip-type"
	FlagOuter         = "outer-ip-type"
	FlagTUN           = "psp-tun"
	FlagCert          = "psp-cert"
	FlagKey           = "psp-key"
	FlagCA            = "psp-ca"
	FlagPlaintext     = "psp-plaintext"
	FlagRotation      = "psp-rotation"
	FlagDebugKeys     = "debug-keys"
)

// Flags are attach's PSP flags, with Defaults' values. Only string,
// bool and int flags, so that each has a key in the YAML config.
func Flags() []cli.Flag {
	d := Defaults
	return []cli.Flag{
		&cli.StringFlag{Name: FlagConfig, Usage: "run the PSP gateway with DOCA's JSON config `FILE` (local-grpc-address, peers, sessions)"},
		&cli.IntFlag{Name: FlagVersion, Value: int(d.Version), Usage: "PSP version to ask peers for: 0 aes-gcm-128, 1 aes-gcm-256, 2 aes-gmac-128, 3 aes-gmac-256"},
		&cli.IntFlag{Name: FlagCryptOffset, Usage: "leave `N` 4-byte units after the PSP header in the clear (0 to 63)"},
		&cli.BoolFlag{Name: FlagCookie, Usage: "add the virtualization cookie to the PSP header"},
		&cli.BoolFlag{Name: FlagStaticTunnels, Usage: "create every configured tunnel at start instead of on the first packet"},
		&cli.IntFlag{Name: FlagMaxTunnels, Value: d.MaxTunnels, Usage: "send through at most `N` tunnels"},
		&cli.BoolFlag{Name: FlagNoIngressACL, Usage: "accept any SPI the master keys derive, from any inner source (no ACL)"},
		&cli.IntFlag{Name: FlagSampleRate, Usage: "set the S bit on and sample 1 sent PSP packet in 2^`N` (0 off, up to 16)"},
		&cli.StringFlag{Name: FlagInner, Value: d.Inner.String(), Usage: "inner IP type: ipv4 or ipv6"},
		&cli.StringFlag{Name: FlagOuter, Value: d.Outer.String(), Usage: "outer IP type: ipv4 or ipv6"},
		&cli.StringFlag{Name: FlagTUN, Value: d.TUN, Usage: "name of the TUN device of the clear side"},
		&cli.StringFlag{Name: FlagCert, Usage: "this node's certificate `FILE` (PEM) for the key exchange's mutual TLS"},
		&cli.StringFlag{Name: FlagKey, Usage: "this node's private key `FILE` (PEM, chmod 600)"},
		&cli.StringFlag{Name: FlagCA, Usage: "the CA certificate `FILE` (PEM) that peers' certificates must verify against"},
		&cli.BoolFlag{Name: FlagPlaintext, Usage: "UNSAFE: exchange keys over plaintext gRPC, as DOCA does (no certificates)"},
		&cli.StringFlag{Name: FlagRotation, Value: d.Rotation.String(), Usage: "rotate the master keys every `DURATION` (0 never)"},
		&cli.BoolFlag{Name: FlagDebugKeys, Usage: "let 'xdpstack psp keys' print the master keys, to decrypt captures offline"},
	}
}

// Values are the flags' values as a command reads them: a
// *cli.Context, or attach's settings, where a config file may give them.
type Values interface {
	Int(name string) int
	String(name string) string
	Bool(name string) bool
}

// FromCLI reads and checks the options of Flags; call it when
// --psp-config (or the psp: section) is given.
func FromCLI(c Values) (Options, error) {
	o := Options{
		Version:           psp.Version(clampByte(c.Int(FlagVersion))),
		Cookie:            c.Bool(FlagCookie),
		StaticTunnels:     c.Bool(FlagStaticTunnels),
		MaxTunnels:        c.Int(FlagMaxTunnels),
		DisableIngressACL: c.Bool(FlagNoIngressACL),
		SampleRate:        c.Int(FlagSampleRate),
		TUN:               c.String(FlagTUN),
		Cert:              c.String(FlagCert),
		Key:               c.String(FlagKey),
		CA:                c.String(FlagCA),
		Plaintext:         c.Bool(FlagPlaintext),
		DebugKeys:         c.Bool(FlagDebugKeys),
	}
	if v := c.Int(FlagVersion); v < 0 || v > int(psp.V3) {
		return o, fmt.Errorf("--%s %d: want 0 to 3", FlagVersion, v)
	}
	if n := c.Int(FlagCryptOffset); n < 0 || n > 63 {
		return o, fmt.Errorf("--%s %d: want 0 to 63 (4-byte units)", FlagCryptOffset, n)
	} else {
		o.CryptOffset = uint8(n)
	}
	var err error
	if o.Inner, err = ParseIPType(c.String(FlagInner)); err != nil {
		return o, fmt.Errorf("--%s: %w", FlagInner, err)
	}
	if o.Outer, err = ParseIPType(c.String(FlagOuter)); err != nil {
		return o, fmt.Errorf("--%s: %w", FlagOuter, err)
	}
	if o.Rotation, err = time.ParseDuration(c.String(FlagRotation)); err != nil {
		return o, fmt.Errorf("--%s %q: not a duration (e.g. 24h, 90m)", FlagRotation, c.String(FlagRotation))
	}
	return o, o.Validate()
}

func clampByte(n int) uint8 {
	if n < 0 || n > 255 {
		return 255
	}
	return uint8(n)
}

// Validate says what is wrong with o, naming the flag.
func (o *Options) Validate() error {
	switch {
	case !o.Version.Valid():
		return fmt.Errorf("--%s %d: want 0 to 3", FlagVersion, o.Version)
	case o.CryptOffset > 63:
		return fmt.Errorf("--%s %d: want 0 to 63 (4-byte units)", FlagCryptOffset, o.CryptOffset)
	case o.MaxTunnels < 1 || o.MaxTunnels > 1<<20:
		return fmt.Errorf("--%s %d: want 1 to %d", FlagMaxTunnels, o.MaxTunnels, 1<<20)
	case o.SampleRate < 0 || o.SampleRate > 16:
		return fmt.Errorf("--%s %d: want 0 (off) to 16", FlagSampleRate, o.SampleRate)
	case o.Inner != IPv4 && o.Inner != IPv6:
		return fmt.Errorf("--%s: want ipv4 or ipv6", FlagInner)
	case o.Outer != IPv4 && o.Outer != IPv6:
		return fmt.Errorf("--%s: want ipv4 or ipv6", FlagOuter)
	case o.TUN == "" || len(o.TUN) > 15:
		return fmt.Errorf("--%s %q: want a device name of 1 to 15 characters", FlagTUN, o.TUN)
	case o.Rotation < 0 || (o.Rotation > 0 && o.Rotation < time.Second):
		return fmt.Errorf("--%s %v: want 0 (never) or at least 1s", FlagRotation, o.Rotation)
	case o.Plaintext && (o.Cert != "" || o.Key != "" || o.CA != ""):
		return fmt.Errorf("--%s with --%s/--%s/--%s: give one or the other", FlagPlaintext, FlagCert, FlagKey, FlagCA)
	case !o.Plaintext && (o.Cert == "" || o.Key == "" || o.CA == ""):
		return fmt.Errorf("psp key exchange: needs --%s, --%s and --%s (make them with `xdpstack psp certs`), or --%s", FlagCert, FlagKey, FlagCA, FlagPlaintext)
	}
	return nil
}
