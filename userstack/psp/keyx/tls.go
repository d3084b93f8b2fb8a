package keyx

import (
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"slices"

	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/peer"
)

// TLS is this node's identity for the key exchange's mutual TLS: its
// certificate and key, and the CA its peers' certificates must verify
// against. Both sides verify: the server asks for the client's
// certificate and refuses one that does not verify.
type TLS struct {
	cert tls.Certificate
	pool *x509.CertPool
}

// LoadTLS reads the PEM files. The key must be readable by its owner
// alone.
func LoadTLS(certFile, keyFile, caFile string) (*TLS, error) {
	st, err := os.Stat(keyFile)
	if err != nil {
		return nil, fmt.Errorf("load psp key: %w", err)
	}
	if st.Mode().Perm()&0o077 != 0 {
		return nil, fmt.Errorf("load psp key %s: readable by others (chmod 600)", keyFile)
	}
	cert, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		return nil, fmt.Errorf("load psp certificate %s and key %s: %w", certFile, keyFile, err)
	}
	ca, err := os.ReadFile(caFile)
	if err != nil {
		return nil, fmt.Errorf("load psp ca: %w", err)
	}
	return NewTLS(cert, ca)
}

// NewTLS builds the identity from a loaded certificate and the CA's PEM.
func NewTLS(cert tls.Certificate, caPEM []byte) (*TLS, error) {
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(caPEM) {
		return nil, errors.New("load psp ca: no PEM certificate in it")
	}
	leaf, err := x509.ParseCertificate(cert.Certificate[0])
	if err != nil {
		return nil, fmt.Errorf("load psp certificate: %w", err)
	}
	opts := x509.VerifyOptions{Roots: pool, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}}
	if _, err := leaf.Verify(opts); err != nil {
		return nil, fmt.Errorf("load psp certificate %q: does not verify against the ca: %w", leaf.Subject, err)
	}
	cert.Leaf = leaf
	return &TLS{cert: cert, pool: pool}, nil
}

// IPs are the IP addresses this node's certificate names.
func (t *TLS) IPs() []netip.Addr { return certIPs(t.cert.Leaf) }

func (t *TLS) server() credentials.TransportCredentials {
	return credentials.NewTLS(&tls.Config{
		Certificates: []tls.Certificate{t.cert},
		ClientAuth:   tls.RequireAndVerifyClientCert,
		ClientCAs:    t.pool,
		MinVersion:   tls.VersionTLS13,
		Rand:         rand.Reader,
	})
}

func (t *TLS) client() credentials.TransportCredentials {
	return credentials.NewTLS(&tls.Config{
		Certificates: []tls.Certificate{t.cert},
		RootCAs:      t.pool,
		MinVersion:   tls.VersionTLS13,
	})
}

func certIPs(c *x509.Certificate) []netip.Addr {
	var out []netip.Addr
	for _, ip := range c.IPAddresses {
		if a, ok := netip.AddrFromSlice(ip); ok {
			out = append(out, a.Unmap())
		}
	}
	return out
}

// identity is who is on the other end of a call: a verified
// certificate, or in plaintext mode only an address.
type identity struct {
	subject string // the certificate's subject; empty in plaintext
	ips     []netip.Addr
	tls     bool
}

// names reports whether the peer may speak for the virtual address a: in
// plaintext anyone may, as in DOCA.
func (id identity) names(a netip.Addr) bool { return !id.tls || slices.Contains(id.ips, a) }

// identityOf reads the verified peer certificate of a call.
func identityOf(p *peer.Peer) identity {
	if p == nil {
		return identity{}
	}
	info, ok := p.AuthInfo.(credentials.TLSInfo)
	if !ok || len(info.State.VerifiedChains) == 0 || len(info.State.VerifiedChains[0]) == 0 {
		return identity{subject: ""}
	}
	leaf := info.State.VerifiedChains[0][0]
	return identity{subject: leaf.Subject.String(), ips: certIPs(leaf), tls: true}
}
