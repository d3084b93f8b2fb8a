package psp

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
)

// Mode is how PSP wraps a packet.
type Mode uint8

const (
	// Transport keeps the packet's IP header and protects what follows it.
	Transport Mode = iota
	// Tunnel protects the whole inner IP packet behind an outer IP header.
	Tunnel
)

// ParseMode reads "transport" or "tunnel".
func ParseMode(s string) (Mode, error) {
	switch s {
	case "transport":
		return Transport, nil
	case "tunnel":
		return Tunnel, nil
	}
	return 0, fmt.Errorf("parse mode %q: want transport or tunnel", s)
}

func (m Mode) String() string {
	if m == Tunnel {
		return "tunnel"
	}
	return "transport"
}

// Encap says how an SA wraps the frames it sends.
type Encap struct {
	Mode Mode
	// CryptOffset4 and CryptOffset6 are the crypt offsets, in 4-byte units
	// (0 to 63), for frames whose inner packet is IPv4 and IPv6. Google's
	// reference configures them apart because a tunnel's inner IP header
	// differs in length.
	CryptOffset4, CryptOffset6 uint8
	// VC adds an 8-byte virtualization cookie (zero) after the base header.
	VC bool
	// OuterSrc and OuterDst are the outer IP addresses in tunnel mode, both
	// IPv4 or both IPv6. Left zero, the outer header is a copy of the inner
	// one, as the reference builds it.
	OuterSrc, OuterDst netip.Addr
}

// Validate says what is wrong with e, if anything.
func (e *Encap) Validate() error {
	switch {
	case e.Mode != Transport && e.Mode != Tunnel:
		return fmt.Errorf("encap: unknown mode %d", e.Mode)
	case e.CryptOffset4 > maxCryptOff || e.CryptOffset6 > maxCryptOff:
		return fmt.Errorf("encap: crypt offset %d/%d out of range (0 to %d, in 4-byte units)", e.CryptOffset4, e.CryptOffset6, maxCryptOff)
	case e.OuterSrc.IsValid() != e.OuterDst.IsValid() || e.OuterSrc.Is4() != e.OuterDst.Is4():
		return fmt.Errorf("encap: outer addresses %v and %v are not one family", e.OuterSrc, e.OuterDst)
	case e.OuterSrc.IsValid() && e.Mode != Tunnel:
		return errors.New("encap: outer addresses need tunnel mode")
	}
	return nil
}

const (
	etherIPv4  = 0x0800
	etherIPv6  = 0x86dd
	etherVLAN  = 0x8100
	etherQinQ  = 0x88a8
	ethLen     = 14
	ipv4MinLen = 20
	ipv6Len    = 40
	protoIPv4  = 4
	protoTCP   = 6
	protoUDP   = 17
	protoIPv6  = 41
	defaultTTL = 64
)

// l2 finds the Ethernet header's length (up to two VLAN tags) and the
// ethertype of what follows.
func l2(f []byte) (n int, etype uint16, ok bool) {
	n = ethLen
	for {
		if len(f) < n {
			return 0, 0, false
		}
		etype = binary.BigEndian.Uint16(f[n-2:])
		if (etype != etherVLAN && etype != etherQinQ) || n > ethLen+4 {
			return n, etype, true
		}
		n += 4
	}
}

// ipPacket is where an IP packet lies in a frame.
type ipPacket struct {
	off, hdrLen, end int // header start, header length, packet end
	v6               bool
	proto            uint8 // IPv4 protocol or IPv6 next header
}

// parseIP checks the IP header at f[off:]; bytes past the IP length (Ethernet
// padding) are not part of the packet.
func parseIP(f []byte, off int, v6 bool, p *ipPacket) error {
	*p = ipPacket{off: off, v6: v6}
	b := f[off:]
	if v6 {
		if len(b) < ipv6Len {
			return ErrTruncated
		}
		if b[0]>>4 != 6 {
			return ErrBadHeader
		}
		p.hdrLen, p.proto = ipv6Len, b[6]
		p.end = off + ipv6Len + int(binary.BigEndian.Uint16(b[4:]))
	} else {
		if len(b) < ipv4MinLen {
			return ErrTruncated
		}
		p.hdrLen, p.proto = int(b[0]&0x0f)*4, b[9]
		total := int(binary.BigEndian.Uint16(b[2:]))
		if b[0]>>4 != 4 || p.hdrLen < ipv4MinLen || total < p.hdrLen {
			return ErrBadHeader
		}
		p.end = off + total
	}
	if p.end > len(f) || off+p.hdrLen > p.end {
		return ErrTruncated
	}
	return nil
}

