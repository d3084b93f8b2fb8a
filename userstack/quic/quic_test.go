package quic

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/tls"
	"io"
	"net"
	"testing"
	"time"

	quicgo "github.com/quic-go/quic-go"

	xtls "github.com/xdpstack/xdpstack/userstack/tls"

	"github.com/xdpstack/xdpstack/internal/testutil"
)

const alpn = "xdpstack-test"

func TestStreamsAsConns(t *testing.T) {
	serverConf, err := xtls.ServerConfig(xtls.ServerOptions{TestCertHost: "quic.test", ALPN: []string{alpn}})
	if err != nil {
		t.Fatal(err)
	}
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Close()
	ln, err := Listen(pc, serverConf, nil)
	if err != nil {
		t.Fatal(err)
	}
	// Echo every stream until the peer's FIN, then FIN back.
	go testutil.Echo(ln)

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	clientPC, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer clientPC.Close()
	conn, err := quicgo.Dial(ctx, clientPC, pc.LocalAddr(), &tls.Config{InsecureSkipVerify: true, NextProtos: []string{alpn}}, nil)
	if err != nil {
		t.Fatalf("Dial: %v", err)
	}
	defer conn.CloseWithError(0, "")

	for i, size := range []int{1, 64 << 10, 1 << 20} {
		s, err := conn.OpenStreamSync(ctx)
		if err != nil {
			t.Fatal(err)
		}
		sc := NewStreamConn(conn, s)
		data := make([]byte, size)
		rand.Read(data)
		go func() {
			sc.Write(data)
			sc.CloseWrite()
		}()
		got, err := io.ReadAll(sc)
		if err != nil || !bytes.Equal(got, data) {
			t.Fatalf("stream %d: echoed %d of %d bytes, err %v", i, len(got), size, err)
		}
		if sc.RemoteAddr().String() != pc.LocalAddr().String() {
			t.Errorf("RemoteAddr: got %v, want %v", sc.RemoteAddr(), pc.LocalAddr())
		}
	}

	if err := ln.Close(); err != nil {
		t.Errorf("Close: %v", err)
	}
	if _, err := ln.Accept(); err != net.ErrClosed {
		t.Errorf("Accept after Close: got %v, want net.ErrClosed", err)
	}
}
