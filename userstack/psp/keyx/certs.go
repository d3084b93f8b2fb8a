package keyx

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"net/netip"
	"time"
)

// PEM is a certificate and its private key, PEM-encoded.
type PEM struct {
	Cert, Key []byte
}

// NewCA makes a CA for the gateways' certificates: ECDSA P-256, valid
// for the given time.
func NewCA(name string, valid time.Duration) (PEM, error) {
	tmpl := &x509.Certificate{
		Subject:               pkix.Name{CommonName: name, Organization: []string{"xdpstack psp"}},
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
		BasicConstraintsValid: true,
		IsCA:                  true,
		MaxPathLenZero:        true,
	}
	return issue(tmpl, nil, valid)
}

// NewNode makes a node's certificate, signed by ca, that names ips: the
// node's gRPC address and its virtual addresses. It serves and it
// requests (server and client authentication).
func NewNode(ca PEM, name string, ips []netip.Addr, valid time.Duration) (PEM, error) {
	if len(ips) == 0 {
		return PEM{}, errors.New("make node certificate: no ip addresses (its grpc address and virtual addresses)")
	}
	tmpl := &x509.Certificate{
		Subject:     pkix.Name{CommonName: name, Organization: []string{"xdpstack psp"}},
		KeyUsage:    x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
	}
	for _, ip := range ips {
		tmpl.IPAddresses = append(tmpl.IPAddresses, net.IP(ip.AsSlice()))
	}
	return issue(tmpl, &ca, valid)
}

func issue(tmpl *x509.Certificate, ca *PEM, valid time.Duration) (PEM, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return PEM{}, fmt.Errorf("make certificate: %w", err)
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		return PEM{}, fmt.Errorf("make certificate: %w", err)
	}
	tmpl.SerialNumber = serial
	tmpl.NotBefore = time.Now().Add(-time.Hour)
	tmpl.NotAfter = time.Now().Add(valid)
	parent, signer := tmpl, any(key)
	if ca != nil {
		if parent, signer, err = parseCA(*ca); err != nil {
			return PEM{}, err
		}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, parent, &key.PublicKey, signer)
	if err != nil {
		return PEM{}, fmt.Errorf("make certificate %q: %w", tmpl.Subject.CommonName, err)
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return PEM{}, fmt.Errorf("make certificate: %w", err)
	}
	return PEM{
		Cert: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		Key:  pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER}),
	}, nil
}

func parseCA(ca PEM) (*x509.Certificate, any, error) {
	cb, _ := pem.Decode(ca.Cert)
	kb, _ := pem.Decode(ca.Key)
	if cb == nil || kb == nil {
		return nil, nil, errors.New("read ca: not a PEM certificate and key")
	}
	cert, err := x509.ParseCertificate(cb.Bytes)
	if err != nil {
		return nil, nil, fmt.Errorf("read ca certificate: %w", err)
	}
	key, err := x509.ParsePKCS8PrivateKey(kb.Bytes)
	if err != nil {
		if key, err = x509.ParseECPrivateKey(kb.Bytes); err != nil {
			return nil, nil, fmt.Errorf("read ca key: %w", err)
		}
	}
	if !cert.IsCA {
		return nil, nil, errors.New("read ca: the certificate is not a ca")
	}
	return cert, key, nil
}
