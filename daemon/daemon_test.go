package daemon

import (
	"strings"
	"testing"

	"github.com/xdpstack/xdpstack/loader"
	"github.com/xdpstack/xdpstack/maps"
	"github.com/xdpstack/xdpstack/userstack/apps"
)

// TestAppInUserstackPorts: an app may not serve a port the userstack
// dials from; Start refuses it before it looks at the interface.
func TestAppInUserstackPorts(t *testing.T) {
	for _, tc := range []struct {
		name  string
		app   string
		ports maps.PortRange
		want  string
	}{
		{"default range", "echo=tcp://:61500", maps.PortRange{}, "app echo=tcp://:61500: port 61500 is in the userstack's own port range 61000-62999"},
		{"lowest port", "echo=udp://:61000", maps.PortRange{}, "port 61000 is in"},
		{"highest port", "echo=tcp://:62999", maps.PortRange{}, "port 62999 is in"},
		{"range of the attachment", "http=tcp://10.0.0.1:5000", maps.PortRange{Min: 4000, Max: 5000}, "port 5000 is in the userstack's own port range 4000-5000"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			spec, err := apps.ParseSpec(tc.app)
			if err != nil {
				t.Fatal(err)
			}
			d, err := Start(Config{Iface: "xs-nosuch0", Attach: loader.Options{UserPorts: tc.ports}, Apps: []apps.Spec{spec}})
			if err == nil {
				d.Close()
			}
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("Start with --app %s: got %v, want an error containing %q", tc.app, err, tc.want)
			}
		})
	}
}
