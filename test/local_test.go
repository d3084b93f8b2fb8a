package test

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/xdpstack/xdpstack/internal/testing/packet"
	"github.com/xdpstack/xdpstack/internal/testing/testutil"
	"github.com/xdpstack/xdpstack/maps"
)

// The userstack serves only what is addressed to the interface's own
// addresses, kept in step with the kernel (issue 17.1), drops martians
// (17.6), and follows the MTU (18.4).

// counted returns how many packets got verdict v between two readings
// of the stats map.
func counted(before, after map[maps.Verdict]maps.Counter, action maps.Action, reason maps.Reason) uint64 {
	v := maps.Verdict{Action: action, Reason: reason}
	return after[v].Packets - before[v].Packets
}

// webServer serves a file with body on h's address, port 80, with
// python3's http.server until the test ends, and returns its URL.
func webServer(t *testing.T, h *testutil.Host, body string) string {
	t.Helper()
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "page.txt"), []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cmd := h.Command(ctx, "python3", "-m", "http.server", "80", "--bind", h.Addr.String(), "--directory", dir)
	out := &testutil.SyncBuffer{}
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cancel()
		cmd.Wait()
	})
	url := fmt.Sprintf("http://%s/page.txt", h.Addr)
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(100 * time.Millisecond) {
		if err := h.Command(context.Background(), "curl", "-sf", "-o", "/dev/null", url).Run(); err == nil {
			return url
		}
		if time.Now().After(deadline) {
			t.Fatalf("python3 http.server in %s not serving after 10s:\n%s", h.Netns, out)
		}
	}
}

// curl fetches url from h with extra curl arguments and checks the body.
func curl(t *testing.T, h *testutil.Host, url, want string, args ...string) {
	t.Helper()
	out := h.Exec(t, "curl", append([]string{"-sS", "--fail", "--max-time", "5", url}, args...)...)
	if out != want {
		t.Errorf("curl %s from %s: got %q, want %q", url, h.Netns, out, want)
	}
}

// TestRoutedTrafficPasses attaches to a router (ip_forward=1) with an
// HTTP app on the userstack, on the interface that faces the client:
// the client's connections to a web server behind the router, and the
// replies to a port in the userstack's range, go on to the kernel,
// which forwards them, while the router's own app still answers.
// Before, the XDP program steered them to the userstack, which dropped
// them.
func TestRoutedTrafficPasses(t *testing.T) {
	needTools(t, "curl", "python3")
	c := testutil.HostChain(t, 0)
	root := testutil.PinRoot(t)
	server := webServer(t, c.Server, "behind the router\n")
	client := webServer(t, c.Client, "in front of the router\n")
	startDaemon(t, c.Router, root, "--metrics-addr", "", "--app", "http=tcp://:80")
	before := readStats(t, root, c.Router.Iface)

	t.Run("http through the router", func(t *testing.T) {
		curl(t, c.Client, server, "behind the router\n")
		curl(t, c.Client, server, "behind the router\n", "--local-port", "61600")
	})
	t.Run("replies to a port in the userstack range", func(t *testing.T) {
		// The server side connects from 61600: the client's replies
		// cross the attached interface to that port.
		curl(t, c.Server, client, "in front of the router\n", "--local-port", "61600")
	})
	t.Run("udp to a port in the userstack range", func(t *testing.T) {
		pc, err := c.Server.ListenPacket("udp4", netip.AddrPortFrom(c.Server.Addr, 61234).String())
		if err != nil {
			t.Fatal(err)
		}
		defer pc.Close()
		c.Client.Do(t, func() error {
			conn, err := net.Dial("udp4", netip.AddrPortFrom(c.Server.Addr, 61234).String())
			if err != nil {
				return err
			}
			defer conn.Close()
			_, err = conn.Write([]byte("routed datagram"))
			return err
		})
		pc.SetReadDeadline(time.Now().Add(5 * time.Second))
		buf := make([]byte, 100)
		n, _, err := pc.ReadFrom(buf)
		if err != nil || string(buf[:n]) != "routed datagram" {
			t.Fatalf("server received %q, %v; want the client's datagram", buf[:n], err)
		}
	})
	t.Run("the router's own app", func(t *testing.T) {
		out := c.Client.Exec(t, "curl", "-sS", "--fail", "--max-time", "5", fmt.Sprintf("http://%s/status.json", c.Router.Addr))
		if !strings.Contains(out, c.Router.Iface) {
			t.Errorf("status.json from the router's app: %q, want its interface in it", out)
		}
	})
	after := readStats(t, root, c.Router.Iface)
	// Three connections of at least 5 packets each way in and a datagram.
	if n := counted(before, after, maps.ActionPass, maps.ReasonNotLocal); n < 16 {
		t.Errorf("%d packets counted pass/not_local, want at least 16", n)
	}
	if n := counted(before, after, maps.ActionRedirect, maps.ReasonSteered); n == 0 {
		t.Error("nothing steered to the router's own app")
	}
}

