package test

import (
	"context"
	"strings"
	"syscall"
	"testing"

	"github.com/xdpstack/xdpstack/internal/testing/hosts"
	"github.com/xdpstack/xdpstack/internal/testing/testutil"
)

// reservedPorts reads the host's net.ipv4.ip_local_reserved_ports.
func reservedPorts(t *testing.T, h *testutil.Host) string {
	t.Helper()
	return strings.TrimSpace(h.Exec(t, "cat", "/proc/sys/net/ipv4/ip_local_reserved_ports"))
}

func checkReserved(t *testing.T, h *testutil.Host, when, want string) {
	t.Helper()
	if got := reservedPorts(t, h); got != want {
		t.Errorf("ip_local_reserved_ports %s: got %q, want %q", when, got, want)
	}
}

// operatorPorts are what the operator reserved before xdpstack came: a
// port inside the userstack's range too, which must be kept.
const operatorPorts = "1000-1002,61500"

// TestReservedPortsShared runs two userstacks in one network namespace:
// the first to stop leaves the other's range reserved, the last gives
// back the operator's value.
func TestReservedPortsShared(t *testing.T) {
	a, _ := testutil.HostPair(t, 0)
	root := testutil.PinRoot(t)
	a.Exec(t, "sysctl", "-q", "-w", "net.ipv4.ip_local_reserved_ports="+operatorPorts)
	// A second interface in the same namespace for the second daemon.
	second := &testutil.Host{Host: &hosts.Host{Netns: a.Netns, Addr: a.Addr, Iface: testutil.UniqueName("xs")}}
	a.Exec(t, "ip", "link", "add", second.Iface, "type", "veth", "peer", "name", second.Iface+"p")
	a.Exec(t, "ip", "link", "set", second.Iface, "up")
	a.Exec(t, "ip", "link", "set", second.Iface+"p", "up")

	d1 := startDaemon(t, a, root, "--metrics-addr", "", "--app", "echo=tcp://:7")
	d2 := startDaemon(t, second, root, "--metrics-addr", "", "--app", "echo=tcp://:7")
	checkReserved(t, a, "with two daemons", "1000-1002,61000-62999")
	if err := d1.signal(t, syscall.SIGTERM); err != nil {
		t.Fatalf("first daemon: %v\n%s", err, d1.output)
	}
	checkReserved(t, a, "after the first daemon stopped", "1000-1002,61000-62999")
	if err := d2.signal(t, syscall.SIGTERM); err != nil {
		t.Fatalf("second daemon: %v\n%s", err, d2.output)
	}
	checkReserved(t, a, "after both daemons stopped", operatorPorts)
}

// TestReservedPortsDetachAfterKill: a daemon killed with -9 leaves its
// range reserved until `xdpstack detach`, run in its namespace.
func TestReservedPortsDetachAfterKill(t *testing.T) {
	a, _ := testutil.HostPair(t, 0)
	root := testutil.PinRoot(t)
	a.Exec(t, "sysctl", "-q", "-w", "net.ipv4.ip_local_reserved_ports="+operatorPorts)
	d := startDaemon(t, a, root, "--metrics-addr", "", "--app", "echo=tcp://:7")
	d.signal(t, syscall.SIGKILL)
	checkReserved(t, a, "after kill -9", "1000-1002,61000-62999")
	if out, err := a.Command(context.Background(), binary, "--pin-root", root, "detach", a.Iface).CombinedOutput(); err != nil {
		t.Fatalf("detach: %v\n%s", err, out)
	}
	checkReserved(t, a, "after detach", operatorPorts)
	checkClean(t, a, root)
}
