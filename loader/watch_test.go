package loader

import (
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/vishvananda/netlink"

	"github.com/xdpstack/xdpstack/internal/testing/testutil"
)

// TestCheckDetachedOutside detaches the program from under its
// Attachment, lets another attach take the interface, and checks that
// Check says so and that Close then leaves the newcomer's pins alone.
func TestCheckDetachedOutside(t *testing.T) {
	ifname, _ := testutil.Veth(t)
	root := testutil.PinRoot(t)
	a := attach(t, ifname, Options{PinRoot: root})
	if err := a.Check(); err != nil {
		t.Fatalf("Check while attached: %v", err)
	}
	if err := Detach(ifname, DetachOptions{PinRoot: root, Force: true}); err != nil {
		t.Fatal(err)
	}
	if err := a.Check(); !errors.Is(err, ErrDetached) {
		t.Fatalf("Check after detach --force: got %v, want ErrDetached", err)
	}
	next := attach(t, ifname, Options{PinRoot: root})
	defer next.Close()
	if err := a.Close(); err != nil {
		t.Errorf("Close after detach --force: %v", err)
	}
	if _, err := os.Stat(filepath.Join(root, ifname)); err != nil {
		t.Errorf("the next attach's pins after the first one's Close: %v", err)
	}
	if err := next.Check(); err != nil {
		t.Errorf("Check of the next attach: %v", err)
	}
}

// TestCheckInterfaceGone deletes the interface under an Attachment.
func TestCheckInterfaceGone(t *testing.T) {
	ifname, _ := testutil.Veth(t)
	root := testutil.PinRoot(t)
	a := attach(t, ifname, Options{PinRoot: root})
	l, err := netlink.LinkByName(ifname)
	if err != nil {
		t.Fatal(err)
	}
	if err := netlink.LinkDel(l); err != nil {
		t.Fatal(err)
	}
	if err := a.Check(); !errors.Is(err, ErrInterfaceGone) {
		t.Fatalf("Check after the interface was deleted: got %v, want ErrInterfaceGone", err)
	}
	if err := a.Close(); err != nil {
		t.Errorf("Close: %v", err)
	}
	if _, err := os.Stat(filepath.Join(root, ifname)); !os.IsNotExist(err) {
		t.Errorf("pins after Close: %v, want them gone", err)
	}
}
