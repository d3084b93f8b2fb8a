package psp

import (
	"bytes"
	"encoding/hex"
	"errors"
	"testing"

	"github.com/xdpstack/xdpstack/userstack/psp/psptest"
)

// katSetup reads a case's keys and SPI.
func katSetup(t *testing.T, c *psptest.Case) ([2]MasterKey, uint32) {
	t.Helper()
	keys, err := ParseMasterKeys(c.MasterKeys())
	if err != nil {
		t.Fatal(err)
	}
	spi, err := ParseSPI(c.SPI)
	if err != nil {
		t.Fatal(err)
	}
	return keys, spi
}

// katEncap is the case's configuration as an Encap.
func katEncap(t *testing.T, c *psptest.Case) Encap {
	t.Helper()
	mode, err := ParseMode(c.Mode)
	if err != nil {
		t.Fatal(err)
	}
	e := Encap{Mode: mode, VC: c.VCPresent}
	e.CryptOffset4, e.CryptOffset6 = c.CryptOffset.Transport, c.CryptOffset.Transport
	if mode == Tunnel {
		e.CryptOffset4, e.CryptOffset6 = c.CryptOffset.IPv4Tunnel, c.CryptOffset.IPv6Tunnel
	}
	return e
}

func TestKnownAnswerKDF(t *testing.T) {
	for _, c := range psptest.Cases(t) {
		if c.DerivedKey == "" {
			continue // corrupted cases carry no key; their source case does
		}
		t.Run(c.Name, func(t *testing.T) {
			keys, spi := katSetup(t, &c)
			v := Version(c.PSPVersion)
			for i, want := range c.KDFInputBlocks {
				if got := kdfBlock(uint8(i+1), spi, v); hex.EncodeToString(got[:]) != want {
					t.Errorf("kdfBlock(%d, %08x, %v) = %x, want %s", i+1, spi, v, got, want)
				}
			}
			key, err := DeriveKey(&keys, spi, v)
			if err != nil {
				t.Fatalf("DeriveKey(%08x, %v): %v", spi, v, err)
			}
			if got := hex.EncodeToString(key); got != c.DerivedKey {
				t.Errorf("DeriveKey(%08x, %v) = %s, want %s", spi, v, got, c.DerivedKey)
			}
		})
	}
}

func TestKnownAnswerDecrypt(t *testing.T) {
	for _, c := range psptest.Cases(t) {
		t.Run(c.Name, func(t *testing.T) {
			keys, _ := katSetup(t, &c)
			d := NewDevice(keys[0], keys[1])
			clear := psptest.Frames(t, c.Path("cleartext.pcap"))
			enc := psptest.Frames(t, c.Path("encrypted.pcap"))
			if len(clear) != len(enc) || len(enc) == 0 {
				t.Fatalf("%s: %d cleartext frames, %d encrypted", c.Name, len(clear), len(enc))
			}
			for i, frame := range enc {
				dst := make([]byte, len(frame))
				n, _, err := d.Decrypt(dst, frame)
				switch c.Expected.Decrypt {
				case "ok":
					if err != nil {
						t.Fatalf("Decrypt(frame %d): %v", i, err)
					}
					if !bytes.Equal(dst[:n], clear[i]) {
						t.Errorf("Decrypt(frame %d) =\n%x\nwant\n%x", i, dst[:n], clear[i])
					}
				case "auth_fail":
					if !errors.Is(err, ErrAuth) {
						t.Errorf("Decrypt(frame %d): got n=%d err=%v, want %v", i, n, err, ErrAuth)
					}
				default:
					t.Fatalf("%s: unknown expectation %q", c.Name, c.Expected.Decrypt)
				}
			}
			s := d.Stats()
			if c.Expected.Decrypt == "ok" && (s.RxPackets != uint64(len(enc)) || s.RxAuthFail != 0) {
				t.Errorf("Stats() = %+v, want %d rx-packets", s, len(enc))
			}
			if c.Expected.Decrypt == "auth_fail" && (s.RxAuthFail != uint64(len(enc)) || s.RxPackets != 0) {
				t.Errorf("Stats() = %+v, want %d rx-auth-fail", s, len(enc))
			}
		})
	}
}

func TestKnownAnswerEncrypt(t *testing.T) {
	for _, c := range psptest.Cases(t) {
		if c.Kind != "roundtrip" {
			continue
		}
		t.Run(c.Name, func(t *testing.T) {
			keys, spi := katSetup(t, &c)
			v := Version(c.PSPVersion)
			key, err := DeriveKey(&keys, spi, v)
			if err != nil {
				t.Fatal(err)
			}
			sa, err := NewSA(spi, v, key)
			if err != nil {
				t.Fatal(err)
			}
			if err := sa.SetNextIV(c.IVFirst); err != nil {
				t.Fatal(err)
			}
			e := katEncap(t, &c)
			clear := psptest.Frames(t, c.Path("cleartext.pcap"))
			enc := psptest.Frames(t, c.Path("encrypted.pcap"))
			for i, frame := range clear {
				dst := make([]byte, len(frame)+EncapLen(&e, true))
				n, err := sa.Encrypt(dst, frame, &e)
				if err != nil {
					t.Fatalf("Encrypt(frame %d, %+v): %v", i, e, err)
				}
				if !bytes.Equal(dst[:n], enc[i]) {
					t.Errorf("Encrypt(frame %d, %+v) =\n%x\nwant\n%x", i, e, dst[:n], enc[i])
				}
				if i < len(c.Packets) && c.Packets[i].PSPHeader != "" {
					r, err := rx(dst[:n])
					if err != nil {
						t.Fatalf("rx(encrypted frame %d): %v", i, err)
					}
					if got := hex.EncodeToString(r.psp[:HeaderLen]); got != c.Packets[i].PSPHeader {
						t.Errorf("frame %d psp header = %s, want %s", i, got, c.Packets[i].PSPHeader)
					}
				}
			}
			if s := sa.Stats(); s.TxPackets != uint64(len(clear)) || s.TxError != 0 {
				t.Errorf("Stats() = %+v, want %d tx-packets", s, len(clear))
			}
		})
	}
}
