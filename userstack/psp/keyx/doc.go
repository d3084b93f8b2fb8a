// Package keyx is the PSP gateway's key exchange: a gRPC service shaped
// like DOCA 3.0's PSP_Gateway (package pb), over mutual TLS by default.
//
// A host that needs a tunnel to a remote virtual address (Request, from
// the data path, or RunStatic at start) finds the peer that owns it in
// the config, allocates an SPI of its own for the way back, allows it in
// the ACL for that remote address, and sends it as reverse_params in a
// MultiTunnelRequest. The peer checks that the caller's certificate
// names the virt_src it asks for and that its config gives that address
// to that caller, allocates its SPI, allows it for virt_src, installs the
// reverse parameters as its tunnel back, and answers with its
// parameters, which the requester installs: one round trip makes both
// directions. Receivers keep no per-SA key: psp.Device derives each
// SPI's key from its master keys.
//
// Key rotation (Rotate: on a schedule, on `xdpstack psp rotate`, or when
// a peer calls RequestKeyRotation):
//
//  1. The grants under the key about to be replaced are revoked (its SPI
//     numbers will be issued again), and psp.Device.Rotate makes a new
//     master key active. The previous key keeps decrypting.
//  2. Every pair this host issued SPIs for is re-requested from its
//     peer with new reverse_params under the new key. The peer installs
//     them, replacing its tunnel back, and answers with a fresh SPI that
//     replaces this host's tunnel. Packets sealed under the old SPIs and
//     still in flight decrypt, since the previous key lives and the
//     previous grant per pair is kept.
//  3. Once every peer is re-keyed, RetireAfter later and if no other
//     rotation came, the previous key is retired and its grants revoked.
//     If a peer's re-key failed, the previous key lives on until the
//     next rotation replaces it.
//
// Keys never appear in logs, errors or stats.
package keyx