func ipv4Checksum(h []byte) uint16 {
	var sum uint32
	for i := 0; i+1 < len(h); i += 2 {
		if i != 10 {
			sum += uint32(binary.BigEndian.Uint16(h[i:]))
		}
	}
	for sum > 0xffff {
		sum = sum&0xffff + sum>>16
	}
	return ^uint16(sum)
}

// setIPLen rewrites the length and protocol of the IP header h and, for
// IPv4, its checksum. n is the IPv4 total length or the IPv6 payload length.
func setIPLen(h []byte, v6 bool, n int, proto uint8) {
	if v6 {
		binary.BigEndian.PutUint16(h[4:], uint16(n))
		h[6] = proto
		return
	}
	binary.BigEndian.PutUint16(h[2:], uint16(n))
	h[9] = proto
	binary.BigEndian.PutUint16(h[10:], ipv4Checksum(h))
}

// ipv6ExtHeader reports whether an IPv6 next header value is an extension
// header, which transport mode would have to walk and keep in the clear.
func ipv6ExtHeader(nh uint8) bool {
	switch nh {
	case 0, 43, 44, 50, 51, 60, 135, 139, 140, 253, 254:
		return true
	}
	return false
}

// flowEntropy is the outer UDP source port: the inner ports XORed, as
// Google's reference does, or the PSP port for packets without ports.
func flowEntropy(proto uint8, l4 []byte) uint16 {
	if (proto == protoTCP || proto == protoUDP) && len(l4) >= 4 {
		return binary.BigEndian.Uint16(l4) ^ binary.BigEndian.Uint16(l4[2:])
	}
	return UDPPort
}

// Encrypt wraps the Ethernet frame in PSP as e says, into dst, and returns
// the length of the result. dst must not overlap frame; it needs room for
// the frame plus EncapLen(e, inner IP version) bytes.
func (sa *SA) Encrypt(dst, frame []byte, e *Encap) (int, error) {
	return sa.encryptCounted(dst, frame, e, false)
}

// EncryptSampled is Encrypt with the S bit set in the PSP header: the
// receiver samples the packet (the sender's `--psp-sample-rate`).
func (sa *SA) EncryptSampled(dst, frame []byte, e *Encap) (int, error) {
	return sa.encryptCounted(dst, frame, e, true)
}

func (sa *SA) encryptCounted(dst, frame []byte, e *Encap, sample bool) (int, error) {
	n, err := sa.encrypt(dst, frame, e, sample)
	if err != nil {
		sa.txFail()
	}
	return n, err
}

// EncapLen is how many bytes Encrypt adds to a frame whose inner packet is
// IPv6 (v6) or IPv4 (with no IP options, in tunnel mode).
func EncapLen(e *Encap, v6 bool) int {
	n := overhead
	if e.VC {
		n += VCLen
	}
	if e.Mode == Tunnel {
		switch {
		case e.OuterSrc.IsValid() && e.OuterSrc.Is4(), !e.OuterSrc.IsValid() && !v6:
			n += ipv4MinLen
		default:
			n += ipv6Len
		}
	}
	return n
}

