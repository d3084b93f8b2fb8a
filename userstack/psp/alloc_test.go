package psp

import (
	"testing"

	"github.com/xdpstack/xdpstack/userstack/psp/psptest"
)

// The steady path allocates nothing: the SA's AEAD is built once, the
// nonce is read from the header in place, and buffers are the caller's.
func TestNoAllocations(t *testing.T) {
	for _, v := range []Version{V0, V1, V2, V3} {
		for _, mode := range []Mode{Transport, Tunnel} {
			t.Run(v.String()+"/"+mode.String(), func(t *testing.T) {
				d, sa := newPair(t, v)
				frame := psptest.Packet(true, psptest.UDP, 1400)
				e := Encap{Mode: mode, CryptOffset6: 1, VC: true}
				enc := make([]byte, len(frame)+EncapLen(&e, true))
				dec := make([]byte, len(enc))
				if _, err := sa.Encrypt(enc, frame, &e); err != nil {
					t.Fatal(err)
				}
				if _, _, err := d.Decrypt(dec, enc); err != nil {
					t.Fatal(err) // the first packet of an SPI derives its key
				}
				if n := testing.AllocsPerRun(100, func() { sa.Encrypt(enc, frame, &e) }); n != 0 {
					t.Errorf("Encrypt: %v allocations per run, want 0", n)
				}
				if n := testing.AllocsPerRun(100, func() { d.Decrypt(dec, enc) }); n != 0 {
					t.Errorf("Decrypt: %v allocations per run, want 0", n)
				}
				if n := testing.AllocsPerRun(100, func() { sa.EncryptSampled(enc, frame, &e) }); n != 0 {
					t.Errorf("EncryptSampled: %v allocations per run, want 0", n)
				}
				enc[len(enc)-1] ^= 1
				if n := testing.AllocsPerRun(100, func() { d.Decrypt(dec, enc) }); n != 0 {
					t.Errorf("Decrypt of a forged frame: %v allocations per run, want 0", n)
				}
			})
		}
	}
}
