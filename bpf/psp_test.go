package bpf_test

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"testing"

	"github.com/cilium/ebpf/perf"

	"github.com/xdpstack/xdpstack/bpf"
	"github.com/xdpstack/xdpstack/internal/testing/packet"
	"github.com/xdpstack/xdpstack/internal/testing/testutil"
	"github.com/xdpstack/xdpstack/maps"
	"github.com/xdpstack/xdpstack/userstack/afxdp"
	"github.com/xdpstack/xdpstack/userstack/psp"
	"github.com/xdpstack/xdpstack/userstack/psp/tunnel"
)

// The inner (virtual) addresses of the PSP tests: the sources two SPIs
// were issued for, others, and the destination.
var (
	grantSrc4 = netip.MustParseAddr("10.9.0.1")
	grantSrc6 = netip.MustParseAddr("fd00:9::1")
	otherSrc4 = netip.MustParseAddr("10.9.0.66")
	otherSrc6 = netip.MustParseAddr("fd00:9::66")
	virtDst4  = netip.MustParseAddr("10.9.0.2")
	virtDst6  = netip.MustParseAddr("fd00:9::2")
)

// The SPIs issued for grantSrc4 (version 0) and grantSrc6 (version 1),
// and one never issued.
const (
	spi4       = 0x10
	spi6       = 0x80000011
	spiUnknown = 0x12345
)

var (
	dropPSPBad     = maps.Verdict{Action: maps.ActionDrop, Reason: maps.ReasonPSPBad}
	dropPSPVersion = maps.Verdict{Action: maps.ActionDrop, Reason: maps.ReasonPSPVersion}
	dropPSPSPI     = maps.Verdict{Action: maps.ActionDrop, Reason: maps.ReasonPSPSPI}
	dropPSPACL     = maps.Verdict{Action: maps.ActionDrop, Reason: maps.ReasonPSPACL}
	redirSteered   = maps.Verdict{Action: maps.ActionRedirect, Reason: maps.ReasonSteered}
)

// pspOn accepts versions 0 and 1 on the usual port.
var pspOn = maps.PSPSettings{Enabled: true, Versions: []psp.Version{psp.V0, psp.V1}}

// loadPSP loads the program serving dst4 and dst6 with the PSP check
// set as s, and the two grants allowed through a tunnel.ACL.
func loadPSP(t *testing.T, s maps.PSPSettings) (*bpf.XdpObjects, *tunnel.ACL) {
	t.Helper()
	objs := loadXdp(t, 0, 0)
	serve(t, objs, dst4, dst6)
	set := maps.FromObjects(&objs.XdpMaps)
	if err := set.PSP.SetSettings(s); err != nil {
		t.Fatal(err)
	}
	if err := set.Sampling.SetSettings(maps.DefaultSampleSettings); err != nil {
		t.Fatal(err)
	}
	acl := tunnel.NewACL(set.PSP.SPIs)
	for _, g := range []tunnel.Grant{{SPI: spi4, Version: psp.V0, Src: grantSrc4}, {SPI: spi6, Version: psp.V1, Src: grantSrc6}} {
		if err := acl.Allow(g); err != nil {
			t.Fatal(err)
		}
	}
	return objs, acl
}

// pspFrame is what a peer sends: a UDP datagram from the inner source
// src to the virtual destination of its family, sealed by the codec
// under spi and v in tunnel mode, crypt offset crypt (4-byte units), a
// cookie if vc, between the outer addresses from and to.
type pspFrame struct {
	from, to netip.Addr
	src      netip.Addr
	spi      uint32
	v        psp.Version
	crypt    uint8
	vc       bool
}

func (p pspFrame) bytes(tb testing.TB) []byte {
	tb.Helper()
	var inner *packet.Frame
	if p.src.Is4() {
		inner = packet.Ethernet(packet.EtherTypeIPv4).IPv4(packet.IPv4{Src: p.src, Dst: virtDst4, Protocol: packet.ProtoUDP})
	} else {
		inner = packet.Ethernet(packet.EtherTypeIPv6).IPv6(p.src, virtDst6, packet.ProtoUDP)
	}
	frame, err := packet.PSP(inner.UDP(40000, 7).Payload(32).Bytes(), p.spi, p.v,
		psp.Encap{Mode: psp.Tunnel, CryptOffset4: p.crypt, CryptOffset6: p.crypt, VC: p.vc, OuterSrc: p.from, OuterDst: p.to})
	if err != nil {
		tb.Fatal(err)
	}
	return frame
}

