// Package tls is the session layer's TLS transport: it builds the
// crypto/tls configurations that tls:// listeners and dialers use, from
// certificate files or a generated test certificate on the server side,
// and against a CA file or the system bundle on the client side. The
// record layer is crypto/tls; nothing here touches bytes on the wire.
package tls

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	cryptotls "crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"os"
	"time"
)

// ServerOptions say where a server's certificate comes from.
type ServerOptions struct {
	// CertFile and KeyFile are PEM files, given together.
	CertFile, KeyFile string
	// TestCertHost, instead of the files, generates a self-signed
	// certificate for this host name (or IP address), valid for a day.
	TestCertHost string
	// ALPN lists the application protocols offered, most preferred first.
	ALPN []string
}

// ServerConfig builds a server configuration for TLS 1.2 and 1.3.
func ServerConfig(o ServerOptions) (*cryptotls.Config, error) {
	var cert cryptotls.Certificate
	var err error
	switch {
	case o.TestCertHost != "" && (o.CertFile != "" || o.KeyFile != ""):
		return nil, errors.New("tls: give cert and key files or a test certificate host, not both")
	case o.TestCertHost != "":
		cert, _, err = TestCertificate(o.TestCertHost)
	case o.CertFile == "" || o.KeyFile == "":
		return nil, errors.New("tls: a server needs cert=FILE and key=FILE (or test-cert=HOST)")
	default:
		cert, err = cryptotls.LoadX509KeyPair(o.CertFile, o.KeyFile)
		if err != nil {
			err = fmt.Errorf("tls: load certificate %s and key %s: %w", o.CertFile, o.KeyFile, err)
		}
	}
	if err != nil {
		return nil, err
	}
	return &cryptotls.Config{
		Certificates: []cryptotls.Certificate{cert},
		MinVersion:   cryptotls.VersionTLS12,
		NextProtos:   o.ALPN,
	}, nil
}

// ClientOptions say how a client checks the server.
type ClientOptions struct {
	// CAFile is a PEM bundle of trusted CAs; empty trusts the system's.
	CAFile string
	// ServerName is the name the server's certificate must carry. When
	// empty, the host of the dialed address is used.
	ServerName string
	// InsecureSkipVerify accepts any certificate. Only an explicit choice
	// of the user sets it.
	InsecureSkipVerify bool
	ALPN               []string
}

// ClientConfig builds a client configuration for TLS 1.2 and 1.3.
func ClientConfig(o ClientOptions) (*cryptotls.Config, error) {
	c := &cryptotls.Config{
		ServerName:         o.ServerName,
		InsecureSkipVerify: o.InsecureSkipVerify,
		MinVersion:         cryptotls.VersionTLS12,
		NextProtos:         o.ALPN,
	}
	if o.CAFile != "" {
		pemBytes, err := os.ReadFile(o.CAFile)
		if err != nil {
			return nil, fmt.Errorf("tls: read CA file: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pemBytes) {
			return nil, fmt.Errorf("tls: CA file %s holds no PEM certificate", o.CAFile)
		}
		c.RootCAs = pool
	}
	return c, nil
}

// TestCertificate generates a self-signed ECDSA P-256 certificate for
// host, valid from an hour ago for a day, and returns it with its PEM so
// that a client can be told to trust it.
func TestCertificate(host string) (cryptotls.Certificate, []byte, error) {
	now := time.Now()
	return selfSigned(host, now.Add(-time.Hour), now.Add(24*time.Hour))
}

func selfSigned(host string, notBefore, notAfter time.Time) (cryptotls.Certificate, []byte, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return cryptotls.Certificate{}, nil, fmt.Errorf("tls: generate key: %w", err)
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 128))
	if err != nil {
		return cryptotls.Certificate{}, nil, err
	}
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: host, Organization: []string{"xdpstack test certificate"}},
		NotBefore:             notBefore,
		NotAfter:              notAfter,
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	if ip := net.ParseIP(host); ip != nil {
		tmpl.IPAddresses = []net.IP{ip}
	} else {
		tmpl.DNSNames = []string{host}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return cryptotls.Certificate{}, nil, fmt.Errorf("tls: create certificate: %w", err)
	}
	certPEM := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
	keyDER, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		return cryptotls.Certificate{}, nil, err
	}
	cert, err := cryptotls.X509KeyPair(certPEM, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: keyDER}))
	return cert, certPEM, err
}
