package synproxy

import (
	"crypto/rand"
	"encoding/binary"
	"fmt"
	"time"
)

// A cookie is the sequence number of the SYN-ACK the proxy answers a
// SYN with, and all the proxy keeps of the SYN:
//
//	bits 31..3  29 bits of SipHash-2-4 over the flow's addresses and
//	            ports, the client's ISN, the period and the MSS index,
//	            keyed with a secret drawn at start
//	bit 2       the period's lowest bit
//	bits 1..0   the MSS index (mssTables)
//
// A period is cookiePeriod long; a cookie is valid in the period it was
// made in and the next (64 to 128 s, about Linux's two minutes). The
// low bit tells the two apart; a cookie of an older period fails the
// hash. An ACK forged without the secret passes with odds of 2^-29.
const cookiePeriod = 64 * time.Second

// period is the counter of cookie periods at t.
func period(t time.Time) uint32 { return uint32(t.Unix() / int64(cookiePeriod/time.Second)) }

// mssTables are the MSS values a cookie can carry, by index, for IPv4
// and IPv6: Linux's, the common paths. A client gets the largest that
// is not above the MSS it asked for, so it never receives segments
// larger than it can take.
var mssTables = [2][4]uint16{
	{536, 1300, 1440, 1460},
	{1220, 1420, 1440, 8940},
}

// mssIndex picks the entry of the table of v6 for a client's MSS.
func mssIndex(v6 bool, mss uint16) uint32 {
	table := &mssTables[b2i(v6)]
	i := len(table) - 1
	for i > 0 && table[i] > mss {
		i--
	}
	return uint32(i)
}

func b2i(b bool) int {
	if b {
		return 1
	}
	return 0
}

// cookieJar makes and checks cookies with its secret.
type cookieJar struct{ k0, k1 uint64 }

func newCookieJar() (cookieJar, error) {
	var key [16]byte
	if _, err := rand.Read(key[:]); err != nil {
		return cookieJar{}, fmt.Errorf("draw the syn cookie secret: %w", err)
	}
	return cookieJar{binary.LittleEndian.Uint64(key[:8]), binary.LittleEndian.Uint64(key[8:])}, nil
}

// make returns the cookie for a SYN of flow id with sequence number isn,
// whose MSS takes index mss, in period p.
func (c cookieJar) make(id flowID, isn, mss, p uint32) uint32 {
	return c.hash(id, isn, mss, p)&^7 | (p&1)<<2 | mss
}

// check tells whether cookie is one made for flow id and the client's
// ISN isn in period p or the one before, and which MSS index it holds.
func (c cookieJar) check(id flowID, isn, cookie, p uint32) (mss uint32, ok bool) {
	if (cookie>>2)&1 != p&1 {
		p--
	}
	mss = cookie & 3
	return mss, c.hash(id, isn, mss, p)&^7 == cookie&^7
}

func (c cookieJar) hash(id flowID, isn, mss, p uint32) uint32 {
	var msg [45]byte
	copy(msg[:16], id.local[:])
	copy(msg[16:32], id.remote[:])
	binary.BigEndian.PutUint16(msg[32:], id.localPort)
	binary.BigEndian.PutUint16(msg[34:], id.remotePort)
	binary.BigEndian.PutUint32(msg[36:], isn)
	binary.BigEndian.PutUint32(msg[40:], p)
	msg[44] = byte(mss) | byte(b2i(id.v6))<<7
	return uint32(siphash(c.k0, c.k1, msg[:]))
}
