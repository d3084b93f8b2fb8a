package psp

import (
	"net/netip"
	"strings"
	"testing"

	"github.com/xdpstack/xdpstack/userstack/psp/psptest"
)

func TestParseMasterKeys(t *testing.T) {
	k := strings.Repeat("ab", 32)
	tests := []struct {
		name string
		in   string
		ok   bool
	}{
		{"two keys", k + "," + k, true},
		{"spaces around", k + " , " + k, true},
		{"one a line", k + "\n" + k + "\n", true},
		{"one key", k, false},
		{"three keys", k + "," + k + "," + k, false},
		{"short key", k + "," + k[:62], false},
		{"not hex", k + "," + strings.Repeat("zz", 32), false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			keys, err := ParseMasterKeys(tc.in)
			if (err == nil) != tc.ok {
				t.Fatalf("ParseMasterKeys(%q) = %v, want ok %v", tc.in, err, tc.ok)
			}
			if err != nil && (strings.Contains(err.Error(), "abab") || strings.Contains(err.Error(), "zzzz")) {
				t.Errorf("ParseMasterKeys(%q) = %v: the error holds key material", tc.in, err)
			}
			if tc.ok && keys[1][31] != 0xab {
				t.Errorf("ParseMasterKeys(%q) = %x", tc.in, keys)
			}
		})
	}
}

func TestParseSPIVersionMode(t *testing.T) {
	tests := []struct {
		name  string
		parse func(string) error
		in    string
		ok    bool
	}{
		{"spi", spiErr, "9a345678", true},
		{"spi with 0x", spiErr, "0x9A345678", true},
		{"spi too long", spiErr, "19a345678", false},
		{"spi empty", spiErr, "0x", false},
		{"spi not hex", spiErr, "spi", false},
		{"version 3", versionErr, "3", true},
		{"version 4", versionErr, "4", false},
		{"version negative", versionErr, "-1", false},
		{"mode transport", modeErr, "transport", true},
		{"mode tunnel", modeErr, "tunnel", true},
		{"mode other", modeErr, "Tunnel", false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if err := tc.parse(tc.in); (err == nil) != tc.ok {
				t.Errorf("parse %q: err = %v, want ok %v", tc.in, err, tc.ok)
			}
		})
	}
}

func spiErr(s string) error     { _, err := ParseSPI(s); return err }
func versionErr(s string) error { _, err := ParseVersion(s); return err }
func modeErr(s string) error    { _, err := ParseMode(s); return err }

func TestEncapValidate(t *testing.T) {
	v4, v6 := netip.MustParseAddr("192.0.2.1"), netip.MustParseAddr("2001:db8::1")
	tests := []struct {
		name string
		e    Encap
		ok   bool
	}{
		{"transport", Encap{Mode: Transport, CryptOffset4: 63, CryptOffset6: 63}, true},
		{"tunnel with outer", Encap{Mode: Tunnel, OuterSrc: v6, OuterDst: v6}, true},
		{"crypt offset 64", Encap{CryptOffset6: 64}, false},
		{"mode 2", Encap{Mode: 2}, false},
		{"outer families differ", Encap{Mode: Tunnel, OuterSrc: v4, OuterDst: v6}, false},
		{"outer source only", Encap{Mode: Tunnel, OuterSrc: v4}, false},
		{"outer in transport", Encap{Mode: Transport, OuterSrc: v4, OuterDst: v4}, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if err := tc.e.Validate(); (err == nil) != tc.ok {
				t.Errorf("Validate(%+v) = %v, want ok %v", tc.e, err, tc.ok)
			}
			_, sa := newPair(t, V0)
			frame := psptest.Packet(true, psptest.UDP, 300)
			if _, err := sa.Encrypt(make([]byte, 1500), frame, &tc.e); (err == nil) != tc.ok {
				t.Errorf("Encrypt(%+v) = %v, want ok %v", tc.e, err, tc.ok)
			}
		})
	}
}
