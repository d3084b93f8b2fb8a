package loader

import (
	"errors"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/cilium/ebpf"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/xdpstack/xdpstack/bpf"
	"github.com/xdpstack/xdpstack/bpf/upgradetest"
	"github.com/xdpstack/xdpstack/internal/testing/packet"
	"github.com/xdpstack/xdpstack/internal/testing/testutil"
	"github.com/xdpstack/xdpstack/maps"
	"github.com/xdpstack/xdpstack/userstack/psp"
	"github.com/xdpstack/xdpstack/userstack/psp/tunnel"
)

func attach(t *testing.T, ifname string, opts Options) *Attachment {
	t.Helper()
	a, err := Attach(ifname, opts)
	if err != nil {
		t.Fatalf("Attach(%s, %+v): %v", ifname, opts, err)
	}
	return a
}

func programOn(t *testing.T, ifname string) (uint32, Mode) {
	t.Helper()
	iface, err := LookupInterface(ifname)
	if err != nil {
		t.Fatal(err)
	}
	id, mode, err := xdpProgramOn(iface.Index)
	if err != nil {
		t.Fatal(err)
	}
	return id, mode
}

// die leaves the attachment as a killed process would: fds closed, pins
// in place, and an attach record naming a process that is gone.
func die(t *testing.T, a *Attachment) {
	t.Helper()
	cmd := exec.Command("true")
	if err := cmd.Run(); err != nil {
		t.Fatal(err)
	}
	if err := a.Maps.Info.Put(maps.AttachInfo{Time: time.Now(), PID: cmd.Process.Pid}); err != nil {
		t.Fatal(err)
	}
	a.link.Close()
	a.objs.Close()
}

func TestAttachAndClose(t *testing.T) {
	for _, tc := range []struct {
		ask, want Mode
	}{
		{ModeNative, ModeNative},
		{ModeGeneric, ModeGeneric},
		{ModeAuto, ModeNative}, // veth has native XDP
	} {
		t.Run(tc.ask.String(), func(t *testing.T) {
			ifname, _ := testutil.Veth(t)
			root := testutil.PinRoot(t)
			a := attach(t, ifname, Options{Mode: tc.ask, PinRoot: root})
			if a.Mode != tc.want || a.NativeErr != nil {
				t.Errorf("Mode, NativeErr: got %v, %v; want %v, nil", a.Mode, a.NativeErr, tc.want)
			}
			if id, mode := programOn(t, ifname); id != uint32(a.ProgramID) || mode != tc.want {
				t.Errorf("netlink: got program %d in %v mode, want %d in %v", id, mode, a.ProgramID, tc.want)
			}
			st, err := ReadInterfaceStatus(root, ifname)
			if err != nil {
				t.Fatal(err)
			}
			wantPins := []string{"info", "link", "listen_ports", "listeners", "local_addrs", "psp", "psp_spis", "rule_hits", "rule_match", "rule_sets", "rule_slots", "rules",
				"sample_counts", "samples", "sampling", "stats", "xsks"}
			if !slices.Equal(st.Pins, wantPins) || st.ProgramID != a.ProgramID || st.Mode != tc.want ||
				st.PID != os.Getpid() || !st.Running || st.ProgramName != "xdpstack_ingress" {
				t.Errorf("ReadInterfaceStatus: got %+v", st)
			}
			if err := a.Close(); err != nil {
				t.Fatalf("Close: %v", err)
			}
			if id, _ := programOn(t, ifname); id != 0 {
				t.Errorf("after Close: program %d still attached", id)
			}
			if _, err := os.Stat(root); !os.IsNotExist(err) {
				t.Errorf("after Close: pin root still there (%v)", err)
			}
		})
	}
}

func TestAttachRefusesForeignProgram(t *testing.T) {
	ifname, _ := testutil.Veth(t)
	var objs bpf.PassObjects
	if err := bpf.LoadPassObjects(&objs, nil); err != nil {
		t.Fatal(err)
	}
	defer objs.Close()
	l, err := netlink.LinkByName(ifname)
	if err != nil {
		t.Fatal(err)
	}
	if err := netlink.LinkSetXdpFd(l, objs.XdpPass.FD()); err != nil {
		t.Fatal(err)
	}
	_, err = Attach(ifname, Options{PinRoot: testutil.PinRoot(t)})
	if err == nil || !strings.Contains(err.Error(), "xdpstack did not attach") {
		t.Fatalf("Attach over a foreign program: got %v, want a refusal", err)
	}
}

