package psptest

import "encoding/binary"

// IP protocols that Packet builds.
const (
	TCP = 6
	UDP = 17
)

// Packet builds an Ethernet frame that carries an IPv4 (v6 false) or IPv6
// packet with a TCP or UDP header and n payload bytes, every header length
// and the IPv4 checksum right, as cleartext for round trips.
func Packet(v6 bool, proto uint8, n int) []byte {
	l4 := 8
	if proto == TCP {
		l4 = 20
	}
	ipHdr := 20
	if v6 {
		ipHdr = 40
	}
	f := make([]byte, 14+ipHdr+l4+n)
	copy(f, []byte{0x02, 0, 0, 0, 0, 0x02, 0x02, 0, 0, 0, 0, 0x01})
	ip := f[14:]
	if v6 {
		binary.BigEndian.PutUint16(f[12:], 0x86dd)
		binary.BigEndian.PutUint32(ip, 6<<28|0x2e<<20|0x12345)
		binary.BigEndian.PutUint16(ip[4:], uint16(l4+n))
		ip[6], ip[7] = proto, 64
		copy(ip[8:], []byte{0xfd, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1})
		copy(ip[24:], []byte{0xfd, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2})
	} else {
		binary.BigEndian.PutUint16(f[12:], 0x0800)
		ip[0], ip[1] = 0x45, 0xb8
		binary.BigEndian.PutUint16(ip[2:], uint16(ipHdr+l4+n))
		binary.BigEndian.PutUint16(ip[4:], 0x1234)
		binary.BigEndian.PutUint16(ip[6:], 0x4000)
		ip[8], ip[9] = 64, proto
		copy(ip[12:], []byte{10, 0, 0, 1, 10, 0, 0, 2})
		var sum uint32 // RFC 1071, over the header with its checksum zero
		for i := 0; i < 20; i += 2 {
			sum += uint32(ip[i])<<8 | uint32(ip[i+1])
		}
		sum = sum>>16 + sum&0xffff
		sum += sum >> 16
		binary.BigEndian.PutUint16(ip[10:], ^uint16(sum))
	}
	h := ip[ipHdr:]
	binary.BigEndian.PutUint16(h, 40000)
	binary.BigEndian.PutUint16(h[2:], 443)
	if proto == UDP {
		binary.BigEndian.PutUint16(h[4:], uint16(l4+n))
	} else {
		h[12] = 5 << 4
	}
	for i := range n {
		h[l4+i] = byte(i)
	}
	return f
}
