package capture

import (
	"bytes"
	"errors"
	"net"
	"os"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/xdpstack/xdpstack/internal/testing/packet"
	"github.com/xdpstack/xdpstack/internal/testing/testutil"
	"github.com/xdpstack/xdpstack/loader"
	"github.com/xdpstack/xdpstack/maps"
)

// sendFrames writes frames onto the wire of ifname with a packet
// socket, for its veth peer to receive.
func sendFrames(t *testing.T, ifname string, frames ...[]byte) {
	t.Helper()
	ifc, err := net.InterfaceByName(ifname)
	if err != nil {
		t.Fatal(err)
	}
	fd, err := unix.Socket(unix.AF_PACKET, unix.SOCK_RAW, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(fd)
	for _, f := range frames {
		if err := unix.Sendto(fd, f, 0, &unix.SockaddrLinklayer{Ifindex: ifc.Index}); err != nil {
			t.Fatalf("send a frame on %s: %v", ifname, err)
		}
	}
}

// TestXDPCapture captures every packet arriving on a veth through the
// pins, then checks that closing the capture ends its lease.
func TestXDPCapture(t *testing.T) {
	ifname, peer := testutil.Veth(t)
	a, err := loader.Attach(ifname, loader.Options{Mode: loader.ModeNative, PinRoot: testutil.PinRoot(t)})
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	x, err := OpenXDP(a.PinDir, XDPOptions{Snaplen: 40, All: true, PerCPUBuffer: 1 << 16})
	if err != nil {
		t.Fatal(err)
	}
	defer x.Close()

	frames := [][]byte{
		tcpFrame(addrB, addrA, 5555, 22),
		packet.Ethernet(packet.EtherTypeIPv4).IPv4(packet.IPv4{Src: addrB, Dst: addrA, Protocol: packet.ProtoUDP}).UDP(1, 53).Payload(500).Bytes(),
	}
	sendFrames(t, peer, frames...)
	// The kernel sends IPv6 neighbour discovery of its own on the veth.
	ours, _ := ParseFilter("src host " + addrB.String())
	deadline := time.Now().Add(5 * time.Second)
	next := func() Packet {
		// Below its watermark, a perf buffer is read once the wait ends.
		for time.Now().Before(deadline) {
			p, err := x.Next(time.Now().Add(50 * time.Millisecond))
			if errors.Is(err, os.ErrDeadlineExceeded) {
				continue
			}
			if err != nil {
				t.Fatal(err)
			}
			if ours.Match(&p) {
				return p
			}
		}
		t.Fatal("no packet within 5s")
		return Packet{}
	}
	for i, f := range frames {
		p := next()
		want := maps.Verdict{Action: maps.ActionPass, Reason: maps.ReasonNoMatch}
		if p.Point != PointXDP || p.Verdict != want || p.Len != len(f) || !bytes.Equal(p.Data, f[:40]) || time.Since(p.Time).Abs() > time.Minute {
			t.Errorf("packet %d: got %+v; want %v with 40 of its %d bytes, now", i, p, want, len(f))
		}
	}
	if lease, err := a.Maps.Sampling.Lease(); err != nil || !lease.All || lease.Until < maps.MonotonicNow() {
		t.Errorf("lease while capturing: got %+v, %v; want All, running", lease, err)
	}
	if err := x.Close(); err != nil {
		t.Fatal(err)
	}
	if lease, err := a.Maps.Sampling.Lease(); err != nil || lease != (maps.Lease{}) {
		t.Errorf("lease after Close: got %+v, %v; want none", lease, err)
	}
}

func TestLockXDP(t *testing.T) {
	dir := t.TempDir()
	unlock, err := LockXDP(dir, "eth0")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := LockXDP(dir, "eth0"); err == nil || !strings.Contains(err.Error(), "another capture reads eth0's samples") {
		t.Errorf("second lock: got %v, want a refusal", err)
	}
	other, err := LockXDP(dir, "eth1")
	if err != nil {
		t.Errorf("lock of another interface: %v", err)
	} else {
		other()
	}
	unlock()
	again, err := LockXDP(dir, "eth0")
	if err != nil {
		t.Errorf("lock after unlock: %v", err)
	} else {
		again()
	}
	if _, err := LockXDP(dir, "../x"); err == nil {
		t.Error("lock of a bad interface name: no error")
	}
}
