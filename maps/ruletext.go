package maps

import (
	"errors"
	"fmt"
	"net/netip"
)

// RuleText is a rule as operators write it, field by field: the rules
// command's flags (--proto, --local, ...), the config file's keys and
// the control API's fields. An empty field is absent: any protocol,
// any address and port, no tag.
type RuleText struct {
	Proto  string `json:"proto,omitempty"`
	Local  string `json:"local,omitempty"`
	Remote string `json:"remote,omitempty"`
	Action string `json:"action,omitempty"`
	Tag    string `json:"tag,omitempty"`
}

// RuleFieldError is a RuleText field that could not be read; Field is
// its name as the config file writes it (proto, local, ...).
type RuleFieldError struct {
	Field string
	Err   error
}

func (e *RuleFieldError) Error() string { return e.Field + ": " + e.Err.Error() }
func (e *RuleFieldError) Unwrap() error { return e.Err }

// Match reads the match (proto, local, remote) and normalizes it.
func (t RuleText) Match() (RuleMatch, error) {
	var m RuleMatch
	if t.Proto != "" {
		p, err := ParseRuleProtocol(t.Proto)
		if err != nil {
			return m, &RuleFieldError{"proto", err}
		}
		m.Protocol = p
	}
	for _, end := range []struct {
		field, text string
		prefix      *netip.Prefix
		port        *uint16
	}{{"local", t.Local, &m.Local, &m.LocalPort}, {"remote", t.Remote, &m.Remote, &m.RemotePort}} {
		if end.text == "" {
			continue
		}
		var err error
		if *end.prefix, *end.port, err = ParseEndpoint(end.text); err != nil {
			return m, &RuleFieldError{end.field, err}
		}
	}
	return m.Normalize()
}

// Rule reads the whole rule, which needs an action, and checks it.
func (t RuleText) Rule() (Rule, error) {
	m, err := t.Match()
	if err != nil {
		return Rule{}, err
	}
	if t.Action == "" {
		return Rule{}, &RuleFieldError{"action", errors.New("missing (want allow, deny or pass)")}
	}
	r := Rule{RuleMatch: m, Tag: t.Tag}
	if r.Action, err = ParseRuleAction(t.Action); err != nil {
		return Rule{}, &RuleFieldError{"action", err}
	}
	if err := checkTag(r.Tag); err != nil {
		return Rule{}, &RuleFieldError{"tag", err}
	}
	return r.Check()
}

// Text writes r back as RuleText reads it.
func (r Rule) Text() RuleText {
	t := RuleText{Action: r.Action.String(), Tag: r.Tag}
	if r.Protocol != 0 {
		t.Proto = r.Protocol.String()
	}
	if r.Local.IsValid() || r.LocalPort != 0 {
		t.Local = r.LocalString()
	}
	if r.Remote.IsValid() || r.RemotePort != 0 {
		t.Remote = r.RemoteString()
	}
	return t
}

// RuleRow is a rule as listings show it: `rules list --json` and the
// control API.
type RuleRow struct {
	ID       uint32 `json:"id"`
	Protocol string `json:"protocol"`
	Local    string `json:"local"`
	Remote   string `json:"remote"`
	Action   string `json:"action"`
	Tag      string `json:"tag"`
}

// String writes the rule as the rules command takes it.
func (r RuleRow) String() string {
	s := fmt.Sprintf("--proto %s --local %s --remote %s --action %s", r.Protocol, r.Local, r.Remote, r.Action)
	if r.Tag != "" {
		s += " --tag " + r.Tag
	}
	return s
}

// Row is r as listings show it.
func (r Rule) Row() RuleRow {
	return RuleRow{r.ID, r.ProtocolString(), r.LocalString(), r.RemoteString(), r.Action.String(), r.Tag}
}

// RuleSelector chooses the rules that a deletion removes: every rule
// with Tag, or else the one rule with Match.
type RuleSelector struct {
	Tag   string
	Match RuleMatch
}

// Selects tells whether s chooses r.
func (s RuleSelector) Selects(r Rule) bool {
	if s.Tag != "" {
		return r.Tag == s.Tag
	}
	return r.RuleMatch == s.Match
}

func (s RuleSelector) String() string {
	if s.Tag != "" {
		return fmt.Sprintf("tag %q", s.Tag)
	}
	return "the match " + s.Match.String()
}
