package main

import (
	"context"
	"fmt"
	"net/netip"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"github.com/xdpstack/xdpstack/daemon"
	"github.com/xdpstack/xdpstack/daemon/control"
	"github.com/xdpstack/xdpstack/maps"
	"github.com/xdpstack/xdpstack/tools/internal/attachproc"
	"github.com/xdpstack/xdpstack/tools/internal/benchrules"
)

// How many changes each way of changing rules makes: enough for a
// rate, few enough for the section to take seconds. A change of the
// global table rewrites it whole, so its cost grows with the table's
// size: the rows say how big it was.
const (
	cliChanges     = 30
	pinChanges     = 200
	controlChanges = 500
	batchRules     = manyRules
)

// ruleChangeRow is one way of changing rules and how fast it went.
type ruleChangeRow struct {
	how     string
	changes int
	unit    string
	rate    float64
}

// ruleChanges measures how fast rules change on a running daemon: one
// `xdpstack rules add` process per global rule, as a script would; the
// same read-add-replace under the pin folder's lock in one process
// (maps.Rules, what the command does after it starts); one local rule
// per control socket call (rules add --namespace); and a whole table
// in one Replace. The tables grow as they go, as an operator's do.
func (b *bench) ruleChanges() ([]ruleChangeRow, error) {
	stop, pinDir, err := attachproc.StartPinned(b.pair.A, b.binary)
	if err != nil {
		return nil, err
	}
	defer stop()
	iface := b.pair.A.Iface
	remote := func(i int) string {
		return netip.AddrFrom4([4]byte{100, 64 + byte(i>>16&63), byte(i >> 8), byte(i)}).String()
	}
	var rows []ruleChangeRow
	record := func(how string, n int, unit string, took time.Duration) {
		rate := float64(n) / took.Seconds()
		fmt.Fprintf(logOut, "  %-75s %8.0f %s/s\n", how, rate, unit)
		rows = append(rows, ruleChangeRow{how, n, unit, rate})
	}
	measure := func(how string, n int, change func(i int) error) error {
		start := time.Now()
		for i := range n {
			if err := change(i); err != nil {
				return fmt.Errorf("%s, change %d: %w", how, i+1, err)
			}
		}
		record(how, n, "changes", time.Since(start))
		return nil
	}
	fmt.Fprintln(logOut, "rule changes:")

	err = measure(fmt.Sprintf("`xdpstack rules add`, a process per rule (global, 0 to %d rules)", cliChanges), cliChanges, func(i int) error {
		out, err := exec.Command(b.binary, "--pin-root", filepath.Dir(pinDir), "rules", "add", iface, "--proto", "udp", "--remote", remote(i), "--action", "deny").CombinedOutput()
		if err != nil {
			return fmt.Errorf("%w: %s", err, strings.TrimSpace(string(out)))
		}
		return nil
	})
	if err != nil {
		return nil, err
	}

	table, err := maps.OpenPinnedRules(pinDir)
	if err != nil {
		return nil, err
	}
	defer table.Close()
	addOne := func(r maps.Rule) error {
		unlock, err := maps.LockPinDir(pinDir)
		if err != nil {
			return err
		}
		defer unlock()
		have, err := table.All()
		if err == nil {
			_, err = table.Replace(append(have, r))
		}
		return err
	}
	err = measure(fmt.Sprintf("the pins in one process, a rule per change (global, %d to %d rules)", cliChanges, cliChanges+pinChanges), pinChanges, func(i int) error {
		return addOne(maps.Rule{RuleMatch: maps.RuleMatch{Protocol: maps.TCP, Remote: netip.MustParsePrefix(remote(i) + "/32")}, Action: maps.RuleDeny})
	})
	if err != nil {
		return nil, err
	}

	c := control.NewClient(control.DefaultDir, iface)
	ctx := context.Background()
	if _, err := daemon.NamespaceAddEndpoint.Call(ctx, c, daemon.NamespaceAdd{Name: "bench", Secret: "bench"}); err != nil {
		return nil, err
	}
	err = measure(fmt.Sprintf("the control socket, a rule per call (local, 0 to %d rules)", controlChanges), controlChanges, func(i int) error {
		_, err := daemon.LocalRuleAddEndpoint.Call(ctx, c, daemon.LocalRuleAdd{Namespace: "bench", Rule: maps.RuleText{Remote: remote(i), Action: "deny"}})
		return err
	})
	if err != nil {
		return nil, err
	}

	start := time.Now()
	if _, err := table.Replace(benchrules.Many(batchRules, b.generated())); err != nil {
		return nil, fmt.Errorf("replace with %d rules: %w", batchRules, err)
	}
	record(fmt.Sprintf("the pins, %d rules in one change (global)", batchRules), batchRules, "rules", time.Since(start))
	return rows, nil
}
