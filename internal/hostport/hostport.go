// Package hostport reads HOST:PORT as users write it, in flags, URIs
// and addresses: one parser, so that each says the same of a bad port.
package hostport

import (
	"fmt"
	"net"
	"strconv"
)

// Split splits HOST:PORT (HOST may be empty, an IPv6 address goes in
// brackets) and reads the port, a number from 0 to 65535.
func Split(s string) (host string, port uint16, err error) {
	host, p, err := net.SplitHostPort(s)
	if err != nil {
		return "", 0, err
	}
	n, err := strconv.ParseUint(p, 10, 16)
	if err != nil {
		return "", 0, fmt.Errorf("port %q is not a number from 0 to 65535", p)
	}
	return host, uint16(n), nil
}
