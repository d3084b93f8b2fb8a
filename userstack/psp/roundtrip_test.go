package psp

import (
	"bytes"
	"errors"
	"fmt"
	"net/netip"
	"testing"

	"github.com/xdpstack/xdpstack/userstack/psp/psptest"
)

func testKeys() (MasterKey, MasterKey) {
	var k0, k1 MasterKey
	for i := range k0 {
		k0[i], k1[i] = byte(i), byte(0xff-i)
	}
	return k0, k1
}

// newPair allocates an SPI on a fresh receiving device and builds the
// sending SA for it, as a peer would after key exchange.
func newPair(t testing.TB, v Version) (*Device, *SA) {
	t.Helper()
	d := NewDevice(testKeys())
	spi, key, err := d.AllocSPI(v)
	if err != nil {
		t.Fatalf("AllocSPI(%v): %v", v, err)
	}
	sa, err := d.NewTxSA(spi, v, key)
	if err != nil {
		t.Fatalf("NewTxSA(%08x, %v): %v", spi, v, err)
	}
	return d, sa
}

// Round trips over what the reference set does not cover: versions 2 and
// 3, and tunnels whose outer IP version differs from the inner one.
func TestRoundTrip(t *testing.T) {
	outers := []struct {
		name     string
		src, dst netip.Addr
	}{
		{"copied outer", netip.Addr{}, netip.Addr{}},
		{"ipv4 outer", netip.MustParseAddr("192.0.2.1"), netip.MustParseAddr("192.0.2.2")},
		{"ipv6 outer", netip.MustParseAddr("2001:db8::1"), netip.MustParseAddr("2001:db8::2")},
	}
	for _, v := range []Version{V0, V1, V2, V3} {
		for _, mode := range []Mode{Transport, Tunnel} {
			for _, outer := range outers {
				if mode == Transport && outer.src.IsValid() {
					continue
				}
				for _, inner6 := range []bool{false, true} {
					name := fmt.Sprintf("%v/%v/%s/inner ipv%d", v, mode, outer.name, map[bool]int{false: 4, true: 6}[inner6])
					t.Run(name, func(t *testing.T) {
						roundTrip(t, v, Encap{Mode: mode, OuterSrc: outer.src, OuterDst: outer.dst}, inner6)
					})
				}
			}
		}
	}
}

func roundTrip(t *testing.T, v Version, e Encap, inner6 bool) {
	d, sa := newPair(t, v)
	count := 0
	for _, proto := range []uint8{psptest.UDP, psptest.TCP} {
		for _, size := range []int{0, 1, 63, 1400} {
			for _, vc := range []bool{false, true} {
				for _, co := range []uint8{0, 1, 2, 3, 5} {
					frame := psptest.Packet(inner6, proto, size)
					e.VC, e.CryptOffset4, e.CryptOffset6 = vc, co, co
					enc := make([]byte, len(frame)+EncapLen(&e, inner6))
					n, err := sa.Encrypt(enc, frame, &e)
					if errors.Is(err, ErrCryptOffset) {
						continue // the offset reaches past a small packet
					}
					if err != nil {
						t.Fatalf("Encrypt(%d-byte proto %d, %+v): %v", size, proto, e, err)
					}
					if n != len(enc) {
						t.Errorf("Encrypt(%d-byte proto %d, %+v) = %d bytes, EncapLen says %d", size, proto, e, n, len(enc))
					}
					enc = enc[:n]
					if !v.Encrypts() && !bytes.Contains(enc, frame[len(frame)-size:]) {
						t.Errorf("Encrypt(%+v) with %v: payload not in the clear", e, v)
					}
					dec := make([]byte, len(enc))
					m, h, err := d.Decrypt(dec, enc)
					if err != nil {
						t.Fatalf("Decrypt(Encrypt(%d-byte proto %d, %+v)): %v", size, proto, e, err)
					}
					if !bytes.Equal(dec[:m], frame) {
						t.Errorf("Decrypt(Encrypt(%d-byte proto %d, %+v)) =\n%x\nwant\n%x", size, proto, e, dec[:m], frame)
					}
					if h.Version != v || h.SPI != sa.SPI() || h.VC != vc || h.CryptOffset != co {
						t.Errorf("Decrypt(%+v) header = %+v", e, h)
					}
					count++
				}
			}
		}
	}
	if s := d.Stats(); s.RxPackets != uint64(count) || s.TxPackets != uint64(count) {
		t.Errorf("Stats() = %+v, want %d rx and tx packets", s, count)
	}
}

func TestFlowEntropy(t *testing.T) {
	_, sa := newPair(t, V0)
	tests := []struct {
		name  string
		frame []byte
		want  uint16
	}{
		{"udp", psptest.Packet(false, psptest.UDP, 10), 40000 ^ 443},
		{"tcp over ipv6", psptest.Packet(true, psptest.TCP, 10), 40000 ^ 443},
		{"icmp has no ports", withProto(psptest.Packet(false, psptest.UDP, 10), 1), UDPPort},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			e := Encap{Mode: Tunnel}
			dst := make([]byte, 200)
			if _, err := sa.Encrypt(dst, tc.frame, &e); err != nil {
				t.Fatal(err)
			}
			r, err := rx(dst)
			if err != nil {
				t.Fatal(err)
			}
			udp := dst[r.ip.off+r.ip.hdrLen:]
			if got := uint16(udp[0])<<8 | uint16(udp[1]); got != tc.want {
				t.Errorf("outer udp source port = %d, want %d", got, tc.want)
			}
		})
	}
}

// withProto changes the IPv4 protocol of a psptest.Packet frame.
func withProto(f []byte, proto uint8) []byte {
	f[14+9] = proto
	putChecksum(f[14:34])
	return f
}

func putChecksum(ipv4 []byte) {
	c := ipv4Checksum(ipv4)
	ipv4[10], ipv4[11] = byte(c>>8), byte(c)
}

// rx is parseRx for tests.
func rx(frame []byte) (rxPacket, error) {
	var r rxPacket
	err := parseRx(frame, &r)
	return r, err
}