func (sa *SA) encrypt(dst, frame []byte, e *Encap, sample bool) (int, error) {
	if err := e.Validate(); err != nil {
		return 0, err
	}
	ethN, etype, ok := l2(frame)
	if !ok || (etype != etherIPv4 && etype != etherIPv6) {
		return 0, ErrNotIP
	}
	var in ipPacket
	if err := parseIP(frame, ethN, etype == etherIPv6, &in); err != nil {
		return 0, err
	}
	l4 := frame[in.off+in.hdrLen : in.end]

	// What PSP protects (body), and the outer IP header's shape.
	var body []byte
	var next uint8
	outerV6, outerHdrLen := in.v6, in.hdrLen
	cryptOff := int(e.CryptOffset4) * cryptUnit
	if in.v6 {
		cryptOff = int(e.CryptOffset6) * cryptUnit
	}
	if e.Mode == Transport {
		if in.v6 && ipv6ExtHeader(in.proto) || in.proto == protoIPv4 || in.proto == protoIPv6 {
			return 0, ErrUnsupported
		}
		body, next = l4, in.proto
	} else {
		body, next = frame[in.off:in.end], protoIPv4
		if in.v6 {
			next = protoIPv6
		}
		if e.OuterSrc.IsValid() {
			outerV6 = e.OuterSrc.Is6()
		}
		outerHdrLen = ipv4MinLen
		if outerV6 {
			outerHdrLen = ipv6Len
		}
	}
	vc := 0
	if e.VC {
		vc = VCLen
	}
	payload := vc + len(body)
	if cryptOff > payload || cryptOff > maxCryptOff*cryptUnit {
		return 0, ErrCryptOffset
	}
	udpN := udpLen + HeaderLen + payload + ICVLen
	ipN := udpN // IPv6 payload length
	if !outerV6 {
		ipN += outerHdrLen // IPv4 total length
	}
	if ipN > 0xffff {
		return 0, ErrTooBig
	}
	ipOff := ethN
	udpOff := ipOff + outerHdrLen
	pspOff := udpOff + udpLen
	total := udpOff + udpN
	if len(dst) < total {
		return 0, ErrShortBuffer
	}
	iv, err := sa.nextIV()
	if err != nil {
		return 0, err
	}

	copy(dst, frame[:ethN])
	outerIP := dst[ipOff:udpOff]
	switch {
	case e.Mode == Transport || !e.OuterSrc.IsValid():
		copy(outerIP, frame[in.off:in.off+outerHdrLen])
		if e.Mode == Tunnel && !outerV6 {
			outerIP[0] = 0x45 // the copy leaves the inner IPv4 options behind
		}
	default:
		putOuterIP(outerIP, frame[in.off:], in.v6, e)
		binary.BigEndian.PutUint16(dst[ethN-2:], etherIPv4)
		if outerV6 {
			binary.BigEndian.PutUint16(dst[ethN-2:], etherIPv6)
		}
	}
	setIPLen(outerIP, outerV6, ipN, protoUDP)

	udp := dst[udpOff:pspOff]
	binary.BigEndian.PutUint16(udp[0:], flowEntropy(in.proto, l4))
	binary.BigEndian.PutUint16(udp[2:], UDPPort)
	binary.BigEndian.PutUint16(udp[4:], uint16(udpN))
	binary.BigEndian.PutUint16(udp[6:], 0)

	p := dst[pspOff:total]
	h := Header{
		NextHeader:  next,
		ExtLen:      1,
		CryptOffset: uint8(cryptOff / cryptUnit),
		Sample:      sample,
		Version:     sa.version,
		VC:          e.VC,
		SPI:         sa.spi,
		IV:          iv,
	}
	if e.VC {
		h.ExtLen = 2
		clear(p[HeaderLen : HeaderLen+VCLen])
	}
	h.Put(p)
	// Seal straight from the frame, unless part of the VC is encrypted and
	// the plaintext must first be put together.
	plain := body[max(cryptOff-vc, 0):]
	if cryptOff < vc {
		copy(p[HeaderLen+vc:], body)
		plain = p[HeaderLen+cryptOff : HeaderLen+payload]
	} else {
		copy(p[HeaderLen+vc:], body[:cryptOff-vc])
	}
	sa.seal(p, cryptOff, plain)
	sa.txCount(payload)
	return total, nil
}

