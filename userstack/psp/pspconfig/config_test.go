package pspconfig

import (
	"net/netip"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"
)

func TestReadDOCAExample(t *testing.T) {
	c, err := ReadJSON("testdata/doca.json")
	if err != nil {
		t.Fatal(err)
	}
	if c.LocalGRPC != "192.0.2.1:3000" || len(c.Peers) != 2 {
		t.Fatalf("local %q, %d peers", c.LocalGRPC, len(c.Peers))
	}
	if c.Peers[0].GRPC != "192.0.2.2:3000" || c.Peers[1].GRPC != "192.0.2.3:4000" {
		t.Fatalf("peer addresses %q %q (want DOCA's port added)", c.Peers[0].GRPC, c.Peers[1].GRPC)
	}
	if got := c.Peers[1].Sessions[0].RemoteVIPs[0]; got != netip.MustParsePrefix("10.7.7.0/24") {
		t.Fatalf("7.7.7.7/24 read as %v (want the host bits cleared)", got)
	}
	peer, s, ok := c.Owner(netip.MustParseAddr("10.8.8.9"))
	if !ok || peer != &c.Peers[0] || s.LocalVIP != netip.MustParseAddr("10.9.0.5") {
		t.Fatalf("owner of 10.8.8.9: %v %v %v", peer, s, ok)
	}
	if _, _, ok := c.Owner(netip.MustParseAddr("10.6.0.1")); ok {
		t.Fatal("an address of no peer has an owner")
	}
	if err := c.FillLocalVIP(netip.MustParseAddr("fd00::1"), netip.MustParseAddr("10.9.0.9")); err != nil {
		t.Fatal(err)
	}
	if got := c.Peers[1].Sessions[0].LocalVIP; got != netip.MustParseAddr("10.9.0.9") {
		t.Fatalf("filled local vip %v", got)
	}
	if n := len(c.LocalVIPs()); n != 3 {
		t.Fatalf("%d local vips, want 3", n)
	}
	if err := c.CheckInner(IPv6); err == nil {
		t.Fatal("ipv4 vips pass as ipv6")
	}
}

func TestYAMLSection(t *testing.T) {
	text := "config:\n  local-grpc-address: \"[fd00::1]:3000\"\npeers:\n  - remote-grpc-address: gw2.example\n    sessions:\n      - local-vip: fd09::1\n        remote-vips: [fd09::2, \"fd08::/64\"]\n"
	var doc yaml.Node
	if err := yaml.Unmarshal([]byte(text), &doc); err != nil {
		t.Fatal(err)
	}
	c, err := FromYAML(doc.Content[0])
	if err != nil {
		t.Fatal(err)
	}
	if c.Peers[0].GRPC != "gw2.example:3000" || len(c.Peers[0].Sessions[0].RemoteVIPs) != 2 {
		t.Fatalf("%+v", c)
	}
}

// TestBadJSON: each bad file fails in one line naming the key and line.
func TestBadJSON(t *testing.T) {
	ok := `"config": {"local-grpc-address": "192.0.2.1:3000"}`
	for _, tc := range []struct{ text, want string }{
		{``, "empty file"},
		{`[]`, "line 1: want an object of config, peers, got a list"},
		{`{"peers": []}`, "line 1: config.local-grpc-address: missing"},
		{`{"config": {"local-grpc-address": "nope:x"}}`, `line 1: config.local-grpc-address: "nope:x" is not HOST[:PORT]`},
		{`{"config": {"local-grpc-address": "1.2.3.4:70000"}}`, `is not HOST[:PORT]`},
		{"{" + ok + ",\n\"peer\": []}", `line 2: peer: unknown key (known: config, peers)`},
		{"{" + ok + ",\n\"peers\": [{\"sessions\": []}]}", "line 2: peers[0].remote-grpc-address: missing"},
		{"{" + ok + ",\n\"peers\": [{\"remote-grpc-address\": \"192.0.2.2\",\n \"sessions\": [{\"local-vip\": \"10.0.0.300\", \"remote-vips\": [\"10.1.0.1\"]}]}]}", `line 3: peers[0].sessions[0].local-vip: "10.0.0.300" is not an IP address`},
		{"{" + ok + ",\n\"peers\": [{\"remote-grpc-address\": \"192.0.2.2\",\n \"sessions\": [{\"remote-vips\": [\"10.1.0.0/33\"]}]}]}", `line 3: peers[0].sessions[0].remote-vips[0]: "10.1.0.0/33" is not an address or prefix`},
		{"{" + ok + ",\n\"peers\": [{\"remote-grpc-address\": \"192.0.2.2\",\n \"sessions\": [{\"local-vip\": \"10.0.0.1\"}]}]}", `line 3: peers[0].sessions[0].remote-vips: missing`},
		{"{" + ok + ",\n\"peers\": [{\"remote-grpc-address\": \"192.0.2.2\",\n \"sessions\": [{\"local-vip\": \"10.0.0.1\", \"remote-vips\": [\"fd00::1\"]}]}]}", `peers[0].sessions[0].remote-vips[0]: fd00::1/128 and local-vip 10.0.0.1 are not one family`},
		{"{" + ok + ",\n\"peers\": [{\"remote-grpc-address\": \"192.0.2.2\", \"sessions\": [{\"remote-vips\": [\"10.1.0.0/16\"]}]},\n{\"remote-grpc-address\": \"192.0.2.3\", \"sessions\": [{\"remote-vips\": [\"10.1.2.3\"]}]}]}", `peers[1].sessions[0].remote-vips[0]: 10.1.2.3/32 overlaps 10.1.0.0/16 of peers[0]`},
		{"{" + ok + ", \"config\": {}}", "config: given twice (first on line 1)"},
		{"{\n/* open", "line 2: comment not closed"},
		{"{\"config\n\"", "line 1: string not closed on its line"},
	} {
		_, err := ParseJSON([]byte(tc.text))
		if err == nil || !strings.Contains(err.Error(), tc.want) || strings.Contains(err.Error(), "\n") {
			t.Errorf("%q: got %v, want %q", tc.text, err, tc.want)
		}
	}
}

func FuzzParseJSON(f *testing.F) {
	f.Add([]byte(`{"config": {"local-grpc-address": "192.0.2.1:3000"}, "peers": [{"remote-grpc-address": "h", "sessions": [{"remote-vips": ["10.0.0.0/8"]}]}]}`))
	f.Add([]byte("/* c */ {\"config\": // x\n{}}"))
	f.Fuzz(func(t *testing.T, b []byte) {
		c, err := ParseJSON(b)
		if err != nil {
			if strings.Contains(err.Error(), "\n") {
				t.Fatalf("error of more than a line: %q", err)
			}
			return
		}
		if c.LocalGRPC == "" {
			t.Fatal("a config without local-grpc-address")
		}
		for _, p := range c.Peers {
			for _, s := range p.Sessions {
				if len(s.RemoteVIPs) == 0 {
					t.Fatal("a session without remote vips")
				}
			}
		}
	})
}
