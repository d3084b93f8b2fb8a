package psp

import "errors"

// Syndromes: why a packet was refused. Test them with errors.Is.
var (
	// ErrAuth: the ICV did not verify; the packet was forged, corrupted or
	// sealed with another key.
	ErrAuth = errors.New("authentication failed")
	// ErrVersion: the header names a PSP version other than 0 to 3.
	ErrVersion = errors.New("unknown psp version")
	// ErrTruncated: the frame is shorter than its headers say.
	ErrTruncated = errors.New("truncated packet")
	// ErrBadHeader: a header field has a value that PSP does not allow.
	ErrBadHeader = errors.New("bad psp header")
	// ErrNotPSP: the frame is not IP/UDP to port 1000.
	ErrNotPSP = errors.New("not a psp packet")
	// ErrRetiredKey: the SPI names a master key that was rotated out.
	ErrRetiredKey = errors.New("master key retired")
)

// Refusals on the sending side.
var (
	// ErrNotIP: only IPv4 and IPv6 packets are encapsulated.
	ErrNotIP = errors.New("not an ip packet")
	// ErrCryptOffset: the crypt offset reaches past the end of the packet.
	ErrCryptOffset = errors.New("crypt offset beyond packet")
	// ErrUnsupported: transport mode cannot carry an IPv6 packet with
	// extension headers, nor IP in IP, which the receiver would take for
	// tunnel mode.
	ErrUnsupported = errors.New("packet not supported in transport mode")
	// ErrIVExhausted: the SA has used every IV; a new SA (new SPI) is needed.
	ErrIVExhausted = errors.New("iv space exhausted")
	// ErrTooBig: the packet would not fit an IP length field once wrapped.
	ErrTooBig = errors.New("packet too big to encapsulate")
	// ErrSPIExhausted: every SPI of the active master key is allocated.
	ErrSPIExhausted = errors.New("spi space exhausted")
)

// ErrShortBuffer: the destination cannot hold the result.
var ErrShortBuffer = errors.New("destination buffer too short")
