package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"text/tabwriter"

	"github.com/urfave/cli/v2"

	"github.com/xdpstack/xdpstack/loader"
	"github.com/xdpstack/xdpstack/maps"
)

func rulesCommand() *cli.Command {
	matchFlags := []cli.Flag{
		&cli.StringFlag{Name: "proto", Usage: "tcp, udp or any (default any)"},
		&cli.StringFlag{Name: "local", Usage: "local PREFIX[:PORT] (the destination): 10.0.0.0/8:80, [2001:db8::/32]:443, 192.0.2.1, :53; absent or port 0: any"},
		&cli.StringFlag{Name: "remote", Usage: "remote PREFIX[:PORT] (the source), as --local"},
		&cli.StringFlag{Name: "namespace", Usage: "a namespace's local table (not yet: needs the control socket)"},
	}
	return &cli.Command{
		Name:  "rules",
		Usage: "add, delete and list the interface's global session rules, enforced in XDP",
		Description: "Global rules work through the pins, with or without a running attach. Of the rules\n" +
			"that match a TCP or UDP packet, the most specific decides: the longer remote prefix,\n" +
			"then the longer local prefix, then an exact remote port, an exact local port, an exact\n" +
			"protocol. allow goes on to steering, deny drops, pass hands the packet to the kernel.",
		Subcommands: []*cli.Command{
			{
				Name:      "add",
				Usage:     "add a rule",
				ArgsUsage: "IFACE",
				Flags: append(slices.Clone(matchFlags),
					&cli.StringFlag{Name: "action", Usage: "allow, deny or pass"},
					&cli.StringFlag{Name: "tag", Usage: "a name for the rule (letters, digits, -_.:/; at most 31 bytes)"},
				),
				Before: needRoot,
				Action: runRulesAdd,
			},
			{
				Name:      "del",
				Usage:     "delete the rules with a tag, or the rule with a match",
				ArgsUsage: "IFACE",
				Flags:     append(slices.Clone(matchFlags), &cli.StringFlag{Name: "tag", Usage: "delete every rule with this tag"}),
				Before:    needRoot,
				Action:    runRulesDel,
			},
			{
				Name:      "list",
				Usage:     "list the rules with their hits (packets and bytes, summed over the CPUs)",
				ArgsUsage: "IFACE",
				Flags: []cli.Flag{
					&cli.BoolFlag{Name: "json", Usage: "print JSON"},
					&cli.StringFlag{Name: "namespace", Usage: "a namespace's local table (not yet: needs the control socket)"},
				},
				Before: needRoot,
				Action: runRulesList,
			},
		},
	}
}

// noNamespace refuses --namespace until local tables exist.
func noNamespace(c *cli.Context) error {
	if c.IsSet("namespace") {
		return fmt.Errorf("%s: --namespace %q: local rules need the control socket (a later change); without --namespace, rules are global", commandName(c), c.String("namespace"))
	}
	return nil
}

// matchFromFlags reads --proto, --local and --remote.
func matchFromFlags(c *cli.Context) (maps.RuleMatch, error) {
	var m maps.RuleMatch
	var err error
	if c.IsSet("proto") {
		if m.Protocol, err = maps.ParseRuleProtocol(c.String("proto")); err != nil {
			return m, fmt.Errorf("--proto: %w", err)
		}
	}
	endpoint := func(flag string, prefix *netip.Prefix, port *uint16) error {
		if !c.IsSet(flag) {
			return nil
		}
		var err error
		if *prefix, *port, err = maps.ParseEndpoint(c.String(flag)); err != nil {
			return fmt.Errorf("--%s: %w", flag, err)
		}
		return nil
	}
	if err := endpoint("local", &m.Local, &m.LocalPort); err != nil {
		return m, err
	}
	if err := endpoint("remote", &m.Remote, &m.RemotePort); err != nil {
		return m, err
	}
	return m.Normalize()
}

