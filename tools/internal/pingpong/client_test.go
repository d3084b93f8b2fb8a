package pingpong

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"io"
	"net"
	"testing"
)

func TestParseClientSpec(t *testing.T) {
	for _, tc := range []struct {
		name, spec string
		ok         bool
	}{
		{"v4", "10.0.0.1:7 5000", true},
		{"v6", "[fd00::1]:7 1", true},
		{"no count", "10.0.0.1:7", false},
		{"zero count", "10.0.0.1:7 0", false},
		{"no port", "10.0.0.1 5", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, _, err := parseClientSpec(tc.spec)
			if (err == nil) != tc.ok {
				t.Errorf("parseClientSpec(%q): err %v, want ok %v", tc.spec, err, tc.ok)
			}
		})
	}
}

// TestRunClient runs the client against a kernel echo on loopback.
func TestRunClient(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		io.Copy(c, c)
	}()
	const n = 50
	var out bytes.Buffer
	if err := runClient(fmt.Sprintf("%s %d", ln.Addr(), n), &out); err != nil {
		t.Fatalf("runClient: %v", err)
	}
	stamps := make([]int64, 2*n)
	if err := binary.Read(&out, binary.LittleEndian, stamps); err != nil || out.Len() != 0 {
		t.Fatalf("runClient wrote %d bytes more than %d stamps (%v)", out.Len(), 2*n, err)
	}
	for i := 1; i < len(stamps); i++ {
		if stamps[i] < stamps[i-1] {
			t.Fatalf("stamp %d (%d) before stamp %d (%d)", i, stamps[i], i-1, stamps[i-1])
		}
	}
}
