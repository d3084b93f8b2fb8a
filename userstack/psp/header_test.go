package psp

import (
	"errors"
	"strings"
	"testing"
)

func TestParseHeader(t *testing.T) {
	tests := []struct {
		name string
		hex  string
		want Header
		err  error
	}{
		{"v0 from the reference", "110100019a34567800000000000000 01", Header{NextHeader: 17, ExtLen: 1, CryptOffset: 0, Version: V0, SPI: 0x9a345678, IV: 1}, nil},
		{"v0 with vc", "110203039a3456780000000000000001", Header{NextHeader: 17, ExtLen: 2, CryptOffset: 3, Version: V0, VC: true, SPI: 0x9a345678, IV: 1}, nil},
		{"v1 tunnel", "2901 0b05 1a345678 0000000000000002", Header{NextHeader: 41, ExtLen: 1, CryptOffset: 11, Version: V1, SPI: 0x1a345678, IV: 2}, nil},
		{"v3 with s and d", "0601 00cd 00000001 ffffffffffffffff", Header{NextHeader: 6, ExtLen: 1, Sample: true, Drop: true, Version: V3, SPI: 1, IV: ^uint64(0)}, nil},
		{"reserved crypt offset bits ignored", "1101 8101 9a345678 0000000000000001", Header{NextHeader: 17, ExtLen: 1, CryptOffset: 1, Version: V0, SPI: 0x9a345678, IV: 1}, nil},
		{"always-one bit clear", "1101 0000 9a345678 0000000000000001", Header{}, ErrBadHeader},
		{"zero extension length", "1100 0001 9a345678 0000000000000001", Header{}, ErrBadHeader},
		{"vc without room", "1101 0003 9a345678 0000000000000001", Header{}, ErrBadHeader},
		{"version 4", "1101 0011 9a345678 0000000000000001", Header{}, ErrVersion},
		{"version 15", "1101 003d 9a345678 0000000000000001", Header{}, ErrVersion},
		{"15 bytes", "1101 0001 9a345678 00000000000000", Header{}, ErrTruncated},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			b := mustHex(t, strings.ReplaceAll(tc.hex, " ", ""))
			got, err := ParseHeader(b)
			if !errors.Is(err, tc.err) {
				t.Fatalf("ParseHeader(%x): err = %v, want %v", b, err, tc.err)
			}
			if err != nil {
				return
			}
			if got != tc.want {
				t.Errorf("ParseHeader(%x) = %+v, want %+v", b, got, tc.want)
			}
			var back [HeaderLen]byte
			got.Put(back[:])
			b[2] &^= reservedMask
			if string(back[:]) != string(b[:HeaderLen]) {
				t.Errorf("Put(%+v) = %x, want %x", got, back, b[:HeaderLen])
			}
		})
	}
}

func TestVersion(t *testing.T) {
	tests := []struct {
		v        Version
		keyLen   int
		encrypts bool
		name     string
	}{
		{V0, 16, true, "aes-gcm-128"},
		{V1, 32, true, "aes-gcm-256"},
		{V2, 16, false, "aes-gmac-128"},
		{V3, 32, false, "aes-gmac-256"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if tc.v.KeyLen() != tc.keyLen || tc.v.Encrypts() != tc.encrypts || tc.v.String() != tc.name || !tc.v.Valid() {
				t.Errorf("%d: KeyLen %d Encrypts %v String %q Valid %v", tc.v, tc.v.KeyLen(), tc.v.Encrypts(), tc.v.String(), tc.v.Valid())
			}
		})
	}
	if Version(4).Valid() {
		t.Errorf("Version(4).Valid() = true")
	}
}