// outer returns the frame p between the test's outer addresses of one
// family.
func outer(v6 bool, p pspFrame) pspFrame {
	p.from, p.to = src4, dst4
	if v6 {
		p.from, p.to = src6, dst6
	}
	return p
}

// pspAt is where the PSP header of a frame from outer starts.
func pspAt(v6 bool) int {
	if v6 {
		return 14 + 40 + 8
	}
	return 14 + 20 + 8
}

// TestPSPChecks runs frames the codec sealed through the check, over
// IPv4 and IPv6 outer headers: each is dropped with its reason or, the
// test run having no AF_XDP socket, passed as no_socket.
func TestPSPChecks(t *testing.T) {
	objs, _ := loadPSP(t, pspOn)
	for _, tc := range []struct {
		name string
		p    pspFrame
		want maps.Verdict
	}{
		{"v4 inner, source encrypted", pspFrame{src: grantSrc4, spi: spi4, v: psp.V0}, passNoSocket},
		{"v4 inner, source in the clear", pspFrame{src: grantSrc4, spi: spi4, v: psp.V0, crypt: 4}, passNoSocket},
		{"v4 inner, cookie, source in the clear", pspFrame{src: grantSrc4, spi: spi4, v: psp.V0, crypt: 6, vc: true}, passNoSocket},
		{"v4 inner, another source in the clear", pspFrame{src: otherSrc4, spi: spi4, v: psp.V0, crypt: 4}, dropPSPACL},
		{"v4 inner, cookie, another source in the clear", pspFrame{src: otherSrc4, spi: spi4, v: psp.V0, crypt: 6, vc: true}, dropPSPACL},
		{"v4 inner, another source, its last bytes encrypted", pspFrame{src: otherSrc4, spi: spi4, v: psp.V0, crypt: 3}, passNoSocket},
		{"v4 inner, cookie, another source, its last bytes encrypted", pspFrame{src: otherSrc4, spi: spi4, v: psp.V0, crypt: 5, vc: true}, passNoSocket},
		{"v4 inner, another source encrypted", pspFrame{src: otherSrc4, spi: spi4, v: psp.V0}, passNoSocket},
		{"v6 inner, source encrypted", pspFrame{src: grantSrc6, spi: spi6, v: psp.V1}, passNoSocket},
		{"v6 inner, source in the clear", pspFrame{src: grantSrc6, spi: spi6, v: psp.V1, crypt: 6}, passNoSocket},
		{"v6 inner, cookie, source in the clear", pspFrame{src: grantSrc6, spi: spi6, v: psp.V1, crypt: 8, vc: true}, passNoSocket},
		{"v6 inner, another source in the clear", pspFrame{src: otherSrc6, spi: spi6, v: psp.V1, crypt: 6}, dropPSPACL},
		{"v6 inner, cookie, another source in the clear", pspFrame{src: otherSrc6, spi: spi6, v: psp.V1, crypt: 8, vc: true}, dropPSPACL},
		{"v6 inner, another source, its last bytes encrypted", pspFrame{src: otherSrc6, spi: spi6, v: psp.V1, crypt: 5}, passNoSocket},
		{"v6 inner under the v4 inner's spi", pspFrame{src: grantSrc6, spi: spi4, v: psp.V0}, dropPSPACL},
		{"v4 inner under the v6 inner's spi", pspFrame{src: grantSrc4, spi: spi6, v: psp.V1}, dropPSPACL},
		{"unknown spi", pspFrame{src: grantSrc4, spi: spiUnknown, v: psp.V0}, dropPSPSPI},
		{"unknown spi, cookie", pspFrame{src: grantSrc6, spi: spiUnknown, v: psp.V1, vc: true}, dropPSPSPI},
		{"version not accepted", pspFrame{src: grantSrc4, spi: spi4, v: psp.V2}, dropPSPVersion},
		{"version not the spi's", pspFrame{src: grantSrc4, spi: spi4, v: psp.V1}, dropPSPVersion},
	} {
		for _, v6 := range []bool{false, true} {
			t.Run(fmt.Sprintf("%s/outer v6 %v", tc.name, v6), func(t *testing.T) {
				checkVerdict(t, objs, outer(v6, tc.p).bytes(t), tc.want)
			})
		}
	}
}