// openRules checks that xdpstack is attached to the command's interface
// and opens its rule maps, holding the pin folder's lock.
func openRules(c *cli.Context, ifname string) (maps.Rules, func(), error) {
	st, err := loader.ReadInterfaceStatus(c.String("pin-root"), ifname)
	if err != nil {
		return maps.Rules{}, nil, err
	}
	rules, err := maps.OpenPinnedRules(st.PinDir)
	if err != nil {
		return maps.Rules{}, nil, err
	}
	unlock, err := maps.LockPinDir(st.PinDir)
	if err != nil {
		rules.Close()
		return maps.Rules{}, nil, err
	}
	return rules, func() { unlock(); rules.Close() }, nil
}

func runRulesAdd(c *cli.Context) error {
	ifname, err := oneIface(c)
	if err != nil {
		return err
	}
	if err := noNamespace(c); err != nil {
		return err
	}
	if err := needFlags(c, "action"); err != nil {
		return err
	}
	r := maps.Rule{Tag: c.String("tag")}
	if r.RuleMatch, err = matchFromFlags(c); err != nil {
		return fmt.Errorf("rules add: %w", err)
	}
	if r.Action, err = maps.ParseRuleAction(c.String("action")); err != nil {
		return fmt.Errorf("rules add: --action: %w", err)
	}
	if r, err = r.Check(); err != nil {
		return fmt.Errorf("rules add: %w", err)
	}
	table, done, err := openRules(c, ifname)
	if err != nil {
		return err
	}
	defer done()
	have, err := table.All()
	if err != nil {
		return err
	}
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
	if err := noNamespace(c); err != nil {
		return err
	}
	byTag := c.IsSet("tag")
	byMatch := c.IsSet("proto") || c.IsSet("local") || c.IsSet("remote")
	if byTag == byMatch {
		return errors.New("rules del: give either --tag or the rule's match (--proto, --local, --remote)")
	}
	var m maps.RuleMatch
	if byMatch {
		if m, err = matchFromFlags(c); err != nil {
			return fmt.Errorf("rules del: %w", err)
		}
	}
	table, done, err := openRules(c, ifname)
	if err != nil {
		return err
	}
	defer done()
	have, err := table.All()
	if err != nil {
		return err
	}
	gone := func(r maps.Rule) bool {
		if byTag {
			return r.Tag == c.String("tag")
		}
		return r.RuleMatch == m
	}
	keep := slices.DeleteFunc(slices.Clone(have), gone)
	if len(keep) == len(have) {
		if byTag {
			return fmt.Errorf("rules del: no rule on %s has tag %q (see: xdpstack rules list %s)", ifname, c.String("tag"), ifname)
		}
		return fmt.Errorf("rules del: no rule on %s has the match %s (see: xdpstack rules list %s)", ifname, m, ifname)
	}
	if _, err := table.Replace(keep); err != nil {
		return fmt.Errorf("rules del: %w", err)
	}
	for _, r := range have {
		if gone(r) {
			fmt.Fprintf(c.App.Writer, "deleted rule %d: %s\n", r.ID, r)
		}
	}
	return nil
}

type ruleJSON struct {
	ID       uint32 `json:"id"`
	Protocol string `json:"protocol"`
	Local    string `json:"local"`
	Remote   string `json:"remote"`
	Action   string `json:"action"`
	Tag      string `json:"tag"`
	Packets  uint64 `json:"packets"`
	Bytes    uint64 `json:"bytes"`
}

func runRulesList(c *cli.Context) error {
	ifname, err := oneIface(c)
	if err != nil {
		return err
	}
	if err := noNamespace(c); err != nil {
		return err
	}
	table, done, err := openRules(c, ifname)
	if err != nil {
		return err
	}
	defer done()
	rules, err := table.All()
	if err != nil {
		return err
	}
	hits, err := table.Hits(rules)
	if err != nil {
		return err
	}
	rows := make([]ruleJSON, 0, len(rules))
	for _, r := range rules {
		h := hits[r.ID]
		rows = append(rows, ruleJSON{r.ID, r.ProtocolString(), r.LocalString(), r.RemoteString(), r.Action.String(), r.Tag, h.Packets, h.Bytes})
	}
	if c.Bool("json") {
		enc := json.NewEncoder(c.App.Writer)
		enc.SetIndent("", "  ")
		return enc.Encode(rows)
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