func TestAttachReplacesDeadProcess(t *testing.T) {
	ifname, _ := testutil.Veth(t)
	root := testutil.PinRoot(t)
	first := attach(t, ifname, Options{Mode: ModeGeneric, PinRoot: root})
	listener := maps.Listener{Protocol: maps.TCP, Port: 7}
	if err := first.Maps.Listeners.Put(listener, 42); err != nil {
		t.Fatal(err)
	}
	die(t, first)
	if id, _ := programOn(t, ifname); id != uint32(first.ProgramID) {
		t.Fatalf("after death: got program %d, want %d still attached", id, first.ProgramID)
	}

	if _, err := Attach(ifname, Options{Mode: ModeNative, PinRoot: root}); err == nil || !strings.Contains(err.Error(), "generic mode") {
		t.Errorf("Attach in another mode: got %v, want a refusal naming generic mode", err)
	}

	second := attach(t, ifname, Options{PinRoot: root})
	defer second.Close()
	if !second.Replaced || second.Mode != ModeGeneric || second.ProgramID == first.ProgramID {
		t.Errorf("replace: got Replaced=%v Mode=%v ID=%d (old %d)", second.Replaced, second.Mode, second.ProgramID, first.ProgramID)
	}
	if id, _ := programOn(t, ifname); id != uint32(second.ProgramID) {
		t.Errorf("netlink: got program %d, want %d", id, second.ProgramID)
	}
	all, err := second.Maps.Listeners.All()
	if err != nil || all[listener] != 42 {
		t.Errorf("listeners after replace: got %v, %v; want the old entry kept", all, err)
	}

	if _, err := Attach(ifname, Options{PinRoot: root}); err == nil || !strings.Contains(err.Error(), "already attached") {
		t.Errorf("Attach while attached by a live process: got %v, want a refusal", err)
	}
}