// TestPSPMalformed breaks the headers of an allowed frame, and cuts it
// everywhere past its UDP header: each is dropped as psp_bad, but for
// the reserved bits, which the specification says to ignore.
func TestPSPMalformed(t *testing.T) {
	objs, _ := loadPSP(t, pspOn)
	for _, v6 := range []bool{false, true} {
		good := outer(v6, pspFrame{src: grantSrc4, spi: spi4, v: psp.V0, crypt: 4}).bytes(t)
		at := pspAt(v6)
		for _, tc := range []struct {
			name   string
			mangle func(f []byte)
			want   maps.Verdict
		}{
			{"the always-one bit clear", func(f []byte) { f[at+3] &^= 0x01 }, dropPSPBad},
			{"extension length 0", func(f []byte) { f[at+1] = 0 }, dropPSPBad},
			{"extension length 3", func(f []byte) { f[at+1] = 3 }, dropPSPBad},
			{"cookie bit without its extension", func(f []byte) { f[at+3] |= 0x02 }, dropPSPBad},
			{"crypt offset past the payload", func(f []byte) { f[at+2] = 0x3f }, dropPSPBad},
			{"reserved crypt offset bits", func(f []byte) { f[at+2] |= 0xc0 }, passNoSocket},
			{"udp length shorter than its header", func(f []byte) { binary.BigEndian.PutUint16(f[at-4:], 7) }, dropPSPBad},
			{"udp length past the frame", func(f []byte) { binary.BigEndian.PutUint16(f[at-4:], uint16(len(f)-at+9)) }, dropPSPBad},
			{"udp length too short for the icv", func(f []byte) { binary.BigEndian.PutUint16(f[at-4:], 8+psp.HeaderLen+psp.ICVLen-1) }, dropPSPBad},
		} {
			t.Run(fmt.Sprintf("%s/outer v6 %v", tc.name, v6), func(t *testing.T) {
				f := bytes.Clone(good)
				tc.mangle(f)
				checkVerdict(t, objs, f, tc.want)
			})
		}
		for cut := at; cut < len(good); cut++ {
			t.Run(fmt.Sprintf("cut %d of %d/outer v6 %v", cut, len(good), v6), func(t *testing.T) {
				checkVerdict(t, objs, bytes.Clone(good[:cut]), dropPSPBad)
			})
		}
	}
}

// TestPSPSettings checks what the settings change: off, PSP is UDP like
// any other; without the ACL only the header and version are checked;
// another port moves the check; a destination the userstack does not
// serve is the kernel's; sources no wire may carry and deny rules drop
// before anything is steered.
func TestPSPSettings(t *testing.T) {
	unknown := func(v6 bool) []byte { return outer(v6, pspFrame{src: grantSrc4, spi: spiUnknown, v: psp.V0}).bytes(t) }
	for _, v6 := range []bool{false, true} {
		t.Run(fmt.Sprintf("outer v6 %v", v6), func(t *testing.T) {
			objs, _ := loadPSP(t, maps.PSPSettings{})
			set := maps.FromObjects(&objs.XdpMaps)
			checkVerdict(t, objs, unknown(v6), passNoMatch)

			noACL := pspOn
			noACL.ACLDisabled = true
			if err := set.PSP.SetSettings(noACL); err != nil {
				t.Fatal(err)
			}
			checkVerdict(t, objs, unknown(v6), passNoSocket)
			checkVerdict(t, objs, outer(v6, pspFrame{src: otherSrc4, spi: spi4, v: psp.V0, crypt: 4}).bytes(t), passNoSocket)
			checkVerdict(t, objs, outer(v6, pspFrame{src: grantSrc4, spi: spi4, v: psp.V3}).bytes(t), dropPSPVersion)

			// Another port is any UDP's.
			moved := unknown(v6)
			binary.BigEndian.PutUint16(moved[pspAt(v6)-6:], 4000)
			checkVerdict(t, objs, moved, passNoMatch)

			if err := set.PSP.SetSettings(pspOn); err != nil {
				t.Fatal(err)
			}
			notOurs := outer(v6, pspFrame{src: grantSrc4, spi: spiUnknown, v: psp.V0})
			notOurs.to = netip.MustParseAddr("192.0.2.99")
			if v6 {
				notOurs.to = netip.MustParseAddr("2001:db8::99")
			}
			checkVerdict(t, objs, notOurs.bytes(t), passNotLocal)
			fromUs := outer(v6, pspFrame{src: grantSrc4, spi: spi4, v: psp.V0})
			fromUs.from = fromUs.to
			checkVerdict(t, objs, fromUs.bytes(t), dropMartian)

			replaceRules(t, objs, rule(t, "udp", ":1000", "", "deny", "no-psp"))
			checkVerdict(t, objs, outer(v6, pspFrame{src: grantSrc4, spi: spi4, v: psp.V0}).bytes(t), dropRuleDeny)
		})
	}
}

