package psp

import (
	"crypto/aes"
	"crypto/cipher"
	"fmt"
	"math"
	"sync/atomic"
)

// SA is one security association: an SPI, a version and the key, with its
// AES-GCM instance built once. A sending SA also owns the IV counter, so
// that no IV repeats under its key in this process.
type SA struct {
	spi      uint32
	version  Version
	aead     cipher.AEAD
	lastIV   atomic.Uint64 // the last IV handed out; 0 before the first
	counters Counters
	total    *Counters // the Device's, or nil
}

// NewSA builds an SA from a derived key (16 bytes for V0 and V2, 32 for V1
// and V3). Its first IV is 1, as in Google's reference.
func NewSA(spi uint32, v Version, key []byte) (*SA, error) {
	if !v.Valid() {
		return nil, fmt.Errorf("new sa %08x: %w %d", spi, ErrVersion, uint8(v))
	}
	if len(key) != v.KeyLen() {
		return nil, fmt.Errorf("new sa %08x: key is %d bytes, %v wants %d", spi, len(key), v, v.KeyLen())
	}
	block, err := aes.NewCipher(key)
	if err != nil {
		return nil, fmt.Errorf("new sa %08x: %w", spi, err)
	}
	aead, err := cipher.NewGCM(block)
	if err != nil {
		return nil, fmt.Errorf("new sa %08x: %w", spi, err)
	}
	return &SA{spi: spi, version: v, aead: aead}, nil
}

// SPI is the SA's security parameter index.
func (sa *SA) SPI() uint32 { return sa.spi }

// Version is the SA's PSP version.
func (sa *SA) Version() Version { return sa.version }

// Stats reads the SA's counters.
func (sa *SA) Stats() Stats { return sa.counters.Snapshot() }

// SetNextIV makes iv the next IV that Encrypt uses. IVs only go forward: an
// IV that this SA has already used is refused.
func (sa *SA) SetNextIV(iv uint64) error {
	if iv == 0 {
		return fmt.Errorf("set next iv of sa %08x: ivs start at 1", sa.spi)
	}
	for {
		last := sa.lastIV.Load()
		if iv <= last {
			return fmt.Errorf("set next iv of sa %08x to %d: ivs up to %d are used (ivs never repeat)", sa.spi, iv, last)
		}
		if sa.lastIV.CompareAndSwap(last, iv-1) {
			return nil
		}
	}
}

// nextIV hands out the next IV, and refuses before the counter could wrap.
func (sa *SA) nextIV() (uint64, error) {
	for {
		last := sa.lastIV.Load()
		if last == math.MaxUint64 {
			return 0, ErrIVExhausted
		}
		if sa.lastIV.CompareAndSwap(last, last+1) {
			return last + 1, nil
		}
	}
}

// seal authenticates, and for V0 and V1 encrypts, the PSP packet p: p
// holds the base header and the payload up to the crypt offset, and room
// for plain (the rest of the payload) and the ICV. plain is either that
// room itself or a buffer that does not overlap p.
func (sa *SA) seal(p []byte, cryptOff int, plain []byte) {
	start := HeaderLen + cryptOff
	end := len(p) - ICVLen
	nonce := p[4:HeaderLen] // SPI and IV, as they stand in the header
	if sa.version.Encrypts() {
		sa.aead.Seal(p[start:start], nonce, plain, p[:start])
		return
	}
	copy(p[start:end], plain)
	sa.aead.Seal(p[end:end], nonce, nil, p[:end])
}

// open verifies the PSP packet p (base header, payload, ICV) and writes the
// plaintext that follows the crypt offset to out, which must not overlap p.
// For V2 and V3 nothing is encrypted and out is left alone.
func (sa *SA) open(out, p []byte, cryptOff int) error {
	end := len(p) - ICVLen
	nonce := p[4:HeaderLen]
	var err error
	if sa.version.Encrypts() {
		start := HeaderLen + cryptOff
		_, err = sa.aead.Open(out[:0], nonce, p[start:], p[:start])
	} else {
		_, err = sa.aead.Open(out[:0], nonce, p[end:], p[:end])
	}
	if err != nil {
		return ErrAuth
	}
	return nil
}

// The SA counts in its own counters and in the device's totals.
func (sa *SA) txCount(bytes int) { sa.counters.tx(bytes); sa.total.tx(bytes) }
func (sa *SA) txFail()           { sa.counters.txFail(); sa.total.txFail() }
func (sa *SA) rxCount(bytes int) { sa.counters.rx(bytes); sa.total.rx(bytes) }
func (sa *SA) rxFail(err error)  { sa.counters.rxFail(err); sa.total.rxFail(err) }
