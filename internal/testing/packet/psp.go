package packet

import (
	"fmt"

	"github.com/xdpstack/xdpstack/userstack/psp"
)

// PSP seals the Ethernet frame inner with the real codec (psp.SA.Encrypt)
// under spi, version v and a zero key, wrapped as e says. The XDP program
// reads only the headers, so the key does not matter.
func PSP(inner []byte, spi uint32, v psp.Version, e psp.Encap) ([]byte, error) {
	sa, err := psp.NewSA(spi, v, make([]byte, v.KeyLen()))
	if err != nil {
		return nil, err
	}
	out := make([]byte, len(inner)+psp.EncapLen(&e, true))
	n, err := sa.Encrypt(out, inner, &e)
	if err != nil {
		return nil, fmt.Errorf("seal psp frame: %w", err)
	}
	return out[:n], nil
}
