package synproxy

import (
	"encoding/binary"
	"testing"
	"time"
)

// TestSipHash checks SipHash-2-4 against the reference vectors of its
// paper's appendix (key 00..0f, messages 00, 00 01, ...).
func TestSipHash(t *testing.T) {
	var key [16]byte
	for i := range key {
		key[i] = byte(i)
	}
	k0, k1 := binary.LittleEndian.Uint64(key[:8]), binary.LittleEndian.Uint64(key[8:])
	msg := make([]byte, 64)
	for i := range msg {
		msg[i] = byte(i)
	}
	for _, tc := range []struct {
		len  int
		want uint64
	}{
		{0, 0x726fdb47dd0e0e31},
		{1, 0x74f839c593dc67fd},
		{7, 0xab0200f58b01d137},
		{8, 0x93f5f5799a932462},
		{15, 0xa129ca6149be45e5},
		{63, 0x958a324ceb064572},
	} {
		if got := siphash(k0, k1, msg[:tc.len]); got != tc.want {
			t.Errorf("siphash(%d bytes): got %#x, want %#x", tc.len, got, tc.want)
		}
	}
}

func testFlow(v6 bool) flowID {
	id := flowID{localPort: 7, remotePort: 40000, v6: v6}
	copy(id.local[:], []byte{10, 0, 0, 1})
	copy(id.remote[:], []byte{10, 0, 0, 2})
	if v6 {
		id.local = [16]byte{0: 0xfd, 15: 1}
		id.remote = [16]byte{0: 0xfd, 15: 2}
	}
	return id
}

func TestCookie(t *testing.T) {
	jar, err := newCookieJar()
	if err != nil {
		t.Fatal(err)
	}
	now := period(time.Now())
	const isn = 0x12345678
	for _, v6 := range []bool{false, true} {
		id := testFlow(v6)
		cookie := jar.make(id, isn, 2, now)
		other := func(change func(*flowID)) flowID {
			o := id
			change(&o)
			return o
		}
		for _, tc := range []struct {
			name   string
			id     flowID
			isn    uint32
			cookie uint32
			period uint32
			valid  bool
		}{
			{"same period", id, isn, cookie, now, true},
			{"next period", id, isn, cookie, now + 1, true},
			{"two periods on", id, isn, cookie, now + 2, false},
			{"three periods on", id, isn, cookie, now + 3, false},
			{"period before", id, isn, cookie, now - 1, false},
			{"other local address", other(func(o *flowID) { o.local[3]++ }), isn, cookie, now, false},
			{"other remote address", other(func(o *flowID) { o.remote[0]++ }), isn, cookie, now, false},
			{"other local port", other(func(o *flowID) { o.localPort++ }), isn, cookie, now, false},
			{"other remote port", other(func(o *flowID) { o.remotePort++ }), isn, cookie, now, false},
			{"other family", other(func(o *flowID) { o.v6 = !o.v6 }), isn, cookie, now, false},
			{"other isn", id, isn + 1, cookie, now, false},
			{"other mss index", id, isn, cookie ^ 1, now, false},
			{"hash bit flipped", id, isn, cookie ^ 1<<20, now, false},
		} {
			mss, ok := jar.check(tc.id, tc.isn, tc.cookie, tc.period)
			if ok != tc.valid {
				t.Errorf("v6 %v, %s: check(%#x) valid %v, want %v", v6, tc.name, tc.cookie, ok, tc.valid)
			}
			if ok && mss != 2 {
				t.Errorf("v6 %v, %s: check(%#x) mss index %d, want 2", v6, tc.name, tc.cookie, mss)
			}
		}
	}
	other, err := newCookieJar()
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := other.check(testFlow(false), isn, jar.make(testFlow(false), isn, 0, now), now); ok {
		t.Errorf("a cookie made with one secret passed with another")
	}
}

// TestCookieMSS: the MSS a client asks for comes back out of its cookie
// as the largest table entry not above it.
func TestCookieMSS(t *testing.T) {
	jar, err := newCookieJar()
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		v6        bool
		mss, want uint16
	}{
		{false, 100, 536},
		{false, 536, 536},
		{false, 1299, 536},
		{false, 1300, 1300},
		{false, 1459, 1440},
		{false, 1460, 1460},
		{false, 8960, 1460},
		{true, 1220, 1220},
		{true, 1419, 1220},
		{true, 1440, 1440},
		{true, 1460, 1440},
		{true, 8940, 8940},
		{true, 65535, 8940},
	} {
		id := testFlow(tc.v6)
		now := period(time.Now())
		cookie := jar.make(id, 1, mssIndex(tc.v6, tc.mss), now)
		index, ok := jar.check(id, 1, cookie, now)
		if got := mssTables[b2i(tc.v6)][index]; !ok || got != tc.want {
			t.Errorf("v6 %v, mss %d: cookie gave mss %d (valid %v), want %d", tc.v6, tc.mss, got, ok, tc.want)
		}
	}
}