// TestPSPSteered registers an AF_XDP socket for queue 0: an allowed
// frame is redirected to it, a refused one still dropped.
func TestPSPSteered(t *testing.T) {
	objs, _ := loadPSP(t, pspOn)
	ifname, _ := testutil.Veth(t)
	iface, err := net.InterfaceByName(ifname)
	if err != nil {
		t.Fatal(err)
	}
	sock, err := afxdp.Open(iface.Index, 0, afxdp.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer sock.Close()
	if err := maps.FromObjects(&objs.XdpMaps).XSKs.Register(0, sock.FD()); err != nil {
		t.Fatal(err)
	}
	for _, v6 := range []bool{false, true} {
		checkVerdict(t, objs, outer(v6, pspFrame{src: grantSrc6, spi: spi6, v: psp.V1, crypt: 6}).bytes(t), redirSteered)
		checkVerdict(t, objs, outer(v6, pspFrame{src: grantSrc6, spi: spiUnknown, v: psp.V1}).bytes(t), dropPSPSPI)
	}
}

// TestPSPSampleBit checks that a frame whose sender set the S bit is
// sampled with its verdict while sampling is off, and that others are
// not.
func TestPSPSampleBit(t *testing.T) {
	objs, _ := loadPSP(t, pspOn)
	r, err := perf.NewReader(objs.Samples, 1<<20)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	sampleBit := func(f []byte, v6 bool) []byte { f[pspAt(v6)+3] |= 0x80; return f }
	for _, v6 := range []bool{false, true} {
		for _, tc := range []struct {
			name  string
			frame []byte
			want  maps.Verdict
		}{
			{"allowed", sampleBit(outer(v6, pspFrame{src: grantSrc4, spi: spi4, v: psp.V0}).bytes(t), v6), passNoSocket},
			{"unknown spi", sampleBit(outer(v6, pspFrame{src: grantSrc4, spi: spiUnknown, v: psp.V0}).bytes(t), v6), dropPSPSPI},
			{"another source", sampleBit(outer(v6, pspFrame{src: otherSrc4, spi: spi4, v: psp.V0, crypt: 4}).bytes(t), v6), dropPSPACL},
		} {
			t.Run(fmt.Sprintf("%s/outer v6 %v", tc.name, v6), func(t *testing.T) {
				before := sampled(t, objs)
				checkVerdict(t, objs, tc.frame, tc.want)
				s := readSample(t, r)
				if s.Verdict != tc.want || s.Len != len(tc.frame) || !bytes.Equal(s.Data, tc.frame) {
					t.Errorf("sample: got %v len %d with %d bytes; want %v len %d with the whole frame", s.Verdict, s.Len, len(s.Data), tc.want, len(tc.frame))
				}
				if got := sampled(t, objs); got.Taken != before.Taken+1 {
					t.Errorf("sample counters: got %+v, want one more taken than %+v", got, before)
				}
			})
		}
		t.Run(fmt.Sprintf("no S bit/outer v6 %v", v6), func(t *testing.T) {
			checkVerdict(t, objs, outer(v6, pspFrame{src: grantSrc4, spi: spi4, v: psp.V0}).bytes(t), passNoSocket)
			noSample(t, r)
		})
	}
}

// TestPSPMaps checks the Go views: settings read back as written, bad
// ones refused, and the SPI table following the ACL.
func TestPSPMaps(t *testing.T) {
	objs, acl := loadPSP(t, pspOn)
	p := maps.FromObjects(&objs.XdpMaps).PSP
	for _, s := range []maps.PSPSettings{
		{Enabled: true, Versions: []psp.Version{psp.V1, psp.V3}, ACLDisabled: true},
		{Enabled: true, Versions: []psp.Version{psp.V0}},
	} {
		if err := p.SetSettings(s); err != nil {
			t.Fatal(err)
		}
		if got, err := p.Settings(); err != nil || fmt.Sprint(got) != fmt.Sprint(s) {
			t.Errorf("Settings(): got %+v, %v; want %+v", got, err, s)
		}
	}
	for _, bad := range []maps.PSPSettings{
		{Enabled: true},
		{Enabled: true, Versions: []psp.Version{4}},
	} {
		if err := p.SetSettings(bad); err == nil {
			t.Errorf("SetSettings(%+v) took it", bad)
		}
	}
	if got, err := p.Settings(); err != nil || got.Versions[0] != psp.V0 {
		t.Errorf("a refused setting changed the settings to %+v (%v)", got, err)
	}

	all, err := p.SPIs.All()
	want := map[uint32]maps.SPIGrant{spi4: {Version: psp.V0, Src: grantSrc4}, spi6: {Version: psp.V1, Src: grantSrc6}}
	if err != nil || fmt.Sprint(all) != fmt.Sprint(want) {
		t.Errorf("All(): got %v, %v; want %v", all, err, want)
	}
	if err := acl.Revoke(spi4); err != nil {
		t.Fatal(err)
	}
	if err := acl.Revoke(spiUnknown); err != nil {
		t.Errorf("Revoke of an SPI never allowed: %v", err)
	}
	all, err = p.SPIs.All()
	if _, ok := all[spi6]; err != nil || len(all) != 1 || !ok {
		t.Errorf("All() after a revoke: got %v, %v; want spi %#x only", all, err, spi6)
	}
	if err := p.SPIs.Put(tunnel.Grant{SPI: 1, Version: psp.V0}); err == nil {
		t.Error("Put of a grant without a source took it")
	}
}

// FuzzPSPIngress runs the program, PSP check on, on arbitrary frames
// seeded with sealed ones: it must never abort, and must count each
// frame exactly once, dropping only for a reason of its own (the test
// run has no AF_XDP socket, so nothing is redirected).
func FuzzPSPIngress(f *testing.F) {
	for _, v6 := range []bool{false, true} {
		for _, p := range []pspFrame{
			{src: grantSrc4, spi: spi4, v: psp.V0, crypt: 4},
			{src: grantSrc6, spi: spi6, v: psp.V1, crypt: 8, vc: true},
			{src: otherSrc4, spi: spiUnknown, v: psp.V2},
		} {
			f.Add(outer(v6, p).bytes(f))
		}
	}
	objs := loadXdp(f, 0, 0)
	serve(f, objs, dst4, dst6)
	set := maps.FromObjects(&objs.XdpMaps)
	if err := set.PSP.SetSettings(pspOn); err != nil {
		f.Fatal(err)
	}
	if err := set.PSP.SPIs.Put(tunnel.Grant{SPI: spi4, Version: psp.V0, Src: grantSrc4}); err != nil {
		f.Fatal(err)
	}
	dropReasons := []maps.Reason{maps.ReasonPSPBad, maps.ReasonPSPVersion, maps.ReasonPSPSPI, maps.ReasonPSPACL, maps.ReasonMartian}
	f.Fuzz(func(t *testing.T, frame []byte) {
		if len(frame) < 14 || len(frame) > 4000 {
			t.Skip("outside what BPF_PROG_TEST_RUN takes")
		}
		got, moved := runFrame(t, objs, frame)
		var total maps.Counter
		for v, c := range moved {
			if v.Action != got || (v.Action == maps.ActionDrop && !slices.Contains(dropReasons, v.Reason)) || (v.Action != maps.ActionDrop && v.Action != maps.ActionPass) {
				t.Errorf("verdict %v, counter %v moved", got, v)
			}
			total = total.Add(c)
		}
		if total != (maps.Counter{Packets: 1, Bytes: uint64(len(frame))}) {
			t.Errorf("counted %+v, want one packet of %d bytes", total, len(frame))
		}
	})
}
