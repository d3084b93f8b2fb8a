package gsotx

import (
	"errors"
	"net"
	"os/exec"
	"testing"

	"github.com/xdpstack/xdpstack/internal/testing/testutil"
)

// TestFollowsTSO checks that the socket follows the interface's TCP
// segmentation offload and refuses to send while it is off.
func TestFollowsTSO(t *testing.T) {
	a, _ := testutil.Veth(t)
	iface, err := net.InterfaceByName(a)
	if err != nil {
		t.Fatal(err)
	}
	s, err := Open(iface.Index, a)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	if !s.TSO() {
		t.Fatalf("TSO() = false on a fresh veth, which segments TCP itself")
	}
	if out, err := exec.Command("ethtool", "-K", a, "tso", "off").CombinedOutput(); err != nil {
		t.Fatalf("ethtool -K %s tso off: %v %s", a, err, out)
	}
	if err := s.Refresh(); err != nil {
		t.Fatal(err)
	}
	if s.TSO() {
		t.Error("TSO() = true after ethtool -K tso off")
	}
	if err := s.Send(TCP{}); !errors.Is(err, ErrNoTSO) {
		t.Errorf("Send with TSO off: %v, want ErrNoTSO", err)
	}
}

func TestOpenBadInterface(t *testing.T) {
	testutil.RequireBPF(t)
	if s, err := Open(1<<30, "xs-nosuch0"); err == nil {
		s.Close()
		t.Fatal("Open on a missing interface: no error")
	}
}
