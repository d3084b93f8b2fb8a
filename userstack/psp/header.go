package psp

import (
	"encoding/binary"
	"fmt"
)

// Sizes on the wire, in bytes.
const (
	UDPPort      = 1000 // PSP's UDP destination port
	HeaderLen    = 16   // base PSP header: next header .. IV
	VCLen        = 8    // virtualization cookie
	ICVLen       = 16   // PSP trailer
	udpLen       = 8
	overhead     = udpLen + HeaderLen + ICVLen // what transport mode adds, without a VC
	cryptUnit    = 4                           // crypt offset unit
	extUnit      = 8                           // header extension length unit
	maxCryptOff  = 0x3f                        // six bits
	reservedMask = 0xc0                        // crypt offset byte, bits 6 and 7
)

// Version is the PSP version: it names the transform and the key size.
type Version uint8

// The versions the specification defines.
const (
	V0 Version = iota // AES-GCM-128
	V1                // AES-GCM-256
	V2                // AES-GMAC-128, authentication only
	V3                // AES-GMAC-256, authentication only
)

// Valid reports whether v is one of V0 to V3.
func (v Version) Valid() bool { return v <= V3 }

// KeyLen is the length of v's derived key in bytes.
func (v Version) KeyLen() int {
	if v == V1 || v == V3 {
		return 32
	}
	return 16
}

// Encrypts reports whether v encrypts the payload (GCM) or only
// authenticates it (GMAC).
func (v Version) Encrypts() bool { return v == V0 || v == V1 }

func (v Version) String() string {
	switch v {
	case V0:
		return "aes-gcm-128"
	case V1:
		return "aes-gcm-256"
	case V2:
		return "aes-gmac-128"
	case V3:
		return "aes-gmac-256"
	}
	return fmt.Sprintf("version %d", uint8(v))
}

// Header is the base PSP header.
type Header struct {
	NextHeader uint8 // IP protocol of what follows; 4 or 41 in tunnel mode
	// ExtLen is the header extension length field: 8-byte units past the
	// first 8 bytes of the base header, so 1 without extensions and 2 with
	// a virtualization cookie.
	ExtLen uint8
	// CryptOffset, in 4-byte units, counts the bytes after the base header
	// (virtualization cookie included) that are sent in the clear and
	// authenticated.
	CryptOffset uint8
	Sample      bool // S: the receiver samples this packet
	Drop        bool // D: the receiver drops it after sampling
	Version     Version
	VC          bool // a virtualization cookie follows the base header
	SPI         uint32
	IV          uint64
}

// ParseHeader decodes the base header at the start of b. The reserved bits
// of the crypt offset byte are ignored, as the specification says: they are
// authenticated all the same.
func ParseHeader(b []byte) (Header, error) {
	var h Header
	err := parseHeader(b, &h)
	return h, err
}

// parseHeader is ParseHeader into h, which the receive path keeps in place.
func parseHeader(b []byte, h *Header) error {
	if len(b) < HeaderLen {
		return ErrTruncated
	}
	flags := b[3]
	*h = Header{
		NextHeader:  b[0],
		ExtLen:      b[1],
		CryptOffset: b[2] &^ reservedMask,
		Sample:      flags&0x80 != 0,
		Drop:        flags&0x40 != 0,
		Version:     Version(flags >> 2 & 0x0f),
		VC:          flags&0x02 != 0,
		SPI:         binary.BigEndian.Uint32(b[4:]),
		IV:          binary.BigEndian.Uint64(b[8:]),
	}
	switch {
	case flags&0x01 == 0, h.ExtLen == 0, h.VC && h.ExtLen < 2:
		return ErrBadHeader
	case !h.Version.Valid():
		return ErrVersion
	}
	return nil
}

// Put encodes h into the first HeaderLen bytes of b.
func (h *Header) Put(b []byte) {
	_ = b[HeaderLen-1]
	flags := uint8(h.Version)<<2 | 0x01
	if h.Sample {
		flags |= 0x80
	}
	if h.Drop {
		flags |= 0x40
	}
	if h.VC {
		flags |= 0x02
	}
	b[0] = h.NextHeader
	b[1] = h.ExtLen
	b[2] = h.CryptOffset
	b[3] = flags
	binary.BigEndian.PutUint32(b[4:], h.SPI)
	binary.BigEndian.PutUint64(b[8:], h.IV)
}

// extBytes is the length of the header extensions (the VC among them).
func (h *Header) extBytes() int { return (int(h.ExtLen) - 1) * extUnit }
