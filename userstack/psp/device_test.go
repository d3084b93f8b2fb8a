package psp

import (
	"bytes"
	"context"
	"errors"
	"math"
	"strings"
	"testing"
	"time"

	"github.com/xdpstack/xdpstack/userstack/psp/psptest"
)

// seal encrypts one UDP frame with sa in transport mode.
func seal(t *testing.T, sa *SA) []byte {
	t.Helper()
	frame := psptest.Packet(false, psptest.UDP, 32)
	e := Encap{Mode: Transport, CryptOffset4: 1}
	dst := make([]byte, len(frame)+EncapLen(&e, false))
	n, err := sa.Encrypt(dst, frame, &e)
	if err != nil {
		t.Fatalf("Encrypt(sa %08x): %v", sa.SPI(), err)
	}
	return dst[:n]
}

func TestAllocSPI(t *testing.T) {
	k0, k1 := testKeys()
	d := NewDevice(k0, k1)
	d.rand = bytes.NewReader(bytes.Repeat([]byte{7}, 64))
	var newKey MasterKey
	for i := range newKey {
		newKey[i] = 7
	}
	tests := []struct {
		name    string
		rotate  bool
		wantSPI uint32
		master  [2]MasterKey
	}{
		{"first under key 0", false, 0x00000001, [2]MasterKey{k0, k1}},
		{"second under key 0", false, 0x00000002, [2]MasterKey{k0, k1}},
		{"after rotation, key 1 slot", true, 0x80000001, [2]MasterKey{k0, newKey}},
		{"sequential again", false, 0x80000002, [2]MasterKey{k0, newKey}},
		{"second rotation back to slot 0", true, 0x00000001, [2]MasterKey{newKey, newKey}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if tc.rotate {
				if err := d.Rotate(); err != nil {
					t.Fatalf("Rotate(): %v", err)
				}
			}
			spi, key, err := d.AllocSPI(V1)
			if err != nil || spi != tc.wantSPI {
				t.Fatalf("AllocSPI(V1) = %08x, %v; want %08x", spi, err, tc.wantSPI)
			}
			want, _ := DeriveKey(&tc.master, spi, V1)
			if !bytes.Equal(key, want) {
				t.Errorf("AllocSPI(V1) key = %x, want %x", key, want)
			}
		})
	}
	if got := d.Rotations(); got != 2 {
		t.Errorf("Rotations() = %d, want 2", got)
	}
}

func TestAllocSPIExhausted(t *testing.T) {
	d := NewDevice(testKeys())
	d.slots[0].nextSPI = spiKeyBit - 1
	if spi, _, err := d.AllocSPI(V0); err != nil || spi != 0x7fffffff {
		t.Fatalf("AllocSPI(V0) = %08x, %v; want 7fffffff", spi, err)
	}
	if _, _, err := d.AllocSPI(V0); !errors.Is(err, ErrSPIExhausted) {
		t.Fatalf("AllocSPI(V0) past the last SPI: err = %v, want %v", err, ErrSPIExhausted)
	}
}

// Rotation keeps the previous key's SAs working until they are retired.
func TestRotation(t *testing.T) {
	d, old := newPair(t, V0)
	frame := seal(t, old)
	dst := make([]byte, len(frame))
	if err := d.Rotate(); err != nil {
		t.Fatal(err)
	}
	if _, _, err := d.Decrypt(dst, frame); err != nil {
		t.Fatalf("Decrypt(previous key's SA after Rotate): %v", err)
	}
	spi, key, err := d.AllocSPI(V0)
	if err != nil {
		t.Fatal(err)
	}
	fresh, err := d.NewTxSA(spi, V0, key)
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := d.Decrypt(dst, seal(t, fresh)); err != nil {
		t.Fatalf("Decrypt(new key's SA %08x): %v", spi, err)
	}
	d.Retire()
	if _, _, err := d.Decrypt(dst, frame); !errors.Is(err, ErrRetiredKey) {
		t.Fatalf("Decrypt(retired key's SA): err = %v, want %v", err, ErrRetiredKey)
	}
	if s := d.Stats(); s.RxBad != 1 || s.RxPackets != 2 {
		t.Errorf("Stats() = %+v, want 2 rx-packets, 1 rx-bad", s)
	}
	if err := d.Rotate(); err != nil {
		t.Fatal(err)
	}
	if _, _, err := d.Decrypt(dst, frame); !errors.Is(err, ErrAuth) {
		t.Fatalf("Decrypt(SA of a replaced key): err = %v, want %v", err, ErrAuth)
	}
}

func TestRandomDeviceStartsWithOneKey(t *testing.T) {
	d, err := NewDeviceRandom()
	if err != nil {
		t.Fatal(err)
	}
	spi, _, err := d.AllocSPI(V0)
	if err != nil || spi != 1 {
		t.Fatalf("AllocSPI(V0) = %08x, %v; want 00000001", spi, err)
	}
	if _, err := d.rxSA(0x80000001, V0); !errors.Is(err, ErrRetiredKey) {
		t.Errorf("rxSA(80000001) on a fresh device: err = %v, want %v", err, ErrRetiredKey)
	}
}