// TestReplaceByAnotherBuild replaces a dead process's program with a
// build that has more counter reasons, and that one with this build
// again: each takes over the pins, counters, listeners, rules and
// sample counters kept. The first pin folder is one of a build from
// before session rules and sampling: the attach adds their maps to it.
func TestReplaceByAnotherBuild(t *testing.T) {
	ifname, _ := testutil.Veth(t)
	root := testutil.PinRoot(t)
	listener := maps.Listener{Protocol: maps.TCP, Port: 7}
	counted := maps.Verdict{Action: maps.ActionPass, Reason: maps.ReasonNotIP}

	first := attach(t, ifname, Options{PinRoot: root})
	if err := first.Maps.Listeners.Put(listener, 42); err != nil {
		t.Fatal(err)
	}
	// A counter to keep: one frame through the attached program's maps.
	frame := make([]byte, 64)
	frame[12], frame[13] = 0x08, 0x06 // ARP
	if _, err := first.objs.XdpstackIngress.Run(&ebpf.RunOptions{Data: frame}); err != nil {
		t.Fatal(err)
	}
	before, err := first.Maps.Stats.Sum()
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range slices.Concat(maps.RuleMapNames, maps.SampleMapNames, maps.PSPMapNames) {
		if err := os.Remove(filepath.Join(first.PinDir, name)); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := maps.OpenPinnedRules(first.PinDir); !errors.Is(err, maps.ErrRuleMapsMissing) {
		t.Fatalf("OpenPinnedRules of a folder without rule maps: got %v, want ErrRuleMapsMissing", err)
	}
	if _, err := maps.OpenPinnedSampling(first.PinDir); !errors.Is(err, maps.ErrSampleMapsMissing) {
		t.Fatalf("OpenPinnedSampling of a folder without sampling maps: got %v, want ErrSampleMapsMissing", err)
	}
	if _, err := maps.OpenPinnedPSP(first.PinDir); !errors.Is(err, maps.ErrPSPMapsMissing) {
		t.Fatalf("OpenPinnedPSP of a folder without psp maps: got %v, want ErrPSPMapsMissing", err)
	}
	die(t, first)

	settings := maps.SampleSettings{Rate: 3, Snaplen: 100}
	pspOn := maps.PSPSettings{Enabled: true, Versions: []psp.Version{psp.V1}}
	for _, build := range []struct {
		name string
		load func() (*ebpf.CollectionSpec, error)
		psp  maps.PSPSettings
	}{{"more reasons", upgradetest.LoadXdp, pspOn}, {"this build again", bpf.LoadXdp, maps.PSPSettings{}}} {
		loadSpec = build.load
		a, err := Attach(ifname, Options{PinRoot: root, Sampling: settings, PSP: build.psp})
		loadSpec = bpf.LoadXdp
		if err != nil {
			t.Fatalf("%s: Attach over a dead process's pins: %v", build.name, err)
		}
		if !a.Replaced {
			t.Errorf("%s: Replaced is false", build.name)
		}
		if id, _ := programOn(t, ifname); id != uint32(a.ProgramID) {
			t.Errorf("%s: netlink: got program %d, want %d", build.name, id, a.ProgramID)
		}
		after, err := a.Maps.Stats.Sum()
		if err != nil {
			t.Fatal(err)
		}
		if after[counted].Packets < before[counted].Packets || before[counted].Packets == 0 {
			t.Errorf("%s: %v counter: got %v after, %v before; want it kept", build.name, counted, after[counted], before[counted])
		}
		if all, err := a.Maps.Listeners.All(); err != nil || all[listener] != 42 {
			t.Errorf("%s: listeners: got %v, %v; want the old entry kept", build.name, all, err)
		}
		// The first attach's sampling map is new: the kept entry must be
		// counted, or the program would not look it up.
		if n, err := a.Maps.Listeners.Count(); err != nil || n != 1 {
			t.Errorf("%s: listener count: got %d, %v; want 1", build.name, n, err)
		}
		rules, err := maps.OpenPinnedRules(a.PinDir)
		if err != nil {
			t.Fatalf("%s: rule maps after the upgrade: %v", build.name, err)
		}
		all, err := rules.All()
		rules.Close()
		if build.name == "more reasons" {
			if err != nil || len(all) != 0 {
				t.Errorf("%s: rules: got %v, %v; want none", build.name, all, err)
			}
			if _, err := a.Maps.Rules.Replace([]maps.Rule{denySSH}); err != nil {
				t.Fatal(err)
			}
		} else {
			if err != nil || len(all) != 1 || all[0].Tag != denySSH.Tag {
				t.Errorf("%s: rules: got %v, %v; want the rule kept", build.name, all, err)
			}
			checkDenied(t, a)
		}
		sampling, err := maps.OpenPinnedSampling(a.PinDir)
		if err != nil {
			t.Fatalf("%s: sampling maps after the upgrade: %v", build.name, err)
		}
		if got, err := sampling.Settings(); err != nil || got != settings {
			t.Errorf("%s: sampling settings: got %+v, %v; want %+v", build.name, got, err, settings)
		}
		counts, err := sampling.Counts()
		if err != nil {
			t.Fatal(err)
		}
		if build.name == "more reasons" {
			// One sample to keep: the ARP frame, with no capture reading.
			if err := sampling.SetLease(maps.Lease{Until: maps.MonotonicNow() + time.Hour, Snaplen: 64, All: true}); err != nil {
				t.Fatal(err)
			}
			if _, err := a.objs.XdpstackIngress.Run(&ebpf.RunOptions{Data: frame}); err != nil {
				t.Fatal(err)
			}
			sampling.SetLease(maps.Lease{})
		} else if counts[counted].Unread != 1 {
			t.Errorf("%s: sample counts: got %v; want the ARP frame's unread sample kept", build.name, counts)
		}
		sampling.Close()
		// The PSP maps are the attaching daemon's: its settings, and none
		// of the grants of the one before.
		pspMaps, err := maps.OpenPinnedPSP(a.PinDir)
		if err != nil {
			t.Fatalf("%s: psp maps after the upgrade: %v", build.name, err)
		}
		if got, err := pspMaps.Settings(); err != nil || got.Enabled != build.psp.Enabled || len(got.Versions) != len(build.psp.Versions) {
			t.Errorf("%s: psp settings: got %+v, %v; want %+v", build.name, got, err, build.psp)
		}
		if grants, err := pspMaps.SPIs.All(); err != nil || len(grants) != 0 {
			t.Errorf("%s: psp grants: got %v, %v; want none", build.name, grants, err)
		}
		if err := pspMaps.SPIs.Put(tunnel.Grant{SPI: 7, Version: psp.V1, Src: netip.MustParseAddr("10.9.0.1")}); err != nil {
			t.Fatal(err)
		}
		pspMaps.Close()
		settings.Rate++
		die(t, a)
	}
	if err := Detach(ifname, DetachOptions{PinRoot: root}); err != nil {
		t.Fatal(err)
	}
}

// denySSH is a rule, and a frame it drops.
var (
	denySSH  = maps.Rule{RuleMatch: maps.RuleMatch{Protocol: maps.TCP, LocalPort: 22}, Action: maps.RuleDeny, Tag: "ssh"}
	sshFrame = packet.Ethernet(packet.EtherTypeIPv4).
			IPv4(packet.IPv4{Src: netip.MustParseAddr("192.0.2.1"), Dst: netip.MustParseAddr("192.0.2.2"), Protocol: packet.ProtoTCP}).
			TCP(40000, 22, 5).Bytes()
)

// checkDenied runs sshFrame through a's program: denySSH must drop it.
func checkDenied(t *testing.T, a *Attachment) {
	t.Helper()
	ret, err := a.objs.XdpstackIngress.Run(&ebpf.RunOptions{Data: sshFrame})
	if err != nil {
		t.Fatal(err)
	}
	if maps.Action(ret) != maps.ActionDrop {
		t.Errorf("a frame to port 22 under a deny rule: program says %v, want drop", maps.Action(ret))
	}
}

// inUse reads the rule generation in use from the sampling map pinned
// in dir.
func inUse(t *testing.T, dir string) bpf.XdpRuleGeneration {
	t.Helper()
	m, err := ebpf.LoadPinnedMap(filepath.Join(dir, maps.SamplingName), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	var v bpf.XdpSampleState
	if err := m.Lookup(uint32(0), &v); err != nil {
		t.Fatal(err)
	}
	return v.Rules
}

// oldMap is a map as an older build pinned it, and its value at 0 if
// it had one.
type oldMap struct {
	spec  *ebpf.MapSpec
	value any
}

// TestRulesRecompiledOverOldLayouts replaces a dead process's program
// by this build over pins of older builds' layouts: the attach makes the
// compiled rule maps anew, removes rule_active, makes a sampling map of
// this build's layout and compiles the pinned rules into them, so that
// the rule decides packets again, id and hits kept, and counts the
// listener kept. A rules command of this build refuses the old pins
// meanwhile where the old sampling map's value has no rules word, rather
// than write past it.
func TestRulesRecompiledOverOldLayouts(t *testing.T) {
	for _, tc := range []struct {
		name string
		// pins replaces this build's pins of those names; nil removes one.
		pins map[string]*oldMap
		// rulesWord: the old sampling map has the generation word where
		// this build has it, so that a rules command of this build takes
		// the old pins.
		rulesWord bool
	}{{
		name: "the build before rule_slots",
		pins: map[string]*oldMap{
			maps.RuleSlotsName: nil,
			maps.RuleMatchName: {spec: &ebpf.MapSpec{Type: ebpf.Hash, KeySize: 40, ValueSize: 8, MaxEntries: 32768}},
			maps.RuleSetsName:  {spec: &ebpf.MapSpec{Type: ebpf.Array, KeySize: 4, ValueSize: 1288, MaxEntries: 2}},
			"rule_active":      {spec: &ebpf.MapSpec{Type: ebpf.Array, KeySize: 4, ValueSize: 4, MaxEntries: 1}},
			maps.SamplingName:  {spec: &ebpf.MapSpec{Type: ebpf.Array, KeySize: 4, ValueSize: 8, MaxEntries: 1}},
		},
	}, {
		// Its compiled maps have this build's layouts; its generation
		// in use, 1 of one shape, is not where this build reads it.
		name: "the build before the generation moved into the sampling map",
		pins: map[string]*oldMap{
			"rule_active":     {&ebpf.MapSpec{Type: ebpf.Array, KeySize: 4, ValueSize: 8, MaxEntries: 1}, [2]uint32{1, 1}},
			maps.SamplingName: {spec: &ebpf.MapSpec{Type: ebpf.Array, KeySize: 4, ValueSize: 24, MaxEntries: 1, Flags: unix.BPF_F_MMAPABLE}},
		},
	}, {
		// Its sampling map has no listener count: made anew, it must
		// count the listener kept, or the program would not look it up.
		name: "the build before the listener count",
		pins: map[string]*oldMap{
			maps.SamplingName: {&ebpf.MapSpec{Type: ebpf.Array, KeySize: 4, ValueSize: 32, MaxEntries: 1, Flags: unix.BPF_F_MMAPABLE}, [8]uint32{6: 1, 7: 1}},
		},
		rulesWord: true,
	}} {
		t.Run(tc.name, func(t *testing.T) {
			ifname, _ := testutil.Veth(t)
			root := testutil.PinRoot(t)
			first := attach(t, ifname, Options{PinRoot: root})
			rules, err := first.Maps.Rules.Replace([]maps.Rule{denySSH})
			if err != nil {
				t.Fatal(err)
			}
			checkDenied(t, first)
			listener := maps.Listener{Protocol: maps.TCP, Port: 7}
			if err := first.Maps.Listeners.Put(listener, 42); err != nil {
				t.Fatal(err)
			}
			die(t, first)
			for name, old := range tc.pins {
				path := filepath.Join(first.PinDir, name)
				if err := os.Remove(path); err != nil && !os.IsNotExist(err) {
					t.Fatal(err)
				}
				if old == nil {
					continue
				}
				m, err := ebpf.NewMap(old.spec)
				if err != nil {
					t.Fatal(err)
				}
				if old.value != nil {
					if err := m.Put(uint32(0), old.value); err != nil {
						t.Fatal(err)
					}
				}
				err = m.Pin(path)
				m.Close()
				if err != nil {
					t.Fatal(err)
				}
			}
			if old, err := maps.OpenPinnedRules(first.PinDir); tc.rulesWord {
				if err != nil {
					t.Errorf("OpenPinnedRules of the old pins: %v", err)
				} else {
					old.Close()
				}
			} else if !errors.Is(err, maps.ErrRuleMapsMissing) {
				t.Errorf("OpenPinnedRules of the old pins: got %v, want ErrRuleMapsMissing", err)
			}

			a := attach(t, ifname, Options{PinRoot: root})
			defer a.Close()
			checkDenied(t, a)
			if _, err := os.Stat(filepath.Join(a.PinDir, "rule_active")); !os.IsNotExist(err) {
				t.Errorf("rule_active after the upgrade: got %v, want it removed", err)
			}
			if g := inUse(t, a.PinDir); g.ShapeCount != 1 {
				t.Errorf("generation in use after the upgrade: got %+v, want 1 shape", g)
			}
			if n, err := a.Maps.Listeners.Count(); err != nil || n != 1 {
				t.Errorf("listener count after the upgrade: got %d, %v; want 1", n, err)
			}
			all, err := a.Maps.Rules.All()
			if err != nil || len(all) != 1 || all[0] != rules[0] {
				t.Errorf("rules after the upgrade: got %v, %v; want %v", all, err, rules)
			}
			hits, err := a.Maps.Rules.Hits(rules)
			if err != nil || hits[rules[0].ID].Packets != 2 {
				t.Errorf("hits after the upgrade: got %v, %v; want 2 packets of rule %d", hits, err, rules[0].ID)
			}
			spec, err := bpf.LoadXdp()
			if err != nil {
				t.Fatal(err)
			}
			for _, name := range slices.Concat(compiledRuleMaps, []string{maps.SamplingName}) {
				m, err := ebpf.LoadPinnedMap(filepath.Join(a.PinDir, name), nil)
				if err != nil {
					t.Fatal(err)
				}
				if err := spec.Maps[name].Compatible(m); err != nil {
					t.Errorf("%s pinned after the upgrade: %v", name, err)
				}
				m.Close()
			}
		})
	}
}

// TestReplaceKeepsTheGenerationInUse replaces a dead process's program
// by one of this build, which takes over its sampling map and with it
// the generation word that the old program reads until the new one
// replaces it. The attach compiles the rules as the generation in use,
// so the old program goes on finding the same rules in its own compiled
// maps, not the ones of its retired generation.
func TestReplaceKeepsTheGenerationInUse(t *testing.T) {
	ifname, _ := testutil.Veth(t)
	root := testutil.PinRoot(t)
	first := attach(t, ifname, Options{PinRoot: root})
	passSSH := denySSH
	passSSH.Action, passSSH.Tag = maps.RulePass, "ssh-to-kernel"
	for _, rules := range [][]maps.Rule{{passSSH}, {denySSH}} {
		if _, err := first.Maps.Rules.Replace(rules); err != nil {
			t.Fatal(err)
		}
	}
	before := inUse(t, first.PinDir)
	old, err := first.objs.XdpstackIngress.Clone()
	if err != nil {
		t.Fatal(err)
	}
	defer old.Close()
	die(t, first)

	a := attach(t, ifname, Options{PinRoot: root})
	defer a.Close()
	if after := inUse(t, a.PinDir); after != before {
		t.Errorf("generation after the replace: got %+v, want %+v", after, before)
	}
	checkDenied(t, a)
	ret, err := old.Run(&ebpf.RunOptions{Data: sshFrame})
	if err != nil {
		t.Fatal(err)
	}
	if maps.Action(ret) != maps.ActionDrop {
		t.Errorf("the replaced program on a frame to port 22: says %v, want drop by the deny rule still", maps.Action(ret))
	}
}

// TestPinnedLayoutChanged puts maps of another layout where the program
// pins its own: a record that attach rewrites anyway is replaced, the
// counters are refused with what to do, and nothing is left attached or
// unpinned.
func TestPinnedLayoutChanged(t *testing.T) {
	ifname, _ := testutil.Veth(t)
	root := testutil.PinRoot(t)
	dir := filepath.Join(root, ifname)
	if err := ensureBPFFS(dir); err != nil {
		t.Fatal(err)
	}
	pin := func(name string, spec *ebpf.MapSpec) {
		t.Helper()
		m, err := ebpf.NewMap(spec)
		if err != nil {
			t.Fatal(err)
		}
		defer m.Close()
		if err := m.Pin(filepath.Join(dir, name)); err != nil {
			t.Fatal(err)
		}
	}
	// The layouts of the build before REASON_STRIDE and 256 queues.
	pin(maps.InfoName, &ebpf.MapSpec{Type: ebpf.Array, KeySize: 4, ValueSize: 32, MaxEntries: 1})
	a := attach(t, ifname, Options{PinRoot: root})
	if _, err := a.Maps.Info.Get(); err != nil {
		t.Errorf("info after replacing the old record: %v", err)
	}
	if err := a.Close(); err != nil {
		t.Fatal(err)
	}

	if err := ensureBPFFS(dir); err != nil {
		t.Fatal(err)
	}
	pin(maps.StatsName, &ebpf.MapSpec{Type: ebpf.PerCPUArray, KeySize: 4, ValueSize: 16, MaxEntries: 35})
	pin(maps.RuleSetsName, &ebpf.MapSpec{Type: ebpf.Array, KeySize: 4, ValueSize: 1288, MaxEntries: 2})
	_, err := Attach(ifname, Options{PinRoot: root})
	if err == nil || !strings.Contains(err.Error(), "stats map") || !strings.Contains(err.Error(), "xdpstack detach "+ifname) || strings.Contains(err.Error(), "\n") {
		t.Errorf("Attach over old counters: got %v, want one line naming the stats map and the detach", err)
	}
	// Refused, it changed nothing: the old rules stay where their
	// program, if it still ran, would find them.
	if _, err := os.Stat(filepath.Join(dir, maps.RuleSetsName)); err != nil {
		t.Errorf("%s after a refused attach: %v", maps.RuleSetsName, err)
	}
	if id, _ := programOn(t, ifname); id != 0 {
		t.Errorf("program %d attached after a refused attach", id)
	}
	if err := Detach(ifname, DetachOptions{PinRoot: root}); err != nil {
		t.Fatalf("Detach of the old pins: %v", err)
	}
	checkGone(t, ifname, root)
}

func TestDetach(t *testing.T) {
	ifname, _ := testutil.Veth(t)
	root := testutil.PinRoot(t)
	a := attach(t, ifname, Options{PinRoot: root})
	if err := Detach(ifname, DetachOptions{PinRoot: root}); err != nil {
		t.Fatalf("Detach of own attachment: %v", err)
	}
	checkGone(t, ifname, root)
	a.objs.Close()
	a.link.Close()

	b := attach(t, ifname, Options{PinRoot: root})
	die(t, b)
	if err := Detach(ifname, DetachOptions{PinRoot: root}); err != nil {
		t.Fatalf("Detach after death: %v", err)
	}
	checkGone(t, ifname, root)

	if err := Detach(ifname, DetachOptions{PinRoot: root}); err == nil || !strings.Contains(err.Error(), "not attached") {
		t.Errorf("Detach with nothing attached: got %v", err)
	}
}

func TestDetachRunning(t *testing.T) {
	ifname, _ := testutil.Veth(t)
	root := testutil.PinRoot(t)
	// A live process other than this one, recorded as the attacher.
	sleeper := exec.Command("sleep", "30")
	if err := sleeper.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { sleeper.Process.Kill(); sleeper.Wait() })
	a := attach(t, ifname, Options{PinRoot: root})
	defer a.objs.Close()
	defer a.link.Close()
	if err := a.Maps.Info.Put(maps.AttachInfo{Time: time.Now(), PID: sleeper.Process.Pid}); err != nil {
		t.Fatal(err)
	}
	if err := Detach(ifname, DetachOptions{PinRoot: root}); err == nil || !strings.Contains(err.Error(), "--force") {
		t.Fatalf("Detach while running: got %v, want a refusal with a hint", err)
	}
	if err := Detach(ifname, DetachOptions{PinRoot: root, Force: true}); err != nil {
		t.Fatalf("Detach --force: %v", err)
	}
	// The link is still open here, as in the running process: the
	// program must be gone all the same.
	checkGone(t, ifname, root)
}

func checkGone(t *testing.T, ifname, root string) {
	t.Helper()
	if id, _ := programOn(t, ifname); id != 0 {
		t.Errorf("program %d still attached", id)
	}
	if _, err := os.Stat(filepath.Join(root, ifname)); !os.IsNotExist(err) {
		t.Errorf("pins still there (%v)", err)
	}
}

func TestAttachErrors(t *testing.T) {
	testutil.RequireBPF(t)
	_, err := Attach("xs-no-such0", Options{PinRoot: testutil.PinRoot(t)})
	if err == nil || !strings.Contains(err.Error(), `interface "xs-no-such0" not found`) {
		t.Errorf("Attach to missing interface: got %v", err)
	}
	if _, err := ParseMode("fast"); err == nil || !strings.Contains(err.Error(), `"fast"`) {
		t.Errorf("ParseMode(fast): got %v", err)
	}
}

func TestPinnedMapsHaveBTF(t *testing.T) {
	ifname, _ := testutil.Veth(t)
	root := testutil.PinRoot(t)
	a := attach(t, ifname, Options{PinRoot: root})
	defer a.Close()
	for _, name := range maps.PinnedNames {
		if name == maps.XSKsName || name == maps.SamplesName {
			continue // the kernel takes no BTF for an XSKMAP or a perf event array: their values are fds
		}
		m, err := ebpf.LoadPinnedMap(filepath.Join(a.PinDir, name), nil)
		if err != nil {
			t.Fatal(err)
		}
		info, err := m.Info()
		m.Close()
		if err != nil {
			t.Fatal(err)
		}
		if _, ok := info.BTFID(); !ok {
			t.Errorf("map %s has no BTF", name)
		}
	}
}

// TestAutoModeSaysWhyNativeFailed uses a bridge, which has no native XDP:
// auto must fall back to generic and keep the reason, and an
// explicit native attach must fail with a hint.
func TestAutoModeSaysWhyNativeFailed(t *testing.T) {
	ifname := testutil.NoNativeXDP(t)
	root := testutil.PinRoot(t)
	if _, err := Attach(ifname, Options{Mode: ModeNative, PinRoot: root}); err == nil || !strings.Contains(err.Error(), "try --mode generic") {
		t.Errorf("native on a bridge: got %v, want an error with a hint", err)
	}
	checkGone(t, ifname, root)
	a := attach(t, ifname, Options{Mode: ModeAuto, PinRoot: root})
	defer a.Close()
	if a.Mode != ModeGeneric || a.NativeErr == nil {
		t.Errorf("auto on a bridge: got mode %v, NativeErr %v; want generic with a reason", a.Mode, a.NativeErr)
	}
	if _, mode := programOn(t, ifname); mode != ModeGeneric {
		t.Errorf("netlink: got %v mode, want generic", mode)
	}
}
