package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"slices"
	"text/tabwriter"

	"github.com/urfave/cli/v2"

	"github.com/xdpstack/xdpstack/daemon"
	"github.com/xdpstack/xdpstack/daemon/control"
	"github.com/xdpstack/xdpstack/loader"
	"github.com/xdpstack/xdpstack/maps"
)

func rulesCommand() *cli.Command {
	matchFlags := []cli.Flag{
		&cli.StringFlag{Name: "proto", Usage: "tcp, udp or any (default any)"},
		&cli.StringFlag{Name: "local", Usage: "local PREFIX[:PORT] (the destination): 10.0.0.0/8:80, [2001:db8::/32]:443, 192.0.2.1, :53; absent or port 0: any"},
		&cli.StringFlag{Name: "remote", Usage: "remote PREFIX[:PORT] (the source), as --local"},
		namespaceFlag,
	}
	return &cli.Command{
		Name:  "rules",
		Usage: "add, delete and list the interface's global session rules, enforced in XDP, or a namespace's local rules",
		Description: "Global rules work through the pins, with or without a running attach. Of the rules\n" +
			"that match a TCP or UDP packet, the most specific decides: the longer remote prefix,\n" +
			"then the longer local prefix, then an exact remote port, an exact local port, an exact\n" +
			"protocol. allow goes on to steering, deny drops, pass hands the packet to the kernel.\n" +
			"With --namespace NS, the rules are NS's local table, which the daemon on IFACE keeps\n" +
			"(through its control socket): allow or deny the connects NS's applications make and\n" +
			"the sessions their listeners accept.",
		Subcommands: []*cli.Command{
			{
				Name:      "add",
				Usage:     "add a rule",
				ArgsUsage: "IFACE",
				Flags: append(slices.Clone(matchFlags),
					&cli.StringFlag{Name: "action", Usage: "allow, deny or pass"},
					&cli.StringFlag{Name: "tag", Usage: "a name for the rule (letters, digits, -_.:/; at most 31 bytes)"},
				),
				Before: needRootForPins,
				Action: runRulesAdd,
			},
			{
				Name:      "del",
				Usage:     "delete the rules with a tag, or the rule with a match",
				ArgsUsage: "IFACE",
				Flags:     append(slices.Clone(matchFlags), &cli.StringFlag{Name: "tag", Usage: "delete every rule with this tag"}),
				Before:    needRootForPins,
				Action:    runRulesDel,
			},
			{
				Name:      "list",
				Usage:     "list the rules with their hits (packets and bytes, summed over the CPUs)",
				ArgsUsage: "IFACE",
				Flags: []cli.Flag{
					&cli.BoolFlag{Name: "json", Usage: "print JSON"},
					namespaceFlag,
				},
				Before: needRootForPins,
				Action: runRulesList,
			},
		},
	}
}

var namespaceFlag = &cli.StringFlag{Name: "namespace", Usage: "namespace `NS`'s local table, through the daemon's control socket"}

// needRootForPins asks for root where the command works through the
// pins: global rules. A namespace's local rules go through the control
// socket, which --control-group may open to others.
func needRootForPins(c *cli.Context) error {
	if c.IsSet("namespace") {
		return nil
	}
	return needRoot(c)
}

// ruleFlags are the rule's flags as RuleText takes them; a flag given
// empty is refused, not taken as absent.
func ruleFlags(c *cli.Context, names ...string) (maps.RuleText, error) {
	var t maps.RuleText
	fields := map[string]*string{"proto": &t.Proto, "local": &t.Local, "remote": &t.Remote, "action": &t.Action, "tag": &t.Tag}
	for _, name := range names {
		if !c.IsSet(name) {
			continue
		}
		if *fields[name] = c.String(name); *fields[name] == "" {
			return t, fmt.Errorf("--%s: empty", name)
		}
	}
	return t, nil
}

