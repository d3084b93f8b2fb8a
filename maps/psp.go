package maps

import (
	"errors"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"

	"github.com/cilium/ebpf"

	"github.com/xdpstack/xdpstack/bpf"
	"github.com/xdpstack/xdpstack/userstack/psp"
	"github.com/xdpstack/xdpstack/userstack/psp/tunnel"
)

// PSPSettings say whether and how the program checks PSP: UDP to
// psp.UDPPort (1000, as the specification assigns) of an address the
// userstack serves is dropped, with its reason counted, when it is
// malformed, of a version not accepted, under an SPI this host did
// not issue (tunnel.ACL, mirrored by PSPSPIs) or of another version
// or inner source than the SPI was issued for; the rest is steered to
// the userstack. Packets with the S bit are sampled whatever the
// sample rate.
type PSPSettings struct {
	// Enabled turns the check on; off, UDP to port 1000 is like any
	// other.
	Enabled bool
	// Versions are the PSP versions accepted (--psp-version).
	Versions []psp.Version
	// ACLDisabled leaves out the checks of the SPI and of what it was
	// issued for (--disable-ingress-acl): any packet that decrypts is
	// taken.
	ACLDisabled bool
}

// Check refuses settings the program does not take.
func (s PSPSettings) Check() error {
	for _, v := range s.Versions {
		if !v.Valid() {
			return fmt.Errorf("psp version %d: want 0 to %d", uint8(v), uint8(psp.V3))
		}
	}
	if s.Enabled && len(s.Versions) == 0 {
		return errors.New("psp settings: no version accepted (give at least one --psp-version)")
	}
	return nil
}

// PSP is the program's PSP maps: its settings and the SPIs this host
// issued.
type PSP struct {
	settings *ebpf.Map
	// SPIs is the XDP copy of the receive ACL.
	SPIs PSPSPIs
}

// PSPMapNames are the maps of the PSP check (OpenPinnedPSP).
var PSPMapNames = []string{PSPName, PSPSPIsName}

// ErrPSPMapsMissing says that the pins are an older build's, from
// before the PSP check.
var ErrPSPMapsMissing = errors.New("no psp maps pinned (attached by an xdpstack older than the psp check; attach again with this one)")

// OpenPinnedPSP opens the PSP maps pinned in dir. The caller closes
// them.
func OpenPinnedPSP(dir string) (PSP, error) {
	var opened []*ebpf.Map
	for _, name := range PSPMapNames {
		m, err := ebpf.LoadPinnedMap(filepath.Join(dir, name), nil)
		if err != nil {
			for _, m := range opened {
				m.Close()
			}
			if errors.Is(err, os.ErrNotExist) {
				return PSP{}, fmt.Errorf("open psp maps in %s: %w", dir, ErrPSPMapsMissing)
			}
			return PSP{}, fmt.Errorf("open pinned map %s: %w", filepath.Join(dir, name), err)
		}
		opened = append(opened, m)
	}
	return PSP{settings: opened[0], SPIs: PSPSPIs{opened[1]}}, nil
}

// Close closes maps opened by OpenPinnedPSP.
func (p PSP) Close() error { return errors.Join(p.settings.Close(), p.SPIs.m.Close()) }

// SetSettings checks and writes the settings; the program uses them
// from its next packet on.
func (p PSP) SetSettings(s PSPSettings) error {
	if err := s.Check(); err != nil {
		return err
	}
	var v bpf.XdpPspSettings
	if s.Enabled {
		v.Enabled = 1
	}
	if s.ACLDisabled {
		v.AclDisabled = 1
	}
	for _, ver := range s.Versions {
		v.Versions |= 1 << ver
	}
	if err := p.settings.Put(uint32(0), v); err != nil {
		return fmt.Errorf("write %s map: %w", PSPName, err)
	}
	return nil
}

// Settings reads the settings.
func (p PSP) Settings() (PSPSettings, error) {
	var v bpf.XdpPspSettings
	if err := p.settings.Lookup(uint32(0), &v); err != nil {
		return PSPSettings{}, fmt.Errorf("read %s map: %w", PSPName, err)
	}
	s := PSPSettings{Enabled: v.Enabled != 0, ACLDisabled: v.AclDisabled != 0}
	for ver := psp.V0; ver <= psp.V3; ver++ {
		if v.Versions&(1<<ver) != 0 {
			s.Versions = append(s.Versions, ver)
		}
	}
	return s, nil
}

// PSPSPIs is the program's table of the SPIs this host issued: a
// tunnel.Mirror, which keeps it in step with the ACL.
type PSPSPIs struct{ m *ebpf.Map }

var _ tunnel.Mirror = PSPSPIs{}

// SPIGrant is what the program knows of a grant: the version of the
// packets under its SPI and their inner source.
type SPIGrant struct {
	Version psp.Version
	Src     netip.Addr
}

// Put adds or replaces the grant g.
func (t PSPSPIs) Put(g tunnel.Grant) error {
	if !g.Version.Valid() || !g.Src.IsValid() {
		return fmt.Errorf("put spi %#x: no valid version or source address", g.SPI)
	}
	src := g.Src.Unmap()
	v := bpf.XdpPspGrant{Version: uint8(g.Version), Family: 6, Src: src.As16()}
	if src.Is4() {
		v.Family = 4
	}
	if err := t.m.Put(bpf.XdpPspSpiKey{Spi: g.SPI}, v); err != nil {
		return fmt.Errorf("put spi %#x in %s map: %w", g.SPI, PSPSPIsName, err)
	}
	return nil
}

// Delete removes the grant of spi; no error when there is none, as
// tunnel.ACL's Revoke has it.
func (t PSPSPIs) Delete(spi uint32) error {
	if err := notFound(t.m.Delete(bpf.XdpPspSpiKey{Spi: spi})); err != nil && err != ErrNotFound {
		return fmt.Errorf("delete spi %#x from %s map: %w", spi, PSPSPIsName, err)
	}
	return nil
}

// All returns every grant by SPI.
func (t PSPSPIs) All() (map[uint32]SPIGrant, error) {
	all := make(map[uint32]SPIGrant)
	var (
		k bpf.XdpPspSpiKey
		v bpf.XdpPspGrant
	)
	entries := t.m.Iterate()
	for entries.Next(&k, &v) {
		all[k.Spi] = SPIGrant{Version: psp.Version(v.Version), Src: netip.AddrFrom16(v.Src).Unmap()}
	}
	if err := entries.Err(); err != nil {
		return nil, fmt.Errorf("read %s map: %w", PSPSPIsName, err)
	}
	return all, nil
}
