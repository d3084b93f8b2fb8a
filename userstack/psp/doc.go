// Package psp is xdpstack's PSP Security Protocol codec, in pure Go.
//
// It owns the protocol itself: the PSP header and its framing over UDP port
// 1000 in transport and tunnel mode (IPv4 and IPv6, inner and outer, with or
// without a virtualization cookie), the AES-GCM and AES-GMAC transforms of
// versions 0 to 3, the receiver's key derivation from two master keys
// (AES-CMAC in counter mode), SPI allocation and master key rotation, and the
// counters that Linux names in its PSP statistics. It is byte-exact with
// Google's reference tools (github.com/google/psp): the known-answer tests
// run over shared/testdata/psp.
//
// Unlike the reference, the ICV is always verified, even when nothing in the
// packet is encrypted.
//
// The steady path allocates nothing: an SA keeps its cipher.AEAD, and
// Encrypt and Decrypt write into buffers the caller owns. Errors on that path
// are the package's sentinel values, so that a flood of bad packets costs no
// garbage either; callers add context.
//
// The gateway (TUN side, key exchange, XDP ACL) stands on this package;
// package offline reads and writes pcap files with it.
package psp
