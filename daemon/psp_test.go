package daemon

import (
	"testing"

	"github.com/xdpstack/xdpstack/userstack"
	"github.com/xdpstack/xdpstack/userstack/afxdp"
)

// TestPSPGivesTheQueuesMoreFrames: the gateway's queues get pspFrames
// UMEM frames, unless the options set their own.
func TestPSPGivesTheQueuesMoreFrames(t *testing.T) {
	c := &PSPConfig{}
	var o userstack.Options
	c.tune(&o)
	if o.AFXDP.Frames != pspFrames {
		t.Errorf("frames with psp: %d, want %d", o.AFXDP.Frames, pspFrames)
	}
	o = userstack.Options{AFXDP: afxdp.Options{Frames: 2048}}
	c.tune(&o)
	if o.AFXDP.Frames != 2048 {
		t.Errorf("frames with psp, 2048 asked for: %d", o.AFXDP.Frames)
	}
}
