package psp

import (
	"bytes"
	"testing"

	"github.com/xdpstack/xdpstack/userstack/psp/psptest"
)

// fuzzCorpus is a receiving device and frames it accepts: the reference's
// encrypted frames when the known-answer set is there (under its master
// keys), and frames of every version sealed here.
func fuzzCorpus(f *testing.F) (*Device, [][]byte) {
	f.Helper()
	k0, k1 := testKeys()
	var frames [][]byte
	if _, err := psptest.FindDir(); err == nil {
		for _, c := range psptest.Cases(f) {
			if c.Kind != "roundtrip" {
				continue
			}
			keys, err := ParseMasterKeys(c.MasterKeys())
			if err != nil {
				f.Fatal(err)
			}
			k0, k1 = keys[0], keys[1]
			frames = append(frames, psptest.Frames(f, c.Path("encrypted.pcap"))...)
		}
	}
	d := NewDevice(k0, k1)
	for _, v := range []Version{V0, V1, V2, V3} {
		for _, e := range []Encap{{Mode: Transport, CryptOffset6: 1, VC: true}, {Mode: Tunnel, CryptOffset4: 1}} {
			spi, key, err := d.AllocSPI(v)
			if err != nil {
				f.Fatal(err)
			}
			sa, err := NewSA(spi, v, key)
			if err != nil {
				f.Fatal(err)
			}
			for _, inner6 := range []bool{false, true} {
				frame := psptest.Packet(inner6, psptest.UDP, 24)
				dst := make([]byte, len(frame)+EncapLen(&e, inner6))
				n, err := sa.Encrypt(dst, frame, &e)
				if err != nil {
					f.Fatal(err)
				}
				frames = append(frames, dst[:n])
			}
		}
	}
	return d, frames
}

func FuzzParseHeader(f *testing.F) {
	_, frames := fuzzCorpus(f)
	for _, frame := range frames {
		if r, err := rx(frame); err == nil {
			f.Add(r.psp[:HeaderLen])
		}
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		h, err := ParseHeader(b)
		if err != nil {
			return
		}
		var back [HeaderLen]byte
		h.Put(back[:])
		want := bytes.Clone(b[:HeaderLen])
		want[2] &^= reservedMask
		if !bytes.Equal(back[:], want) {
			t.Fatalf("Put(ParseHeader(%x)) = %x", b, back)
		}
	})
}

// FuzzDecrypt feeds the decoder anything: it must not panic, and it must
// accept no PSP packet but those sealed with the keys (the corpus).
func FuzzDecrypt(f *testing.F) {
	d, frames := fuzzCorpus(f)
	genuine := make(map[string]bool)
	for _, frame := range frames {
		r, err := rx(frame)
		if err != nil {
			f.Fatalf("corpus frame %x: %v", frame, err)
		}
		genuine[string(r.psp)] = true
		if len(frame) < 256 { // Go's mutator crawls on the 1.5 kB frames
			f.Add(frame)
		}
	}
	dst := make([]byte, 1<<16)
	f.Fuzz(func(t *testing.T, frame []byte) {
		n, _, err := d.Decrypt(dst, frame)
		if err != nil {
			return
		}
		r, perr := rx(frame)
		if perr != nil || !genuine[string(r.psp)] {
			t.Fatalf("Decrypt accepted a packet nobody sealed: %x", frame)
		}
		if n > len(frame) {
			t.Fatalf("Decrypt(%d bytes) wrote %d", len(frame), n)
		}
	})
}

// FuzzTamper changes bytes of genuine PSP packets, from the header to the
// ICV: every change must be refused.
func FuzzTamper(f *testing.F) {
	d, frames := fuzzCorpus(f)
	for i := range frames {
		f.Add(uint16(i), uint16(0), byte(0x80))  // reserved crypt offset bit
		f.Add(uint16(i), uint16(3), byte(0x80))  // S bit
		f.Add(uint16(i), uint16(15), byte(0x01)) // IV
		f.Add(uint16(i), uint16(0xffff), byte(0x01))
	}
	dst := make([]byte, 1<<16)
	f.Fuzz(func(t *testing.T, which, pos uint16, mask byte) {
		if mask == 0 {
			return
		}
		frame := bytes.Clone(frames[int(which)%len(frames)])
		r, err := rx(frame)
		if err != nil {
			t.Fatal(err)
		}
		r.psp[int(pos)%len(r.psp)] ^= mask
		if n, _, err := d.Decrypt(dst, frame); err == nil {
			t.Fatalf("Decrypt accepted a packet with byte %d of its psp part xored with %#x: %d bytes out", int(pos)%len(r.psp), mask, n)
		}
	})
}

// FuzzRoundTrip seals any frame the encoder takes and checks that the
// decoder gives it back.
func FuzzRoundTrip(f *testing.F) {
	for _, v6 := range []bool{false, true} {
		for _, proto := range []uint8{psptest.UDP, psptest.TCP} {
			f.Add(psptest.Packet(v6, proto, 100), uint8(0), false, uint8(1), false)
			f.Add(psptest.Packet(v6, proto, 3), uint8(3), true, uint8(0), true)
		}
	}
	devices := [4]*Device{}
	sas := [4]*SA{}
	for v := range devices {
		devices[v], sas[v] = newPair(f, Version(v))
	}
	dst := make([]byte, 1<<17)
	dec := make([]byte, 1<<17)
	f.Fuzz(func(t *testing.T, frame []byte, v uint8, tunnel bool, cryptOff uint8, vc bool) {
		e := Encap{VC: vc, CryptOffset4: cryptOff % 64, CryptOffset6: cryptOff % 64}
		if tunnel {
			e.Mode = Tunnel
		}
		d, sa := devices[v%4], sas[v%4]
		n, err := sa.Encrypt(dst, frame, &e)
		if err != nil {
			return
		}
		m, _, err := d.Decrypt(dec, dst[:n])
		if err != nil {
			t.Fatalf("Decrypt(Encrypt(%x, %+v)): %v", frame, e, err)
		}
		want := normalize(frame, e.Mode)
		if !bytes.Equal(dec[:m], want) {
			t.Fatalf("Decrypt(Encrypt(%x, %+v)) =\n%x\nwant\n%x", frame, e, dec[:m], want)
		}
	})
}

// normalize is the frame as decryption gives it back: Ethernet padding
// dropped and, in transport mode, the IPv4 header checksum recomputed, as
// the reference does too; a tunnel leaves the inner packet as it was.
func normalize(frame []byte, mode Mode) []byte {
	ethN, etype, _ := l2(frame)
	var ip ipPacket
	parseIP(frame, ethN, etype == etherIPv6, &ip)
	out := bytes.Clone(frame[:ip.end])
	if mode == Transport && !ip.v6 {
		putChecksum(out[ip.off : ip.off+ip.hdrLen])
	}
	return out
}