// putOuterIP writes a fresh outer IP header for e's addresses, carrying the
// inner packet's DSCP and ECN; lengths and checksum are set after.
func putOuterIP(h, inner []byte, innerV6 bool, e *Encap) {
	tos := inner[1]
	if innerV6 {
		tos = uint8(binary.BigEndian.Uint16(inner) >> 4)
	}
	clear(h)
	if e.OuterSrc.Is4() {
		h[0], h[1], h[8] = 0x45, tos, defaultTTL
		src, dst := e.OuterSrc.As4(), e.OuterDst.As4()
		copy(h[12:], src[:])
		copy(h[16:], dst[:])
		return
	}
	binary.BigEndian.PutUint32(h, 6<<28|uint32(tos)<<20)
	h[7] = defaultTTL
	src, dst := e.OuterSrc.As16(), e.OuterDst.As16()
	copy(h[8:], src[:])
	copy(h[24:], dst[:])
}

// rxPacket is where the PSP packet lies in a received frame.
type rxPacket struct {
	ethN int
	ip   ipPacket
	psp  []byte // base header .. ICV
	hdr  Header
}

// parseRx finds and checks the PSP packet in frame: everything but the ICV.
func parseRx(frame []byte, r *rxPacket) error {
	ethN, etype, ok := l2(frame)
	if !ok || (etype != etherIPv4 && etype != etherIPv6) {
		return ErrNotPSP
	}
	r.ethN = ethN
	if err := parseIP(frame, ethN, etype == etherIPv6, &r.ip); err != nil {
		return err
	}
	if r.ip.proto != protoUDP {
		return ErrNotPSP
	}
	udpOff := r.ip.off + r.ip.hdrLen
	if r.ip.end-udpOff < udpLen {
		return ErrTruncated
	}
	udp := frame[udpOff:r.ip.end]
	if binary.BigEndian.Uint16(udp[2:]) != UDPPort {
		return ErrNotPSP
	}
	switch n := int(binary.BigEndian.Uint16(udp[4:])); {
	case n > len(udp):
		return ErrTruncated
	case n != len(udp):
		return ErrBadHeader // bytes after the datagram, inside the IP packet
	}
	r.psp = udp[udpLen:]
	if len(r.psp) < HeaderLen+ICVLen {
		return ErrTruncated
	}
	if err := parseHeader(r.psp, &r.hdr); err != nil {
		return err
	}
	if r.hdr.ExtLen > 2 {
		return ErrBadHeader // no extension but the VC is defined
	}
	payload := len(r.psp) - HeaderLen - ICVLen
	if r.hdr.extBytes() > payload || int(r.hdr.CryptOffset)*cryptUnit > payload {
		return ErrTruncated
	}
	return nil
}

// decrypt verifies and unwraps the PSP packet r of frame into dst.
func (sa *SA) decrypt(dst, frame []byte, r *rxPacket) (int, error) {
	ext := r.hdr.extBytes()
	cryptOff := int(r.hdr.CryptOffset) * cryptUnit
	payload := r.psp[HeaderLen : len(r.psp)-ICVLen]
	body := payload[ext:] // what the sender wrapped
	tunnel := r.hdr.NextHeader == protoIPv4 || r.hdr.NextHeader == protoIPv6
	bodyOff := r.ethN
	if !tunnel {
		bodyOff += r.ip.hdrLen
	}
	total := bodyOff + len(body)
	if len(dst) < total {
		return 0, ErrShortBuffer
	}
	// Plaintext lands where its bytes belong in the body; an encrypted part
	// of the VC lands before bodyOff and is overwritten by the headers.
	if err := sa.open(dst[bodyOff+cryptOff-ext:total], r.psp, cryptOff); err != nil {
		return 0, err
	}
	if sa.version.Encrypts() {
		if cryptOff > ext {
			copy(dst[bodyOff:], payload[ext:cryptOff])
		}
	} else {
		copy(dst[bodyOff:], body)
	}
	copy(dst, frame[:r.ethN])
	if tunnel {
		etype := uint16(etherIPv4)
		if r.hdr.NextHeader == protoIPv6 {
			etype = etherIPv6
		}
		binary.BigEndian.PutUint16(dst[r.ethN-2:], etype)
	} else {
		h := dst[r.ethN:bodyOff]
		copy(h, frame[r.ip.off:])
		n := len(body)
		if !r.ip.v6 {
			n += r.ip.hdrLen
		}
		setIPLen(h, r.ip.v6, n, r.hdr.NextHeader)
	}
	return total, nil
}
