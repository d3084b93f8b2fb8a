package quic

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/tls"
	"io"
	"net"
	"path/filepath"
	"testing"
	"time"

	quicgo "github.com/quic-go/quic-go"

	xtls "github.com/xdpstack/xdpstack/userstack/tls"

	"github.com/xdpstack/xdpstack/internal/testing/testutil"
)

const alpn = "xdpstack-test"

func TestStreamsAsConns(t *testing.T) {
	qlogDir := t.TempDir()
	t.Setenv("QLOGDIR", qlogDir)
	serverConf, err := xtls.ServerConfig(xtls.ServerOptions{TestCertHost: "quic.test", ALPN: []string{alpn}})
	if err != nil {
		t.Fatal(err)
	}
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ln, err := Listen(pc, serverConf)
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
	conn, err := quicgo.Dial(ctx, clientPC, pc.LocalAddr(), &tls.Config{InsecureSkipVerify: true, NextProtos: []string{alpn}}, Config())
	if err != nil {
		t.Fatalf("Dial: %v", err)
	}

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

	conn.CloseWithError(0, "")
	if err := ln.Close(); err != nil {
		t.Errorf("Close: %v", err)
	}
	if _, err := ln.Accept(); err != net.ErrClosed {
		t.Errorf("Accept after Close: got %v, want net.ErrClosed", err)
	}

	// Config traced both ends of the connection into QLOGDIR.
	for _, end := range []string{"client", "server"} {
		traces, _ := filepath.Glob(filepath.Join(qlogDir, "*_"+end+".sqlog"))
		if len(traces) != 1 {
			t.Errorf("qlog traces of the %s in QLOGDIR: %v, want one", end, traces)
		}
	}
}