// TestVLANPassesToKernel sends the userstack's echo port frames with
// one VLAN tag (802.1Q) and with two (802.1Q inside 802.1ad): they are
// the kernel's VLAN devices', and where the kernel has them, their
// kernel echo servers answer on the same port.
func TestVLANPassesToKernel(t *testing.T) {
	a, b := testutil.HostPair(t, 0)
	root := testutil.PinRoot(t)
	d := startDaemon(t, a, root, "--metrics-addr", "127.0.0.1:0", "--app", "echo=tcp://:7")

	t.Run("tagged frames", func(t *testing.T) {
		aMAC, bMAC := macs(t, a, b)
		ip := packet.IPv4{Src: b.Addr, Dst: a.Addr, Protocol: packet.ProtoTCP}
		frames := [][]byte{
			packet.EthernetTo(aMAC, bMAC, packet.EtherTypeVLAN).VLAN(100, packet.EtherTypeIPv4).IPv4(ip).TCP(40000, 7, 0).Bytes(),
			packet.EthernetTo(aMAC, bMAC, packet.EtherTypeQinQ).VLAN(200, packet.EtherTypeVLAN).VLAN(300, packet.EtherTypeIPv4).IPv4(ip).TCP(40001, 7, 0).Bytes(),
		}
		sendUnanswered(t, a, b, d, root, aMAC, frames, maps.Verdict{Action: maps.ActionPass, Reason: maps.ReasonVLAN})
	})

	t.Run("kernel vlan devices", func(t *testing.T) {
		if out, err := a.Command(context.Background(), "ip", "link", "add", "link", a.Iface, "name", "vl100", "type", "vlan", "id", "100").CombinedOutput(); err != nil {
			t.Skipf("this kernel makes no VLAN devices (CONFIG_VLAN_8021Q): %s", bytes.TrimSpace(out))
		}
		net3 := a.Addr.As4()[2]
		vlanAddr := func(subnet, host byte) string { return fmt.Sprintf("10.%d.%d.%d", subnet, net3, host) }
		for i, h := range []*testutil.Host{a, b} {
			host := byte(i + 1)
			if h == b {
				h.Exec(t, "ip", "link", "add", "link", h.Iface, "name", "vl100", "type", "vlan", "id", "100")
			}
			for _, args := range [][]string{
				{"addr", "add", vlanAddr(100, host) + "/24", "dev", "vl100"},
				{"link", "add", "link", h.Iface, "name", "qq200", "type", "vlan", "protocol", "802.1ad", "id", "200"},
				{"link", "add", "link", "qq200", "name", "qq300", "type", "vlan", "id", "300"},
				{"addr", "add", vlanAddr(101, host) + "/24", "dev", "qq300"},
				{"link", "set", "vl100", "up"},
				{"link", "set", "qq200", "up"},
				{"link", "set", "qq300", "up"},
			} {
				h.Exec(t, "ip", args...)
			}
		}
		single := a.KernelEcho(t, vlanAddr(100, 1)+":7")
		double := a.KernelEcho(t, vlanAddr(101, 1)+":7")
		before := readStats(t, root, a.Iface)
		b.EchoFrom(t, single, 1000)
		b.EchoFrom(t, double, 1000)
		// Each connection: ARP, SYN, ACK, data, FIN, ACK at least.
		if n := counted(before, readStats(t, root, a.Iface), maps.ActionPass, maps.ReasonVLAN); n < 10 {
			t.Errorf("%d packets counted pass/vlan, want at least 10", n)
		}
	})

	before := readStats(t, root, a.Iface)
	b.EchoFrom(t, fmt.Sprintf("%s:7", a.Addr), 1000) // untagged: the userstack's
	if n := counted(before, readStats(t, root, a.Iface), maps.ActionRedirect, maps.ReasonSteered); n == 0 {
		t.Error("the untagged echo was not steered to the userstack")
	}
}

// macs returns the MAC addresses of a's and b's interfaces.
func macs(t *testing.T, a, b *testutil.Host) (net.HardwareAddr, net.HardwareAddr) {
	t.Helper()
	aMAC, err := a.MAC()
	if err != nil {
		t.Fatal(err)
	}
	bMAC, err := b.MAC()
	if err != nil {
		t.Fatal(err)
	}
	return aMAC, bMAC
}

