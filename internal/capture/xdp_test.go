package capture

import (
	"bytes"
	"errors"
	"net"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/cilium/ebpf"
	"golang.org/x/sys/unix"

	"github.com/xdpstack/xdpstack/bpf"
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
	x, err := OpenXDP(a.PinDir, XDPOptions{Snaplen: 40, All: true, Buffer: 1 << 20})
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

// TestXDPOrder runs the program on one CPU, then another, then the
// first again: the capture hands the samples out in the order they
// were taken, though each CPU has its own buffer.
func TestXDPOrder(t *testing.T) {
	testutil.RequireBPF(t)
	var cpus unix.CPUSet
	if err := unix.SchedGetaffinity(0, &cpus); err != nil || cpus.Count() < 2 {
		t.Skip("needs two CPUs")
	}
	var use []int
	for cpu := 0; len(use) < 2; cpu++ {
		if cpus.IsSet(cpu) {
			use = append(use, cpu)
		}
	}
	dir := filepath.Join(testutil.PinRoot(t), "xs0")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	spec, err := bpf.LoadXdp()
	if err != nil {
		t.Fatal(err)
	}
	var objs bpf.XdpObjects
	if err := spec.LoadAndAssign(&objs, &ebpf.CollectionOptions{Maps: ebpf.MapOptions{PinPath: dir}}); err != nil {
		t.Fatal(err)
	}
	defer objs.Close()
	if err := maps.FromObjects(&objs.XdpMaps).Sampling.SetSettings(maps.DefaultSampleSettings); err != nil {
		t.Fatal(err)
	}
	x, err := OpenXDP(dir, XDPOptions{Snaplen: 64, All: true, Buffer: 1 << 20})
	if err != nil {
		t.Fatal(err)
	}
	defer x.Close()

	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	defer unix.SchedSetaffinity(0, &cpus)
	for i, cpu := range []int{use[0], use[1], use[0]} {
		var on unix.CPUSet
		on.Set(cpu)
		if err := unix.SchedSetaffinity(0, &on); err != nil {
			t.Fatal(err)
		}
		frame := tcpFrame(addrB, addrA, uint16(1000+i), 80)
		if _, err := objs.XdpstackIngress.Run(&ebpf.RunOptions{Data: frame}); err != nil {
			t.Fatal(err)
		}
	}
	for i := range 3 {
		p, err := x.Next(time.Now().Add(time.Second))
		if err != nil {
			t.Fatalf("sample %d: %v", i, err)
		}
		if h := parseHeaders(p.Data); h.sport != uint16(1000+i) {
			t.Errorf("sample %d: from port %d, want %d", i, h.sport, 1000+i)
		}
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
