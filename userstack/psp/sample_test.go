package psp

import (
	"bytes"
	"testing"

	"github.com/xdpstack/xdpstack/userstack/psp/psptest"
)

// A packet sealed with the S bit opens on the peer's device like any
// other, and the header it reports says S; the S bit is authenticated,
// so flipping it on the wire fails the ICV.
func TestEncryptSampled(t *testing.T) {
	for _, v := range []Version{V0, V2} {
		t.Run(v.String(), func(t *testing.T) {
			d, sa := newPair(t, v)
			frame := psptest.Packet(false, psptest.TCP, 100)
			e := Encap{Mode: Tunnel, CryptOffset4: 5}
			enc := make([]byte, len(frame)+EncapLen(&e, false))
			dec := make([]byte, len(enc))
			for _, sample := range []bool{false, true} {
				var n int
				var err error
				if sample {
					n, err = sa.EncryptSampled(enc, frame, &e)
				} else {
					n, err = sa.Encrypt(enc, frame, &e)
				}
				if err != nil {
					t.Fatal(err)
				}
				m, h, err := d.Decrypt(dec, enc[:n])
				if err != nil {
					t.Fatalf("Decrypt of a packet sealed with sample %v: %v", sample, err)
				}
				if !bytes.Equal(dec[:m], frame) {
					t.Errorf("Decrypt of a packet sealed with sample %v: not the frame sealed", sample)
				}
				if h.Sample != sample || h.Drop {
					t.Errorf("Decrypt of a packet sealed with sample %v: header S %v D %v", sample, h.Sample, h.Drop)
				}
				r, err := rx(enc[:n])
				if err != nil {
					t.Fatal(err)
				}
				r.psp[3] ^= 0x80 // the S bit, on the wire
				if _, _, err := d.Decrypt(dec, enc[:n]); err != ErrAuth {
					t.Errorf("Decrypt with the S bit flipped: %v, want %v", err, ErrAuth)
				}
			}
			if s := sa.Stats(); s.TxPackets != 2 || s.TxError != 0 {
				t.Errorf("SA stats %+v, want 2 tx packets and no error", s)
			}
		})
	}
}