// sendFrames sends hand-built frames out of h's interface to dst
// through an AF_PACKET socket.
func sendFrames(t *testing.T, h *testutil.Host, dst net.HardwareAddr, frames [][]byte) {
	t.Helper()
	h.Do(t, func() error {
		iface, err := net.InterfaceByName(h.Iface)
		if err != nil {
			return err
		}
		fd, err := unix.Socket(unix.AF_PACKET, unix.SOCK_RAW|unix.SOCK_CLOEXEC, 0)
		if err != nil {
			return err
		}
		defer unix.Close(fd)
		to := &unix.SockaddrLinklayer{Ifindex: iface.Index, Halen: 6}
		copy(to.Addr[:], dst)
		for i, f := range frames {
			if err := unix.Sendto(fd, f, 0, to); err != nil {
				return fmt.Errorf("send frame %d: %w", i, err)
			}
		}
		return nil
	})
}

// waitVerdicts waits up to 5s for n packets more than before to get the
// verdict (veth delivers asynchronously), and returns the stats then.
func waitVerdicts(t *testing.T, root, iface string, before map[maps.Verdict]maps.Counter, action maps.Action, reason maps.Reason, n int) map[maps.Verdict]maps.Counter {
	t.Helper()
	var after map[maps.Verdict]maps.Counter
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		if after = readStats(t, root, iface); counted(before, after, action, reason) >= uint64(n) {
			break
		}
	}
	// An answer from the userstack would have left by now.
	time.Sleep(100 * time.Millisecond)
	return after
}

// sendUnanswered sends frames from b to a, where d runs, and checks
// that each got the verdict and that the userstack answered none.
func sendUnanswered(t *testing.T, a, b *testutil.Host, d *daemon, root string, aMAC net.HardwareAddr, frames [][]byte, want maps.Verdict) {
	t.Helper()
	before, sent := readStats(t, root, a.Iface), afxdpSent(t, a, d)
	sendFrames(t, b, aMAC, frames)
	after := waitVerdicts(t, root, a.Iface, before, want.Action, want.Reason, len(frames))
	if n := counted(before, after, want.Action, want.Reason); n != uint64(len(frames)) {
		t.Errorf("%d frames counted %v/%v, want %d", n, want.Action, want.Reason, len(frames))
	}
	if now := afxdpSent(t, a, d); now != sent {
		t.Errorf("the userstack answered with %v frames, want none", now-sent)
	}
}

// afxdpSent sums the frames the daemon's AF_XDP sockets sent.
func afxdpSent(t *testing.T, h *testutil.Host, d *daemon) float64 {
	t.Helper()
	var sum float64
	for q := range d.ready.Queues {
		sum += metric(t, h, d, fmt.Sprintf(`xdpstack_afxdp_packets_total{direction="tx",iface="%s",queue="%d"}`, h.Iface, q))
	}
	return sum
}

// TestAddressesFollowed adds an address to the interface while the
// userstack serves echo on every address, connects to it, and removes
// it again: the userstack serves it only while the interface has it.
func TestAddressesFollowed(t *testing.T) {
	a, b := testutil.HostPair(t, 0)
	root := testutil.PinRoot(t)
	d := startDaemon(t, a, root, "--metrics-addr", "127.0.0.1:0", "--app", "echo=tcp://:7")
	set, err := maps.OpenPinned(filepath.Join(root, a.Iface))
	if err != nil {
		t.Fatal(err)
	}
	defer set.Close()
	second := a.Addr.Next().Next().Next().Next().Next().Next().Next().Next()
	mac, err := a.MAC()
	if err != nil {
		t.Fatal(err)
	}
	// The peer keeps sending to it after it is gone.
	b.Exec(t, "ip", "neigh", "replace", second.String(), "lladdr", mac.String(), "dev", b.Iface, "nud", "permanent")
	waitLocal := func(want maps.AddrKind) {
		t.Helper()
		var got map[netip.Addr]maps.AddrKind
		for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
			if got, err = set.LocalAddrs.All(); err == nil && got[second] == want {
				return
			}
		}
		t.Fatalf("local_addrs: %v, %v; want %s as %v", got, err, second, want)
	}

	a.Exec(t, "ip", "addr", "add", second.String()+"/24", "dev", a.Iface)
	waitLocal(maps.AddrOwn | maps.AddrServed)
	before := readStats(t, root, a.Iface)
	b.EchoFrom(t, fmt.Sprintf("%s:7", second), 100000)
	if n := counted(before, readStats(t, root, a.Iface), maps.ActionRedirect, maps.ReasonSteered); n == 0 {
		t.Error("the echo to the added address was not steered")
	}

	a.Exec(t, "ip", "addr", "del", second.String()+"/24", "dev", a.Iface)
	waitLocal(0)
	before, sent := readStats(t, root, a.Iface), afxdpSent(t, a, d)
	b.Do(t, func() error {
		c, err := net.DialTimeout("tcp", fmt.Sprintf("%s:7", second), time.Second)
		if err == nil {
			c.Close()
			return fmt.Errorf("connected to %s after it was removed", second)
		}
		return nil
	})
	if n := counted(before, readStats(t, root, a.Iface), maps.ActionPass, maps.ReasonNotLocal); n == 0 {
		t.Error("SYNs to the removed address not counted pass/not_local")
	}
	if now := afxdpSent(t, a, d); now != sent {
		t.Errorf("the userstack sent %v frames after the address was removed, want none", now-sent)
	}
}

