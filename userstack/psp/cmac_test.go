package psp

import (
	"crypto/aes"
	"encoding/hex"
	"testing"
)

// RFC 4493 section 4 (AES-128) and NIST SP 800-38B appendix D.3 (AES-256).
func TestCMACVectors(t *testing.T) {
	const msg = "6bc1bee22e409f96e93d7e117393172aae2d8a571e03ac9c9eb76fac45af8e51" +
		"30c81c46a35ce411e5fbc1191a0a52eff69f2445df4f9b17ad2b417be66c3710"
	const key128 = "2b7e151628aed2a6abf7158809cf4f3c"
	const key256 = "603deb1015ca71be2b73aef0857d77811f352c073b6108d72d9810a30914dff4"
	tests := []struct {
		name string
		key  string
		n    int // message length
		tag  string
	}{
		{"rfc4493 example 1 empty", key128, 0, "bb1d6929e95937287fa37d129b756746"},
		{"rfc4493 example 2 one block", key128, 16, "070a16b46b4d4144f79bdd9dd04a287c"},
		{"rfc4493 example 3 partial block", key128, 40, "dfa66747de9ae63030ca32611497c827"},
		{"rfc4493 example 4 four blocks", key128, 64, "51f0bebf7e3b9d92fc49741779363cfe"},
		{"sp800-38b aes-256 empty", key256, 0, "028962f61b7bf89efc6b551f4667d983"},
		{"sp800-38b aes-256 one block", key256, 16, "28a7023f452e8f82bd4bf28d8c37c35c"},
		{"sp800-38b aes-256 partial block", key256, 40, "aaf3d8f1de5640c232f5b169b9c911e6"},
		{"sp800-38b aes-256 four blocks", key256, 64, "e1992190549f6ed5696a2c056c315410"},
	}
	m := mustHex(t, msg)
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			block, err := aes.NewCipher(mustHex(t, tc.key))
			if err != nil {
				t.Fatal(err)
			}
			var tag [16]byte
			newCMAC(block).sum(&tag, m[:tc.n])
			if got := hex.EncodeToString(tag[:]); got != tc.tag {
				t.Errorf("cmac(%s, %d bytes) = %s, want %s", tc.key, tc.n, got, tc.tag)
			}
		})
	}
}

// RFC 4493 section 4, subkey generation.
func TestCMACSubkeys(t *testing.T) {
	block, err := aes.NewCipher(mustHex(t, "2b7e151628aed2a6abf7158809cf4f3c"))
	if err != nil {
		t.Fatal(err)
	}
	c := newCMAC(block)
	if got, want := hex.EncodeToString(c.k1[:]), "fbeed618357133667c85e08f7236a8de"; got != want {
		t.Errorf("K1 = %s, want %s", got, want)
	}
	if got, want := hex.EncodeToString(c.k2[:]), "f7ddac306ae266ccf90bc11ee46d513b"; got != want {
		t.Errorf("K2 = %s, want %s", got, want)
	}
}

func mustHex(t testing.TB, s string) []byte {
	t.Helper()
	b, err := hex.DecodeString(s)
	if err != nil {
		t.Fatalf("decode hex %q: %v", s, err)
	}
	return b
}
