package httpapp

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"net"
	"net/http"
	"testing"
	"time"

	"github.com/quic-go/quic-go/http3"

	xtls "github.com/xdpstack/xdpstack/userstack/tls"
	"github.com/xdpstack/xdpstack/userstack/transport"
)

func freePort(t *testing.T, network string) int {
	t.Helper()
	if network == "udp" {
		pc, err := net.ListenPacket("udp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer pc.Close()
		return pc.LocalAddr().(*net.UDPAddr).Port
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

func TestServeEveryTransport(t *testing.T) {
	h := newHandler(t, Options{Status: fakeStatus, Access: AccessAll})
	server, err := xtls.ServerConfig(xtls.ServerOptions{TestCertHost: "127.0.0.1"})
	if err != nil {
		t.Fatal(err)
	}
	roots := x509.NewCertPool()
	leaf, _ := x509.ParseCertificate(server.Certificates[0].Certificate[0])
	roots.AddCert(leaf)
	clientTLS := &tls.Config{RootCAs: roots}

	for _, tc := range []struct {
		scheme, network, wantProto string
		client                     *http.Client
	}{
		{"tcp", "tcp", "HTTP/1.1", &http.Client{}},
		{"tls", "tcp", "HTTP/2.0", &http.Client{Transport: &http.Transport{TLSClientConfig: clientTLS, ForceAttemptHTTP2: true}}},
		{"quic", "udp", "HTTP/3.0", &http.Client{Transport: &http3.Transport{TLSClientConfig: clientTLS}}},
	} {
		t.Run(tc.scheme, func(t *testing.T) {
			port := freePort(t, tc.network)
			u, err := transport.ParseURI(fmt.Sprintf("%s://127.0.0.1:%d", tc.scheme, port))
			if err != nil {
				t.Fatal(err)
			}
			srv, err := Listen(transport.Kernel, u, server, h)
			if err != nil {
				t.Fatalf("Listen(%s): %v", u, err)
			}
			defer func() {
				ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
				defer cancel()
				start := time.Now()
				if err := srv.Close(ctx); err != nil {
					t.Errorf("Close: %v", err)
				}
				if took := time.Since(start); took > time.Second {
					t.Errorf("Close with the client's connection idle: took %v, want under 1s", took)
				}
			}()
			web := "http"
			if tc.scheme != "tcp" {
				web = "https"
			}
			tc.client.Timeout = 5 * time.Second
			resp, err := tc.client.Get(fmt.Sprintf("%s://127.0.0.1:%d/status.json", web, port))
			if err != nil {
				t.Fatalf("GET: %v", err)
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != 200 || resp.Proto != tc.wantProto || len(body) == 0 {
				t.Errorf("GET: %d %s, %d bytes; want 200 %s", resp.StatusCode, resp.Proto, len(body), tc.wantProto)
			}
		})
	}
}