// flagError names the flag of a rule's field that was wrong.
func flagError(err error) error {
	if fe, ok := errors.AsType[*maps.RuleFieldError](err); ok {
		return fmt.Errorf("--%s: %w", fe.Field, fe.Err)
	}
	return err
}

// ruleSelector reads what rules del deletes: --tag, or the match.
func ruleSelector(c *cli.Context) (maps.RuleSelector, *maps.RuleText, error) {
	byTag := c.IsSet("tag")
	byMatch := c.IsSet("proto") || c.IsSet("local") || c.IsSet("remote")
	if byTag == byMatch {
		return maps.RuleSelector{}, nil, errors.New("give either --tag or the rule's match (--proto, --local, --remote)")
	}
	if byTag {
		t, err := ruleFlags(c, "tag")
		return maps.RuleSelector{Tag: t.Tag}, nil, err
	}
	t, err := ruleFlags(c, "proto", "local", "remote")
	if err != nil {
		return maps.RuleSelector{}, nil, err
	}
	m, err := t.Match()
	return maps.RuleSelector{Match: m}, &t, flagError(err)
}

// openRules checks that xdpstack is attached to the command's interface,
// opens its rule maps holding the pin folder's lock, and reads the rules
// in force.
func openRules(c *cli.Context, ifname string) (maps.Rules, []maps.Rule, func(), error) {
	st, err := loader.ReadInterfaceStatus(c.String("pin-root"), ifname)
	if err != nil {
		return maps.Rules{}, nil, nil, err
	}
	table, err := maps.OpenPinnedRules(st.PinDir)
	if err != nil {
		return maps.Rules{}, nil, nil, err
	}
	unlock, err := maps.LockPinDir(st.PinDir)
	if err != nil {
		table.Close()
		return maps.Rules{}, nil, nil, err
	}
	done := func() { unlock(); table.Close() }
	have, err := table.All()
	if err != nil {
		done()
		return maps.Rules{}, nil, nil, err
	}
	return table, have, done, nil
}

func runRulesAdd(c *cli.Context) error {
	ifname, err := oneIface(c)
	if err != nil {
		return err
	}
	if err := needFlags(c, "action"); err != nil {
		return err
	}
	text, err := ruleFlags(c, "proto", "local", "remote", "action", "tag")
	if err != nil {
		return fmt.Errorf("rules add: %w", err)
	}
	r, err := text.Rule()
	if err != nil {
		return fmt.Errorf("rules add: %w", flagError(err))
	}
	if c.IsSet("namespace") {
		added, err := daemon.LocalRuleAddEndpoint.Call(c.Context, control.NewClient(c.String("run-dir"), ifname), daemon.LocalRuleAdd{Namespace: c.String("namespace"), Rule: text})
		if err != nil {
			return fmt.Errorf("rules add %s: %w", ifname, err)
		}
		for _, r := range added.Rules {
			fmt.Fprintf(c.App.Writer, "namespace %s: local rule %d: %s\n", added.Namespace, r.ID, r)
		}
		return nil
	}
	table, have, done, err := openRules(c, ifname)
	if err != nil {
		return err
	}
	defer done()
	got, err := table.Replace(append(have, r))
	if err != nil {
		return fmt.Errorf("rules add: %w", err)
	}
	fmt.Fprintf(c.App.Writer, "rule %d: %s\n", got[len(got)-1].ID, got[len(got)-1])
	return nil
}

