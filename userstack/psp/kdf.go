package psp

import (
	"crypto/aes"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"strconv"
	"strings"
	"unicode"
)

// MasterKey is one of the receiver's two 256-bit master keys.
type MasterKey [32]byte

// spiKeyBit selects the master key: set means master key 1.
const spiKeyBit = 0x80000000

// keySlot is the master key an SPI names.
func keySlot(spi uint32) int { return int(spi >> 31) }

// kdf derives SA keys from one master key.
type kdf struct{ mac *cmac }

func newKDF(mk *MasterKey) kdf {
	b, err := aes.NewCipher(mk[:])
	if err != nil {
		panic(err) // a 32-byte key is always valid
	}
	return kdf{newCMAC(b)}
}

// kdfBlock is the CMAC input for the i-th 128 bits of the key: counter i,
// label "Pv0" (128-bit keys) or "Pv1" (256-bit keys), a zero byte, the SPI as
// context, and the key length in bits.
func kdfBlock(i uint8, spi uint32, v Version) [16]byte {
	var b [16]byte
	b[3] = i
	b[4], b[5], b[6] = 'P', 'v', '0'
	if v.KeyLen() == 32 {
		b[6] = '1'
	}
	binary.BigEndian.PutUint32(b[8:], spi)
	binary.BigEndian.PutUint32(b[12:], uint32(v.KeyLen()*8))
	return b
}

// derive fills key (16 or 32 bytes, by v) for spi.
func (k kdf) derive(key []byte, spi uint32, v Version) {
	var out [16]byte
	for i := 0; i*16 < v.KeyLen(); i++ {
		in := kdfBlock(uint8(i+1), spi, v)
		k.mac.sum(&out, in[:])
		copy(key[i*16:], out[:])
	}
}

// DeriveKey returns the key of the SA that spi names under version v, as
// the receiver derives it from its master keys: the SPI's top bit selects
// the master key.
func DeriveKey(keys *[2]MasterKey, spi uint32, v Version) ([]byte, error) {
	if !v.Valid() {
		return nil, ErrVersion
	}
	key := make([]byte, v.KeyLen())
	newKDF(&keys[keySlot(spi)]).derive(key, spi, v)
	return key, nil
}

// ParseMasterKeys reads two master keys of 64 hex digits each, with a
// comma or white space between them ("HEX0,HEX1"). Its errors say what
// is wrong with a key, never what it holds.
func ParseMasterKeys(s string) ([2]MasterKey, error) {
	var keys [2]MasterKey
	parts := strings.FieldsFunc(s, func(r rune) bool { return r == ',' || unicode.IsSpace(r) })
	if len(parts) != len(keys) {
		return keys, fmt.Errorf("parse master keys: got %d keys, want 2 (HEX0,HEX1)", len(parts))
	}
	for i, p := range parts {
		if want := 2 * len(keys[i]); len(p) != want {
			return keys, fmt.Errorf("parse master key %d: %d characters, want %d hex digits", i, len(p), want)
		}
		if _, err := hex.Decode(keys[i][:], []byte(p)); err != nil {
			clear(keys[i][:])
			return keys, fmt.Errorf("parse master key %d: not hex (want the digits 0-9 and a-f)", i)
		}
	}
	return keys, nil
}

// ParseSPI reads an SPI in hex, with or without 0x.
func ParseSPI(s string) (uint32, error) {
	t := strings.TrimPrefix(strings.TrimPrefix(s, "0x"), "0X")
	spi, err := strconv.ParseUint(t, 16, 32)
	if err != nil || t == "" {
		return 0, fmt.Errorf("parse spi %q: want up to 8 hex digits", s)
	}
	return uint32(spi), nil
}

// ParseVersion reads a PSP version number, 0 to 3.
func ParseVersion(s string) (Version, error) {
	n, err := strconv.ParseUint(s, 10, 8)
	if err != nil || !Version(n).Valid() {
		return 0, fmt.Errorf("parse psp version %q: want 0, 1, 2 or 3", s)
	}
	return Version(n), nil
}
