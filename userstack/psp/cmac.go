package psp

import (
	"crypto/cipher"
	"crypto/subtle"
)

// cmac is AES-CMAC (RFC 4493; NIST SP 800-38B for AES-256). It is small
// enough to keep here, tested against the RFC's vectors, rather than bring
// in a module for it: the one that Go programs used (aead/cmac) is archived
// and not served by our module proxy, and x/crypto has no CMAC.
type cmac struct {
	block  cipher.Block
	k1, k2 [16]byte
}

func newCMAC(block cipher.Block) *cmac {
	c := &cmac{block: block}
	var l [16]byte
	block.Encrypt(l[:], l[:])
	double(&c.k1, &l)
	double(&c.k2, &c.k1)
	return c
}

// double multiplies by x in GF(2^128), the subkey step of the RFC.
func double(dst, src *[16]byte) {
	carry := src[0] >> 7
	for i := 0; i < 15; i++ {
		dst[i] = src[i]<<1 | src[i+1]>>7
	}
	dst[15] = src[15]<<1 ^ carry*0x87
}

// sum writes the 16-byte tag of msg to dst.
func (c *cmac) sum(dst *[16]byte, msg []byte) {
	var x [16]byte
	for len(msg) > 16 {
		subtle.XORBytes(x[:], x[:], msg[:16])
		c.block.Encrypt(x[:], x[:])
		msg = msg[16:]
	}
	var last [16]byte
	copy(last[:], msg)
	if len(msg) == 16 {
		subtle.XORBytes(last[:], last[:], c.k1[:])
	} else {
		last[len(msg)] = 0x80
		subtle.XORBytes(last[:], last[:], c.k2[:])
	}
	subtle.XORBytes(x[:], x[:], last[:])
	c.block.Encrypt(dst[:], x[:])
}