func runRulesDel(c *cli.Context) error {
	ifname, err := oneIface(c)
	if err != nil {
		return err
	}
	sel, match, err := ruleSelector(c)
	if err != nil {
		return fmt.Errorf("rules del: %w", err)
	}
	if c.IsSet("namespace") {
		gone, err := daemon.LocalRulesDelEndpoint.Call(c.Context, control.NewClient(c.String("run-dir"), ifname), daemon.LocalRuleDel{Namespace: c.String("namespace"), Tag: sel.Tag, Match: match})
		if err != nil {
			return fmt.Errorf("rules del %s: %w", ifname, err)
		}
		for _, r := range gone.Rules {
			fmt.Fprintf(c.App.Writer, "namespace %s: deleted local rule %d: %s\n", gone.Namespace, r.ID, r)
		}
		return nil
	}
	table, have, done, err := openRules(c, ifname)
	if err != nil {
		return err
	}
	defer done()
	keep := slices.DeleteFunc(slices.Clone(have), sel.Selects)
	if len(keep) == len(have) {
		return fmt.Errorf("rules del: no rule on %s has %s (see: xdpstack rules list %s)", ifname, sel, ifname)
	}
	if _, err := table.Replace(keep); err != nil {
		return fmt.Errorf("rules del: %w", err)
	}
	for _, r := range have {
		if sel.Selects(r) {
			fmt.Fprintf(c.App.Writer, "deleted rule %d: %s\n", r.ID, r)
		}
	}
	return nil
}

// ruleJSON is a global rule with its hits.
type ruleJSON struct {
	maps.RuleRow
	Packets uint64 `json:"packets"`
	Bytes   uint64 `json:"bytes"`
}

func runRulesList(c *cli.Context) error {
	ifname, err := oneIface(c)
	if err != nil {
		return err
	}
	if c.IsSet("namespace") {
		return listLocalRules(c, ifname, c.String("namespace"))
	}
	table, rules, done, err := openRules(c, ifname)
	if err != nil {
		return err
	}
	defer done()
	hits, err := table.Hits(rules)
	if err != nil {
		return err
	}
	rows := make([]ruleJSON, 0, len(rules))
	for _, r := range rules {
		h := hits[r.ID]
		rows = append(rows, ruleJSON{r.Row(), h.Packets, h.Bytes})
	}
	if c.Bool("json") {
		return printJSON(c.App.Writer, rows)
	}
	w := tabwriter.NewWriter(c.App.Writer, 0, 8, 2, ' ', 0)
	fmt.Fprintln(w, "ID\tPROTO\tLOCAL\tREMOTE\tACTION\tTAG\tPACKETS\tBYTES")
	for _, r := range rows {
		fmt.Fprintf(w, "%d\t%s\t%s\t%s\t%s\t%s\t%d\t%d\n", r.ID, r.Protocol, r.Local, r.Remote, r.Action, r.Tag, r.Packets, r.Bytes)
	}
	if err := w.Flush(); err != nil {
		return fmt.Errorf("print rules: %w", err)
	}
	if len(rows) == 0 {
		fmt.Fprintf(c.App.ErrWriter, "no rules on %s\n", ifname)
	}
	return nil
}

// listLocalRules lists namespace ns's local table, as the daemon on
// ifname has it. Local rules have no hit counters: what they deny is
// counted as the namespace's refusals (ns list).
func listLocalRules(c *cli.Context, ifname, ns string) error {
	list, err := daemon.LocalRulesEndpoint.Call(c.Context, control.NewClient(c.String("run-dir"), ifname), daemon.LocalRulesQuery{Namespace: ns})
	if err != nil {
		return fmt.Errorf("rules list %s: %w", ifname, err)
	}
	if c.Bool("json") {
		return printJSON(c.App.Writer, list.Rules)
	}
	w := tabwriter.NewWriter(c.App.Writer, 0, 8, 2, ' ', 0)
	fmt.Fprintln(w, "ID\tPROTO\tLOCAL\tREMOTE\tACTION\tTAG")
	for _, r := range list.Rules {
		fmt.Fprintf(w, "%d\t%s\t%s\t%s\t%s\t%s\n", r.ID, r.Protocol, r.Local, r.Remote, r.Action, r.Tag)
	}
	if err := w.Flush(); err != nil {
		return fmt.Errorf("print rules: %w", err)
	}
	if len(list.Rules) == 0 {
		fmt.Fprintf(c.App.ErrWriter, "no local rules in namespace %s on %s\n", ns, ifname)
	}
	return nil
}

// printJSON prints v as indented JSON.
func printJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}