func TestRunRotation(t *testing.T) {
	d := NewDevice(testKeys())
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	if err := d.RunRotation(ctx, 10*time.Millisecond); err != nil {
		t.Fatalf("RunRotation: %v", err)
	}
	if got := d.Rotations(); got < 2 {
		t.Errorf("Rotations() after 100ms at 10ms = %d, want at least 2", got)
	}
}

func TestIVNeverRepeats(t *testing.T) {
	_, sa := newPair(t, V0)
	if err := sa.SetNextIV(0); err == nil {
		t.Errorf("SetNextIV(0): no error")
	}
	seal(t, sa) // IV 1
	if err := sa.SetNextIV(1); err == nil {
		t.Errorf("SetNextIV(1) after IV 1 was used: no error")
	}
	if err := sa.SetNextIV(math.MaxUint64); err != nil {
		t.Fatalf("SetNextIV(max): %v", err)
	}
	frame := seal(t, sa)
	if h, _ := ParseHeader(frame[14+20+8:]); h.IV != math.MaxUint64 {
		t.Errorf("IV = %x, want the last one", h.IV)
	}
	e := Encap{Mode: Transport}
	if _, err := sa.Encrypt(make([]byte, 1500), psptest.Packet(false, psptest.UDP, 1), &e); !errors.Is(err, ErrIVExhausted) {
		t.Fatalf("Encrypt after the last IV: err = %v, want %v", err, ErrIVExhausted)
	}
	if s := sa.Stats(); s.TxPackets != 2 || s.TxError != 1 {
		t.Errorf("Stats() = %+v, want 2 tx-packets, 1 tx-error", s)
	}
}

func TestEncryptRefuses(t *testing.T) {
	arp := psptest.Packet(false, psptest.UDP, 0)
	arp[12], arp[13] = 0x08, 0x06
	short := psptest.Packet(false, psptest.UDP, 10)
	v6hop := psptest.Packet(true, psptest.UDP, 10)
	v6hop[14+6] = 0 // hop-by-hop options
	tests := []struct {
		name  string
		frame []byte
		e     Encap
		dst   int
		err   error
	}{
		{"not ip", arp, Encap{}, 1500, ErrNotIP},
		{"ip length past frame", short[:len(short)-1], Encap{}, 1500, ErrTruncated},
		{"ethernet only", short[:14], Encap{}, 1500, ErrTruncated},
		{"crypt offset past payload", short, Encap{CryptOffset4: 5}, 1500, ErrCryptOffset},
		{"ipv6 extension header in transport", v6hop, Encap{}, 1500, ErrUnsupported},
		{"ip in ip in transport", withProto(psptest.Packet(false, psptest.UDP, 20), 41), Encap{}, 1500, ErrUnsupported},
		{"short destination", short, Encap{}, len(short) + 39, ErrShortBuffer},
		{"too big for ipv4", psptest.Packet(false, psptest.UDP, 0xffff-28), Encap{Mode: Tunnel}, 0x20000, ErrTooBig},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, sa := newPair(t, V0)
			n, err := sa.Encrypt(make([]byte, tc.dst), tc.frame, &tc.e)
			if !errors.Is(err, tc.err) {
				t.Fatalf("Encrypt(%x, %+v) = %d, %v; want %v", tc.frame, tc.e, n, err, tc.err)
			}
			if s := sa.Stats(); s.TxError != 1 || s.TxPackets != 0 {
				t.Errorf("Stats() = %+v, want 1 tx-error", s)
			}
			if err := sa.SetNextIV(1); err != nil {
				t.Errorf("a refused frame used an IV: SetNextIV(1): %v", err)
			}
		})
	}
}

