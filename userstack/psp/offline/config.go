package offline

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"

	"github.com/xdpstack/xdpstack/userstack/psp"
)

// ReadConfigFile reads a psp_encrypt config file; see ParseConfig.
func ReadConfigFile(path string) (Config, error) {
	f, err := os.Open(path)
	if err != nil {
		return Config{}, err
	}
	defer f.Close()
	c, err := ParseConfig(f)
	if err != nil {
		return c, fmt.Errorf("%s: %w", path, err)
	}
	return c, nil
}

// ParseConfig reads the reference psp_encrypt config: items separated by
// white space, in this order: master key 0 and master key 1 (32 hex bytes
// each, "34 44 8a ..."), the SPI in hex, transport or tunnel, aes-gcm-128
// or aes-gcm-256 (also aes-gmac-128 and aes-gmac-256 here, for versions 2
// and 3), the transport, IPv4 tunnel and IPv6 tunnel crypt offsets in 4-byte
// units, and vc or no-vc. The first IV is 1, as in the reference.
func ParseConfig(r io.Reader) (Config, error) {
	c := Config{FirstIV: 1}
	toks, err := tokens(r)
	if err != nil {
		return c, err
	}
	next := func(what string) (token, error) {
		if len(toks) == 0 {
			return token{}, fmt.Errorf("parse psp config: %s missing (the file ends early)", what)
		}
		t := toks[0]
		toks = toks[1:]
		return t, nil
	}
	for k := range c.MasterKeys {
		for i := range c.MasterKeys[k] {
			t, err := next(fmt.Sprintf("master key %d byte %d", k, i))
			if err != nil {
				return c, err
			}
			b, err := strconv.ParseUint(t.s, 16, 8)
			if err != nil {
				return c, t.errorf("master key %d byte %d: not a hex byte", k, i) // never the value: it is key material
			}
			c.MasterKeys[k][i] = byte(b)
		}
	}
	t, err := next("spi")
	if err != nil {
		return c, err
	}
	if c.SPI, err = psp.ParseSPI(t.s); err != nil {
		return c, t.errorf("%v", err)
	}
	if t, err = next("mode"); err != nil {
		return c, err
	}
	if c.Encap.Mode, err = psp.ParseMode(t.s); err != nil {
		return c, t.errorf("%v", err)
	}
	if t, err = next("algorithm"); err != nil {
		return c, err
	}
	if c.Version, err = parseAlgorithm(t.s); err != nil {
		return c, t.errorf("%v", err)
	}
	var offsets [3]uint8
	for i, what := range []string{"transport crypt offset", "ipv4 tunnel crypt offset", "ipv6 tunnel crypt offset"} {
		if t, err = next(what); err != nil {
			return c, err
		}
		n, err := strconv.ParseUint(t.s, 10, 8)
		if err != nil || n > 63 {
			return c, t.errorf("%s %q: want 0 to 63 (4-byte units)", what, t.s)
		}
		offsets[i] = uint8(n)
	}
	c.Encap.CryptOffset4, c.Encap.CryptOffset6 = offsets[0], offsets[0]
	if c.Encap.Mode == psp.Tunnel {
		c.Encap.CryptOffset4, c.Encap.CryptOffset6 = offsets[1], offsets[2]
	}
	if t, err = next("vc"); err != nil {
		return c, err
	}
	switch t.s {
	case "vc":
		c.Encap.VC = true
	case "no-vc":
	default:
		return c, t.errorf("%q: want vc or no-vc", t.s)
	}
	if len(toks) > 0 {
		return c, toks[0].errorf("%q after the last item", toks[0].s)
	}
	return c, nil
}

func parseAlgorithm(s string) (psp.Version, error) {
	for v := psp.V0; v <= psp.V3; v++ {
		if s == v.String() {
			return v, nil
		}
	}
	return 0, fmt.Errorf("algorithm %q: want aes-gcm-128, aes-gcm-256, aes-gmac-128 or aes-gmac-256", s)
}

type token struct {
	s    string
	line int
}

func (t token) errorf(format string, args ...any) error {
	return fmt.Errorf("parse psp config line %d: %s", t.line, fmt.Sprintf(format, args...))
}

func tokens(r io.Reader) ([]token, error) {
	var toks []token
	sc := bufio.NewScanner(r)
	for line := 1; sc.Scan(); line++ {
		for _, f := range strings.Fields(sc.Text()) {
			toks = append(toks, token{f, line})
		}
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("parse psp config: %w", err)
	}
	return toks, nil
}