// TestMartiansDropped sends the userstack's listeners a SYN and a
// datagram from each source no packet on the wire may have (one of the
// interface's own addresses, loopback, multicast): the program drops
// them and the userstack answers none.
func TestMartiansDropped(t *testing.T) {
	a, b := testutil.HostPair(t, 0)
	root := testutil.PinRoot(t)
	d := startDaemon(t, a, root, "--metrics-addr", "127.0.0.1:0", "--app", "echo=tcp://:7", "--app", "echo=udp://:7")
	aMAC, bMAC := macs(t, a, b)
	var frames [][]byte
	for _, src := range []string{a.Addr.String(), "127.0.0.1", "224.0.0.9"} {
		ip := packet.IPv4{Src: netip.MustParseAddr(src), Dst: a.Addr, Protocol: packet.ProtoTCP}
		frames = append(frames, packet.EthernetTo(aMAC, bMAC, packet.EtherTypeIPv4).IPv4(ip).TCP(40000, 7, 0).Bytes())
		ip.Protocol = packet.ProtoUDP
		frames = append(frames, packet.EthernetTo(aMAC, bMAC, packet.EtherTypeIPv4).IPv4(ip).UDP(40000, 7).Payload(16).Bytes())
	}
	sendUnanswered(t, a, b, d, root, aMAC, frames, maps.Verdict{Action: maps.ActionDrop, Reason: maps.ReasonMartian})
}

// udpEcho sends a datagram of size bytes from h to addr, an echo server,
// and checks that it comes back within a second.
func udpEcho(h *testutil.Host, addr string, size int) error {
	return h.Run(func() error {
		c, err := net.Dial("udp4", addr)
		if err != nil {
			return err
		}
		defer c.Close()
		want := bytes.Repeat([]byte{0x5a}, size)
		if _, err := c.Write(want); err != nil {
			return err
		}
		c.SetReadDeadline(time.Now().Add(time.Second))
		got := make([]byte, size+1)
		n, err := c.Read(got)
		if err != nil {
			return fmt.Errorf("udp echo of %d bytes: %w", size, err)
		}
		if !bytes.Equal(got[:n], want) {
			return fmt.Errorf("udp echo of %d bytes: got %d bytes back that differ", size, n)
		}
		return nil
	})
}

// TestMTUFollowed raises the MTU of both ends while the userstack serves
// echo, past what one AF_XDP frame holds, and lowers it again.
func TestMTUFollowed(t *testing.T) {
	a, b := testutil.HostPair(t, 2)
	root := testutil.PinRoot(t)
	d := startDaemon(t, a, root, "--metrics-addr", "127.0.0.1:0", "--app", "echo=tcp://:7", "--app", "echo=udp://:7")
	addr := fmt.Sprintf("%s:7", a.Addr)
	setMTU := func(mtu string) {
		for _, h := range []*testutil.Host{a, b} {
			h.Exec(t, "ip", "link", "set", h.Iface, "mtu", mtu)
		}
	}
	// echoes checks UDP echoes of each size, retried while the daemon
	// takes the news.
	echoes := func(sizes ...int) {
		t.Helper()
		for _, size := range sizes {
			err := udpEcho(b, addr, size)
			for deadline := time.Now().Add(5 * time.Second); err != nil && time.Now().Before(deadline); {
				err = udpEcho(b, addr, size)
			}
			if err != nil {
				t.Fatal(err)
			}
		}
	}
	setMTU("9000")
	echoes(4000, 8000)
	b.EchoFrom(t, addr, 4<<20)
	for q := range d.ready.Queues {
		if n := metric(t, a, d, fmt.Sprintf(`xdpstack_afxdp_kernel_drops_total{iface="%s",queue="%d",reason="rx_dropped"}`, a.Iface, q)); n != 0 {
			t.Errorf("queue %d: %v frames rx_dropped at MTU 9000", q, n)
		}
	}
	setMTU("1500")
	echoes(1400)
	b.EchoFrom(t, addr, 4<<20)
}