func TestDecryptRefuses(t *testing.T) {
	_, sa := newPair(t, V0)
	good := seal(t, sa)
	const psp = 14 + 20 + 8
	mod := func(f func(b []byte)) []byte {
		b := bytes.Clone(good)
		f(b)
		return b
	}
	tests := []struct {
		name    string
		frame   []byte
		dst     int
		err     error
		counter func(Stats) uint64
	}{
		{"plain udp", psptest.Packet(false, psptest.UDP, 40), 1500, ErrNotPSP, nil},
		{"not ip", mod(func(b []byte) { b[12] = 0x86; b[13] = 0x00 }), 1500, ErrNotPSP, nil},
		{"truncated frame", good[:len(good)-1], 1500, ErrTruncated, func(s Stats) uint64 { return s.RxError }},
		{"udp length short", mod(func(b []byte) { b[14+20+5]-- }), 1500, ErrBadHeader, func(s Stats) uint64 { return s.RxError }},
		{"always-one bit clear", mod(func(b []byte) { b[psp+3] &^= 1 }), 1500, ErrBadHeader, func(s Stats) uint64 { return s.RxError }},
		{"extension length 3", mod(func(b []byte) { b[psp+1] = 3 }), 1500, ErrBadHeader, func(s Stats) uint64 { return s.RxError }},
		{"version 9", mod(func(b []byte) { b[psp+3] = 9<<2 | 1 }), 1500, ErrVersion, func(s Stats) uint64 { return s.RxBad }},
		{"crypt offset past payload", mod(func(b []byte) { b[psp+2] = 63 }), 1500, ErrTruncated, func(s Stats) uint64 { return s.RxError }},
		{"flipped ciphertext", mod(func(b []byte) { b[len(b)-20] ^= 1 }), 1500, ErrAuth, func(s Stats) uint64 { return s.RxAuthFail }},
		{"sample bit set in transit", mod(func(b []byte) { b[psp+3] |= 0x80 }), 1500, ErrAuth, func(s Stats) uint64 { return s.RxAuthFail }},
		{"short destination", good, len(good) - 41, ErrShortBuffer, func(s Stats) uint64 { return s.RxError }},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			d := NewDevice(testKeys())
			n, _, err := d.Decrypt(make([]byte, tc.dst), tc.frame)
			if !errors.Is(err, tc.err) || n != 0 {
				t.Fatalf("Decrypt(%x) = %d, %v; want 0, %v", tc.frame, n, err, tc.err)
			}
			s := d.Stats()
			if s.RxPackets != 0 {
				t.Errorf("Stats() = %+v: a refused frame was counted as received", s)
			}
			if tc.counter != nil && tc.counter(s) != 1 {
				t.Errorf("Stats() = %+v: want the refusal counted once", s)
			}
		})
	}
}

func TestStatsNames(t *testing.T) {
	s := Stats{1, 2, 3, 4, 5, 6, 7, 8}
	want := []string{"rx-packets", "rx-bytes", "rx-auth-fail", "rx-error", "rx-bad", "tx-packets", "tx-bytes", "tx-error"}
	i := 0
	s.Each(func(name string, v uint64) {
		if name != want[i] || v != uint64(i+1) {
			t.Errorf("Each #%d = %s %d, want %s %d", i, name, v, want[i], i+1)
		}
		i++
	})
	if i != len(want) {
		t.Errorf("Each called fn %d times, want %d", i, len(want))
	}
}

// The per-SA counters add up to the device's totals, and bytes are counted
// from after the IV to before the ICV.
func TestCounters(t *testing.T) {
	d, sa := newPair(t, V1)
	frame := seal(t, sa)
	dst := make([]byte, len(frame))
	for range 3 {
		if _, _, err := d.Decrypt(dst, frame); err != nil {
			t.Fatal(err)
		}
	}
	frame[len(frame)-1] ^= 1
	d.Decrypt(dst, frame)
	payload := uint64(8 + 32) // UDP header and payload of seal's frame
	var rx *SA
	d.EachRxSA(func(s *SA) { rx = s })
	if rx == nil || rx.SPI() != sa.SPI() || rx.Version() != V1 {
		t.Fatalf("EachRxSA: got %v, want the SA %08x", rx, sa.SPI())
	}
	want := Stats{RxPackets: 3, RxBytes: 3 * payload, RxAuthFail: 1}
	if got := rx.Stats(); got != want {
		t.Errorf("rx SA Stats() = %+v, want %+v", got, want)
	}
	want.TxPackets, want.TxBytes = 1, payload
	if got := d.Stats(); got != want {
		t.Errorf("device Stats() = %+v, want %+v", got, want)
	}
}

// TestMasterKeysDecryptOffline checks that what MasterKeys prints is
// what ParseMasterKeys and DeriveKey need to open the device's SAs, as
// `psp decrypt --master-keys` does with a capture, across a rotation,
// and that a retired key prints as zero.
func TestMasterKeysDecryptOffline(t *testing.T) {
	d, err := NewDeviceRandom()
	if err != nil {
		t.Fatal(err)
	}
	check := func(spi uint32, want []byte) {
		t.Helper()
		keys, err := ParseMasterKeys(d.MasterKeys())
		if err != nil {
			t.Fatal(err)
		}
		got, err := DeriveKey(&keys, spi, V1)
		if err != nil || !bytes.Equal(got, want) {
			t.Fatalf("spi %#x: derived key differs from the device's (%v)", spi, err)
		}
	}
	spi0, key0, err := d.AllocSPI(V1)
	if err != nil {
		t.Fatal(err)
	}
	check(spi0, key0)
	if !strings.HasSuffix(d.MasterKeys(), ","+strings.Repeat("0", 64)) {
		t.Fatal("the unused slot of a new device does not print as zero")
	}
	if err := d.Rotate(); err != nil {
		t.Fatal(err)
	}
	spi1, key1, err := d.AllocSPI(V1)
	if err != nil {
		t.Fatal(err)
	}
	check(spi0, key0)
	check(spi1, key1)
}
